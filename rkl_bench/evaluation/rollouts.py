"""Batched, seeded policy rollouts: raw returns and D4RL-normalised scores.

Reproducibility is the first job. Every episode is fixed before the first
step: episode ``i`` of an evaluation with seed ``seed`` resets its env with
``seed + i``, and its return is stored at index ``i``, whichever sub-env runs
it and whenever it finishes. The policy is always called on blocks of exactly
:data:`POLICY_BLOCK` rows (idle rows are padded with zeros): PyTorch and BLAS
pick different kernels for different batch sizes and round differently (a
1e-8 difference in an action grows into a different MuJoCo trajectory), while
rows of a fixed-size block come out the same wherever they sit. So a score
depends only on the policy, the env id, ``seed`` and ``episodes``; never on
``num_envs``, on how episodes were interleaved, or on timing.

Speed is the second. The policy is called once per vector step on all running
sub-envs together (one call per :data:`POLICY_BLOCK` sub-envs), observations
are written into preallocated buffers and normalised in place, so the loop
adds no per-step allocations beyond what gymnasium's ``env.step`` makes; the
learners' ``act`` runs the actor on preallocated buffers too
(:mod:`rkl_bench.algos.inference`). Measured against stepping the same
trajectories with nothing else in the loop (``benchmarks/speed.py``): the
loop costs ~2%, the policy call (a 256x256 actor, compute-bound at ~70
GFLOP/s on one core) the rest, 85-87% of raw on HalfCheetah, 91% on Hopper
and Walker2d.

Why not :class:`gymnasium.vector.SyncVectorEnv`: it steps every sub-env in
lockstep. With ``AutoresetMode.DISABLED`` a sub-env whose episode ended must
be reset (and then stepped) even when no episode is left for it, and Hopper
and Walker2d episodes end at very different times, so up to ``num_envs - 1``
sub-envs would run discarded steps while the slowest episode finishes; it also
merges every sub-env's info dict on every step. Here each sub-env is a plain
``gym.make`` env reset per episode with its own seed (the "disabled autoreset"
pattern), and only sub-envs with an episode in progress are stepped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import numpy as np

from rkl_bench.data.envs import guess_env_family
from rkl_bench.data.gym_make import make_env
from rkl_bench.data.scores import REF_MIN_SCORE, normalized_score
from rkl_bench.errors import RklBenchError

Policy = Callable[[np.ndarray], np.ndarray]
"""Normalised observations ``(B, obs_dim)`` float32 -> actions ``(B, act_dim)``."""

POLICY_BLOCK = 10
"""Rows per policy call (see the module docstring: fixed for bit-exact scores).

10 is the paper's (and D4RL's) number of evaluation episodes, so the default
evaluation makes one policy call per vector step with no padding rows. It
was 16 until 2026-11-25: a 16-row call of a 256x256 actor costs ~25% more,
and scores from before then differ from today's in the last digits (the same
policy, rounded differently), not in distribution. The forge keeps its own
block (:data:`rkl_bench.forge.generate.POLICY_BLOCK`)."""

EVAL_LOOP_VERSION = 2
"""Version of the evaluation loop, recorded in every result row: scores of one
version are reproducible to the last digit. 1: policy blocks of 16 rows (until
2026-11-25, commit dc5a7cf); 2: blocks of :data:`POLICY_BLOCK` = 10 and the
allocation-free actor inference. Bump it with any change that alters scores."""

DEFAULT_MAX_ENVS = POLICY_BLOCK
"""Default ``num_envs`` is ``min(episodes, DEFAULT_MAX_ENVS)``: one policy call per step."""


@dataclass(frozen=True)
class EvalResult:
    """The outcome of :func:`evaluate_policy`; arrays are in episode order."""

    env_id: str
    seed: int
    """Episode ``i`` was reset with seed ``seed + i``."""
    returns: np.ndarray
    """Undiscounted return per episode, float64."""
    lengths: np.ndarray
    """Steps per episode, int64."""
    normalized_scores: np.ndarray | None
    """D4RL-normalised return per episode (0-100 scale), or None for envs without references."""
    env_steps: int
    seconds: float

    @property
    def episodes(self) -> int:
        return int(len(self.returns))

    @property
    def return_mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_std(self) -> float:
        """Population std (ddof=0) over episodes."""
        return float(np.std(self.returns))

    @property
    def normalized_mean(self) -> float | None:
        return None if self.normalized_scores is None else float(np.mean(self.normalized_scores))

    @property
    def normalized_std(self) -> float | None:
        return None if self.normalized_scores is None else float(np.std(self.normalized_scores))

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.seconds if self.seconds > 0 else float("inf")


def score_family(env_id: str, env_family: str | None = None) -> str | None:
    """The env family whose D4RL references score ``env_id``, or None if there are none."""
    family = env_family or guess_env_family(env_id)
    return family if family in REF_MIN_SCORE else None


class Evaluator:
    """Seeded rollouts on sub-envs that live across evaluations.

    Building a MuJoCo env parses its model file (~25 ms); a training run
    evaluates dozens of times, so it keeps one Evaluator and pays that once.
    Sub-envs are made on first use, up to ``num_envs``. Reusing them cannot
    change a score: every episode starts from a reset with its own seed.
    """

    def __init__(
        self,
        env_id: str,
        num_envs: int = DEFAULT_MAX_ENVS,
        max_episode_steps: int = 1000,
        env_family: str | None = None,
    ) -> None:
        if num_envs <= 0:
            raise RklBenchError(f"num_envs must be positive, got {num_envs}")
        if max_episode_steps <= 0:
            raise RklBenchError(f"max_episode_steps must be positive, got {max_episode_steps}")
        self.env_id = env_id
        self.num_envs = int(num_envs)
        self.max_episode_steps = int(max_episode_steps)
        self.family = score_family(env_id, env_family)
        self.envs: list[gym.Env] = [make_env(env_id, self.max_episode_steps)]

    def evaluate(
        self,
        policy: Policy,
        episodes: int,
        seed: int,
        state_mean: np.ndarray,
        state_std: np.ndarray,
    ) -> EvalResult:
        """Episodes ``0 .. episodes-1``, episode ``i`` reset with ``seed + i`` (see :func:`evaluate_policy`)."""
        if episodes <= 0:
            raise RklBenchError(f"evaluation needs at least one episode, got {episodes}")
        if seed < 0:
            raise RklBenchError(f"evaluation seed must be >= 0 (gymnasium's rule), got {seed}")
        start = time.perf_counter()
        wanted = min(episodes, self.num_envs)
        self.envs += [make_env(self.env_id, self.max_episode_steps) for _ in range(wanted - len(self.envs))]
        returns, lengths = _run_episodes(
            self.envs[:wanted], policy, episodes, int(seed), np.asarray(state_mean), np.asarray(state_std)
        )
        return EvalResult(
            env_id=self.env_id,
            seed=int(seed),
            returns=returns,
            lengths=lengths,
            normalized_scores=None if self.family is None else normalized_score(self.family, returns),
            env_steps=int(lengths.sum()),
            seconds=time.perf_counter() - start,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []

    def __enter__(self) -> "Evaluator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_policy(
    policy: Policy,
    env_id: str,
    episodes: int,
    seed: int,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    num_envs: int | None = None,
    max_episode_steps: int = 1000,
    env_family: str | None = None,
) -> EvalResult:
    """Roll ``policy`` out for ``episodes`` seeded episodes of ``env_id``.

    Raw observations are normalised as ``(obs - state_mean) / state_std`` (the
    dataset's statistics) before the policy sees them. Episode ``i`` is reset
    with seed ``seed + i``. ``num_envs`` sub-envs (default
    ``min(episodes, 10)``) run episodes side by side; the result does not
    depend on it. ``env_family`` picks the reference scores (default: guessed
    from ``env_id``); without one, ``normalized_scores`` is None. Envs are
    built and closed here; use an :class:`Evaluator` to evaluate repeatedly.
    """
    envs = DEFAULT_MAX_ENVS if num_envs is None else num_envs
    with Evaluator(env_id, envs, max_episode_steps, env_family) as evaluator:
        return evaluator.evaluate(policy, episodes, seed, state_mean, state_std)


def _run_episodes(
    envs: list[gym.Env],
    policy: Policy,
    episodes: int,
    seed: int,
    mean: np.ndarray,
    std: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Run episodes ``0 .. episodes-1`` on ``envs``; returns and lengths in episode order.

    ``running[j]`` is the slot (sub-env) behind row ``j`` of the observation
    buffers; rows ``0 .. len(running)-1`` are live, the rest stay zero padding.
    Per-slot tallies are plain Python numbers: the inner loop runs once per
    env step, where numpy scalar indexing would cost more than the bookkeeping.
    """
    obs_dim = envs[0].observation_space.shape[0]
    rows = -(-len(envs) // POLICY_BLOCK) * POLICY_BLOCK
    raw = np.zeros((rows, obs_dim), np.float64)
    normalised = np.zeros((rows, obs_dim), np.float32)
    returns = np.zeros(episodes, np.float64)
    lengths = np.zeros(episodes, np.int64)
    step = [env.step for env in envs]
    episode_of = [0] * len(envs)
    tally_return = [0.0] * len(envs)
    tally_length = [0] * len(envs)
    next_episode = 0
    running: list[int] = []

    def start(slot: int, row: int) -> bool:
        """Give ``slot`` the next episode, if any; its first observation goes to ``raw[row]``."""
        nonlocal next_episode
        if next_episode == episodes:
            return False
        episode_of[slot], tally_return[slot], tally_length[slot] = next_episode, 0.0, 0
        raw[row], _ = envs[slot].reset(seed=seed + next_episode)
        next_episode += 1
        return True

    for slot in range(len(envs)):
        if start(slot, len(running)):
            running.append(slot)

    while running:
        live = len(running)
        np.subtract(raw[:live], mean, out=normalised[:live])
        np.divide(normalised[:live], std, out=normalised[:live])
        actions = _act(policy, normalised, live)
        finished: list[int] = []
        for row, slot in enumerate(running):
            obs, reward, terminated, truncated, _ = step[slot](actions[row])
            tally_return[slot] += reward
            tally_length[slot] += 1
            if terminated or truncated:
                returns[episode_of[slot]] = tally_return[slot]
                lengths[episode_of[slot]] = tally_length[slot]
                if not start(slot, row):
                    finished.append(row)
            else:
                raw[row] = obs
        if finished:
            keep = [row for row in range(live) if row not in finished]
            running = [running[row] for row in keep]
            raw[: len(keep)] = raw[keep]
            raw[len(keep) : live] = 0.0
            normalised[len(keep) : live] = 0.0
    return returns, lengths


def _act(policy: Policy, normalised: np.ndarray, live: int) -> np.ndarray:
    """Actions for the first ``live`` rows, calling ``policy`` on whole blocks only."""
    blocks = -(-live // POLICY_BLOCK)
    if blocks == 1:
        return policy(normalised[:POLICY_BLOCK])
    return np.concatenate(
        [policy(normalised[b * POLICY_BLOCK : (b + 1) * POLICY_BLOCK]) for b in range(blocks)]
    )
