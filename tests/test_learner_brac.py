"""BRAC acceptance tests on a small synthetic dataset (behaviour fit on a tiny budget).

The update is checked against its definition (module docstring of
``rkl_bench/algos/brac.py``, BRAC's ``brac_primal_agent.py``) by recomputing
the critic and actor losses by hand from a copy of the learner's sample
stream, with ``torch.distributions`` for the policy's densities.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal
from test_learner_td3_rkl import synthetic_dataset

from rkl_bench.algos import default_hyperparams, make_config, make_learner
from rkl_bench.algos.brac import BRAC
from rkl_bench.data.dataset import OfflineDataset, TensorSampler
from rkl_bench.errors import RklBenchError

SMALL = {"actor_hidden_dim": 64, "critic_hidden_dim": 64, "behaviour_steps": 200, "behaviour_hidden_dim": 32,
         "warm_start": 20}


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return synthetic_dataset()


@pytest.fixture(scope="module")
def fitted_state(dataset) -> dict:
    """One behaviour fit, reused by the tests that do not test the fit."""
    return make_learner("brac", dataset, SMALL, seed=0).state_dict()


def with_config(state: dict, **changes) -> dict:
    return {**state, "config": {**state["config"], **changes}}


def from_fit(dataset, fitted_state, seed: int = 0, **changes):
    """A learner with the fixture's fitted behaviour policy and SMALL hyper-parameters changed by ``changes``."""
    return make_learner("brac", dataset, {**SMALL, **changes}, seed=seed, state=with_config(fitted_state, **changes))


def sampler(dataset: OfflineDataset, seed: int = 0) -> TensorSampler:
    return TensorSampler(dataset, 256, seed, *dataset.state_stats())


def params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for net in (learner.actor, learner.critic, learner.critic_target) for p in net.parameters()]


def copy_of(generator: torch.Generator) -> torch.Generator:
    gen = torch.Generator()
    gen.set_state(generator.get_state())
    return gen


def kl_by_hand(learner, obs, mean, log_std, gen, n):
    """BRAC's primal KL estimate: n draws x ~ pi, mean of log pi(x) - log pi_b(clip(x))."""
    noise = torch.randn((n, *mean.shape), generator=gen)
    u = mean + log_std.exp() * noise
    x = torch.tanh(u)
    log_pi = Independent(Normal(mean, log_std.exp()), 1).log_prob(u) - torch.log1p(-x.pow(2)).sum(-1)
    log_b = learner.behaviour.log_prob(obs, x)  # GaussianBehaviour, squash "tanh", clips at 1e-3
    return (log_pi - log_b).mean(0)


# ------------------------------------------------------------------ config
def test_defaults_are_bracs():
    hp = default_hyperparams("brac")
    assert hp["kl_weight"] == 0.1 and hp["value_penalty"] is False and hp["kl_samples"] == 4
    assert hp["warm_start"] == 20_000 and hp["nu"] == 1.0 and hp["num_critics"] == 2
    assert (hp["actor_lr"], hp["critic_lr"], hp["actor_hidden_dim"], hp["critic_hidden_dim"]) == (3e-4, 1e-3, 200, 300)
    assert (hp["log_std_min"], hp["log_std_max"], hp["action_clip_eps"]) == (-5.0, 0.0, 1e-3)
    assert (hp["tau"], hp["discount"], hp["batch_size"]) == (0.005, 0.99, 256)
    assert (hp["behaviour_steps"], hp["behaviour_lr"], hp["behaviour_hidden_dim"]) == (300_000, 5e-4, 200)
    assert hp["behaviour_entropy_bonus"] is True


@pytest.mark.parametrize(
    "hp,word",
    [({"kl_weight": -1.0}, "kl_weight"), ({"nu": 1.5}, "nu"), ({"warm_start": -1}, "warm_start"),
     ({"kl_samples": 0}, "kl_samples"), ({"log_std_min": 1.0}, "log_std_min"), ({"behaviour_steps": 0}, "behaviour_steps"),
     ({"value_penalty": "yes"}, "value_penalty"), ({"alpha": 0.1}, "'alpha'")],
)
def test_bad_hyperparameters_name_algorithm_and_key(dataset, hp, word):
    with pytest.raises(RklBenchError) as err:
        make_learner("brac", dataset, {**SMALL, **hp}, seed=0)
    assert "brac" in str(err.value) and word in str(err.value)


# ---------------------------------------------------------------- training
def test_losses_fall_kl_first_then_q(dataset, fitted_state):
    learner = from_fit(dataset, fitted_state, warm_start=150)
    s = sampler(dataset)
    rows = [learner.update(s.sample()) for _ in range(400)]
    assert all(np.isfinite(v) for m in rows for v in m.values())
    assert all("q_policy" not in m for m in rows[:150]) and all("q_policy" in m for m in rows[150:])
    kl = [m["kl"] for m in rows]
    assert np.mean(kl[130:150]) < 0.5 * np.mean(kl[:5])  # the warm start is behaviour cloning by the KL
    critic = [m["critic_loss"] for m in rows]
    assert np.mean(critic[-20:]) < 0.3 * np.mean(critic[:5])


def test_kl_penalty_keeps_the_policy_near_the_behaviour_policy(dataset, fitted_state):
    """Same seed and batches: kl_weight 0 (plain actor-critic) drifts from pi_b; kl_weight 1 stays near it."""
    s = sampler(dataset, seed=1)
    batches = [s.sample() for _ in range(300)]
    kl, distance = {}, {}
    for weight in (0.0, 1.0):
        learner = from_fit(dataset, fitted_state, kl_weight=weight, warm_start=0)
        rows = [learner.update(b) for b in batches]
        kl[weight] = np.mean([m["kl"] for m in rows[-30:]])
        with torch.no_grad():
            obs = batches[0].observations
            distance[weight] = float(((learner.actor(obs) - learner.behaviour.mean_action(obs)) ** 2).mean())
    assert kl[1.0] < 0.1 * kl[0.0]
    assert distance[1.0] < 0.5 * distance[0.0]


def test_warm_start_actor_ignores_the_critic(dataset, fitted_state):
    """Before the Q term switches on, the actor's update cannot depend on the critic's weights."""
    s = sampler(dataset, seed=2)
    batches = [s.sample() for _ in range(SMALL["warm_start"] + 2)]
    a = make_learner("brac", dataset, SMALL, seed=0, state=fitted_state)
    b = make_learner("brac", dataset, SMALL, seed=0, state=fitted_state)
    with torch.no_grad():
        for p in b.critic.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    for batch in batches[:-2]:
        a.update(batch)
        b.update(batch)
    for x, y in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(x, y)
    a.update(batches[-2])  # step warm_start + 1: Q term on
    b.update(batches[-2])
    assert not torch.equal(next(a.actor.parameters()), next(b.actor.parameters()))


# ------------------------------------------------------- update, by hand
@pytest.mark.parametrize("value_penalty", [False, True])
def test_critic_loss_is_the_brac_target(dataset, fitted_state, value_penalty):
    learner = from_fit(dataset, fitted_state, value_penalty=value_penalty, kl_weight=0.7, nu=0.6)
    s = sampler(dataset, seed=3)
    for _ in range(5):
        learner.update(s.sample())
    batch = s.sample()
    gen = copy_of(learner.sample_generator)
    with torch.no_grad():
        mean, log_std = learner.actor.params(batch.next_observations)
        next_action = torch.tanh(mean + log_std.exp() * torch.randn(mean.shape, generator=gen))
        q_next = learner.critic_target(batch.next_observations, next_action)
        v = 0.6 * q_next.amin(0) + 0.4 * q_next.amax(0)
        if value_penalty:
            v = v - 0.7 * kl_by_hand(learner, batch.next_observations, mean, log_std, gen, 4).unsqueeze(-1)
        y = batch.rewards + batch.not_dones * 0.99 * v
        q = learner.critic(batch.observations, batch.actions)
        expected = sum(((q[j] - y) ** 2).mean() for j in range(2))
    _, metrics = learner.critic_loss(learner.nets(), batch, learner.inputs(batch, ("critic", "actor")))
    torch.testing.assert_close(metrics["critic_loss"], expected, rtol=1e-5, atol=1e-6)


def test_actor_loss_is_kl_penalty_minus_q(dataset, fitted_state):
    learner = from_fit(dataset, fitted_state, kl_weight=0.3)
    batch = sampler(dataset, seed=4).sample()
    gen = copy_of(learner.sample_generator)
    with torch.no_grad():
        mean, log_std = learner.actor.params(batch.observations)
        action = torch.tanh(mean + log_std.exp() * torch.randn(mean.shape, generator=gen))
        kl = kl_by_hand(learner, batch.observations, mean, log_std, gen, 4)
        q = learner.critic(batch.observations, action).amin(0)
        expected = 0.3 * kl.mean() - q.mean()
    draws = copy_of(learner.sample_generator)  # the actor's noise, drawn as the hand computation drew it
    inputs = {"policy": torch.randn(batch.actions.shape, generator=draws),
              "kl": torch.randn((4, *batch.actions.shape), generator=draws), "q_on": True}
    _, metrics = learner.actor_loss(learner.nets(), batch, inputs)
    torch.testing.assert_close(metrics["actor_loss"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(metrics["kl"], kl.mean(), rtol=1e-5, atol=1e-5)


def test_kl_estimate_approaches_the_closed_form(dataset, fitted_state):
    """KL is invariant under tanh: with many draws the estimate is the Gaussians' KL (pi_b from the fit)."""
    learner = from_fit(dataset, fitted_state, kl_samples=4000)
    obs = sampler(dataset).sample().observations[:64]
    with torch.no_grad():
        policy = learner.actor.distribution(obs)
        noise = torch.randn((4000, *obs.shape[:1], dataset.act_dim), generator=learner.sample_generator)
        estimate = learner.kl(policy, obs, noise)
        b_mean, b_log_std = learner.behaviour(obs)
        s1, s2 = policy.log_std.exp(), b_log_std.exp()
        closed = (b_log_std - policy.log_std + (s1**2 + (policy.mean - b_mean) ** 2) / (2 * s2**2) - 0.5).sum(-1)
    assert closed.min() > 0.1
    torch.testing.assert_close(estimate, closed, rtol=0.05, atol=0.05)


# ------------------------------------------------------ protocol
def test_resume_is_bit_exact_across_the_warm_start_and_never_refits(dataset, fitted_state, monkeypatch):
    s = sampler(dataset, seed=6)
    batches = [s.sample() for _ in range(41)]
    a = make_learner("brac", dataset, SMALL, seed=0, state=fitted_state)
    for batch in batches[:15]:  # checkpoint inside the warm start, resume across it
        a.update(batch)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    metrics_a = [a.update(batch) for batch in batches[15:]]

    import rkl_bench.algos.brac as brac

    def no_refit(*args, **kwargs):
        raise AssertionError("resume must not refit the behaviour policy")

    monkeypatch.setattr(brac, "fit_tanh_behaviour", no_refit)
    buf.seek(0)
    fresh = make_learner("brac", dataset, SMALL, seed=5, state=torch.load(buf, weights_only=True))
    metrics_b = [fresh.update(batch) for batch in batches[15:]]
    assert metrics_a == metrics_b
    for x, y in zip(params(a), params(fresh)):
        assert torch.equal(x, y)
    assert fresh.behaviour_stats == a.behaviour_stats and "nll" in fresh.behaviour_stats


def test_same_seed_same_fit_and_numbers(dataset):
    hp = {**SMALL, "behaviour_steps": 30, "warm_start": 3}
    s = sampler(dataset, seed=2)
    batches = [s.sample() for _ in range(8)]
    runs = []
    for seed in (3, 3, 4):
        learner = make_learner("brac", dataset, hp, seed=seed)
        runs.append(([learner.update(b) for b in batches], params(learner), learner.behaviour_stats))
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2]
    for x, y in zip(runs[0][1], runs[1][1]):
        assert torch.equal(x, y)
    assert runs[0][2] != runs[2][2] and not torch.equal(runs[0][1][0], runs[2][1][0])


def test_global_rng_untouched_and_act_is_the_mode(dataset):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    learner = make_learner("brac", dataset, {**SMALL, "behaviour_steps": 20, "warm_start": 1}, seed=0)
    s = sampler(dataset)
    for _ in range(4):
        learner.update(s.sample())
    obs = (np.random.default_rng(0).normal(size=(6, 5)) * 50).astype(np.float32)
    out = learner.act(obs)
    assert torch.equal(torch.rand(3), expected)
    assert out.shape == (6, 2) and out.dtype == np.float32 and np.all(np.abs(out) <= 1.0)
    with torch.no_grad():
        mode = torch.tanh(learner.actor.params(torch.as_tensor(obs))[0]).numpy()
        np.testing.assert_allclose(learner.actor(torch.as_tensor(obs)).numpy(), out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out, mode, rtol=1e-6, atol=1e-6)
    assert learner.act(obs[0]).shape == (2,)


def test_unfitted_learner_refuses_to_train_and_other_configs_are_refused(dataset, fitted_state):
    mean, std = dataset.state_stats()
    learner = BRAC((dataset.observations - mean) / std, dataset.actions, make_config("brac", SMALL), fit=False)
    with pytest.raises(RklBenchError, match="checkpoint"):
        learner.update(sampler(dataset).sample())
    with pytest.raises(RklBenchError, match="kl_weight"):
        make_learner("brac", dataset, {**SMALL, "kl_weight": 1.0}, seed=0, state=fitted_state)
    with pytest.raises(RklBenchError, match="brac"):
        make_learner("cdc", dataset, {"hidden_dim": 64}, seed=0, state=fitted_state)


def test_brac_and_bc_reverse_kl_share_one_cached_fit_equal_to_a_fresh_one(dataset, monkeypatch):
    """BRAC's 300k-step pi_b fit is kept in the behaviour cache: bc_reverse_kl on the same rows and seed
    reads it (no Adam step), bit for bit the fit made again without the cache, with the same statistics;
    another fit setting fits anew."""
    import rkl_bench.algos.brac_behaviour as behaviour
    from rkl_bench.algos.behaviour_cache import cache_dir

    hp = {"behaviour_steps": 60, "behaviour_hidden_dim": 16}
    cache = cache_dir()
    brac_learner = make_learner("brac", dataset, {**SMALL, **hp}, seed=3)
    assert len(list(cache.glob("*.pt"))) == 1
    real_train = behaviour._train_tanh

    def no_fit(*args, **kwargs):
        raise AssertionError("the fit must come from the cache")

    monkeypatch.setattr(behaviour, "_train_tanh", no_fit)
    signal = make_learner("bc_reverse_kl", dataset, {"hidden_dim": 32, **hp}, seed=3)
    monkeypatch.setattr(behaviour, "_train_tanh", real_train)
    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", "off")
    fresh = make_learner("brac", dataset, {**SMALL, **hp}, seed=3)
    for reader in (signal, brac_learner):
        for (name, value), again in zip(fresh.behaviour.state_dict().items(), reader.behaviour.state_dict().values()):
            assert torch.equal(value, again) if isinstance(value, torch.Tensor) else value == again, name
        assert reader.behaviour_stats == fresh.behaviour_stats
    assert 0.0 < fresh.behaviour_stats["alpha_entropy"] != 1.0  # the entropy weight moved, and was kept

    monkeypatch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", str(cache))  # this test's own cache again
    make_learner("brac", dataset, {**SMALL, **hp, "behaviour_entropy_bonus": False}, seed=3)
    assert len(list(cache.glob("*.pt"))) == 2
