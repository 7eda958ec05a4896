"""TD3+RKL acceptance tests on a small synthetic dataset (behaviour fit on a tiny budget)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from rkl_bench.algos import default_hyperparams, make_config, make_learner
from rkl_bench.data.dataset import OfflineDataset, TensorSampler
from rkl_bench.errors import RklBenchError

SMALL = {"hidden_dim": 64, "behaviour_steps": 100, "behaviour_hidden_dim": 32}


def synthetic_dataset(n: int = 2000, obs_dim: int = 5, act_dim: int = 2, seed: int = 0) -> OfflineDataset:
    """Actions a smooth function of state plus state-dependent noise (so beta(s) varies)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(3.0, 2.0, size=(n, obs_dim)).astype(np.float32)
    z = (obs - 3.0) / 2.0
    w = rng.normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    noise_scale = 0.05 + 0.4 * (z[:, :1] > 0)
    actions = np.clip(np.tanh(z @ w) + noise_scale * rng.normal(size=(n, act_dim)), -1, 1).astype(np.float32)
    next_obs = (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32)
    rewards = (-(actions**2).sum(1) + 0.1 * obs[:, 0]).astype(np.float32)
    terminals = (rng.random(n) < 0.01).astype(np.float32)
    return OfflineDataset(obs, actions, rewards, next_obs, terminals, env="toy", name="synthetic", version="test")


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return synthetic_dataset()


@pytest.fixture(scope="module")
def fitted_state(dataset) -> dict:
    """One behaviour fit, reused by every test that does not test the fit itself."""
    return make_learner("td3_rkl", dataset, SMALL, seed=0).state_dict()


def sampler(dataset: OfflineDataset, seed: int = 0) -> TensorSampler:
    return TensorSampler(dataset, 256, seed, *dataset.state_stats())


def normalised_obs(dataset: OfflineDataset) -> np.ndarray:
    mean, std = dataset.state_stats()
    return (dataset.observations - mean) / std


def params(learner) -> list[torch.Tensor]:
    return [
        p.detach().clone()
        for net in (learner.actor, learner.critic, learner.actor_target, learner.critic_target)
        for p in net.parameters()
    ]


def test_defaults_are_the_papers_and_names_stay_apart():
    hp = default_hyperparams("td3_rkl")
    assert hp["zeta1"] == 10.0 and hp["zeta2"] == 5.0
    assert hp["rkl_alpha"] == 1.0 and hp["q_weight"] == 2.5  # paper's alpha vs TD3+BC's alpha
    assert hp["regulariser"] == "squared"
    assert "alpha" not in hp
    # TD3 part identical to TD3+BC's defaults
    td3 = default_hyperparams("td3_bc")
    assert {k: hp[k] for k in td3} == td3


@pytest.mark.parametrize(
    "hp,word",
    [
        ({"regulariser": "l1"}, "regulariser"),
        ({"beta_reduce": "median"}, "beta_reduce"),
        ({"behaviour_steps": 0}, "behaviour_steps"),
        ({"kernel_sigma": 0.0}, "kernel_sigma"),
        ({"alpha": 1.0}, "'alpha'"),
    ],
)
def test_bad_hyperparameters_name_algorithm_and_key(dataset, hp, word):
    with pytest.raises(RklBenchError) as err:
        make_learner("td3_rkl", dataset, {**SMALL, **hp}, seed=0)
    assert "td3_rkl" in str(err.value) and word in str(err.value)


def test_dataset_lambdas_shape_range_and_accessor_agree(dataset, fitted_state):
    learner = make_learner("td3_rkl", dataset, SMALL, seed=0, state=fitted_state)
    lam = learner.dataset_lambdas
    assert lam.shape == (len(dataset),) and lam.dtype == np.float32
    assert np.all(np.isfinite(lam)) and lam.min() >= 0.0 and lam.max() <= 1.0
    assert lam.std() > 0.01  # the weights are per state, not one constant
    obs = normalised_obs(dataset)
    np.testing.assert_allclose(learner.lambdas(obs), lam, rtol=1e-5, atol=1e-6)
    single = learner.lambdas(obs[3])
    assert single.shape == () and abs(float(single) - lam[3]) < 1e-6
    # noisier actions (z[:, 0] > 0) -> larger log-variance -> smaller weight
    noisy = obs[:, 0] > 0
    assert lam[noisy].mean() < lam[~noisy].mean()


def test_short_run_finite_losses_and_lambda_in_unit_interval(dataset, capsys):
    learner = make_learner("td3_rkl", dataset, SMALL, seed=1)
    # A trial has no progress bar: its log says what the minutes before its first row go to.
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "td3_rkl seed 1: behaviour model on 2,000 rows: reading it from the behaviour cache, or fitting it"
    assert err[1].startswith("td3_rkl seed 1: behaviour model fitted, ready after ") and err[1].endswith(" s")
    make_learner("td3_rkl", dataset, SMALL, seed=1)  # the same rows and seed: the fit kept above is read
    err = capsys.readouterr().err.splitlines()
    assert err[1].startswith("td3_rkl seed 1: behaviour model read from the behaviour cache, ready after ")
    s = sampler(dataset)
    for step in range(1, 301):
        m = learner.update(s.sample())
        assert all(np.isfinite(v) for v in m.values()), m
        if step % 2 == 0:
            assert {"actor_loss", "bc_loss", "reg_loss", "lambda_mean", "critic_loss", "q_mean"} == set(m)
            assert 0.0 <= m["lambda_mean"] <= 1.0
        else:
            assert set(m) == {"critic_loss", "q_mean"}


@pytest.mark.parametrize("form", ["kernel", "mse"])
def test_other_forms_run_finite(dataset, fitted_state, form):
    state = {**fitted_state, "config": {**fitted_state["config"], "regulariser": form}}
    learner = make_learner("td3_rkl", dataset, {**SMALL, "regulariser": form}, seed=0, state=state)
    s = sampler(dataset)
    for _ in range(20):
        m = learner.update(s.sample())
    assert all(np.isfinite(v) for v in m.values())


def test_mse_form_with_unit_lambda_is_td3_bc(dataset):
    """zeta1 = 0, zeta2 = 100 -> lambda(s) = sigmoid(100) = 1 on every row; form "mse" -> Eq. 6."""
    s = sampler(dataset, seed=4)
    batches = [s.sample() for _ in range(40)]
    td3 = make_learner("td3_bc", dataset, {"hidden_dim": 64}, seed=11)
    rkl = make_learner(
        "td3_rkl", dataset, {**SMALL, "regulariser": "mse", "zeta1": 0.0, "zeta2": 100.0}, seed=11
    )
    assert np.all(rkl.dataset_lambdas == 1.0)
    shifted = make_learner(  # same, but lambda = sigmoid(1) ~ 0.73: must differ
        "td3_rkl", dataset, {**SMALL, "regulariser": "mse", "zeta1": 0.0, "zeta2": 1.0}, seed=11
    )
    for b in batches:
        m_td3 = td3.update(b)
        m_rkl = rkl.update(b)
        shifted.update(b)
        assert m_td3["critic_loss"] == m_rkl["critic_loss"]
        if "actor_loss" in m_td3:
            assert m_td3["actor_loss"] == pytest.approx(m_rkl["actor_loss"], rel=1e-6)  # summation order
            assert m_rkl["reg_loss"] == pytest.approx(m_rkl["bc_loss"], rel=1e-6)
    for a, b in zip(params(td3), params(rkl)):
        assert torch.equal(a, b)  # bit-exact on CPU (measured); a tolerance would hide a real change
    assert not torch.allclose(params(td3)[0], params(shifted)[0], rtol=1e-4, atol=1e-5)


def test_lambda_is_looked_up_by_batch_row(dataset, fitted_state):
    learner = make_learner("td3_rkl", dataset, SMALL, seed=0, state=fitted_state)
    n = len(dataset)
    learner.lambda_table = torch.arange(n, dtype=torch.float32) / n
    batch = sampler(dataset).sample()
    learner.update(batch)
    m = learner.update(batch)  # step 2: actor step
    assert m["lambda_mean"] == pytest.approx(float(batch.indices.float().mean()) / n, rel=1e-5)
    learner.lambda_table = torch.zeros(n)
    learner.update(batch)
    m = learner.update(batch)
    assert m["lambda_mean"] == 0.0 and m["reg_loss"] == 0.0


def test_resume_is_bit_exact_and_never_refits(dataset, fitted_state, monkeypatch):
    s = sampler(dataset, seed=6)
    batches = [s.sample() for _ in range(101)]
    a = make_learner("td3_rkl", dataset, SMALL, seed=0, state=fitted_state)
    for b in batches[:51]:
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    metrics_a = [a.update(b) for b in batches[51:]]

    import rkl_bench.algos.td3_rkl as td3_rkl

    def no_refit(*args, **kwargs):
        raise AssertionError("resume must not refit the behaviour model")

    monkeypatch.setattr(td3_rkl, "fit_behaviour", no_refit)
    buf.seek(0)
    fresh = make_learner("td3_rkl", dataset, SMALL, seed=5, state=torch.load(buf, weights_only=True))
    metrics_b = [fresh.update(b) for b in batches[51:]]
    for x, y in zip(params(a), params(fresh)):
        assert torch.equal(x, y)
    assert metrics_a == metrics_b
    assert np.array_equal(a.dataset_lambdas, fresh.dataset_lambdas)
    obs = normalised_obs(dataset)[:50]
    assert np.array_equal(a.lambdas(obs), fresh.lambdas(obs))
    assert fresh.behaviour_stats == a.behaviour_stats and "nll" in fresh.behaviour_stats


def test_unfitted_learner_refuses_to_train(dataset):
    from rkl_bench.algos.td3_rkl import TD3RKL

    learner = TD3RKL(normalised_obs(dataset), dataset.actions, make_config("td3_rkl", SMALL), fit=False)
    with pytest.raises(RklBenchError, match="checkpoint"):
        learner.update(sampler(dataset).sample())


def test_checkpoint_for_another_dataset_size_is_refused(dataset, fitted_state):
    smaller = synthetic_dataset(n=1000)
    with pytest.raises(RklBenchError, match="rows"):
        make_learner("td3_rkl", smaller, SMALL, seed=0, state=fitted_state)


def test_same_seed_same_fit_and_parameters(dataset):
    hp = {**SMALL, "behaviour_steps": 30}
    s = sampler(dataset, seed=2)
    batches = [s.sample() for _ in range(10)]
    runs = []
    for seed in (3, 3, 4):
        learner = make_learner("td3_rkl", dataset, hp, seed=seed)
        for b in batches:
            learner.update(b)
        runs.append((learner.dataset_lambdas, params(learner)))
    assert np.array_equal(runs[0][0], runs[1][0])
    for x, y in zip(runs[0][1], runs[1][1]):
        assert torch.equal(x, y)
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_global_rng_untouched_and_act_contract(dataset):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    learner = make_learner("td3_rkl", dataset, {**SMALL, "behaviour_steps": 20}, seed=0)
    s = sampler(dataset)
    for _ in range(4):
        learner.update(s.sample())
    out = learner.act((np.random.default_rng(0).normal(size=(6, 5)) * 50).astype(np.float32))
    assert torch.equal(torch.rand(3), expected)
    assert out.shape == (6, 2) and out.dtype == np.float32 and np.all(np.abs(out) <= 1.0)
    assert learner.act(np.zeros(5, np.float32)).shape == (2,)


@pytest.mark.parametrize("form", ["squared", "kernel"])
def test_actor_loss_is_eq7_weighted_by_eq18(dataset, fitted_state, form):
    """The actor objective, recomputed by hand from its definition (DESIGN.md, Eq. 7, 17, 18)."""
    config = {**fitted_state["config"], "regulariser": form, "rkl_alpha": 0.7}
    hp = {**SMALL, "regulariser": form, "rkl_alpha": 0.7}
    learner = make_learner("td3_rkl", dataset, hp, seed=0, state={**fitted_state, "config": config})
    batch = sampler(dataset, seed=8).sample()
    pi = learner.actor(batch.observations)
    q1 = learner.critic(batch.observations, pi)[0]
    gen = torch.Generator().manual_seed(0)
    gen.set_state(learner.negatives_generator.get_state())
    loss, metrics = learner.actor_loss(batch, pi, q1, learner.signal_inputs(batch))  # draws a1, a2 from the stream

    rows = torch.randint(0, len(dataset), (2 * len(pi),), generator=gen)
    a1, a2 = learner.dataset_actions[rows[: len(pi)]], learner.dataset_actions[rows[len(pi) :]]
    lam = torch.as_tensor(learner.lambdas(batch.observations.numpy()))
    neg = (a1 + a2) / 2
    if form == "squared":
        reg = ((pi - batch.actions) ** 2 - 0.7 * (pi - neg) ** 2).mean(-1)
    else:
        s2 = 2 * learner.config.kernel_sigma**2
        reg = -torch.exp(-((pi - batch.actions) ** 2).mean(-1) / s2) + 0.7 * torch.exp(-((pi - neg) ** 2).mean(-1) / s2)
    expected = -2.5 / q1.abs().mean() * q1.mean() + (lam * reg).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(metrics["lambda_mean"], lam.mean(), rtol=1e-5, atol=1e-6)


def test_behaviour_section_by_nested_mapping_dotted_names_or_old_flat_names():
    """The behaviour model is a nested section; its old flat names stay valid (configs, searches, checkpoints)."""
    nested = make_config("td3_rkl", {"behaviour": {"steps": 7, "beta_normalization": "range"}})
    dotted = make_config("td3_rkl", {"behaviour.steps": 7, "behaviour.beta_normalization": "range"})
    flat = make_config("td3_rkl", {"behaviour_steps": 7, "beta_normalization": "range"})
    assert nested == dotted == flat and flat.behaviour.steps == 7 and flat.behaviour.beta_normalization == "range"
    with pytest.raises(RklBenchError, match="give it once"):
        make_config("td3_rkl", {"behaviour_steps": 7, "behaviour.steps": 8})
    with pytest.raises(RklBenchError, match="'behaviour.stepz'"):
        make_config("td3_rkl", {"behaviour": {"stepz": 7}})
    hp = default_hyperparams("td3_rkl")
    assert hp["behaviour.steps"] == hp["behaviour_steps"] == 50_000
    assert make_config("brac", {"behaviour_entropy_bonus": False}) == make_config("brac", {"behaviour.entropy_bonus": False})


def test_a_cached_behaviour_fit_trains_the_same_learner(dataset, monkeypatch, tmp_path):
    """The second TD3+RKL on the same data and seed reads its behaviour model from the cache, and
    its lambdas and parameters after training equal those of a learner that fitted its own."""
    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", "off")
    alone = make_learner("td3_rkl", dataset, SMALL, seed=0)
    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", str(tmp_path / "cache"))
    make_learner("td3_rkl", dataset, SMALL, seed=0)  # fits and keeps the model
    cached = make_learner("td3_rkl", dataset, {**SMALL, "zeta1": 3.0}, seed=0)  # reads it; zeta1 is not a fit setting
    again = make_learner("td3_rkl", dataset, SMALL, seed=0)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert torch.equal(again.lambda_table, alone.lambda_table)
    assert not torch.equal(cached.lambda_table, alone.lambda_table)  # same beta, other zeta1
    s1, s2 = sampler(dataset), sampler(dataset)
    for _ in range(5):
        alone.update(s1.sample())
        again.update(s2.sample())
    for a, b in zip(params(alone), params(again)):
        assert torch.equal(a, b)


def test_lambda_floor_lifts_every_weight_and_keeps_their_order():
    """lambda_floor f: lambda(s) = f + (1 - f) * Eq. 18 for every row (the same fit underneath); f = 1 is a
    constant weight; outside [0, 1] it is refused naming the key."""
    import torch

    from rkl_bench.algos import make_learner
    from rkl_bench.errors import RklBenchError
    from test_fast_paths import RKL_TINY, synthetic_dataset

    data = synthetic_dataset()
    paper = make_learner("td3_rkl", data, {**RKL_TINY, "zeta1": 12.0, "zeta2": 1.5}, seed=1)
    floored = make_learner("td3_rkl", data, {**RKL_TINY, "zeta1": 12.0, "zeta2": 1.5, "lambda_floor": 0.3}, seed=1)
    low = paper.dataset_lambdas
    assert low.min() < 0.05  # the paper's weights do reach ~0 here: the floor matters
    np.testing.assert_allclose(floored.dataset_lambdas, 0.3 + 0.7 * low, rtol=1e-6, atol=1e-7)
    assert floored.dataset_lambdas.min() >= 0.3
    states = np.asarray(data.observations[:5] - data.state_stats()[0]) / data.state_stats()[1]
    np.testing.assert_allclose(floored.lambdas(states), 0.3 + 0.7 * paper.lambdas(states), rtol=1e-6, atol=1e-7)
    flat = make_learner("td3_rkl", data, {**RKL_TINY, "lambda_floor": 1.0}, seed=1)
    assert torch.all(torch.as_tensor(flat.dataset_lambdas) == 1.0)
    with pytest.raises(RklBenchError, match="'lambda_floor' must be in \\[0, 1\\], got 1.5"):
        make_learner("td3_rkl", data, {**RKL_TINY, "lambda_floor": 1.5}, seed=1)
