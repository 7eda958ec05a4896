"""The tanh-Gaussian policy's maths, in one place: sampling, log-density, the log-std squash.

A tanh-Gaussian draws ``u ~ N(mean, std^2)`` per action dimension and acts
``x = tanh(u)``, so its actions lie in ``(-1, 1)``. SAC's actor (the forge),
BRAC's and CDC's policies, BRAC's behaviour policy and the Fig. 5 KL signals
all use one; the networks that produce ``(mean, log_std)`` are in
:mod:`rkl_bench.algos.nets` (:class:`~rkl_bench.algos.nets.GaussianHead`,
:class:`~rkl_bench.algos.nets.TanhGaussianActor`).

* :func:`squash_log_std`: a network's raw output mapped smoothly into
  ``[log_std_min, log_std_max]`` (BRAC's ``ActorNetwork``), so the std can
  neither collapse nor explode.
* :func:`tanh_gaussian_sample`: a reparameterised sample for given
  standard-normal noise, with its exact log-density (no ``atanh``).
* :func:`tanh_gaussian_log_prob`: the log-density at given actions (dataset
  actions: clipped into the open interval first).
* :class:`TanhGaussian`: the policy at a batch of states, duck-typed for
  :mod:`rkl_bench.algos.regularisers` (``rsample``, ``log_prob``).

Noise is always handed in or drawn from a named ``torch.Generator``, never
from the global RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
CLIP_EPS = 1e-3
"""BRAC's ``CLIP_EPS``: dataset actions are clipped to ``[-1 + eps, 1 - eps]`` before ``atanh``."""


def squash_log_std(raw: Tensor, log_std_min: float, log_std_max: float) -> Tensor:
    """``raw`` mapped smoothly onto ``[log_std_min, log_std_max]`` (``tanh``, shifted and scaled)."""
    return log_std_min + 0.5 * (log_std_max - log_std_min) * (torch.tanh(raw) + 1.0)


def normal_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """Per-dimension ``log N(x; mean, exp(log_std)^2)``."""
    return -0.5 * ((x - mean) * torch.exp(-log_std)).pow(2) - log_std - 0.5 * LOG_2PI


def tanh_gaussian_log_prob(actions: Tensor, mean: Tensor, log_std: Tensor, clip_eps: float = CLIP_EPS) -> Tensor:
    """Joint ``log pi(a|s)`` at given actions, ``(..., act) -> (...)``.

    ``a`` is clipped to ``[-1 + clip_eps, 1 - clip_eps]`` first (actions at the
    bound have no finite density), then ``u = atanh(a)`` and
    ``log N(u; mean, std) - log(1 - a^2)`` summed over action dimensions.
    ``mean``/``log_std`` broadcast against leading sample dimensions.
    """
    a = actions.clamp(-1.0 + clip_eps, 1.0 - clip_eps)
    u = torch.atanh(a)
    return (normal_log_prob(u, mean, log_std) - torch.log1p(-a.pow(2))).sum(dim=-1)


def tanh_gaussian_sample(mean: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Reparameterised ``x = tanh(mean + std * noise)`` and its joint log-density ``log pi(x)``.

    The density uses the pre-tanh ``u`` and ``log(1 - tanh(u)^2) =
    2 (log 2 - u - softplus(-2u))``, exact even where ``tanh`` saturates.
    """
    u = mean + torch.exp(log_std) * noise
    log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI).sum(dim=-1)
    log_prob = log_prob - (2.0 * (LOG_2 - u - F.softplus(-2.0 * u))).sum(dim=-1)
    return torch.tanh(u), log_prob


class TanhGaussian:
    """A tanh-squashed diagonal Gaussian at a batch of states, ``mean``/``log_std`` ``(B, act)``.

    Duck-types the two methods of ``torch.distributions`` that
    :mod:`rkl_bench.algos.regularisers` calls. :meth:`rsample` takes its
    standard-normal ``noise`` from the caller (drawn before the update, so a
    loss stays a pure function) or draws it from ``generator``; like
    ``TransformedDistribution``'s cache, :meth:`log_prob` of the latest sample
    comes from its pre-tanh value instead of ``atanh``.
    """

    def __init__(self, mean: Tensor, log_std: Tensor, generator: torch.Generator | None = None,
                 clip_eps: float = CLIP_EPS) -> None:
        self.mean, self.log_std, self.clip_eps, self.generator = mean, log_std, clip_eps, generator
        self._sample: Tensor | None = None
        self._sample_log_prob: Tensor | None = None

    @property
    def mode(self) -> Tensor:
        return torch.tanh(self.mean)

    def rsample(self, sample_shape: tuple[int, ...] = (), noise: Tensor | None = None) -> Tensor:
        """A sample of shape ``(*sample_shape, B, act)``: from ``noise`` when given, else drawn from the generator."""
        shape = (*sample_shape, *self.mean.shape)
        if noise is None:
            noise = torch.randn(shape, generator=self.generator, device=self.mean.device, dtype=self.mean.dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"TanhGaussian.rsample: noise of shape {tuple(noise.shape)} for samples of shape {shape}")
        x, log_prob = tanh_gaussian_sample(self.mean, self.log_std, noise)
        self._sample, self._sample_log_prob = x, log_prob
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """Joint log-density ``(..., act) -> (...)``."""
        if x is self._sample:
            return self._sample_log_prob  # type: ignore[return-value]
        return tanh_gaussian_log_prob(x, self.mean, self.log_std, self.clip_eps)
