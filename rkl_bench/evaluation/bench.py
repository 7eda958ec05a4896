"""How close evaluation and dataset generation come to raw env stepping.

    python -m rkl_bench.evaluation.bench [--env HalfCheetah-v4] [--rounds 3]

(also printed by ``benchmarks/speed.py``). Rounds interleave, so other jobs
sharing the CPU weigh on every loop alike; medians are printed.

Evaluation, env steps/s:

* ``raw vector``: the sub-envs an evaluation uses (``min(episodes, 16)``
  ``gym.make`` envs, wrappers included), stepped round-robin with actions
  drawn up front and reset when an episode ends: the cost of ``env.step`` and
  ``env.reset`` alone, the ceiling;
* ``raw single``: one such env, the same way (cache-hot reference);
* ``sync vector``: gymnasium's ``SyncVectorEnv`` over as many such envs
  (same-step autoreset), stepped with actions drawn up front: what "vector
  env stepping" means in gymnasium;
* ``Evaluator``: :class:`~rkl_bench.evaluation.rollouts.Evaluator` rolling
  out an untrained TD3+BC learner's ``act`` (256x256 actor, one torch
  thread), its sub-envs kept across rounds as a training run keeps them;
* ``Eval null``: the same with a policy that returns zeros (the loop's own
  cost, without the policy call).

Dataset generation, env steps/s: :func:`rkl_bench.forge.generate.rollout` of
a SAC-sized tanh-Gaussian policy on the forge's v5 env (``rollout``) and of
the random policy (``rollout rand``: the loop without policy calls), next to
the same number of unwrapped envs stepped round-robin with actions drawn up
front. 32k rows (two waves of 16 episodes), env construction included.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings

import gymnasium as gym
import numpy as np
import torch

from rkl_bench.evaluation.rollouts import DEFAULT_MAX_ENVS, POLICY_BLOCK, Evaluator, make_env


def raw_vector_steps_per_second(envs: list[gym.Env], steps: int, seed: int) -> float:
    """Env steps/s of ``envs`` stepped round-robin with actions drawn up front (resets included)."""
    rng = np.random.default_rng(seed)
    space = envs[0].action_space
    actions = rng.uniform(space.low, space.high, size=(steps, *space.shape)).astype(space.dtype)
    for i, env in enumerate(envs):
        env.reset(seed=seed + i)
    steppers = [env.step for env in envs]
    n = len(envs)
    start = time.perf_counter()
    for i in range(steps):
        slot = i % n
        _, _, terminated, truncated, _ = steppers[slot](actions[i])
        if terminated or truncated:
            envs[slot].reset()
    return steps / (time.perf_counter() - start)


def td3_actor(obs_dim: int, act_dim: int):
    """An untrained TD3+BC learner's ``act``: the per-call cost of a real policy."""
    from rkl_bench.algos.td3_bc import TD3BC, TD3BCConfig

    return TD3BC(obs_dim, act_dim, TD3BCConfig(update_path="plain"), seed=0).act


EVAL_SEED = 0
"""Seed of the benchmark's evaluations (the same episodes every round)."""


def evaluation_rates(
    env_id: str, rounds: int, episodes: int = 10, max_episode_steps: int = 1000, quiet=contextlib.nullcontext
) -> dict[str, list[float]]:
    num_envs = min(episodes, DEFAULT_MAX_ENVS)
    with quiet():
        evaluator = Evaluator(env_id, num_envs, max_episode_steps)
        obs_dim = evaluator.envs[0].observation_space.shape[0]
        act_dim = evaluator.envs[0].action_space.shape[0]
        policy = td3_actor(obs_dim, act_dim)
        mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)
        # Builds the sub-envs, and fixes the work: every round evaluates the same
        # seeded episodes, so the raw loops step as many envs as it did.
        steps = evaluator.evaluate(policy, episodes, EVAL_SEED, mean, std).env_steps
        raw_envs = [make_env(env_id, max_episode_steps) for _ in range(num_envs)]
        single = [make_env(env_id, max_episode_steps)]
        sync = gym.vector.SyncVectorEnv([lambda: make_env(env_id, max_episode_steps)] * num_envs,
                                        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    zeros = np.zeros((POLICY_BLOCK, act_dim), np.float32)
    rates: dict[str, list[float]] = {"raw vector": [], "raw single": [], "sync vector": [],
                                     "Evaluator": [], "Eval null": []}
    jobs = {
        "Evaluator": lambda r: evaluator.evaluate(policy, episodes, EVAL_SEED, mean, std).steps_per_second,
        "Eval null": lambda r: evaluator.evaluate(lambda obs: zeros, episodes, EVAL_SEED, mean, std).steps_per_second,
        "raw vector": lambda r: raw_vector_steps_per_second(raw_envs, steps, r),
        "raw single": lambda r: raw_vector_steps_per_second(single, steps, r),
        "sync vector": lambda r: sync_vector_steps_per_second(sync, steps, r),
    }
    for r in range(rounds):
        for name in (list(jobs) if r % 2 == 0 else list(reversed(jobs))):
            rates[name].append(jobs[name](r))
    evaluator.close()
    sync.close()
    for env in raw_envs + single:
        env.close()
    return rates


def sync_vector_steps_per_second(envs: gym.vector.SyncVectorEnv, steps: int, seed: int) -> float:
    """Env steps/s of gymnasium's own vector env (same-step autoreset), actions drawn up front."""
    n = envs.num_envs
    rng = np.random.default_rng(seed)
    space = envs.single_action_space
    actions = rng.uniform(space.low, space.high, size=(-(-steps // n), n, *space.shape)).astype(space.dtype)
    envs.reset(seed=seed)
    start = time.perf_counter()
    for batch in actions:
        envs.step(batch)
    return len(actions) * n / (time.perf_counter() - start)


def generation_rates(env_id: str, rounds: int, num_envs: int, transitions: int = 32_000) -> dict[str, list[float]]:
    """Forge ``rollout`` vs a raw stepping loop on as many envs, interleaved per round."""
    from rkl_bench.algos.nets import GaussianHead
    from rkl_bench.forge.policies import SnapshotPolicy

    probe = gym.make(env_id)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    torch.manual_seed(0)
    policy = SnapshotPolicy(GaussianHead(obs_dim, act_dim, (256, 256)).eval(), step=0, digest="bench")
    raw_envs = [gym.make(env_id).unwrapped for _ in range(num_envs)]
    rates: dict[str, list[float]] = {"raw vector": [], "rollout": [], "rollout rand": []}
    jobs = {
        "raw vector": lambda r: raw_vector_steps_per_second(raw_envs, transitions, r),
        "rollout": lambda r: _rollout_rate(env_id, policy, transitions, r, num_envs),
        "rollout rand": lambda r: _rollout_rate(env_id, None, transitions, r, num_envs),
    }
    for r in range(rounds):
        names = list(jobs) if r % 2 == 0 else list(reversed(jobs))
        for name in names:
            rates[name].append(jobs[name](r))
    for env in raw_envs:
        env.close()
    return rates


def _rollout_rate(env_id: str, policy, transitions: int, seed: int, num_envs: int) -> float:
    from rkl_bench.forge.generate import rollout

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
        print(f"\nEvaluation ({env_id}, 10 episodes on 10 sub-envs, TD3+BC-sized actor)")
        for name, values in rates.items():
            print(_line(name, values))
        evaluator = statistics.median(rates["Evaluator"])
        print(f"  Evaluator / raw vector: {100 * evaluator / statistics.median(rates['raw vector']):.0f}%"
              f"  (/ sync vector: {100 * evaluator / statistics.median(rates['sync vector']):.0f}%;"
              f" null policy / raw vector: {100 * statistics.median(rates['Eval null']) / statistics.median(rates['raw vector']):.0f}%)")
    if generation:
        gen_env = env_id.replace("-v4", "-v5")
        from rkl_bench.forge.make import PROFILES

        num_envs = PROFILES["full"].num_envs
        rates = generation_rates(gen_env, rounds, num_envs)
        print(f"\nDataset generation ({gen_env}, {num_envs} envs as the full forge profile, SAC-sized policy, sampled actions)")
        for name, values in rates.items():
            print(_line(name, values))
        raw = statistics.median(rates["raw vector"])
        print(f"  rollout / raw vector: {100 * statistics.median(rates['rollout']) / raw:.0f}%"
              f"  (random policy: {100 * statistics.median(rates['rollout rand']) / raw:.0f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-generation", action="store_true")
    args = parser.parse_args()
    env_speed_table(args.env, args.rounds, generation=not args.no_generation)


if __name__ == "__main__":
    main()
