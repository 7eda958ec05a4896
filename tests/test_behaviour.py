"""The behaviour model (Algorithm 1, lines 6-8) and the weights of Eq. 18."""

import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform

from rkl_bench.algos.config import config_from_dict
from rkl_bench.algos.behaviour import (
    BehaviourConfig,
    GaussianBehaviour,
    dataset_lambdas,
    fit_behaviour,
    lambda_report,
    lambda_weights,
)
from rkl_bench.errors import RklBenchError

SMALL = dict(steps=600, batch_size=128, lr=3e-3, hidden_dim=32)


def _two_clusters(n=1000, seed=0):
    """States near -1 have action noise std 0.5 ('wide'), near +1 std 0.05 ('narrow')."""
    g = torch.Generator().manual_seed(seed)
    s_wide = -1 + 0.1 * torch.randn(n, 2, generator=g)
    s_narrow = 1 + 0.1 * torch.randn(n, 2, generator=g)
    a_wide = 0.5 * torch.randn(n, 1, generator=g)
    a_narrow = 0.3 + 0.05 * torch.randn(n, 1, generator=g)
    return s_wide, a_wide, s_narrow, a_narrow


@pytest.fixture(scope="module")
def fitted():
    s_w, a_w, s_n, a_n = _two_clusters()
    obs, act = torch.cat([s_w, s_n]), torch.cat([a_w, a_n])
    cfg = BehaviourConfig(**SMALL, beta_normalization="zscore")
    model, stats = fit_behaviour(obs, act, cfg, seed=3)
    return model, stats, obs, act, s_w, s_n


# ------------------------------------------------------------------ config
def test_config_from_dict_builds_it_and_rejects_unknown_keys():
    cfg = config_from_dict(BehaviourConfig, {"hidden_dim": 64, "squash": "tanh", "steps": 10}, "behaviour")
    assert cfg.hidden == (64, 64) and cfg.squash == "tanh" and cfg.steps == 10
    with pytest.raises(RklBenchError, match="unknown key.*'hiden'"):
        config_from_dict(BehaviourConfig, {"hiden": [64]}, "behaviour")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"squash": "sigmoid"}, "'squash' must be one of none, tanh; got 'sigmoid'"),
        ({"beta_reduce": "min"}, "'beta_reduce' must be one of mean, sum, max"),
        ({"beta_normalization": "minmax"}, "'beta_normalization' must be one of none, zscore"),
        ({"steps": 0}, "'steps' must be a whole number >= 1"),
        ({"lr": -1.0}, "'lr' must be > 0"),
    ],
)
def test_config_rejects_bad_values_with_one_clear_line(kwargs, message):
    with pytest.raises(RklBenchError, match=message):
        BehaviourConfig(**kwargs)


# ------------------------------------------------------------ model pieces
def test_log_prob_is_the_diagonal_gaussian_density():
    torch.manual_seed(0)
    model = GaussianBehaviour(3, 2, hidden=(16,), squash="none")
    obs, act = torch.randn(5, 3), torch.rand(5, 2) * 2 - 1
    mean, log_std = model(obs)
    expected = Normal(mean, log_std.exp()).log_prob(act).sum(-1)
    torch.testing.assert_close(model.log_prob(obs, act), expected)
    # leading sample dimension broadcasts (used by the reverse-KL signal)
    assert model.log_prob(obs, act.expand(4, 5, 2)).shape == (4, 5)


def test_tanh_log_prob_is_the_tanh_gaussian_density():
    torch.manual_seed(0)
    model = GaussianBehaviour(3, 2, hidden=(16,), squash="tanh")
    obs, act = torch.randn(5, 3), torch.rand(5, 2) * 1.6 - 0.8
    mean, log_std = model(obs)
    ref = TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()])
    torch.testing.assert_close(model.log_prob(obs, act), ref.log_prob(act).sum(-1), rtol=1e-4, atol=1e-4)
    # actions exactly at the bounds are clipped, not infinite
    assert torch.isfinite(model.log_prob(obs, torch.ones(5, 2))).all()


@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
def test_beta_reduces_per_dimension_log_variances(reduce):
    torch.manual_seed(0)
    model = GaussianBehaviour(3, 4, hidden=(16,), beta_reduce=reduce, beta_normalization="none")
    obs = torch.randn(6, 3)
    log_var = 2 * model(obs)[1]
    expected = {"mean": log_var.mean(-1), "sum": log_var.sum(-1), "max": log_var.max(-1).values}[reduce]
    torch.testing.assert_close(model.beta(obs), expected)
    assert model.beta(obs).shape == (6,)


# --------------------------------------------------------------------- fit
def test_fit_recovers_the_per_state_log_variance(fitted):
    model, stats, *_ , s_w, s_n = fitted
    with torch.no_grad():
        wide, narrow = model.raw_beta(s_w).mean().item(), model.raw_beta(s_n).mean().item()
    assert wide == pytest.approx(math.log(0.5**2), abs=0.4)
    assert narrow == pytest.approx(math.log(0.05**2), abs=0.6)
    assert stats["raw_beta_q05"] < stats["raw_beta_q50"] < stats["raw_beta_q95"]
    assert math.isfinite(stats["nll"])


def test_zscore_statistics_standardise_the_dataset_and_survive_state_dict(fitted):
    model, stats, obs, *_ = fitted
    with torch.no_grad():
        beta = model.beta(obs)
    assert beta.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert beta.std().item() == pytest.approx(1.0, abs=1e-4)
    assert stats["beta_mean"] == pytest.approx(0.0, abs=1e-4)
    assert model.beta_scale.item() == pytest.approx(stats["raw_beta_std"], rel=1e-5)

    fresh = GaussianBehaviour(2, 1, hidden=(32, 32), beta_normalization="zscore")
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(fresh.beta(obs), beta, rtol=0, atol=0)

    other = GaussianBehaviour(2, 1, hidden=(32, 32), beta_normalization="none")
    with pytest.raises(RklBenchError, match="build the model with the checkpoint's options"):
        other.load_state_dict(model.state_dict())


def test_fit_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    s_w, a_w, s_n, a_n = _two_clusters(n=200)
    obs, act = torch.cat([s_w, s_n]), torch.cat([a_w, a_n])
    cfg = BehaviourConfig(steps=50, batch_size=64, hidden_dim=16, hidden_layers=1)
    rng_before = torch.get_rng_state()
    m1, st1 = fit_behaviour(obs, act, cfg, seed=7, cache=False)
    assert torch.equal(torch.get_rng_state(), rng_before)
    m2, st2 = fit_behaviour(obs, act, cfg, seed=7, cache=False)
    m3, _ = fit_behaviour(obs, act, cfg, seed=8, cache=False)
    for (k, v1), v2, v3 in zip(m1.state_dict().items(), m2.state_dict().values(), m3.state_dict().values()):
        if isinstance(v1, torch.Tensor):
            assert torch.equal(v1, v2), k
    assert st1 == st2
    assert not torch.equal(m1.head.net[0].weight, m3.head.net[0].weight)


def test_a_cached_fit_is_the_fresh_fit_and_is_shared_across_beta_readings(monkeypatch, tmp_path):
    """The second fit of the same rows, seed and fit settings reads the weights (no Adam step runs),
    equal to a fresh fit bit for bit; another beta_normalization reuses them and recalibrates;
    another seed or another fit setting fits anew."""
    from rkl_bench.algos import behaviour as behaviour_module

    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", str(tmp_path / "cache"))
    s_w, a_w, s_n, a_n = _two_clusters(n=200)
    obs, act = torch.cat([s_w, s_n]), torch.cat([a_w, a_n])
    cfg = BehaviourConfig(steps=50, batch_size=64, hidden_dim=16, hidden_layers=1)
    fresh, fresh_stats = fit_behaviour(obs, act, cfg, seed=7, cache=False)
    first, _ = fit_behaviour(obs, act, cfg, seed=7)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1

    steps = []
    real_adam = behaviour_module.torch.optim.Adam
    monkeypatch.setattr(behaviour_module.torch.optim, "Adam", lambda *a, **k: steps.append(1) or real_adam(*a, **k))
    cached, cached_stats = fit_behaviour(obs, act, cfg, seed=7)
    assert steps == []  # read, not fitted
    assert cached_stats == fresh_stats
    for (k, v), w in zip(fresh.state_dict().items(), cached.state_dict().values()):
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, w), k

    ranged_cfg = BehaviourConfig(steps=50, batch_size=64, hidden_dim=16, hidden_layers=1, beta_normalization="range")
    ranged, _ = fit_behaviour(obs, act, ranged_cfg, seed=7)
    assert steps == []
    ranged_fresh, _ = fit_behaviour(obs, act, ranged_cfg, seed=7, cache=False)
    assert torch.equal(ranged.beta(obs), ranged_fresh.beta(obs))

    fit_behaviour(obs, act, cfg, seed=8)
    fit_behaviour(obs, act, BehaviourConfig(steps=60, batch_size=64, hidden_dim=16, hidden_layers=1), seed=7)
    assert len(steps) == 3 and len(list((tmp_path / "cache").glob("*.pt"))) == 3


def test_an_unreadable_cache_entry_is_refitted_and_off_turns_it_off(monkeypatch, tmp_path, capsys):
    s_w, a_w, s_n, a_n = _two_clusters(n=100)
    obs, act = torch.cat([s_w, s_n]), torch.cat([a_w, a_n])
    cfg = BehaviourConfig(steps=20, batch_size=32, hidden_dim=8, hidden_layers=1)
    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", str(tmp_path / "cache"))
    fresh, _ = fit_behaviour(obs, act, cfg, seed=1, cache=False)
    fit_behaviour(obs, act, cfg, seed=1)
    (entry,) = (tmp_path / "cache").glob("*.pt")
    entry.write_bytes(b"not a torch file")
    again, _ = fit_behaviour(obs, act, cfg, seed=1)
    assert "unreadable" in capsys.readouterr().out
    assert torch.equal(again.head.net[0].weight, fresh.head.net[0].weight)
    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", "off")
    entry.unlink()
    fit_behaviour(obs, act, cfg, seed=1)
    assert not list((tmp_path / "cache").glob("*.pt"))


def test_fit_rejects_mismatched_or_non_finite_data():
    cfg = BehaviourConfig(steps=1, hidden_dim=8, hidden_layers=1)
    with pytest.raises(RklBenchError, match="10 observations but 9 actions"):
        fit_behaviour(torch.zeros(10, 2), torch.zeros(9, 1), cfg, seed=0)
    with pytest.raises(RklBenchError, match="2-D observations"):
        fit_behaviour(torch.zeros(10), torch.zeros(10, 1), cfg, seed=0)
    bad = torch.zeros(10, 1)
    bad[3] = float("nan")
    with pytest.raises(RklBenchError, match="NaN or inf"):
        fit_behaviour(torch.zeros(10, 2), bad, cfg, seed=0)


def test_tanh_fit_runs_on_actions_at_the_bounds():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(300, 2, generator=g)
    act = torch.sign(obs[:, :1])  # all actions exactly +-1
    model, stats = fit_behaviour(obs, act, BehaviourConfig(steps=30, hidden_dim=8, hidden_layers=1, squash="tanh"), seed=0)
    assert math.isfinite(stats["nll"]) and math.isfinite(stats["raw_beta_mean"])


# ------------------------------------------------------------------ Eq. 18
def test_lambda_weights_follow_eq18_and_never_overflow():
    beta = torch.tensor([-1e4, 0.0, 0.5, 1.0, 1e4])
    lam = lambda_weights(beta, 10.0, 5.0)
    expected = 1 / (1 + torch.exp(10 * beta[1:4] - 5))
    torch.testing.assert_close(lam[1:4], expected)
    assert lam[2].item() == pytest.approx(0.5)
    assert lam[0].item() == 1.0 and lam[-1].item() == 0.0
    assert torch.all(lam[1:] <= lam[:-1])


def test_dataset_lambdas_cover_every_row_in_chunks(fitted):
    model, _, obs, *_ = fitted
    lam = dataset_lambdas(model, obs, 10.0, 5.0, chunk=333)
    assert lam.shape == (len(obs),)
    with torch.no_grad():
        torch.testing.assert_close(lam, lambda_weights(model.beta(obs), 10.0, 5.0))


def test_lambda_report_gives_wide_states_lower_weights(fitted):
    model, _, _, _, s_w, s_n = fitted
    rep = lambda_report(model, {"wide": s_w, "narrow": s_n}, 10.0, 5.0, bins=5)
    wide, narrow = rep["components"]["wide"], rep["components"]["narrow"]
    assert len(rep["bin_edges"]) == 6
    assert sum(wide["histogram"]) == wide["n"] == len(s_w)
    assert wide["lambda_mean"] < 0.1 and narrow["lambda_mean"] > 0.9
    assert wide["share_below_half"] > 0.9 > narrow["share_below_half"]


@pytest.fixture(scope="module")
def caches_seen_by_a_module_fixture():
    from rkl_bench.algos.behaviour_cache import cache_dir
    from rkl_bench.data.registry import forge_dir

    return cache_dir(), forge_dir()


def test_fixtures_of_a_module_never_see_the_users_caches(caches_seen_by_a_module_fixture):
    """A module's fixture is made before a test's own cache isolation: it still gets a temporary cache
    (test_archive_resume's grid fixture trains td3_rkl, and once wrote its fits into ~/.cache)."""
    behaviour, forge = caches_seen_by_a_module_fixture
    home = Path.home() / ".cache" / "rkl_bench"
    assert behaviour is not None and "session_caches" in str(behaviour) and home not in behaviour.parents
    assert "session_caches" in str(forge) and home not in Path(forge).parents
