"""Fig. 5: the four pure-BC learners, the tanh-Gaussian pieces BRAC and CDC share, and the Fig. 5 report.

The cloning tests use a toy "expert": a deterministic policy
``a = tanh(W z + 0.6)`` of the state plus small noise, so the quality of a
clone is measured directly (MSE to the expert's action on held-out states)
instead of through environment returns (no forge policy is shipped to make an
expert dataset from). Networks are 64 wide to keep each test a few seconds.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution

from rkl_bench.algos import default_hyperparams, learner_names, make_config, make_learner
from rkl_bench.algos.behaviour import GaussianBehaviour
from rkl_bench.algos.brac_behaviour import TanhBehaviourFit, fit_tanh_behaviour
from rkl_bench.algos.bc_signals import BCReverseKL
from rkl_bench.algos.tanh_gaussian import TanhGaussian, tanh_gaussian_log_prob
from rkl_bench.algos.regularisers import forward_kl, reverse_kl
from rkl_bench.data.dataset import OfflineDataset, TensorSampler
from rkl_bench.errors import RklBenchError
from rkl_bench.report import build_report
from rkl_bench.report.fig5 import FIG5_ALGOS, FIG5_TITLE
from rkl_bench.service.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"
FIG5 = ("bc_weighted_rkl", "bc_mse", "bc_forward_kl", "bc_reverse_kl")
SMALL = {
    "bc_weighted_rkl": {"hidden_dim": 64, "behaviour_steps": 100, "behaviour_hidden_dim": 32},
    "bc_mse": {"hidden_dim": 64},
    "bc_forward_kl": {"hidden_dim": 64},
    "bc_reverse_kl": {"hidden_dim": 64, "behaviour_steps": 100, "behaviour_hidden_dim": 32},
}


def toy_expert(n: int = 4000, obs_dim: int = 4, act_dim: int = 2, noise: float = 0.05, seed: int = 0):
    """A dataset of an expert ``a = tanh(W z + 0.6) + noise``; returns it and the expert (numpy in, out)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(obs_dim, act_dim)) * 0.8

    def expert(obs: np.ndarray) -> np.ndarray:
        return np.tanh(((obs - 1.0) / 2.0) @ w + 0.6).astype(np.float32)

    obs = rng.normal(1.0, 2.0, size=(n, obs_dim)).astype(np.float32)
    actions = np.clip(expert(obs) + noise * rng.normal(size=(n, act_dim)), -1, 1).astype(np.float32)
    zeros = np.zeros(n, np.float32)
    return OfflineDataset(obs, actions, zeros, obs.copy(), zeros, env="toy", name="toy-expert", version="test"), expert


@pytest.fixture(scope="module")
def toy():
    return toy_expert()


def sampler(dataset: OfflineDataset, seed: int = 0) -> TensorSampler:
    return TensorSampler(dataset, 256, seed, *dataset.state_stats())


def held_out(dataset: OfflineDataset, expert) -> tuple[np.ndarray, np.ndarray]:
    """1000 fresh states, normalised as the learner sees them, and the expert's actions there."""
    obs = np.random.default_rng(1).normal(1.0, 2.0, size=(1000, dataset.obs_dim)).astype(np.float32)
    mean, std = dataset.state_stats()
    return (obs - mean) / std, expert(obs)


def params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.actor.parameters()]


# ------------------------------------------------------------------ registry
def test_fig5_learners_are_registered_with_one_actor_setting():
    assert set(FIG5) <= set(learner_names()) and FIG5 == FIG5_ALGOS
    for name in FIG5:  # the controlled study: same actor, same optimiser, same batch
        hp = default_hyperparams(name)
        assert (hp["lr"], hp["hidden_dim"], hp["hidden_layers"], hp["batch_size"]) == (3e-4, 256, 2, 256)
    assert default_hyperparams("bc_mse") == default_hyperparams("bc")
    weighted, rkl = default_hyperparams("bc_weighted_rkl"), default_hyperparams("td3_rkl")
    assert {k: weighted[k] for k in weighted if k in rkl and k not in ("hidden_dim", "batch_size", "max_action",
                                                                       "fused_adam", "hidden_layers")} == \
        {k: rkl[k] for k in weighted if k in rkl and k not in ("hidden_dim", "batch_size", "max_action", "fused_adam",
                                                               "hidden_layers")}
    reverse = default_hyperparams("bc_reverse_kl")
    assert reverse["kl_samples"] == 4 and reverse["behaviour_steps"] == 300_000 and reverse["behaviour_lr"] == 5e-4
    assert reverse["behaviour_hidden_dim"] == 200 and reverse["behaviour_entropy_bonus"] is True


@pytest.mark.parametrize(
    "name,hp,word",
    [("bc_forward_kl", {"log_std_min": 3.0}, "log_std_min"), ("bc_reverse_kl", {"kl_samples": 0}, "kl_samples"),
     ("bc_reverse_kl", {"action_clip_eps": 0.0}, "action_clip_eps"), ("bc_weighted_rkl", {"rkl_alpha": -1.0}, "rkl_alpha"),
     ("bc_weighted_rkl", {"regulariser": "l1"}, "regulariser"), ("bc_mse", {"q_weight": 1.0}, "q_weight")],
)
def test_bad_hyperparameters_name_algorithm_and_key(toy, name, hp, word):
    with pytest.raises(RklBenchError) as err:
        make_learner(name, toy[0], {**SMALL[name], **hp}, seed=0)
    assert name in str(err.value) and word in str(err.value)


# ------------------------------------------------------- tanh-Gaussian maths
def _torch_tanh_gaussian(mean, log_std):
    return TransformedDistribution(Independent(Normal(mean, log_std.exp()), 1), [TanhTransform()])


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    mean, log_std = 0.5 * torch.randn(64, 3, generator=gen), -1.0 + 0.3 * torch.randn(64, 3, generator=gen)
    dist = TanhGaussian(mean, log_std, torch.Generator().manual_seed(1), clip_eps=1e-6)
    x = dist.rsample((5,))
    reference = _torch_tanh_gaussian(mean, log_std).log_prob(x)
    torch.testing.assert_close(dist.log_prob(x), reference, rtol=1e-4, atol=1e-4)  # cached pre-tanh path
    torch.testing.assert_close(dist.log_prob(x.clone()), reference, rtol=1e-4, atol=1e-4)  # atanh path
    # forward KL signal = -log pi(a|s) of dataset actions
    a = torch.tanh(0.5 * torch.randn(64, 3, generator=gen))
    torch.testing.assert_close(forward_kl(dist, a), -_torch_tanh_gaussian(mean, log_std).log_prob(a), rtol=1e-4, atol=1e-4)


def test_log_density_agrees_with_the_behaviour_model_and_clips_actions_at_the_bounds():
    torch.manual_seed(0)
    model = GaussianBehaviour(4, 3, (16,), squash="tanh", beta_normalization="none", tanh_eps=1e-3)
    obs = torch.randn(32, 4)
    actions = torch.rand(32, 3) * 2 - 1
    actions[:4] = 1.0  # on the bound: clipped to 1 - eps, finite density
    actions[4:8] = -1.0
    with torch.no_grad():
        mean, log_std = model(obs)
        ours = tanh_gaussian_log_prob(actions, mean, log_std, 1e-3)
        torch.testing.assert_close(ours, model.log_prob(obs, actions), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(ours).all()


def test_reverse_kl_estimate_matches_the_closed_form():
    """KL is invariant under the tanh bijection, so KL(tanh N1 || tanh N2) = KL(N1 || N2) exactly."""
    gen = torch.Generator().manual_seed(0)
    m1, m2 = 0.3 * torch.randn(8, 2, generator=gen), 0.3 * torch.randn(8, 2, generator=gen)
    ls1, ls2 = -1.5 + 0.2 * torch.randn(8, 2, generator=gen), -1.0 + 0.2 * torch.randn(8, 2, generator=gen)
    policy = TanhGaussian(m1, ls1, torch.Generator().manual_seed(3), clip_eps=1e-6)
    estimate = reverse_kl(policy, lambda x: tanh_gaussian_log_prob(x, m2, ls2, 1e-6), n_samples=20_000)
    s1, s2 = ls1.exp(), ls2.exp()
    closed = (ls2 - ls1 + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5).sum(-1)
    torch.testing.assert_close(estimate, closed, rtol=0.03, atol=0.02)
    assert closed.min() > 0.2  # not a trivial comparison of zeros


def test_behaviour_fit_recovers_the_noise_and_the_entropy_bonus_widens_it(toy):
    """Pre-tanh noise 0.03: maximum likelihood finds log std ~ log 0.03; BRAC's entropy bonus keeps it wider."""
    dataset, expert = toy
    mean, std = dataset.state_stats()
    obs = torch.as_tensor((dataset.observations - mean) / std)
    u = torch.atanh(torch.as_tensor(expert(dataset.observations)).clamp(-0.99, 0.99))
    actions = torch.tanh(u + 0.03 * torch.randn(u.shape, generator=torch.Generator().manual_seed(0)))
    fits = {}
    for bonus in (False, True):
        model, stats = fit_tanh_behaviour(obs, actions, TanhBehaviourFit(steps=1200, hidden_dim=64, entropy_bonus=bonus),
                                          seed=0)
        fits[bonus] = stats
        with torch.no_grad():
            mode = torch.tanh(model(obs)[0])
        assert (mode - torch.as_tensor(expert(dataset.observations))).abs().mean() < 0.06
        assert not any(p.requires_grad for p in model.parameters())  # frozen for the learners
    assert abs(fits[False]["log_std_mean"] - np.log(0.03)) < 0.6
    assert fits[True]["log_std_mean"] > fits[False]["log_std_mean"] + 1.0
    assert 0.0 < fits[True]["alpha_entropy"] and fits[False]["alpha_entropy"] == 1.0  # untouched without the bonus


# --------------------------------------------------------- cloning the toy
CLONES = [
    ("bc_mse", {}, 800),
    ("bc_forward_kl", {}, 1500),
    ("bc_reverse_kl", {"behaviour_steps": 1000, "behaviour_hidden_dim": 64}, 1500),
    ("bc_weighted_rkl", {"rkl_alpha": 0.0}, 800),  # lambda(s)-weighted MSE: Eq. 7 without its negative term
]


@pytest.mark.parametrize("name,hp,steps", CLONES, ids=[c[0] for c in CLONES])
def test_bc_signal_losses_fall_and_clone_the_toy_expert(toy, name, hp, steps):
    dataset, expert = toy
    learner = make_learner(name, dataset, {**SMALL[name], **hp}, seed=0)
    s = sampler(dataset)
    losses = [learner.update(s.sample())["actor_loss"] for _ in range(steps)]
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-20:])
    assert last < first - 0.2 * abs(first)
    obs, target = held_out(dataset, expert)
    error = float(((learner.act(obs) - target) ** 2).mean())
    assert error < 0.01, f"{name} clones the expert with MSE {error:.4f}"  # predicting the mean action: ~0.34


def test_weighted_rkl_at_the_papers_alpha_runs_to_the_bounds_away_from_the_mean_action(toy):
    """Eq. 7 with rkl_alpha = 1 is linear in mu: 2 mu (m - a). Alone, it pushes mu_j(s) to sign(E[a_j|s] - mean a_j)."""
    dataset, expert = toy
    learner = make_learner("bc_weighted_rkl", dataset, SMALL["bc_weighted_rkl"], seed=0)
    assert learner.config.regulariser == "squared" and learner.config.rkl_alpha == 1.0
    s = sampler(dataset)
    for _ in range(1000):
        learner.update(s.sample())
    obs, target = held_out(dataset, expert)
    out = learner.act(obs)
    away = np.sign(target - dataset.actions.mean(axis=0))
    assert (np.sign(out) == away).mean() > 0.9
    assert (np.abs(out) > 0.9).mean() > 0.6  # saturated
    assert (np.sign(out) != np.sign(target)).mean() > 0.08  # where 0 < a < mean a it even has the wrong sign
    assert ((out - target) ** 2).mean() > 0.1  # not a clone
    lam = learner.dataset_lambdas  # td3_rkl's per-row weights, for Fig. 4 like td3_rkl's
    assert lam.shape == (len(dataset),) and lam.dtype == np.float32 and 0.0 <= lam.min() <= lam.max() <= 1.0


def test_bc_mse_is_the_bc_learner_under_its_fig5_name(toy):
    dataset = toy[0]
    s = sampler(dataset, seed=3)
    batches = [s.sample() for _ in range(10)]
    a, b = make_learner("bc", dataset, SMALL["bc_mse"], seed=4), make_learner("bc_mse", dataset, SMALL["bc_mse"], seed=4)
    assert [a.update(x) for x in batches] == [b.update(x) for x in batches]
    assert b.algo == "bc_mse" and b.state_dict()["algo"] == "bc_mse"


# ------------------------------------------------------ protocol, per learner
@pytest.mark.parametrize("name", FIG5)
def test_resume_is_bit_exact(toy, name, monkeypatch):
    dataset = toy[0]
    s = sampler(dataset, seed=5)
    batches = [s.sample() for _ in range(41)]
    a = make_learner(name, dataset, SMALL[name], seed=1)
    for batch in batches[:20]:
        a.update(batch)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    metrics_a = [a.update(batch) for batch in batches[20:]]

    import rkl_bench.algos.brac as brac
    import rkl_bench.algos.td3_rkl as td3_rkl

    def no_refit(*args, **kwargs):
        raise AssertionError("resume must not refit the behaviour model")

    monkeypatch.setattr(brac, "fit_tanh_behaviour", no_refit)  # bc_reverse_kl fits BRAC's behaviour policy
    monkeypatch.setattr(td3_rkl, "fit_behaviour", no_refit)  # bc_weighted_rkl fits TD3+RKL's
    buf.seek(0)
    fresh = make_learner(name, dataset, SMALL[name], seed=99, state=torch.load(buf, weights_only=True))
    metrics_b = [fresh.update(batch) for batch in batches[20:]]
    assert metrics_a == metrics_b
    for x, y in zip(params(a), params(fresh)):
        assert torch.equal(x, y)
    assert a.total_it == fresh.total_it == 41


@pytest.mark.parametrize("name", FIG5)
def test_same_seed_same_numbers_other_seed_other_numbers(toy, name):
    dataset = toy[0]
    s = sampler(dataset, seed=2)
    batches = [s.sample() for _ in range(10)]
    runs = []
    for seed in (7, 7, 8):
        learner = make_learner(name, dataset, SMALL[name], seed=seed)
        runs.append(([learner.update(b) for b in batches], params(learner)))
    assert runs[0][0] == runs[1][0]
    for x, y in zip(runs[0][1], runs[1][1]):
        assert torch.equal(x, y)
    assert not torch.equal(runs[0][1][0], runs[2][1][0])


@pytest.mark.parametrize("name", FIG5)
def test_act_is_deterministic_bounded_and_leaves_the_global_rng_alone(toy, name):
    dataset = toy[0]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    learner = make_learner(name, dataset, SMALL[name], seed=0)
    s = sampler(dataset)
    for _ in range(4):
        learner.update(s.sample())
    obs = (np.random.default_rng(0).normal(size=(7, dataset.obs_dim)) * 50).astype(np.float32)
    out = learner.act(obs)
    assert torch.equal(torch.rand(3), expected)
    assert out.shape == (7, dataset.act_dim) and out.dtype == np.float32 and np.all(np.abs(out) <= 1.0)
    np.testing.assert_array_equal(out, learner.act(obs))
    np.testing.assert_allclose(learner.act(obs[0]), out[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # the evaluation actors call learner.actor(obs) directly
        np.testing.assert_allclose(learner.actor(torch.as_tensor(obs)).numpy(), out, rtol=1e-6, atol=1e-6)


def test_unfitted_learner_refuses_to_train_and_other_checkpoints_are_refused(toy):
    dataset = toy[0]
    mean, std = dataset.state_stats()
    config = make_config("bc_reverse_kl", SMALL["bc_reverse_kl"])
    learner = BCReverseKL((dataset.observations - mean) / std, dataset.actions, config, fit=False)
    with pytest.raises(RklBenchError, match="checkpoint"):
        learner.update(sampler(dataset).sample())
    forward = make_learner("bc_forward_kl", dataset, SMALL["bc_forward_kl"], seed=0)
    with pytest.raises(RklBenchError, match="bc_forward_kl"):
        learner.load_state_dict(forward.state_dict())
    other = make_learner("bc_forward_kl", dataset, {**SMALL["bc_forward_kl"], "lr": 1e-3}, seed=0)
    with pytest.raises(RklBenchError, match="lr"):
        other.load_state_dict(forward.state_dict())


def test_state_dict_is_a_snapshot(toy):
    learner = make_learner("bc_reverse_kl", toy[0], SMALL["bc_reverse_kl"], seed=0)
    state = learner.state_dict()
    before = copy.deepcopy(state)
    s = sampler(toy[0])
    for _ in range(3):
        learner.update(s.sample())
    assert torch.equal(state["actor"]["net.0.weight"], before["actor"]["net.0.weight"])
    assert not torch.equal(state["actor"]["net.0.weight"], learner.actor.state_dict()["net.0.weight"])


# ------------------------------------------------------------ config, report
def test_fig5_config_is_the_papers_study():
    config = load_config(CONFIGS / "fig5.yaml")
    assert tuple(config.algorithms) == FIG5 and all(hp == {} for hp in config.algorithms.values())
    assert config.datasets == ("halfcheetah-expert", "hopper-expert", "walker2d-expert")
    assert config.seeds == (0, 1, 2, 3, 4) and config.steps == 1_000_000


def _write_runs(root: Path, cells: dict[tuple[str, str], list[float]]) -> Path:
    """Single-run layout: per (algo, dataset) and seed, 5 evaluations rising to the given final score."""
    for (algo, dataset), finals in cells.items():
        for seed, final in enumerate(finals):
            rows = [{"algo": algo, "dataset": dataset, "dataset_version": "d4rl-v2", "seed": seed, "step": 1000 * (i + 1),
                     "total_steps": 5000, "eval_episodes": 10, "return_mean": 10.0 * final, "return_std": 1.0,
                     "normalized_score": final * (i + 1) / 5, "normalized_std": 1.0, "actor_loss": 0.1,
                     "wall_time": 1.0 + i} for i in range(5)]
            run = root / algo / dataset / f"seed{seed}"
            run.mkdir(parents=True)
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_report_draws_fig5_only_when_bc_signal_learners_ran(tmp_path):
    cells = {(algo, ds): [90.0 - 10 * i, 95.0 - 10 * i]
             for i, algo in enumerate(FIG5) for ds in ("hopper-expert-v2", "walker2d-expert-v2")}
    paths = build_report(_write_runs(tmp_path / "fig5", cells), tmp_path / "out", bootstrap_reps=50)
    names = [p.name for p in paths.figures]
    assert "fig5_bc_signals.png" in names and (tmp_path / "out/figures/fig5_bc_signals.pdf").is_file()
    page = paths.index_html.read_text()
    assert FIG5_TITLE in page and "figures/fig5_bc_signals.png" in page
    assert "BC-wRKL" in paths.table2_md.read_text()  # the four signals are columns of the table too

    plain = build_report(_write_runs(tmp_path / "plain", {("td3_bc", "hopper-expert-v2"): [100.0]}),
                         tmp_path / "out2", bootstrap_reps=50)
    assert "fig5_bc_signals.png" not in [p.name for p in plain.figures]
    assert FIG5_TITLE not in plain.index_html.read_text()
