"""How close evaluation and dataset generation come to raw env stepping.

    python benchmarks/env_speed.py [--env HalfCheetah-v4] [--rounds 3]

(also printed by ``benchmarks/speed.py``). Rounds interleave, so other jobs
sharing the CPU weigh on every loop alike; medians are printed.

Evaluation, env steps/s. One evaluation of an untrained TD3+BC learner's
``act`` (256x256 actor, one torch thread) is recorded first: every action
each episode took, and every block of actions the policy returned. The
references then step *the same trajectories*, because an env's step cost
depends on what it simulates (HalfCheetah-v4 steps ~10% faster under uniform
random actions than under constant ones: fewer contacts), so stepping other
actions would measure other physics, not loop overhead:

* ``raw replay``: the same ``gym.make`` sub-envs (wrappers included), each
  episode reset with its seed and stepped with its recorded actions,
  round-robin over the sub-envs as the Evaluator runs them; nothing else in
  the loop: the ceiling, "raw vector-env stepping";
* ``sync replay``: gymnasium's ``SyncVectorEnv`` over as many such envs,
  stepped in lockstep with the recorded actions (exact for envs whose
  episodes all run to the time limit, like HalfCheetah; elsewhere sub-envs
  whose episode ended keep stepping zeros until the longest one ends);
* ``Evaluator``: :class:`~rkl_bench.evaluation.rollouts.Evaluator` with the
  policy, its sub-envs kept across rounds as a training run keeps them;
* ``Eval replay``: the same Evaluator fed the recorded blocks of actions
  instead of calling the policy: the loop's own cost, on the same physics.

Dataset generation, rows/s: :func:`rkl_bench.forge.generate.rollout` of an
untrained SAC-sized tanh-Gaussian policy on the forge's v5 env (``rollout``;
32k rows, two waves of 16 episodes, the same seed every round) next to
``raw replay``: as many unwrapped envs built and stepped round-robin through
the same rows (each episode reset with its seed, its sampled actions
replayed). Both include building the envs (~7 ms each). ``rollout rand``
(the random policy: the loop without policy calls) simulates other
trajectories, so its ratio mixes loop cost with physics.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rkl_bench.algos.nets import GaussianHead  # noqa: E402
from rkl_bench.algos.td3_bc import TD3BC, TD3BCConfig  # noqa: E402
from rkl_bench.evaluation.rollouts import DEFAULT_MAX_ENVS, Evaluator, Policy, make_env  # noqa: E402
from rkl_bench.forge.generate import RolloutArrays, dataset_episode_seed, rollout  # noqa: E402
from rkl_bench.forge.make import PROFILES  # noqa: E402
from rkl_bench.forge.policies import SnapshotPolicy  # noqa: E402


def td3_actor(obs_dim: int, act_dim: int) -> Policy:
    """An untrained TD3+BC learner's ``act``: the per-call cost of a real policy."""
    rows = np.zeros((1, obs_dim), np.float32), np.zeros((1, act_dim), np.float32)  # the learner reads their shapes
    return TD3BC(*rows, TD3BCConfig(update_path="plain"), seed=0).act


EVAL_SEED = 0
"""Seed of the benchmark's evaluations (the same episodes every round)."""


class _ActionLog(gym.Wrapper):
    """Records each episode's reset seed and actions (the recording evaluation's sub-envs)."""

    def __init__(self, env: gym.Env, episodes: list[tuple[int, list[np.ndarray]]]) -> None:
        super().__init__(env)
        self.episodes = episodes
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        self.actions = []
        self.episodes.append((seed, self.actions))
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(np.array(action, copy=True))
        return self.env.step(action)


@dataclass
class Recording:
    """One evaluation's trajectories: per episode ``(seed, actions)`` in episode order, and the
    blocks of actions the policy returned, call by call."""

    episodes: list[tuple[int, np.ndarray]]
    policy_outputs: list[np.ndarray]

    @property
    def env_steps(self) -> int:
        return sum(len(actions) for _, actions in self.episodes)

    def replay_policy(self) -> Policy:
        """A policy returning the recorded blocks in order (one replayed evaluation per call)."""
        outputs = iter(self.policy_outputs)
        return lambda observations: next(outputs)


def record_evaluation(
    env_id: str, policy: Policy, episodes: int, num_envs: int, max_episode_steps: int,
    mean: np.ndarray, std: np.ndarray,
) -> Recording:
    """Run one evaluation on action-logging sub-envs and keep everything needed to replay it."""
    logged: list[tuple[int, list[np.ndarray]]] = []
    outputs: list[np.ndarray] = []

    def recording_policy(observations: np.ndarray) -> np.ndarray:
        outputs.append(np.array(policy(observations), copy=True))
        return outputs[-1]

    with Evaluator(env_id, num_envs, max_episode_steps) as evaluator:
        evaluator.envs = [_ActionLog(make_env(env_id, max_episode_steps), logged) for _ in range(num_envs)]
        evaluator.evaluate(recording_policy, episodes, EVAL_SEED, mean, std)
    by_seed = sorted((seed, np.stack(actions)) for seed, actions in logged if actions)
    return Recording(by_seed, outputs)


def replay_episodes(envs: list[gym.Env], recording: Recording) -> None:
    """Step ``envs`` through ``recording``'s episodes round-robin, as the Evaluator runs them:
    each sub-env takes the next episode (reset with its seed) when its last one ends."""
    queue = iter(recording.episodes)
    steppers = [env.step for env in envs]
    running = []  # [slot, actions, next index]; actions None once the slot has no episode left
    for slot, (seed, actions) in zip(range(len(envs)), queue):
        envs[slot].reset(seed=seed)
        running.append([slot, actions, 0])
    while running:
        for entry in running:
            slot, actions, t = entry
            steppers[slot](actions[t])
            entry[2] = t + 1
            if t + 1 == len(actions):
                seed, entry[1] = next(queue, (None, None))
                entry[2] = 0
                if seed is not None:
                    envs[slot].reset(seed=seed)
        running = [entry for entry in running if entry[1] is not None]


def replay_steps_per_second(envs: list[gym.Env], recording: Recording) -> float:
    """Env steps/s of :func:`replay_episodes` (resets included)."""
    start = time.perf_counter()
    replay_episodes(envs, recording)
    return recording.env_steps / (time.perf_counter() - start)


def sync_replay_steps_per_second(envs: gym.vector.SyncVectorEnv, recording: Recording) -> float:
    """Env steps/s of gymnasium's own vector env stepping the recorded actions in lockstep
    (the first ``num_envs`` episodes, one per sub-env)."""
    episodes = recording.episodes[: envs.num_envs]
    longest = max(len(actions) for _, actions in episodes)
    batch = np.zeros((longest, envs.num_envs, *envs.single_action_space.shape), envs.single_action_space.dtype)
    for j, (_, actions) in enumerate(episodes):
        batch[: len(actions), j] = actions
    start = time.perf_counter()
    envs.reset(seed=[seed for seed, _ in episodes])
    for actions in batch:
        envs.step(actions)
    return sum(len(actions) for _, actions in episodes) / (time.perf_counter() - start)


def evaluation_rates(
    env_id: str, rounds: int, episodes: int = 10, max_episode_steps: int = 1000, quiet=contextlib.nullcontext
) -> dict[str, list[float]]:
    """Median-ready env steps/s per loop (module docstring), ``rounds`` interleaved rounds."""
    num_envs = min(episodes, DEFAULT_MAX_ENVS)
    with quiet():
        evaluator = Evaluator(env_id, num_envs, max_episode_steps)
        obs_dim = evaluator.envs[0].observation_space.shape[0]
        act_dim = evaluator.envs[0].action_space.shape[0]
        policy = td3_actor(obs_dim, act_dim)
        mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
        recording = record_evaluation(env_id, policy, episodes, num_envs, max_episode_steps, mean, std)
        evaluator.evaluate(policy, episodes, EVAL_SEED, mean, std)  # builds the sub-envs
        raw_envs = [make_env(env_id, max_episode_steps) for _ in range(num_envs)]
        sync = gym.vector.SyncVectorEnv([lambda: make_env(env_id, max_episode_steps)] * num_envs,
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    rates: dict[str, list[float]] = {"raw replay": [], "sync replay": [], "Evaluator": [], "Eval replay": []}
    jobs = {
        "Evaluator": lambda: evaluator.evaluate(policy, episodes, EVAL_SEED, mean, std).steps_per_second,
        "Eval replay": lambda: evaluator.evaluate(
            recording.replay_policy(), episodes, EVAL_SEED, mean, std).steps_per_second,
        "raw replay": lambda: replay_steps_per_second(raw_envs, recording),
        "sync replay": lambda: sync_replay_steps_per_second(sync, recording),
    }
    for r in range(rounds):
        for name in (list(jobs) if r % 2 == 0 else list(reversed(jobs))):
            rates[name].append(jobs[name]())
    evaluator.close()
    sync.close()
    for env in raw_envs:
        env.close()
    return rates


GEN_SEED = 0
"""Seed of the benchmark's dataset rollouts (the same rows every round, so one replay serves all)."""


def dataset_recording(arrays: RolloutArrays, seed: int) -> Recording:
    """The episodes of a forge rollout as a :class:`Recording`: episode ``k`` (layout order is
    index order) with its reset seed ``dataset_episode_seed(seed, k)`` and its sampled actions."""

    ends = np.flatnonzero(arrays.terminals | arrays.timeouts) + 1
    starts = np.concatenate([[0], ends[:-1]])
    return Recording(
        [(dataset_episode_seed(seed, k), arrays.actions[a:b]) for k, (a, b) in enumerate(zip(starts, ends))], []
    )


def generation_rates(env_id: str, rounds: int, num_envs: int, transitions: int = 32_000) -> dict[str, list[float]]:
    """Forge ``rollout`` vs raw stepping of the same rows on as many envs, interleaved per round."""

    probe = gym.make(env_id)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    torch.manual_seed(0)
    policy = SnapshotPolicy(GaussianHead(obs_dim, act_dim, (256, 256)).eval(), step=0, digest="bench")
    arrays = rollout(env_id, policy, transitions, seed=GEN_SEED, num_envs=num_envs, progress=False)
    recording = dataset_recording(arrays, GEN_SEED)

    def raw_replay() -> float:
        start = time.perf_counter()
        envs = [gym.make(env_id).unwrapped for _ in range(num_envs)]  # rollout() builds its envs too
        replay_episodes(envs, recording)
        seconds = time.perf_counter() - start
        for env in envs:
            env.close()
        return transitions / seconds

    rates: dict[str, list[float]] = {"raw replay": [], "rollout": [], "rollout rand": []}
    jobs = {
        "raw replay": raw_replay,
        "rollout": lambda: _rollout_rate(env_id, policy, transitions, GEN_SEED, num_envs),
        "rollout rand": lambda: _rollout_rate(env_id, None, transitions, GEN_SEED, num_envs),
    }
    for r in range(rounds):
        names = list(jobs) if r % 2 == 0 else list(reversed(jobs))
        for name in names:
            rates[name].append(jobs[name]())
    return rates


def _rollout_rate(env_id: str, policy, transitions: int, seed: int, num_envs: int) -> float:

    start = time.perf_counter()
    rollout(env_id, policy, transitions, seed=seed, num_envs=num_envs, progress=False)
    return transitions / (time.perf_counter() - start)


def _line(name: str, values: list[float]) -> str:
    return f"  {name:12s} {statistics.median(values):7.0f} env steps/s  (rounds: {', '.join(f'{v:.0f}' for v in values)})"


def env_speed_table(
    env_id: str, rounds: int, threads: int = 1, evaluation: bool = True, generation: bool = True,
    quiet=contextlib.nullcontext,
) -> None:
    """Print the evaluation and dataset-generation sections of the speed benchmark.

    ``quiet`` is a context manager wrapped around env construction (the
    benchmark script passes one that silences MuJoCo's C-level warnings).
    """
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if evaluation:
        rates = evaluation_rates(env_id, rounds, quiet=quiet)
        print(f"\nEvaluation ({env_id}, 10 episodes on 10 sub-envs, TD3+BC-sized actor, same trajectories)")
        for name, values in rates.items():
            print(_line(name, values))
        median = {name: statistics.median(values) for name, values in rates.items()}
        print(f"  Evaluator / raw replay: {100 * median['Evaluator'] / median['raw replay']:.0f}%"
              f"  (/ sync replay: {100 * median['Evaluator'] / median['sync replay']:.0f}%;"
              f" Eval replay / raw replay: {100 * median['Eval replay'] / median['raw replay']:.0f}%)")
    if generation:
        gen_env = env_id.replace("-v4", "-v5")
        num_envs = PROFILES["full"].num_envs
        rates = generation_rates(gen_env, rounds, num_envs)
        print(f"\nDataset generation ({gen_env}, {num_envs} envs as the full forge profile, SAC-sized policy, sampled actions)")
        for name, values in rates.items():
            print(_line(name, values))
        raw = statistics.median(rates["raw replay"])
        print(f"  rollout / raw replay: {100 * statistics.median(rates['rollout']) / raw:.0f}%"
              f"  (random policy, other trajectories: {100 * statistics.median(rates['rollout rand']) / raw:.0f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-generation", action="store_true")
    args = parser.parse_args()
    env_speed_table(args.env, args.rounds, generation=not args.no_generation)


if __name__ == "__main__":
    main()
