"""CDC acceptance tests on a small synthetic dataset.

The critic and actor losses are recomputed by hand from Algorithm 1 of the CDC
paper (module docstring of ``rkl_bench/algos/cdc.py``) with a copy of the
learner's sample stream; the critic's first update is also redone with the
penalty's max taken by autograd over all candidates, which checks the
argmax-then-recompute shortcut gives the same gradient.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, TanhTransform, TransformedDistribution
from test_learner_td3_rkl import synthetic_dataset

from rkl_bench.algos import default_hyperparams, make_learner
from rkl_bench.data.dataset import OfflineDataset, TensorSampler
from rkl_bench.errors import RklBenchError

SMALL = {"hidden_dim": 64, "num_samples": 4}


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return synthetic_dataset()


def sampler(dataset: OfflineDataset, seed: int = 0) -> TensorSampler:
    return TensorSampler(dataset, 256, seed, *dataset.state_stats())


def params(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for net in (learner.actor, learner.critic, learner.critic_target) for p in net.parameters()]


def copy_of(generator: torch.Generator) -> torch.Generator:
    gen = torch.Generator()
    gen.set_state(generator.get_state())
    return gen


def qbar(q: torch.Tensor, nu: float) -> torch.Tensor:
    return nu * q.amin(0) + (1 - nu) * q.amax(0)


def draw(mean, log_std, gen, n):
    return torch.tanh(mean + log_std.exp() * torch.randn((n, *mean.shape), generator=gen))


def critic_loss_by_hand(learner, critic, batch, gen):
    """Line 6 of Algorithm 1, written out with loops over samples and critics; returns (loss, td, delta)."""
    cfg = learner.config
    n, m = cfg.num_samples, cfg.num_critics
    s, a = batch.observations, batch.actions
    with torch.no_grad():
        next_mean, next_log_std = learner.actor.params(batch.next_observations)
        next_actions = draw(next_mean, next_log_std, gen, n)
        targets = torch.stack([qbar(learner.critic_target(batch.next_observations, x), cfg.nu) for x in next_actions])
        y = batch.rewards + batch.not_dones * cfg.discount * targets.amax(0)  # max_k Qbar'(s', a'_k)
        mean, log_std = learner.actor.params(s)
        candidates = draw(mean, log_std, gen, n)
    q_data = critic(s, a)  # (M, B, 1)
    q_hat = torch.stack([critic(s, x) for x in candidates]).amax(0)  # max_k Q_j(s, a_hat_k), per critic
    td = sum(((q_data[j] - y) ** 2).mean() for j in range(m))
    delta = sum((torch.relu(q_hat[j] - q_data[j]) ** 2).mean() for j in range(m))
    return td + cfg.eta * delta, td, delta


# ------------------------------------------------------------------ config
def test_defaults_follow_the_paper():
    hp = default_hyperparams("cdc")
    assert hp["num_critics"] == 4 and hp["nu"] == 0.75  # CDC Sec. 3.3
    assert hp["num_samples"] == 10 and hp["eta"] == 1.0 and hp["kl_weight"] == 1.0
    assert (hp["actor_lr"], hp["critic_lr"], hp["hidden_dim"], hp["hidden_layers"]) == (3e-4, 3e-4, 256, 2)
    assert (hp["tau"], hp["discount"], hp["batch_size"]) == (0.005, 0.99, 256)


@pytest.mark.parametrize(
    "hp,word",
    [({"eta": -1.0}, "eta"), ({"kl_weight": -0.1}, "kl_weight"), ({"nu": -0.1}, "nu"), ({"num_samples": 0}, "num_samples"),
     ({"num_critics": 0}, "num_critics"), ({"log_std_max": -6.0}, "log_std"), ({"lambda": 1.0}, "'lambda'")],
)
def test_bad_hyperparameters_name_algorithm_and_key(dataset, hp, word):
    with pytest.raises(RklBenchError) as err:
        make_learner("cdc", dataset, {**SMALL, **hp}, seed=0)
    assert "cdc" in str(err.value) and word in str(err.value)


# ---------------------------------------------------------------- training
def test_losses_fall(dataset):
    learner = make_learner("cdc", dataset, SMALL, seed=0)
    s = sampler(dataset)
    rows = [learner.update(s.sample()) for _ in range(300)]
    assert all(np.isfinite(v) for m in rows for v in m.values())
    assert set(rows[0]) == {"critic_loss", "td_loss", "delta", "q_mean", "actor_loss", "q_policy", "nll", "bc_loss",
                            "log_std_mean"}
    for key, factor in (("td_loss", 0.3), ("nll", 0.1)):
        series = [m[key] for m in rows]
        assert np.mean(series[-20:]) < factor * np.mean(series[:5]), key


def test_critic_loss_is_algorithm_1_and_the_argmax_shortcut_has_the_same_gradient(dataset):
    hp = {**SMALL, "eta": 5.0, "fused_adam": False}
    learner = make_learner("cdc", dataset, hp, seed=1)
    batch = sampler(dataset, seed=3).sample()
    hand_critic = copy.deepcopy(learner.critic)
    hand_opt = torch.optim.Adam(hand_critic.parameters(), lr=learner.config.critic_lr)
    loss, td, delta = critic_loss_by_hand(learner, hand_critic, batch, copy_of(learner.sample_generator))
    assert delta > 0  # some candidates beat the data action: the penalty is active
    metrics = learner.update(batch)
    torch.testing.assert_close(torch.tensor(metrics["critic_loss"]), loss.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(metrics["td_loss"]), td.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(metrics["delta"]), delta.detach() / 4, rtol=1e-5, atol=1e-6)
    hand_opt.zero_grad()
    loss.backward()
    hand_opt.step()
    for mine, ref in zip(learner.critic.parameters(), hand_critic.parameters()):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-6)


def test_actor_loss_is_q_plus_lambda_log_likelihood(dataset):
    learner = make_learner("cdc", dataset, {**SMALL, "kl_weight": 0.4}, seed=0)
    s = sampler(dataset, seed=4)
    for _ in range(5):
        learner.update(s.sample())
    batch = s.sample()
    gen = copy_of(learner.sample_generator)
    with torch.no_grad():
        mean, log_std = learner.actor.params(batch.observations)
        action = draw(mean, log_std, gen, 1)[0]
        q = qbar(learner.critic(batch.observations, action), 0.75)
        dist = TransformedDistribution(Independent(Normal(mean, log_std.exp()), 1), [TanhTransform()])
        nll = -dist.log_prob(batch.actions.clamp(-1 + 1e-3, 1 - 1e-3))
        expected = -q.mean() + 0.4 * nll.mean()
    inputs = {"pi": learner.actor.distribution(batch.observations),
              "policy": torch.randn(batch.actions.shape, generator=copy_of(learner.sample_generator))}
    _, metrics = learner.actor_loss(learner.nets(), batch, inputs)
    torch.testing.assert_close(metrics["actor_loss"], expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(metrics["nll"], nll.mean(), rtol=1e-4, atol=1e-4)


def test_without_eta_there_is_no_penalty(dataset):
    learner = make_learner("cdc", dataset, {**SMALL, "eta": 0.0}, seed=0)
    s = sampler(dataset)
    for _ in range(3):
        m = learner.update(s.sample())
        assert m["delta"] == 0.0 and m["critic_loss"] == m["td_loss"]


def test_delta_penalty_curbs_the_value_of_policy_actions(dataset):
    """CDC's claim (Sec. 3.1): with eta > 0, Q of the policy's best sampled action no longer towers over Q(s, a)."""
    s = sampler(dataset, seed=5)
    batches = [s.sample() for _ in range(300)]
    gaps = {}
    for eta in (0.0, 10.0):
        learner = make_learner("cdc", dataset, {**SMALL, "eta": eta}, seed=0)
        for b in batches:
            learner.update(b)
        batch = batches[0]
        with torch.no_grad():
            mean, log_std = learner.actor.params(batch.observations)
            candidates = draw(mean, log_std, torch.Generator().manual_seed(0), 10)
            best = torch.stack([learner.critic(batch.observations, x) for x in candidates]).amax(0)
            gaps[eta] = float(torch.relu(best - learner.critic(batch.observations, batch.actions)).mean())
    assert gaps[0.0] > 0.05
    assert gaps[10.0] < 0.5 * gaps[0.0]


# ------------------------------------------------------ protocol
def test_resume_is_bit_exact(dataset):
    s = sampler(dataset, seed=6)
    batches = [s.sample() for _ in range(31)]
    a = make_learner("cdc", dataset, SMALL, seed=0)
    for batch in batches[:15]:
        a.update(batch)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    metrics_a = [a.update(batch) for batch in batches[15:]]
    buf.seek(0)
    fresh = make_learner("cdc", dataset, SMALL, seed=5, state=torch.load(buf, weights_only=True))
    metrics_b = [fresh.update(batch) for batch in batches[15:]]
    assert metrics_a == metrics_b
    for x, y in zip(params(a), params(fresh)):
        assert torch.equal(x, y)
    assert a.total_it == fresh.total_it == 31


def test_same_seed_same_numbers(dataset):
    s = sampler(dataset, seed=2)
    batches = [s.sample() for _ in range(8)]
    runs = []
    for seed in (3, 3, 4):
        learner = make_learner("cdc", dataset, SMALL, seed=seed)
        runs.append(([learner.update(b) for b in batches], params(learner)))
    assert runs[0][0] == runs[1][0]
    for x, y in zip(runs[0][1], runs[1][1]):
        assert torch.equal(x, y)
    assert not torch.equal(runs[0][1][0], runs[2][1][0])


def test_global_rng_untouched_and_act_is_the_mode(dataset):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    learner = make_learner("cdc", dataset, SMALL, seed=0)
    s = sampler(dataset)
    for _ in range(4):
        learner.update(s.sample())
    obs = (np.random.default_rng(0).normal(size=(6, 5)) * 50).astype(np.float32)
    out = learner.act(obs)
    assert torch.equal(torch.rand(3), expected)
    assert out.shape == (6, 2) and out.dtype == np.float32 and np.all(np.abs(out) <= 1.0)
    with torch.no_grad():
        mode = torch.tanh(learner.actor.params(torch.as_tensor(obs))[0]).numpy()
    np.testing.assert_allclose(out, mode, rtol=1e-6, atol=1e-6)
    assert learner.act(obs[0]).shape == (2,)
    assert learner.critic(torch.zeros(3, 5), torch.zeros(3, 2)).shape == (4, 3, 1)  # M = 4 critics, one module


def test_checkpoint_of_other_config_is_refused(dataset):
    state = make_learner("cdc", dataset, SMALL, seed=0).state_dict()
    with pytest.raises(RklBenchError, match="eta"):
        make_learner("cdc", dataset, {**SMALL, "eta": 2.0}, seed=0, state=state)
