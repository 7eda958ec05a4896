"""The BC regularisers: exact values, the TD3+BC identity, the kernel convention, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from rkl_bench.algos.regularisers import (
    FORMS,
    REGULARISERS,
    bc_loss,
    forward_kl,
    mse,
    negative_sample,
    reverse_kl,
    rkl_kernel,
    rkl_squared,
)
from rkl_bench.errors import RklBenchError


def _batch(b=32, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(b, d, generator=g) * 2 - 1 for _ in range(4)]


def test_mse_batch_mean_is_td3_bc_mse_loss():
    mu, a, _, _ = _batch()
    loss = mse(mu, a)
    assert loss.shape == (32,)
    torch.testing.assert_close(loss.mean(), F.mse_loss(mu, a))


def test_every_form_returns_one_loss_per_sample():
    mu, a, a1, a2 = _batch(b=5, d=3)
    for form in FORMS:
        out = bc_loss(form, mu, a, a1, a2, 1.0, 0.3)
        assert out.shape == (5,), form
        assert torch.isfinite(out).all()
    assert set(REGULARISERS) == set(FORMS)


def test_squared_form_matches_eq7_by_hand():
    mu = torch.tensor([[0.5, -0.5]])
    a = torch.tensor([[0.0, 0.0]])
    a1 = torch.tensor([[1.0, 1.0]])
    a2 = torch.tensor([[-1.0, 0.0]])
    # negative sample (0, 0.5): ((0.25 + 0.25) - 0.5 * (0.25 + 1.0)) / 2
    expected = ((0.25 + 0.25) - 0.5 * (0.25 + 1.0)) / 2
    torch.testing.assert_close(rkl_squared(mu, a, a1, a2, 0.5), torch.tensor([expected]))
    torch.testing.assert_close(negative_sample(a1, a2), torch.tensor([[0.0, 0.5]]))


def test_squared_form_with_alpha_zero_is_mse():
    mu, a, a1, a2 = _batch()
    torch.testing.assert_close(rkl_squared(mu, a, a1, a2, 0.0), mse(mu, a))


def test_kernel_form_matches_eq17_by_hand_with_mean_over_dims():
    mu = torch.tensor([[0.2, 0.4]])
    a = torch.tensor([[0.0, 0.0]])
    a1 = torch.tensor([[1.0, 0.0]])
    a2 = torch.tensor([[1.0, 0.0]])
    sigma = 0.5
    pos = math.exp(-((0.04 + 0.16) / 2) / (2 * sigma**2))
    neg = math.exp(-((0.64 + 0.16) / 2) / (2 * sigma**2))
    out = rkl_kernel(mu, a, a1, a2, 0.7, sigma)
    torch.testing.assert_close(out, torch.tensor([-pos + 0.7 * neg]))


def test_kernel_mean_convention_equals_summed_density_with_scaled_sigma():
    """Documented: summed-norm Eq. 17 with sigma * sqrt(d) == this mean-norm form with sigma."""
    mu, a, a1, a2 = _batch(b=8, d=6)
    sigma = 0.4
    s = sigma * math.sqrt(6)
    summed = -torch.exp(-((mu - a) ** 2).sum(-1) / (2 * s**2)) + 0.9 * torch.exp(
        -((mu - (a1 + a2) / 2) ** 2).sum(-1) / (2 * s**2)
    )
    torch.testing.assert_close(rkl_kernel(mu, a, a1, a2, 0.9, sigma), summed)


def test_kernel_gradient_near_data_equals_mse_gradient_at_sigma_sqrt_half():
    a = torch.tensor([[0.3, -0.2, 0.1]])
    far = torch.full_like(a, 50.0)  # negative term vanishes
    mu = (a + 1e-3).requires_grad_(True)
    (g_kernel,) = torch.autograd.grad(rkl_kernel(mu, a, far, far, 1.0, math.sqrt(0.5)).sum(), mu)
    mu2 = (a + 1e-3).requires_grad_(True)
    (g_mse,) = torch.autograd.grad(mse(mu2, a).sum(), mu2)
    torch.testing.assert_close(g_kernel, g_mse, rtol=1e-4, atol=1e-8)


def test_kernel_pulls_to_nearest_action_not_to_the_middle():
    """Gradient of the positive term at mu between two actions points to the closer one."""
    a_left = torch.tensor([[-0.6]])
    a_right = torch.tensor([[0.6]])
    far = torch.tensor([[50.0]])
    mu = torch.tensor([[0.3]], requires_grad=True)
    loss = rkl_kernel(mu, a_left, far, far, 0.0, 0.15) + rkl_kernel(mu, a_right, far, far, 0.0, 0.15)
    (grad,) = torch.autograd.grad(loss.sum(), mu)
    assert grad.item() < 0  # descent moves mu up, towards +0.6
    mu = torch.tensor([[0.3]], requires_grad=True)
    (grad_mse,) = torch.autograd.grad((mse(mu, a_left) + mse(mu, a_right)).sum(), mu)
    assert grad_mse.item() > 0  # MSE moves mu down, towards the middle


def test_unknown_form_is_a_clear_error():
    mu, a, a1, a2 = _batch(b=2, d=2)
    with pytest.raises(RklBenchError, match=r"unknown BC form 'l1'.*mse, squared, kernel"):
        bc_loss("l1", mu, a, a1, a2, 1.0, 0.1)


def test_negative_samples_required_except_for_mse():
    mu, a, _, _ = _batch(b=2, d=2)
    torch.testing.assert_close(bc_loss("mse", mu, a, None, None, 1.0, 0.1), mse(mu, a))
    with pytest.raises(RklBenchError, match="needs the negative actions"):
        bc_loss("squared", mu, a, None, None, 1.0, 0.1)


def test_kernel_rejects_non_positive_sigma():
    mu, a, a1, a2 = _batch(b=2, d=2)
    with pytest.raises(RklBenchError, match="sigma > 0"):
        bc_loss("kernel", mu, a, a1, a2, 1.0, 0.0)


def test_forward_kl_is_negative_joint_log_likelihood():
    mean, a = torch.zeros(4, 3), torch.full((4, 3), 0.5)
    policy = Normal(mean, torch.ones(4, 3))
    expected = -policy.log_prob(a).sum(-1)
    torch.testing.assert_close(forward_kl(policy, a), expected)
    torch.testing.assert_close(forward_kl(Independent(policy, 1), a), expected)


def test_reverse_kl_estimate_matches_closed_form():
    torch.manual_seed(0)
    policy = Normal(torch.full((2, 3), 0.3), torch.full((2, 3), 0.5))
    behaviour = Normal(torch.zeros(2, 3), torch.ones(2, 3))
    est = reverse_kl(policy, lambda x: behaviour.log_prob(x).sum(-1), n_samples=20000)
    exact = kl_divergence(policy, behaviour).sum(-1)
    assert est.shape == (2,)
    torch.testing.assert_close(est, exact, atol=0.02, rtol=0.0)
    with pytest.raises(RklBenchError, match="n_samples"):
        reverse_kl(policy, lambda x: x.sum(-1), n_samples=0)
