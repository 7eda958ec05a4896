"""Evaluation rollouts: seeded, independent of batching, scored like D4RL."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rkl_bench.algos.nets import mlp
from rkl_bench.data.scores import normalized_score
from rkl_bench.errors import RklBenchError
from rkl_bench.evaluation import EvalResult, Evaluator, evaluate_policy, make_env

ENV = "Hopper-v5"
OBS, ACT = 11, 3
SHORT = 50  # max_episode_steps: keeps every test well under a second of stepping


def torch_policy(scale: float = 0.22):
    """A small torch MLP: its rounding depends on the batch size, as a real actor's does."""
    torch.manual_seed(0)
    net = mlp(OBS, ACT, (32, 32))

    @torch.no_grad()
    def policy(obs: np.ndarray) -> np.ndarray:
        return (scale * torch.tanh(net(torch.as_tensor(obs)))).numpy()

    return policy


def stats(mean: float = 0.0, std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    return np.full(OBS, mean, np.float32), np.full(OBS, std, np.float32)


def run(policy, episodes: int = 6, seed: int = 0, **kw) -> EvalResult:
    return evaluate_policy(policy, ENV, episodes, seed, *stats(), max_episode_steps=SHORT, **kw)


def test_result_does_not_depend_on_num_envs():
    policy = torch_policy()
    results = [run(policy, num_envs=n) for n in (1, 3, 4, None)]
    first = results[0]
    # episodes of different lengths, so sub-envs pick up new episodes at different times
    assert len(set(first.lengths.tolist())) > 1 and first.lengths.max() == SHORT
    for other in results[1:]:
        np.testing.assert_array_equal(other.returns, first.returns)
        np.testing.assert_array_equal(other.lengths, first.lengths)
    assert first.env_steps == first.lengths.sum()


def test_deterministic_and_seed_rule():
    policy = torch_policy()
    a, b = run(policy, seed=5), run(policy, seed=5)
    np.testing.assert_array_equal(a.returns, b.returns)
    # episode i is reset with seed + i: seed 6 replays episodes 1.. of seed 5
    shifted = run(policy, episodes=5, seed=6)
    np.testing.assert_array_equal(shifted.returns, a.returns[1:])
    assert not np.array_equal(run(policy, seed=100).returns, a.returns)


def test_evaluator_reuses_envs_without_changing_scores():
    policy = torch_policy()
    with Evaluator(ENV, num_envs=2, max_episode_steps=SHORT) as evaluator:
        first = evaluator.evaluate(policy, 5, 3, *stats())
        again = evaluator.evaluate(policy, 5, 3, *stats())
        assert len(evaluator.envs) == 2
    np.testing.assert_array_equal(first.returns, again.returns)
    np.testing.assert_array_equal(first.returns, run(policy, episodes=5, seed=3).returns)


def test_policy_sees_normalised_observations():
    seen: list[np.ndarray] = []

    def policy(obs: np.ndarray) -> np.ndarray:
        seen.append(obs.copy())
        return np.zeros((len(obs), ACT), np.float32)

    mean, std = stats(0.5, 2.0)
    evaluate_policy(policy, ENV, 2, 7, mean, std, max_episode_steps=3)
    env = make_env(ENV)
    for episode in range(2):
        obs, _ = env.reset(seed=7 + episode)
        np.testing.assert_allclose(seen[0][episode], (obs - 0.5) / 2.0, rtol=1e-6)
    assert seen[0].dtype == np.float32


def test_normalised_scores_follow_d4rl_references():
    result = run(torch_policy())
    np.testing.assert_allclose(result.normalized_scores, normalized_score("hopper", result.returns))
    assert result.normalized_mean == pytest.approx(float(np.mean(result.normalized_scores)))
    assert result.normalized_std == pytest.approx(float(np.std(result.normalized_scores)))
    assert result.return_mean == pytest.approx(float(np.mean(result.returns)))
    # an explicit family overrides the guess from the env id
    as_walker = run(torch_policy(), env_family="walker2d")
    np.testing.assert_allclose(as_walker.normalized_scores, normalized_score("walker2d", result.returns))


def test_env_without_references_has_no_normalised_score():
    result = evaluate_policy(
        lambda obs: np.zeros((len(obs), 1), np.float32),
        "Pendulum-v1", 2, 0, np.zeros(3, np.float32), np.ones(3, np.float32), max_episode_steps=5,
    )
    assert result.normalized_scores is None and result.normalized_mean is None
    assert result.lengths.tolist() == [5, 5]


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "Hopper-v99"])
def test_unknown_env_is_a_clear_error(env_id):
    with pytest.raises(RklBenchError, match=f"cannot make environment '{env_id}'.*Hopper-v5"):
        make_env(env_id)


def test_the_data_check_and_the_forge_name_a_bad_env_id_the_same_way():
    """Every env the project makes comes from ``make_env``: the data check's env sizes and the
    forge's say the same one line (not wrapped twice), with the ids that work."""
    from rkl_bench.data.validate import env_space_shapes
    from rkl_bench.forge.generate import rollout

    with pytest.raises(RklBenchError) as caught:
        env_space_shapes("Hopper-v99")
    assert str(caught.value).count("cannot make") == 1 and "'Hopper-v99'" in str(caught.value)
    with pytest.raises(RklBenchError, match="cannot make environment 'Hopper-v99'.*Hopper-v5"):
        rollout("Hopper-v99", None, n_transitions=10, seed=0, num_envs=1, progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"episodes": 0}, "at least one episode"), ({"seed": -1}, "seed must be >= 0"), ({"num_envs": 0}, "num_envs")],
)
def test_bad_arguments(kwargs, message):
    args = {"episodes": 2, "seed": 0} | kwargs
    with pytest.raises(RklBenchError, match=message):
        evaluate_policy(torch_policy(), ENV, args.pop("episodes"), args.pop("seed"), *stats(), **args)


def env_speed():
    """``benchmarks/env_speed.py``, the speed benchmark's evaluation and generation sections."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("benchmarks.env_speed")


def test_speed_benchmark_replays_exactly_the_evaluated_trajectories():
    """The benchmark's references must step the same physics as the Evaluator (bench docstring)."""
    EVAL_SEED, record_evaluation = env_speed().EVAL_SEED, env_speed().record_evaluation

    policy = torch_policy(scale=1.0)  # large actions: Hopper falls, so episodes end early and slots refill
    mean, std = stats()
    recording = record_evaluation(ENV, policy, 7, 3, SHORT, mean, std)
    expected = evaluate_policy(policy, ENV, 7, EVAL_SEED, mean, std, num_envs=3, max_episode_steps=SHORT)
    assert [seed for seed, _ in recording.episodes] == [EVAL_SEED + i for i in range(7)]
    assert [len(actions) for _, actions in recording.episodes] == expected.lengths.tolist()
    assert expected.lengths.min() < SHORT  # some episodes terminated: slots were refilled
    env = make_env(ENV, SHORT)
    for (seed, actions), expected_return in zip(recording.episodes, expected.returns):
        env.reset(seed=seed)
        assert sum(env.step(action)[1] for action in actions) == expected_return
    replayed = evaluate_policy(recording.replay_policy(), ENV, 7, EVAL_SEED, mean, std, num_envs=3,
                               max_episode_steps=SHORT)
    np.testing.assert_array_equal(replayed.returns, expected.returns)


def test_speed_benchmark_replays_exactly_the_generated_rows():
    dataset_recording = env_speed().dataset_recording
    from rkl_bench.forge.generate import rollout

    arrays = rollout(ENV, None, 300, seed=3, num_envs=3, progress=False)
    recording = dataset_recording(arrays, 3)
    assert recording.env_steps == 300 and len(recording.episodes) > 3
    env = make_env(ENV).unwrapped
    rewards = []
    for seed, actions in recording.episodes:
        env.reset(seed=seed)
        rewards += [env.step(action)[1] for action in actions]
    np.testing.assert_array_equal(np.asarray(rewards, arrays.rewards.dtype), arrays.rewards)


def test_mujocos_deprecation_warning_is_one_python_warning_per_process_not_one_line_per_env():
    # MuJoCo 4 warns on every compile of gymnasium's half_cheetah.xml; three envs gave three raw stderr lines.
    import subprocess

    code = ("import warnings\n"
            "from rkl_bench.evaluation.rollouts import make_env\n"
            "from rkl_bench.data.mujoco_warnings import MujocoWarning\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    envs = [make_env('HalfCheetah-v5') for _ in range(3)]\n"
            "print(sum(issubclass(w.category, MujocoWarning) and 'settotalmass' in str(w.message) for w in caught))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1", "one Python warning for the three envs"
    assert "settotalmass" not in done.stderr, "nothing printed by MuJoCo itself"
