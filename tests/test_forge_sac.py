"""SAC for the forge: fast path equals plain path, resume equals a straight run."""

import json

import numpy as np
import pytest
import torch

from rkl_bench.errors import RklBenchError
from rkl_bench.algos.tanh_gaussian import tanh_gaussian_sample
from rkl_bench.forge.sac import SACAgent, SACConfig
from rkl_bench.forge.train_policy import SACTrainConfig, train_behaviour_policy

SMALL = SACConfig(hidden=(32, 32), batch_size=32)


def _batches(n, obs_dim=5, act_dim=2, b=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append((
            torch.randn(b, obs_dim, generator=g),
            torch.rand(b, act_dim, generator=g) * 2 - 1,
            torch.randn(b, 1, generator=g),
            torch.randn(b, obs_dim, generator=g),
            (torch.rand(b, 1, generator=g) > 0.1).float(),
        ))
    return out


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    mean, log_std = torch.tensor([[0.3, -2.5]]), torch.tensor([[-0.5, 0.2]])
    noise = torch.tensor([[0.7, -1.1]])
    action, log_prob = tanh_gaussian_sample(mean, log_std, noise)
    u = mean + log_std.exp() * noise
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    expected = base - torch.log(1 - torch.tanh(u) ** 2).sum(-1)
    assert torch.allclose(action, torch.tanh(u))
    assert torch.allclose(log_prob, expected, atol=1e-5)


def test_fast_path_matches_plain_path_and_stays_finite():
    plain = SACAgent(5, 2, SMALL, seed=3, fast=False)
    fast = SACAgent(5, 2, SMALL, seed=3, fast=True)
    for batch in _batches(25):
        m_plain = plain.update(batch)
        m_fast = fast.update(batch)
    assert fast.fast, "the compiled path fell back to plain"
    for p, q in zip([*plain.actor.parameters(), *plain.critic.parameters()],
                    [*fast.actor.parameters(), *fast.critic.parameters()]):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(plain.log_alpha, fast.log_alpha, rtol=1e-4, atol=1e-6)
    assert m_plain["critic_loss"] == pytest.approx(m_fast["critic_loss"], rel=1e-4)
    assert fast.parameters_finite()
    # the update moved the weights: not a no-op
    assert not torch.equal(fast.log_alpha, torch.zeros(1))


def test_compile_failure_falls_back_with_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated compiler failure")

    monkeypatch.setattr(torch, "compile", broken)
    agent = SACAgent(5, 2, SMALL, seed=0, fast=True)
    plain = SACAgent(5, 2, SMALL, seed=0, fast=False)
    batch = _batches(1)[0]
    with pytest.warns(UserWarning, match="falling back"):
        metrics = agent.update(batch)
    assert not agent.fast and np.isfinite(metrics["critic_loss"])
    assert metrics == plain.update(batch)  # the failed update was redone on the plain path


def _tiny_config():
    return SACTrainConfig(
        start_steps=100, eval_every=150, eval_episodes=2, checkpoint_every=150,
        snapshot_every=150, max_episode_steps=60, sac=SMALL,
    )


def _state(work):
    return torch.load(work / "checkpoint" / "state.pt", weights_only=False)


def test_resumed_run_equals_straight_run(tmp_path):
    cfg = _tiny_config()
    straight = train_behaviour_policy("hopper", 400, seed=1, work_dir=tmp_path / "a",
                                      config=cfg, fast=False, progress=False, init_agent=None)
    resumed = tmp_path / "b"
    train_behaviour_policy("hopper", 400, seed=1, work_dir=resumed, config=cfg,
                           fast=False, progress=False, init_agent=None, stop_after=230)
    assert _state(resumed)["steps"] == 230
    train_behaviour_policy("hopper", 400, seed=1, work_dir=resumed, config=cfg, fast=False, progress=False, init_agent=None)
    a, b = _state(straight), _state(resumed)
    assert a["steps"] == b["steps"] == 400
    for key in a["agent"]["actor"]:
        assert torch.equal(a["agent"]["actor"][key], b["agent"]["actor"][key]), key
    assert np.array_equal(a["mj_state"], b["mj_state"])
    log_a = [json.loads(x) for x in (straight / "eval_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(x) for x in (resumed / "eval_log.jsonl").read_text().splitlines()]
    assert [r["returns"] for r in log_a] == [r["returns"] for r in log_b]
    assert [r["step"] for r in log_b] == [150, 300]
    assert sorted(p.name for p in (resumed / "snapshots").iterdir()) == ["actor_0000150.pt", "actor_0000300.pt"]


def test_unknown_env_and_mismatched_work_dir_are_clear_errors(tmp_path):
    with pytest.raises(RklBenchError, match="unknown forge env 'ant'"):
        train_behaviour_policy("ant", 10, work_dir=tmp_path / "x", progress=False, init_agent=None)
    cfg = _tiny_config()
    train_behaviour_policy("hopper", 120, seed=0, work_dir=tmp_path / "w", config=cfg, fast=False, progress=False, init_agent=None)
    with pytest.raises(RklBenchError, match="different settings"):
        train_behaviour_policy("hopper", 120, seed=5, work_dir=tmp_path / "w", config=cfg, fast=False, progress=False, init_agent=None)
