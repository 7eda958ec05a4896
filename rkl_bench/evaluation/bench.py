"""How close evaluation comes to raw env stepping: ``python -m rkl_bench.evaluation.bench``.

Interleaves, round by round, three loops on one env id and prints env steps/s:

* ``raw``: one ``gym.make`` env stepped with ``action_space.sample()``, reset
  when an episode ends (the plain loop anyone would write);
* ``raw-fixed``: the same loop with actions drawn up front, i.e. the cost of
  ``env.step`` and ``env.reset`` alone (the ceiling);
* ``Evaluator.evaluate`` with an untrained TD3+BC-sized actor (256x256 MLP,
  one torch thread), ``episodes`` episodes on ``num_envs`` sub-envs kept
  across rounds (as a training run keeps them);
* ``evaluate_policy``: the same, building its envs each call.

Interleaving makes the ratio robust to other jobs sharing the CPU.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rkl_bench.algos.nets import mlp
from rkl_bench.evaluation.rollouts import DEFAULT_MAX_ENVS, Evaluator, Policy, evaluate_policy, make_env


def raw_steps_per_second(env_id: str, steps: int, seed: int, presampled: bool) -> float:
    """Steps/s of a single env stepped with random actions, drawn in the loop or up front."""
    env = make_env(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    actions = np.stack([env.action_space.sample() for _ in range(steps)]) if presampled else None
    start = time.perf_counter()
    for i in range(steps):
        action = actions[i] if actions is not None else env.action_space.sample()
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return steps / seconds


def actor_policy(obs_dim: int, act_dim: int) -> Policy:
    """An untrained actor of TD3+BC's size: the per-call cost of a real policy."""
    torch.manual_seed(0)
    net = mlp(obs_dim, act_dim)

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        return torch.tanh(net(torch.as_tensor(obs))).numpy()

    return policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--num-envs", type=int, default=None)
    parser.add_argument("--max-episode-steps", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    probe = make_env(args.env)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    policy = actor_policy(obs_dim, act_dim)
    mean, std = np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32)

    num_envs = args.num_envs or DEFAULT_MAX_ENVS
    evaluator = Evaluator(args.env, num_envs, args.max_episode_steps)
    evaluator.evaluate(policy, args.episodes, 10_000, mean, std)  # builds the sub-envs
    rates: dict[str, list[float]] = {"raw": [], "raw-fixed": [], "Evaluator": [], "evaluate_policy": []}
    for r in range(args.rounds):
        result = evaluator.evaluate(policy, args.episodes, r, mean, std)
        rates["Evaluator"].append(result.steps_per_second)
        once = evaluate_policy(policy, args.env, args.episodes, r, mean, std, num_envs, args.max_episode_steps)
        rates["evaluate_policy"].append(once.steps_per_second)
        rates["raw"].append(raw_steps_per_second(args.env, result.env_steps, r, presampled=False))
        rates["raw-fixed"].append(raw_steps_per_second(args.env, result.env_steps, r, presampled=True))
    evaluator.close()
    for name, values in rates.items():
        print(f"{name:16s} {np.median(values):7.0f} env steps/s  (rounds: {', '.join(f'{v:.0f}' for v in values)})")
    for name in ("Evaluator", "evaluate_policy"):
        for base in ("raw", "raw-fixed"):
            ratio = np.median(rates[name]) / np.median(rates[base])
            print(f"{name} / {base}: {ratio:.2f}")


if __name__ == "__main__":
    main()
