"""The learners' fast update paths (rkl_bench/algos/fast.py) against their plain paths.

Every comparison feeds both paths identical weights (same seed), batches and
noise, and compares numbers: parameters within float tolerance after several
steps (the paths round differently: oneDNN vs MKL, fused kernels), bit-exact
resume within one path, finite parameters, and a compile failure that warns
and continues on the plain path.

Tests that run ``torch.compile`` cost a compile per learner (20-60 s on a
loaded 2-core machine with a cold inductor cache; a few seconds once its
on-disk cache is warm), so they are ``slow`` (``pytest -m slow``). The
default suite runs every learner's fast step uncompiled (``compile=False``:
the same functional networks, pre-drawn noise, Adam mirror, in-place writes
and checkpoint handling) against its plain path, and the compile-failure
fall-back (with ``torch.compile`` made to fail). ``tests/test_forge_sac.py``
compiles SAC's fast step in the default suite.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from rkl_bench.algos import make_learner
from rkl_bench.algos import fast as fastmod
from rkl_bench.algos.nets import EnsembleCritic, critic_apply, mlp, mlp_apply
from rkl_bench.data.dataset import OfflineDataset, TensorSampler

TINY = {"hidden_dim": 32, "fast_after": 0}
RKL_TINY = {**TINY, "behaviour_steps": 40, "behaviour_hidden_dim": 16}
BRAC_TINY = {"actor_hidden_dim": 32, "critic_hidden_dim": 32, "behaviour_steps": 40, "behaviour_hidden_dim": 16,
             "warm_start": 3, "value_penalty": True, "fast_after": 0}
CDC_TINY = {"hidden_dim": 32, "num_samples": 3, "fast_after": 0}
HP = {"bc": TINY, "td3_bc": TINY, "td3_rkl": RKL_TINY, "brac": BRAC_TINY, "cdc": CDC_TINY}


def synthetic_dataset(n: int = 600, obs_dim: int = 5, act_dim: int = 2, seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    obs = rng.normal(3.0, 2.0, size=(n, obs_dim)).astype(np.float32)
    w = rng.normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    actions = np.clip(np.tanh(((obs - 3.0) / 2.0) @ w) + 0.2 * rng.normal(size=(n, act_dim)), -1, 1)
    next_obs = obs + 0.1 * rng.normal(size=obs.shape)
    rewards = -(actions**2).sum(1) + 0.1 * obs[:, 0]
    terminals = (rng.random(n) < 0.02).astype(np.float32)
    return OfflineDataset(obs, actions.astype(np.float32), rewards.astype(np.float32), next_obs.astype(np.float32),
                          terminals, env="toy", name="synthetic", version="test")


@pytest.fixture(scope="module")
def dataset() -> OfflineDataset:
    return synthetic_dataset()


@pytest.fixture(scope="module")
def batches(dataset):
    sampler = TensorSampler(dataset, 32, 4, *dataset.state_stats())
    return [sampler.sample() for _ in range(9)]  # 4 actor steps for TD3, ends on a critic-only step


def tensors(learner) -> list[torch.Tensor]:
    """Networks, targets and Adam moments, in a fixed order."""
    out = []
    for name in ("actor", "critic", "actor_target", "critic_target"):
        if hasattr(learner, name):
            out += [p.detach().clone() for p in getattr(learner, name).parameters()]
    return out


def adam_steps(learner) -> list[float]:
    state = learner.state_dict()
    keys = [k for k in state if k.endswith("optimizer")]
    return [float(s["step"]) for k in keys for s in state[k]["state"].values()]


def build(name, dataset, path, eager=False, **extra):
    """A learner on ``path``; ``eager=True`` runs its fast step uncompiled (same code, no compile cost)."""
    learner = make_learner(name, dataset, {**HP[name], "update_path": path, **extra}, seed=1)
    if eager and learner._fast is not None:
        learner._fast.compiled._compile = False
    return learner


def assert_close_lists(a, b, rtol=1e-4, atol=1e-5):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- building blocks
def test_dnn_linear_matches_addmm_values_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(40, 24, requires_grad=True)
    w = torch.randn(32, 24, requires_grad=True)  # (out, in)
    b = torch.randn(32, requires_grad=True)
    w_io = torch.randn(24, 32, requires_grad=True)  # (in, out)
    for fn, ref in ((lambda: fastmod.linear(x, w, b), lambda: torch.addmm(b, x, w.t())),
                    (lambda: fastmod.linear_in_out(x, w_io, b), lambda: torch.addmm(b, x, w_io))):
        out, expected = fn(), ref()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(out)
        grads = torch.autograd.grad(out, [x, w, w_io, b], g, allow_unused=True)
        grads_ref = torch.autograd.grad(expected, [x, w, w_io, b], g, allow_unused=True)
        for got, want in zip(grads, grads_ref):
            assert (got is None) == (want is None)
            if got is not None:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
                assert got.is_contiguous()  # weight gradients come out in the weight's own layout


def test_functional_forms_equal_the_modules():
    torch.manual_seed(1)
    net, critic = mlp(5, 3, (32, 32)), EnsembleCritic(5, 2, (32, 32), members=2)
    obs, act = torch.randn(16, 5), torch.randn(16, 2)
    torch.testing.assert_close(mlp_apply(list(net.parameters()), obs), net(obs), rtol=1e-5, atol=1e-6)
    for dnn in (True, False):
        torch.testing.assert_close(critic_apply(list(critic.parameters()), obs, act, dnn), critic(obs, act),
                                   rtol=1e-5, atol=1e-6)


def test_adam_step_mirrors_torch_adam():
    torch.manual_seed(2)
    for fused in (False, True):
        p = torch.randn(7, 3, requires_grad=True)
        q = p.detach().clone()
        opt = torch.optim.Adam([p], lr=1e-2, fused=fused)
        mirror = fastmod.AdamState(torch.optim.Adam([torch.zeros(7, 3, requires_grad=True)], lr=1e-2, fused=fused))
        m, v = torch.zeros_like(q), torch.zeros_like(q)
        for _ in range(5):
            g = torch.randn(7, 3)
            p.grad = g.clone()
            opt.step()
            bc1, bc2 = mirror.advance()
            (q,), (m,), (v,) = fastmod.adam_step([q], [g], [m], [v], bc1, bc2, 1e-2)
        torch.testing.assert_close(q, p.detach(), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- eager fast step == plain
@pytest.mark.parametrize("name", ["bc", "td3_bc", "td3_rkl", "brac", "cdc"])
def test_eager_fast_step_equals_plain_path(dataset, batches, name):
    """The fast step's maths (functional nets, Adam mirror, pre-drawn noise) without compiling."""
    plain = build(name, dataset, "plain")
    fast = build(name, dataset, "fast", eager=True)
    for b in batches:
        m_plain, m_fast = plain.update(b), fast.update(b)
        assert m_plain.keys() == m_fast.keys()
        for key in m_plain:
            assert m_fast[key] == pytest.approx(m_plain[key], rel=1e-4, abs=1e-6), key
    assert fast._fast is not None
    assert_close_lists(tensors(plain), tensors(fast))
    assert adam_steps(plain) == adam_steps(fast)
    assert fast.parameters_finite()


# ---------------------------------------------------------------- compiled fast path
def _compiled_equals_plain(dataset, batches, name):
    plain, fast = build(name, dataset, "plain"), build(name, dataset, "fast")
    for b in batches:
        m_plain, m_fast = plain.update(b), fast.update(b)
        for key in m_plain:
            assert m_fast[key] == pytest.approx(m_plain[key], rel=1e-4, abs=1e-6), key
    assert fast._fast is not None and fast._fast.compiled.calls == len(batches), "fell back to the plain path"
    assert_close_lists(tensors(plain), tensors(fast))
    assert adam_steps(plain) == adam_steps(fast)
    assert fast.parameters_finite()
    moved = [not torch.equal(a, b) for a, b in zip(tensors(build(name, dataset, "plain")), tensors(fast))]
    assert all(moved[: len(list(fast.actor.parameters()))]), "the actor did not train"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["td3_bc", "bc", "td3_rkl", "brac", "cdc"])
def test_compiled_fast_path_equals_plain_path(dataset, batches, name):
    _compiled_equals_plain(dataset, batches, name)


@pytest.mark.parametrize("eager", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_fast_path_resumes_bit_exactly_and_is_deterministic(dataset, batches, eager):
    a = build("td3_bc", dataset, "fast", eager)
    for b in batches[:5]:
        a.update(b)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    rest_a = [a.update(b) for b in batches[5:]]
    buf.seek(0)
    fresh = build("td3_bc", dataset, "fast", eager)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    rest_b = [fresh.update(b) for b in batches[5:]]
    assert rest_a == rest_b
    for x, y in zip(tensors(a), tensors(fresh)):
        assert torch.equal(x, y)
    twin = build("td3_bc", dataset, "fast", eager)  # same seed, same batches: identical numbers
    for b in batches:
        twin.update(b)
    for x, y in zip(tensors(a), tensors(twin)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("eager", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_checkpoints_cross_between_paths(dataset, batches, eager):
    """A plain checkpoint resumes on the fast path (and back) within float tolerance."""
    plain = build("td3_bc", dataset, "plain")
    for b in batches[:4]:
        plain.update(b)
    state = plain.state_dict()
    fast = build("td3_bc", dataset, "fast", eager)
    fast.load_state_dict(state)
    for b in batches[4:]:
        plain.update(b)
        fast.update(b)
    assert_close_lists(tensors(plain), tensors(fast))
    assert adam_steps(plain) == adam_steps(fast)
    back = build("td3_bc", dataset, "plain")
    back.load_state_dict(fast.state_dict())
    assert adam_steps(back) == adam_steps(plain)


def test_fast_after_runs_the_first_updates_on_the_plain_path(dataset, batches):
    plain = build("td3_bc", dataset, "plain")
    late = build("td3_bc", dataset, "fast", fast_after=4)
    for b in batches[:4]:
        plain.update(b)
        late.update(b)
    assert late._fast.compiled.calls == 0
    for x, y in zip(tensors(plain), tensors(late)):
        assert torch.equal(x, y)  # nothing compiled yet: the plain path itself


def test_compile_failure_warns_and_continues_on_the_plain_path(dataset, batches, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated compiler failure")

    monkeypatch.setattr(torch, "compile", broken)
    plain = build("td3_bc", dataset, "plain")
    fast = build("td3_bc", dataset, "fast")
    with pytest.warns(UserWarning, match="falling back to the plain path"):
        for b in batches:
            m_fast = fast.update(b)
            m_plain = plain.update(b)
            assert m_fast == m_plain
    assert fast._fast is None
    for x, y in zip(tensors(plain), tensors(fast)):
        assert torch.equal(x, y)  # the failed step was redone on the plain path, counts intact
    assert adam_steps(plain) == adam_steps(fast)


@pytest.mark.slow
def test_learners_leave_the_global_rng_alone_on_the_fast_path(dataset, batches):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    learner = build("td3_bc", dataset, "fast")
    for b in batches[:3]:
        learner.update(b)
    assert torch.equal(torch.rand(3), expected)


def test_update_path_is_validated_and_does_not_block_resume(dataset):
    from rkl_bench.errors import RklBenchError

    with pytest.raises(RklBenchError, match="update_path"):
        make_learner("td3_bc", dataset, {"update_path": "turbo"}, seed=0)
    plain = build("bc", dataset, "plain")
    state = plain.state_dict()
    del state["config"]["update_path"], state["config"]["fast_after"]  # a checkpoint from before they existed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build("bc", dataset, "fast").load_state_dict(state)
