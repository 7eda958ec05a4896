"""Roll a behaviour policy out into D4RL-layout arrays, batched over envs.

Determinism is by construction, not by luck: episode ``k`` of a dataset always
resets with seed ``episode_seed(seed, k)`` and draws its action noise from its
own generator ``default_rng([seed, k])``. Envs run in lockstep and take the
next episode index when they free up, and the policy runs once per step on the
whole batch; but since an episode's content depends only on its index, the
arrays are byte-identical whatever the number of envs. Episodes are then laid
out in index order and cut at exactly ``n_transitions`` rows (the cut episode's
last row is flagged as a timeout, so the reader drops it as D4RL does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from rkl_bench.forge.policies import SnapshotPolicy

MAX_EPISODE_STEPS = 1000


@dataclass
class RolloutArrays:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_returns: np.ndarray
    """Returns of the complete episodes laid out (the cut one excluded)."""


def episode_seed(seed: int, episode: int) -> int:
    return (seed * 7_919 + 17) * 1_000_003 + episode


class _Episode:
    """Buffers of one running episode."""

    def __init__(self, index: int, seed: int, obs: np.ndarray) -> None:
        self.index = index
        self.rng = np.random.default_rng([seed, index])
        self.obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.rewards: list[float] = []
        self.next_obs: list[np.ndarray] = []
        self.terminal = False
        self.current = obs


def rollout(
    env_id: str,
    policy: SnapshotPolicy | None,
    n_transitions: int,
    seed: int,
    num_envs: int = 8,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    progress: bool = True,
    desc: str = "",
) -> RolloutArrays:
    """``n_transitions`` rows of ``policy`` (``None``: uniform random actions) on ``env_id``.

    Actions are *sampled* from the policy, as D4RL's datasets were.
    """
    if n_transitions <= 0:
        raise ValueError(f"n_transitions must be positive, got {n_transitions}")
    envs = [gym.make(env_id).unwrapped for _ in range(num_envs)]
    act_dim = envs[0].action_space.shape[0]
    finished: dict[int, _Episode] = {}
    running: list[_Episode | None] = [None] * num_envs
    next_index = 0

    def start(slot: int) -> None:
        nonlocal next_index
        obs, _ = envs[slot].reset(seed=episode_seed(seed, next_index))
        running[slot] = _Episode(next_index, seed, obs)
        next_index += 1

    def prefix_rows() -> int:
        """Rows available from consecutive finished episodes 0, 1, 2, ..."""
        total, k = 0, 0
        while k in finished:
            total += len(finished[k].rewards)
            k += 1
        return total

    for slot in range(num_envs):
        start(slot)
    bar = tqdm(total=n_transitions, desc=desc or f"rollout {env_id}", unit="step",
               disable=not progress, dynamic_ncols=True, mininterval=2.0)
    done_rows = 0
    while done_rows < n_transitions:
        active = [i for i, ep in enumerate(running) if ep is not None]
        obs_batch = np.stack([running[i].current for i in active])
        noise = np.stack([running[i].rng.standard_normal(act_dim) for i in active])
        if policy is None:
            actions = np.stack([running[i].rng.uniform(-1.0, 1.0, act_dim) for i in active])
        else:
            actions = policy.sample(obs_batch, noise)
        for j, slot in enumerate(active):
            ep = running[slot]
            action = actions[j].astype(np.float32)
            next_obs, reward, terminated, _, _ = envs[slot].step(action)
            ep.obs.append(ep.current)
            ep.actions.append(action)
            ep.rewards.append(float(reward))
            ep.next_obs.append(next_obs)
            ep.current = next_obs
            if terminated or len(ep.rewards) >= max_episode_steps:
                ep.terminal = bool(terminated)
                finished[ep.index] = ep
                running[slot] = None
        before = done_rows
        done_rows = prefix_rows()
        bar.update(min(done_rows, n_transitions) - min(before, n_transitions))
        if done_rows < n_transitions:
            # Only start episodes that can still be needed: those below the
            # prefix already complete are enough once it covers n rows.
            for slot in range(num_envs):
                if running[slot] is None:
                    start(slot)
    bar.close()
    return _layout(finished, n_transitions)


def _layout(finished: dict[int, _Episode], n: int) -> RolloutArrays:
    obs, actions, rewards, next_obs, terminals, timeouts, returns = [], [], [], [], [], [], []
    rows, k = 0, 0
    while rows < n:
        ep = finished[k]
        length = len(ep.rewards)
        take = min(length, n - rows)
        term = np.zeros(take, bool)
        tout = np.zeros(take, bool)
        if take == length:
            term[-1] = ep.terminal
            tout[-1] = not ep.terminal
            returns.append(sum(ep.rewards))
        else:
            tout[-1] = True  # the dataset ends mid-episode: D4RL flags such a row as a timeout
        obs.append(np.asarray(ep.obs[:take]))
        actions.append(np.asarray(ep.actions[:take]))
        rewards.append(np.asarray(ep.rewards[:take]))
        next_obs.append(np.asarray(ep.next_obs[:take]))
        terminals.append(term)
        timeouts.append(tout)
        rows += take
        k += 1
    cat: Callable[[list[np.ndarray]], np.ndarray] = lambda parts: np.concatenate(parts)  # noqa: E731
    return RolloutArrays(
        observations=cat(obs).astype(np.float32),
        actions=cat(actions).astype(np.float32),
        rewards=cat(rewards).astype(np.float32),
        next_observations=cat(next_obs).astype(np.float32),
        terminals=cat(terminals),
        timeouts=cat(timeouts),
        episode_returns=np.asarray(returns, np.float64),
    )
