"""Evaluation actors: blocks of seeded episodes, merged in order, equal to one
evaluation; a killed actor is replaced and its block retried with the same result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rkl_bench.algos.nets import DeterministicActor
from rkl_bench.evaluation import Evaluator
from rkl_bench.service.eval_actors import EvalPool, PolicySnapshot, episode_blocks, merge_results
from test_service_support import ACT_DIM, OBS_DIM, local_ray  # noqa: F401 - fixture

ENV_ID = "Hopper-v4"
EPISODES, SEED = 4, 123


@pytest.fixture(scope="module")
def policy() -> PolicySnapshot:
    torch.manual_seed(0)
    actor = DeterministicActor(OBS_DIM, ACT_DIM, hidden=(16, 16))
    return PolicySnapshot.of(actor, np.zeros(OBS_DIM, np.float32), np.ones(OBS_DIM, np.float32))


@pytest.fixture(scope="module")
def reference(policy):
    """One evaluator, all episodes: what every pool layout must reproduce."""
    with Evaluator(ENV_ID, num_envs=EPISODES, env_family="hopper") as evaluator:
        return evaluator.evaluate(policy, EPISODES, SEED, policy.state_mean, policy.state_std)


def assert_same_scores(result, reference) -> None:
    np.testing.assert_array_equal(result.returns, reference.returns)
    np.testing.assert_array_equal(result.lengths, reference.lengths)
    np.testing.assert_array_equal(result.normalized_scores, reference.normalized_scores)
    assert result.seed == reference.seed and result.env_steps == reference.env_steps


def test_episode_blocks_cover_every_episode_once():
    assert episode_blocks(10, 1) == [(0, 10)]
    assert episode_blocks(10, 3) == [(0, 3), (3, 4), (7, 3)]
    assert episode_blocks(2, 2) == [(0, 1), (1, 1)]
    for episodes in range(1, 12):
        for count in range(1, episodes + 1):
            blocks = episode_blocks(episodes, count)
            assert len(blocks) == count
            assert [first for first, _ in blocks] == list(np.cumsum([0] + [n for _, n in blocks])[:-1])
            assert sum(n for _, n in blocks) == episodes


def test_blocks_merged_equal_one_evaluation(policy, reference):
    """Episode i is seeded seed + i wherever it runs: blocks on separate evaluators merge to the same scores."""
    parts = []
    for first, n in episode_blocks(EPISODES, 3):
        with Evaluator(ENV_ID, num_envs=1, env_family="hopper") as evaluator:
            parts.append(evaluator.evaluate(policy, n, SEED + first, policy.state_mean, policy.state_std))
    assert_same_scores(merge_results(parts, SEED), reference)


def test_snapshot_acts_like_the_learner(policy):
    from rkl_bench.algos.base import act_with

    obs = np.random.default_rng(0).normal(size=(16, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(policy(obs), act_with(policy.actor, obs, OBS_DIM))
    with torch.no_grad():
        np.testing.assert_array_equal(policy(obs), policy.actor(torch.from_numpy(obs)).numpy())


def test_pool_result_matches_and_survives_killed_actors(local_ray, policy, reference):
    ray = local_ray
    pool = EvalPool(count=2, envs_per_actor=2, cpus=0, env_id=ENV_ID, env_family="hopper")
    try:
        assert_same_scores(pool.collect(pool.submit(policy, 0, EPISODES, SEED)), reference)

        # Killed while its block is in flight: replaced, block retried.
        pending = pool.submit(policy, 1, EPISODES, SEED)
        ray.kill(pool.actors[0])
        assert_same_scores(pool.collect(pending), reference)
        assert pool.replaced == 1

        # Killed between evaluations, with two evaluations queued on it: one replacement serves both.
        ray.kill(pool.actors[1])
        first, second = pool.submit(policy, 2, EPISODES, SEED), pool.submit(policy, 3, EPISODES, SEED)
        assert_same_scores(pool.collect(first), reference)
        assert_same_scores(pool.collect(second), reference)
        assert pool.replaced == 2
    finally:
        pool.close()
