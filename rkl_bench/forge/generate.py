"""Roll a behaviour policy out into D4RL-layout arrays, batched over envs.

Determinism is by construction, not by luck: episode ``k`` of a dataset always
resets with seed ``dataset_episode_seed(seed, k)`` and takes its action noise (and,
for the random policy, its actions) from its own generator
``default_rng([seed, k])``, drawn for the whole episode when it starts. Envs
run in lockstep and take the next episode index when they free up; the policy
runs once per step on fixed blocks of ``POLICY_BLOCK`` rows (zero rows pad
the last block), so a row's action never depends on how many envs run beside
it. Since an episode's content depends only on its index, the arrays are
byte-identical whatever the number of envs (tested, with a real policy).
Episodes are then laid out in index order and cut at exactly ``n_transitions``
rows (the cut episode's last row is flagged as a timeout, so the reader drops
it as D4RL does).

Episodes start only while they can still be needed (the episodes before
them, each running one counted at its longest, may fall short of
``n_transitions``), so a short dataset does not step a whole wave of
episodes it then discards.

Interruptions: with ``checkpoint`` (a folder), finished episodes are kept on
disk every ``checkpoint_seconds`` (``rollout_checkpoint``), and a rerun rolls
out only the others. Which episodes ran before changes none of them, so the
arrays are those of an uninterrupted rollout.

Speed: every buffer is allocated once per env slot (an episode's rows are
written in place and copied out when it ends), the rows of complete episodes
are counted as they finish, and the policy's per-call cost is shared by all
envs of a block; ``benchmarks/speed.py`` compares this loop with raw stepping.
The policy runs on one torch thread (``one_torch_thread``): a 16-row MLP call
gains nothing from more, and torch's default (a thread per core) made two
``datasets make`` processes on 2 cores oversubscribe them (load 4;
HalfCheetah's policy files at 770-970 rows/s, against 5,200 on one thread
each; docs/forge.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from rkl_bench.data.gym_make import make_env
from rkl_bench.forge.policies import SnapshotPolicy
from rkl_bench.forge.rollout_checkpoint import Episode, RolloutCheckpoint

POLICY_BLOCK = 16
"""Rows per policy call. Part of the data format: another block size rounds the
policy's outputs differently and so makes other (equally valid) datasets."""

MAX_EPISODE_STEPS = 1000

CHECKPOINT_SECONDS = 60.0
"""How often a rollout with a checkpoint folder keeps its newly finished episodes (wall seconds)."""


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


def dataset_episode_seed(seed: int, episode: int) -> int:
    """Reset seed of episode ``episode`` of a dataset made with ``seed``. Another formula than
    ``train_policy.training_episode_seed`` (the SAC run's own episodes), so that a dataset does not
    replay the episodes its behaviour policy was trained on."""
    return (seed * 7_919 + 17) * 1_000_003 + episode


class _Slot:
    """One env and the in-place buffers of the episode it is running."""

    def __init__(self, env: gym.Env, obs_dim: int, act_dim: int, max_steps: int) -> None:
        self.env = env
        self.step = env.step
        self.obs = np.empty((max_steps + 1, obs_dim))
        self.actions = np.empty((max_steps, act_dim), np.float32)
        self.rewards = np.empty(max_steps)
        self.noise = np.empty((max_steps, act_dim), np.float32)
        self.index = -1
        self.t = 0

    def start(self, index: int, seed: int, random_policy: bool) -> None:
        """Reset for episode ``index``: its seed, its noise (or random actions) for every step."""
        self.index, self.t = index, 0
        self.obs[0], _ = self.env.reset(seed=dataset_episode_seed(seed, index))
        rng = np.random.default_rng([seed, index])
        shape = self.noise.shape
        self.noise[:] = rng.uniform(-1.0, 1.0, shape) if random_policy else rng.standard_normal(shape)

    def finish(self, terminal: bool) -> Episode:
        t = self.t
        return Episode(self.obs[:t].copy(), self.actions[:t].copy(), self.rewards[:t].copy(),
                        self.obs[1 : t + 1].copy(), terminal)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(1)``, restoring the caller's setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rollout(
    env_id: str,
    policy: SnapshotPolicy | None,
    n_transitions: int,
    seed: int,
    num_envs: int = 16,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    progress: bool = True,
    desc: str = "",
    checkpoint: Path | None = None,
    checkpoint_seconds: float | None = None,
) -> RolloutArrays:
    """``n_transitions`` rows of ``policy`` (``None``: uniform random actions) on ``env_id``.

    Actions are *sampled* from the policy, as D4RL's datasets were. With ``checkpoint``, the
    episodes finished by an earlier, interrupted call with the same arguments are reused.
    """
    with one_torch_thread():
        return _rollout(env_id, policy, n_transitions, seed, num_envs, max_episode_steps, progress, desc,
                        checkpoint, checkpoint_seconds)


def _rollout(
    env_id: str,
    policy: SnapshotPolicy | None,
    n_transitions: int,
    seed: int,
    num_envs: int,
    max_episode_steps: int,
    progress: bool,
    desc: str,
    checkpoint: Path | None,
    checkpoint_seconds: float | None,
) -> RolloutArrays:
    if n_transitions <= 0:
        raise ValueError(f"n_transitions must be positive, got {n_transitions}")
    store = None if checkpoint is None else RolloutCheckpoint(checkpoint, {
        "env_id": env_id, "policy": "random" if policy is None else policy.digest, "seed": seed,
        "max_episode_steps": max_episode_steps, "policy_block": POLICY_BLOCK,
    })
    kept = {} if store is None else store.load()
    save_every = CHECKPOINT_SECONDS if checkpoint_seconds is None else checkpoint_seconds
    envs = [make_env(env_id).unwrapped for _ in range(num_envs)]
    obs_dim, act_dim = envs[0].observation_space.shape[0], envs[0].action_space.shape[0]
    slots = [_Slot(env, obs_dim, act_dim, max_episode_steps) for env in envs]
    rows = -(-num_envs // POLICY_BLOCK) * POLICY_BLOCK
    obs_batch = np.zeros((rows, obs_dim), np.float32)
    noise_batch = np.zeros((rows, act_dim), np.float32)
    finished: dict[int, Episode] = dict(kept)
    unsaved: dict[int, Episode] = {}
    last_save = time.monotonic()
    running: list[int] = []  # slot numbers, in row order
    idle = list(range(num_envs - 1, -1, -1))  # popped from the end: slot 0 first
    next_index = 0
    started_finished_rows = 0  # rows of all finished episodes (every one was started before next_index)
    prefix_episodes = prefix_rows = 0  # complete episodes 0..k-1 and their rows

    def start_needed_episodes() -> None:
        """Start episodes on idle slots while they can still be needed.

        Episode ``next_index`` is needed only if the episodes before it can fall
        short of ``n_transitions`` rows, counting each running one at its
        longest. This keeps a short dataset from stepping whole waves of
        episodes it then discards (20k rows on 16 envs would step 32 1000-step
        episodes otherwise). Which episodes run never changes their content.
        """
        nonlocal next_index, started_finished_rows
        while idle:
            while next_index in kept:  # finished by an earlier run: counted, not rolled out again
                started_finished_rows += len(kept[next_index])
                next_index += 1
            if started_finished_rows + len(running) * max_episode_steps >= n_transitions:
                break
            slot = idle.pop()
            slots[slot].start(next_index, seed, policy is None)
            next_index += 1
            running.append(slot)

    start_needed_episodes()
    while prefix_episodes in finished:
        prefix_rows += len(finished[prefix_episodes])
        prefix_episodes += 1
    bar = tqdm(total=n_transitions, initial=min(prefix_rows, n_transitions), desc=desc or f"rollout {env_id}",
               unit="step", disable=not progress, dynamic_ncols=True, mininterval=2.0)
    if kept and progress:
        print(f"{desc or env_id}: {len(kept)} episode(s) kept from an interrupted run", flush=True)
    while prefix_rows < n_transitions:
        live = len(running)
        for row, slot in enumerate(running):
            s = slots[slot]
            obs_batch[row] = s.obs[s.t]
            noise_batch[row] = s.noise[s.t]
        if policy is None:
            actions = noise_batch
        else:
            actions = _sample_blocks(policy, obs_batch, noise_batch, live)
        ended: list[int] = []
        for row, slot in enumerate(running):
            s = slots[slot]
            t = s.t
            s.actions[t] = actions[row]
            next_obs, reward, terminated, _, _ = s.step(s.actions[t])
            s.rewards[t] = reward
            s.obs[t + 1] = next_obs
            s.t = t + 1
            if terminated or s.t >= max_episode_steps:
                episode = s.finish(bool(terminated))
                finished[s.index] = unsaved[s.index] = episode
                started_finished_rows += len(episode)
                ended.append(slot)
        if not ended:
            continue
        if store is not None and time.monotonic() - last_save >= save_every:
            store.save(unsaved)
            unsaved, last_save = {}, time.monotonic()
        before = prefix_rows
        while prefix_episodes in finished:
            prefix_rows += len(finished[prefix_episodes])
            prefix_episodes += 1
        bar.update(min(prefix_rows, n_transitions) - min(before, n_transitions))
        running = [slot for slot in running if slot not in ended]
        idle.extend(reversed(ended))
        start_needed_episodes()
        obs_batch[len(running) : live] = 0.0  # rows freed by finished episodes pad the block again
    bar.close()
    for env in envs:
        env.close()
    return _layout(finished, n_transitions)


@torch.no_grad()
def _sample_blocks(policy: SnapshotPolicy, obs: np.ndarray, noise: np.ndarray, live: int) -> np.ndarray:
    """The policy's sampled actions for rows ``0 .. live-1``, computed on whole blocks only."""
    blocks = -(-live // POLICY_BLOCK)
    parts = [
        policy.sample(obs[b * POLICY_BLOCK : (b + 1) * POLICY_BLOCK], noise[b * POLICY_BLOCK : (b + 1) * POLICY_BLOCK])
        for b in range(blocks)
    ]
    return parts[0] if blocks == 1 else np.concatenate(parts)


def _layout(finished: dict[int, Episode], n: int) -> RolloutArrays:
    obs, actions, rewards, next_obs, terminals, timeouts, returns = [], [], [], [], [], [], []
    rows, k = 0, 0
    while rows < n:
        ep = finished[k]
        length = len(ep)
        take = min(length, n - rows)
        term = np.zeros(take, bool)
        tout = np.zeros(take, bool)
        if take == length:
            term[-1] = ep.terminal
            tout[-1] = not ep.terminal
            returns.append(float(ep.rewards.sum()))
        else:
            tout[-1] = True  # the dataset ends mid-episode: D4RL flags such a row as a timeout
        obs.append(ep.observations[:take])
        actions.append(ep.actions[:take])
        rewards.append(ep.rewards[:take])
        next_obs.append(ep.next_observations[:take])
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
