"""Learners BC and TD3+BC, and the registry: acceptance tests on a small synthetic dataset.

TD3+RKL has its own file (``test_learner_td3_rkl.py``). Networks are shrunk
(64x64) where the test is about the update rule rather than the defaults, to
keep each test well under a few seconds on one thread.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rkl_bench.algos import default_hyperparams, learner_names, make_learner
from rkl_bench.algos.nets import EnsembleCritic, make_generator
from rkl_bench.data.dataset import OfflineDataset, TensorSampler
from rkl_bench.errors import RklBenchError

SMALL = {"hidden_dim": 64}


def synthetic_dataset(n: int = 2000, obs_dim: int = 5, act_dim: int = 2, seed: int = 0) -> OfflineDataset:
    """States ~ N(3, 2) per dim (so normalisation matters), actions a smooth function of state in [-1, 1]."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(3.0, 2.0, size=(n, obs_dim)).astype(np.float32)
    w = rng.normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    actions = np.tanh(((obs - 3.0) / 2.0) @ w).astype(np.float32)
    next_obs = (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32)
    rewards = (-(actions**2).sum(1) + 0.1 * obs[:, 0]).astype(np.float32)
    terminals = (rng.random(n) < 0.01).astype(np.float32)
    return OfflineDataset(obs, actions, rewards, next_obs, terminals, env="toy", name="synthetic", version="test")


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return synthetic_dataset()


def sampler(dataset: OfflineDataset, seed: int = 0, batch_size: int = 256) -> TensorSampler:
    return TensorSampler(dataset, batch_size, seed, *dataset.state_stats())


def params(learner) -> list[torch.Tensor]:
    """All trainable and target parameters of a learner, in a fixed order."""
    out = []
    for name in ("actor", "critic", "actor_target", "critic_target"):
        if hasattr(learner, name):
            out += [p.detach().clone() for p in getattr(learner, name).parameters()]
    return out


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# ------------------------------------------------------------------ registry
def test_registry_names_and_defaults():
    assert {"bc", "td3_bc"} <= set(learner_names())
    td3 = default_hyperparams("td3_bc")
    # TD3+BC paper / official code values.
    assert td3["q_weight"] == 2.5 and td3["policy_noise"] == 0.2 and td3["noise_clip"] == 0.5
    assert td3["policy_freq"] == 2 and td3["tau"] == 0.005 and td3["discount"] == 0.99
    assert td3["actor_lr"] == td3["critic_lr"] == 3e-4
    assert td3["hidden_dim"] == 256 and td3["hidden_layers"] == 2 and td3["batch_size"] == 256
    assert default_hyperparams("bc")["lr"] == 3e-4


def test_unknown_algorithm_lists_valid_names(dataset):
    with pytest.raises(RklBenchError) as err:
        make_learner("td4_bc", dataset, None, seed=0)
    msg = str(err.value)
    assert "td4_bc" in msg and "td3_bc" in msg and "bc" in msg


def test_unknown_hyperparameter_names_algorithm_and_key(dataset):
    with pytest.raises(RklBenchError) as err:
        make_learner("td3_bc", dataset, {"alpha": 2.5}, seed=0)
    msg = str(err.value)
    assert "td3_bc" in msg and "'alpha'" in msg and "q_weight" in msg


@pytest.mark.parametrize(
    "name,hp,word",
    [("td3_bc", {"policy_freq": 0}, "policy_freq"), ("td3_bc", {"tau": "fast"}, "tau"), ("bc", {"lr": -1.0}, "lr")],
)
def test_bad_hyperparameter_values_name_the_key(dataset, name, hp, word):
    with pytest.raises(RklBenchError) as err:
        make_learner(name, dataset, hp, seed=0)
    assert name in str(err.value) and word in str(err.value)


def test_hyperparams_override_defaults(dataset):
    learner = make_learner("td3_bc", dataset, {"q_weight": 1, "hidden_dim": 32}, seed=0)
    assert learner.config.q_weight == 1.0 and isinstance(learner.config.q_weight, float)
    assert learner.actor.net[0].out_features == 32


# ------------------------------------------------------------------------ BC
def test_bc_loss_falls_clearly(dataset):
    learner = make_learner("bc", dataset, SMALL, seed=0)
    s = sampler(dataset)
    losses = [learner.update(s.sample())["bc_loss"] for _ in range(300)]
    assert all(np.isfinite(losses))
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:5])


# -------------------------------------------------------------------- TD3+BC
def test_td3_bc_metrics_finite_and_policy_delay(dataset):
    learner = make_learner("td3_bc", dataset, SMALL, seed=0)
    s = sampler(dataset)
    for step in range(1, 301):
        m = learner.update(s.sample())
        assert all(np.isfinite(v) for v in m.values()), m
        actor_step = step % 2 == 0
        assert set(m) == ({"critic_loss", "q_mean", "actor_loss", "bc_loss"} if actor_step else {"critic_loss", "q_mean"})
    assert learner.total_it == 300
    assert m["critic_loss"] < 10.0


class _OfficialCritic(nn.Module):
    """The twin critic of github.com/sfujim/TD3_BC, written out as separate layers."""

    def __init__(self, obs_dim, act_dim, hidden):
        super().__init__()
        self.q1 = nn.Sequential(nn.Linear(obs_dim + act_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.q2 = copy.deepcopy(self.q1)

    def forward(self, s, a):
        sa = torch.cat([s, a], 1)
        return self.q1(sa), self.q2(sa)

    @torch.no_grad()
    def copy_from(self, ensemble: EnsembleCritic):
        layers = [m for m in ensemble.net if not isinstance(m, nn.ReLU)]
        for j, net in enumerate((self.q1, self.q2)):
            linears = [m for m in net if isinstance(m, nn.Linear)]
            for lin, ens in zip(linears, layers):
                lin.weight.copy_(ens.weight[j].T)
                lin.bias.copy_(ens.bias[j, 0])


def test_td3_bc_matches_official_update_rule(dataset):
    """Six steps (three actor steps) of the official TD3_BC.train, transcribed, give the same weights."""
    hp = {"hidden_dim": 32, "fused_adam": False}
    learner = make_learner("td3_bc", dataset, hp, seed=3)
    cfg = learner.config
    actor = copy.deepcopy(learner.actor)
    actor_target = copy.deepcopy(actor)
    critic = _OfficialCritic(dataset.obs_dim, dataset.act_dim, 32)
    critic.copy_from(learner.critic)
    critic_target = copy.deepcopy(critic)
    actor_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=3e-4)
    noise_gen = make_generator(3, "target_policy_noise")  # stands in for the global RNG of randn_like

    s = sampler(dataset, seed=1)
    for it in range(1, 7):
        b = s.sample()
        learner.update(b)
        state, action, next_state, reward, not_done = b.observations, b.actions, b.next_observations, b.rewards, b.not_dones
        with torch.no_grad():
            noise = (torch.randn(action.shape, generator=noise_gen) * 0.2).clamp(-0.5, 0.5)
            next_action = (actor_target(next_state) + noise).clamp(-1.0, 1.0)
            tq1, tq2 = critic_target(next_state, next_action)
            target_q = reward + not_done * 0.99 * torch.min(tq1, tq2)
        cq1, cq2 = critic(state, action)
        critic_loss = F.mse_loss(cq1, target_q) + F.mse_loss(cq2, target_q)
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
        if it % 2 == 0:
            pi = actor(state)
            q = critic(state, pi)[0]
            lmbda = 2.5 / q.abs().mean().detach()
            actor_loss = -lmbda * q.mean() + F.mse_loss(pi, action)
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            for net, tgt in ((critic, critic_target), (actor, actor_target)):
                for p, tp in zip(net.parameters(), tgt.parameters()):
                    tp.data.copy_(cfg.tau * p.data + (1 - cfg.tau) * tp.data)

    for mine, ref in zip(learner.actor.parameters(), actor.parameters()):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)
    for mine, ref in zip(learner.actor_target.parameters(), actor_target.parameters()):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)
    for which, (mine_c, ref_c) in enumerate(((learner.critic, critic), (learner.critic_target, critic_target))):
        check = _OfficialCritic(dataset.obs_dim, dataset.act_dim, 32)
        check.copy_from(mine_c)
        for mine, ref in zip(check.parameters(), ref_c.parameters()):
            torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-5)


def test_critic_member_detached_matches_and_leaves_no_grads():
    torch.manual_seed(0)
    critic = EnsembleCritic(5, 2, (16, 16))
    s, a = torch.randn(8, 5), torch.randn(8, 2, requires_grad=True)
    q1 = critic.member(s, a, 0, detach_params=True)
    torch.testing.assert_close(q1, critic(s, a)[0])
    torch.testing.assert_close(critic.member(s, a, 1), critic(s, a)[1])
    q1.sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


# ------------------------------------------------------------- every learner
@pytest.mark.parametrize("name", ["bc", "td3_bc"])
def test_act_shapes_dtype_and_range(dataset, name):
    learner = make_learner(name, dataset, SMALL, seed=0)
    s = sampler(dataset)
    for _ in range(4):
        learner.update(s.sample())
    batch = (np.random.default_rng(0).normal(size=(7, 5)) * 100).astype(np.float32)  # far outside the data
    out = learner.act(batch)
    assert out.shape == (7, 2) and out.dtype == np.float32
    assert np.all(np.abs(out) <= 1.0)
    single = learner.act(batch[0])
    assert single.shape == (2,) and single.dtype == np.float32
    np.testing.assert_allclose(single, out[0], rtol=1e-5, atol=1e-6)
    assert learner.act(batch.astype(np.float64)).dtype == np.float32
    with pytest.raises(ValueError):
        learner.act(np.zeros((3, 4), np.float32))


@pytest.mark.parametrize("name", ["bc", "td3_bc"])
def test_state_dict_round_trip_resumes_bit_exactly(dataset, name):
    s = sampler(dataset, seed=5)
    batches = [s.sample() for _ in range(101)]  # odd count: resume lands between actor steps
    a = make_learner(name, dataset, SMALL, seed=1)
    for b in batches[:51]:
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    metrics_a = [a.update(b) for b in batches[51:]]

    buf.seek(0)
    fresh = make_learner(name, dataset, SMALL, seed=99)  # different seed: everything must come from the checkpoint
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    metrics_b = [fresh.update(b) for b in batches[51:]]
    assert_same(params(a), params(fresh))
    assert metrics_a == metrics_b
    assert a.total_it == fresh.total_it == 101


@pytest.mark.parametrize("name", ["bc", "td3_bc", "bc_forward_kl"])
def test_learners_loaded_from_one_state_dict_train_independently(dataset, name):
    """Two learners restored from the same dict: training one must not move the other's Adam state."""
    s = sampler(dataset, seed=3)
    batches = [s.sample() for _ in range(8)]
    source = make_learner(name, dataset, SMALL, seed=1)
    for b in batches[:4]:
        source.update(b)
    state = source.state_dict()
    first, second = (make_learner(name, dataset, SMALL, seed=2) for _ in range(2))
    first.load_state_dict(state)
    second.load_state_dict(state)
    for b in batches[4:]:
        first.update(b)
    for b in batches[4:]:
        second.update(b)
    assert_same(params(first), params(second))


@pytest.mark.parametrize("name", ["bc", "td3_bc"])
def test_state_dict_is_a_snapshot(dataset, name):
    learner = make_learner(name, dataset, SMALL, seed=0)
    s = sampler(dataset)
    state = learner.state_dict()
    before = copy.deepcopy(state)
    for _ in range(4):
        learner.update(s.sample())
    assert torch.equal(state["actor"]["net.0.weight"], before["actor"]["net.0.weight"])


def test_checkpoint_of_other_algorithm_or_config_is_refused(dataset):
    td3 = make_learner("td3_bc", dataset, SMALL, seed=0)
    bc = make_learner("bc", dataset, SMALL, seed=0)
    with pytest.raises(RklBenchError, match="td3_bc"):
        bc.load_state_dict(td3.state_dict())
    other = make_learner("td3_bc", dataset, {**SMALL, "q_weight": 1.0}, seed=0)
    with pytest.raises(RklBenchError, match="q_weight"):
        other.load_state_dict(td3.state_dict())


@pytest.mark.parametrize("name", ["bc", "td3_bc"])
def test_same_seed_same_batches_identical_parameters(dataset, name):
    s = sampler(dataset, seed=2)
    batches = [s.sample() for _ in range(20)]
    runs = []
    for seed in (7, 7, 8):
        learner = make_learner(name, dataset, SMALL, seed=seed)
        for b in batches:
            learner.update(b)
        runs.append(params(learner))
    assert_same(runs[0], runs[1])
    assert not torch.equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize("name", ["bc", "td3_bc"])
def test_learners_do_not_touch_the_global_rng(dataset, name):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    learner = make_learner(name, dataset, SMALL, seed=0)
    s = sampler(dataset)
    for _ in range(4):
        learner.update(s.sample())
    learner.act(np.zeros(5, np.float32))
    assert torch.equal(torch.rand(3), expected)
