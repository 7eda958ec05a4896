"""The learner core (rkl_bench/algos/base.py) with a learner written from scratch in this file.

``docs/architecture.md`` says a new learner of ``bc_mse``'s kind is one page:
its config, its networks and its losses. This one (BC with an L1 loss and an
L2 penalty on the actions, a critic-free learner with a random draw per
update) gets the rest from the core: both update paths, the fall-back,
metrics, acting, checkpoints and their checks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_fast_paths import synthetic_dataset

from rkl_bench.algos import Learner, Step
from rkl_bench.algos.config import Execution, LearnerConfig, Network, config_from_dict, positive
from rkl_bench.algos.nets import DeterministicActor, hidden_sizes, seeded_init
from rkl_bench.data.dataset import TensorSampler
from rkl_bench.errors import RklBenchError


@dataclass(frozen=True)
class NoisyL1Config(Network, Execution, LearnerConfig):
    lr: float = 1e-3
    action_noise: float = 0.1
    """Std of the noise added to the dataset actions each update."""

    def check(self) -> None:
        positive(self, "lr", "action_noise")


class NoisyL1(Learner):
    """BC by ``mean |mu(s) - (a + noise)|`` with fresh Gaussian noise on the actions each update."""

    algo = "noisy_l1"
    config_cls = NoisyL1Config

    def build(self, observations, actions):
        cfg = self.config
        with seeded_init(self.seed, "init"):
            actor = DeterministicActor(self.obs_dim, self.act_dim, hidden_sizes(cfg.hidden_dim, cfg.hidden_layers))
        self.add_modules(actor=actor)
        self.add_optimizers(cfg.fused_adam, actor=cfg.lr)
        self.add_generator("noise_generator", self.seed, "action_noise")
        self.steps = (Step("actor", self.loss),)

    def inputs(self, batch, steps):
        return {"noise": torch.randn(batch.actions.shape, generator=self.noise_generator)}

    def loss(self, nets, batch, inputs):
        target = batch.actions + self.config.action_noise * inputs["noise"]
        loss = (nets.actor(batch.observations) - target).abs().mean()
        return loss, {"actor_loss": loss.detach()}


@pytest.fixture(scope="module")
def data():
    dataset = synthetic_dataset()
    mean, std = dataset.state_stats()
    sampler = TensorSampler(dataset, 32, 0, mean, std)
    return (dataset.observations - mean) / std, dataset.actions, [sampler.sample() for _ in range(12)]


def build(data, **hp):
    config = config_from_dict(NoisyL1Config, {"hidden_dim": 32, "fast_after": 0, **hp}, "noisy_l1 hyper-parameters")
    learner = NoisyL1(data[0], data[1], config, seed=3)
    if learner._fast is not None:
        learner._fast.compiled._compile = False  # the fast runner's maths without a compile
    return learner


def test_a_new_learner_runs_on_both_paths_with_the_same_numbers(data):
    plain, fast = build(data, update_path="plain"), build(data)
    for batch in data[2]:
        m_plain, m_fast = plain.update(batch), fast.update(batch)
        assert m_fast["actor_loss"] == pytest.approx(m_plain["actor_loss"], rel=1e-4, abs=1e-6)
    assert fast._fast is not None  # still on the fast path
    for p, q in zip(plain.actor.parameters(), fast.actor.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    assert fast.parameters_finite()
    out = fast.act(np.zeros((3, plain.obs_dim), np.float32))
    assert out.shape == (3, plain.act_dim) and out.dtype == np.float32


def test_a_new_learner_resumes_bit_exactly_and_refuses_other_checkpoints(data):
    a = build(data)
    for batch in data[2][:5]:
        a.update(batch)
    assert set(a.state_dict()) == {"algo", "config", "total_it", "actor", "actor_optimizer", "noise_generator"}
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    rest_a = [a.update(batch) for batch in data[2][5:]]
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    b = build(data)
    b.load_state_dict(state)
    assert [b.update(batch) for batch in data[2][5:]] == rest_a
    for p, q in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(p, q)
    build(data, update_path="plain").load_state_dict(state)  # a checkpoint resumes on either path
    with pytest.raises(RklBenchError, match="action_noise"):
        build(data, action_noise=0.5).load_state_dict(state)


def test_a_new_learners_config_errors_name_the_key(data):
    with pytest.raises(RklBenchError, match="'action_noise' must be > 0"):
        build(data, action_noise=0.0)
    with pytest.raises(RklBenchError, match="unknown key.*'noise'"):
        build(data, noise=1.0)
