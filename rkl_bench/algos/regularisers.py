"""Behaviour-cloning regularisers of the paper's Table I, as per-sample losses.

Every function returns a loss of shape ``(B,)`` that the actor MINIMISES; the
learner multiplies it by its per-state weight (``lambda(s)``, Eq. 18, or a
constant) and averages over the batch. Deterministic-policy forms reduce the
action dimension by its MEAN, so ``mse(mu, a).mean()`` is exactly
``F.mse_loss(mu, a)``, i.e. TD3+BC (Eq. 6) to the last bit. That keeps
TD3+BC's ``q_weight = 2.5`` meaningful for every form here.

Forms (see ``docs/regularisers.md`` for what each does to a bimodal action
distribution, measured on the Fig. 2 toy):

* ``mse``      Eq. 6, TD3+BC: mean-seeking.
* ``squared``  Eq. 7, the paper's practical TD3+RKL form:
  ``(mu - a)^2 - rkl_alpha * (mu - (a1 + a2)/2)^2``. In expectation over the
  dataset its ``mu``-dependence is ``(1 - rkl_alpha) * (mu - E[a])^2`` plus a
  cross-state term: it is a *scaled MSE* for ``rkl_alpha < 1``, has no
  restoring force at all at ``rkl_alpha = 1`` (the paper's value), and is
  concave (runs to the action bounds) for ``rkl_alpha > 1``. It is not
  mode-seeking; keep that in mind before trusting it on mixed data.
* ``kernel``   Eq. 17 as a loss, the mode-seeking form the paper derives from
  the reverse KL (Eq. 12-16) before dropping the exponential:
  ``-exp(-d(mu, a)/(2 sigma^2)) + rkl_alpha * exp(-d(mu, (a1+a2)/2)/(2 sigma^2))``,
  with the same negative sample ``(a1 + a2)/2`` as Eq. 7.

Kernel convention: ``d(x, y)`` is the squared distance AVERAGED over action
dimensions, ``mean_j (x_j - y_j)^2``, not summed. Reasons: (1) ``sigma`` then
means the same on a 3-D Hopper action as on a 6-D HalfCheetah action; (2) near
the data the kernel is a scaled MSE, ``-exp(-m/(2 sigma^2)) = -1 + m/(2 sigma^2)
+ O(m^2)``, and with ``sigma^2 = 1/2`` its gradient equals the ``mse`` form's,
so ``q_weight`` keeps its TD3+BC meaning. The summed convention of the
Gaussian density in Eq. 17 with width ``sigma_sum`` is this form with
``sigma = sigma_sum / sqrt(act_dim)``.

The stochastic-policy signals of Fig. 5 (CDC's forward KL, Eq. 4, and BRAC's
reverse KL, Eq. 5) are here too, for pure-BC comparisons; they sum over action
dimensions because they are log-densities of the joint action.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.distributions import Distribution

from rkl_bench.errors import RklBenchError

FORMS = ("mse", "squared", "kernel")
"""Deterministic-policy BC forms understood by :func:`bc_loss`."""


def negative_sample(a1: Tensor, a2: Tensor) -> Tensor:
    """The paper's negative action sample ``(a1 + a2) / 2`` (Section IV-A).

    ``a1`` and ``a2`` are two actions drawn uniformly from the whole dataset,
    independently of the batch's states; their midpoint lies in the convex hull
    of the dataset's actions.
    """
    return 0.5 * (a1 + a2)


def mse(mu: Tensor, a: Tensor) -> Tensor:
    """TD3+BC's BC term (Eq. 6): ``mean_j (mu_j - a_j)^2`` per sample, shape ``(B,)``."""
    return (mu - a).pow(2).mean(dim=-1)


def rkl_squared(mu: Tensor, a: Tensor, a1: Tensor, a2: Tensor, rkl_alpha: float) -> Tensor:
    """The practical TD3+RKL regulariser (Eq. 7), per sample, shape ``(B,)``.

    ``(mu - a)^2 - rkl_alpha * (mu - (a1 + a2)/2)^2``, averaged over action
    dimensions. ``rkl_alpha = 0`` is exactly :func:`mse`.
    """
    push_to_data = (mu - a).pow(2)
    push_from_negative = (mu - negative_sample(a1, a2)).pow(2)
    return (push_to_data - rkl_alpha * push_from_negative).mean(dim=-1)


def rkl_kernel(mu: Tensor, a: Tensor, a1: Tensor, a2: Tensor, rkl_alpha: float, sigma: float) -> Tensor:
    """Eq. 17 as a loss (negated), per sample, shape ``(B,)``.

    ``-exp(-m(mu, a)/(2 sigma^2)) + rkl_alpha * exp(-m(mu, (a1+a2)/2)/(2 sigma^2))``
    with ``m`` the squared distance averaged over action dimensions (module
    docstring). The first term pulls ``mu`` towards the dataset action only
    when it is already within a few ``sigma`` of it, so a bimodal action set
    pulls ``mu`` to its nearest mode instead of the middle: mode-seeking.
    """
    _check_sigma(sigma)
    scale = 1.0 / (2.0 * sigma * sigma)
    positive = torch.exp(-scale * (mu - a).pow(2).mean(dim=-1))
    negative = torch.exp(-scale * (mu - negative_sample(a1, a2)).pow(2).mean(dim=-1))
    return -positive + rkl_alpha * negative


def bc_loss(
    form: str,
    mu: Tensor,
    a: Tensor,
    a1: Tensor | None,
    a2: Tensor | None,
    rkl_alpha: float,
    sigma: float,
) -> Tensor:
    """Dispatch to one BC form by name; per-sample loss of shape ``(B,)``.

    ``a1``/``a2`` may be ``None`` only for ``"mse"``; ``sigma`` is used by
    ``"kernel"`` only, ``rkl_alpha`` by ``"squared"`` and ``"kernel"``.
    """
    if form == "mse":
        return mse(mu, a)
    if form not in FORMS:
        raise RklBenchError(f"unknown BC form {form!r}; choose one of: {', '.join(FORMS)}")
    if a1 is None or a2 is None:
        raise RklBenchError(f"BC form {form!r} needs the negative actions a1 and a2 (Eq. 7); got None")
    if form == "squared":
        return rkl_squared(mu, a, a1, a2, rkl_alpha)
    return rkl_kernel(mu, a, a1, a2, rkl_alpha, sigma)


REGULARISERS: dict[str, Callable[..., Tensor]] = {
    "mse": mse,
    "squared": rkl_squared,
    "kernel": rkl_kernel,
}
"""Name -> function, for code that wants the function itself."""


# ---------------------------------------------------------- stochastic (Fig. 5)
def forward_kl(policy: Distribution, a: Tensor) -> Tensor:
    """CDC's BC signal (Eq. 4): ``KL(pi_b || pi_phi)`` up to a constant, ``-log pi_phi(a|s)``.

    ``policy`` is the learned stochastic policy at the batch's states, with
    ``log_prob`` returning per-dimension (``Normal``) or joint
    (``Independent``) log-densities; shape ``(B,)`` either way.
    """
    return -_joint(policy.log_prob(a), a)


def reverse_kl(
    policy: Distribution,
    behaviour_log_prob: Callable[[Tensor], Tensor],
    n_samples: int = 1,
    noise: Tensor | None = None,
) -> Tensor:
    """BRAC's BC signal (Eq. 5, Eq. 13): ``KL(pi_phi || pi_b)`` estimated by sampling.

    ``E_{x ~ pi_phi}[log pi_phi(x|s) - log pi_b(x|s)]`` with ``n_samples``
    reparameterised draws per state. ``behaviour_log_prob`` maps actions of
    shape ``(n, B, act_dim)`` to joint log-densities ``(n, B)`` under the
    fitted behaviour model (e.g. ``lambda x: model.log_prob(obs, x)``). The
    ``log pi_phi`` part is the negative entropy the paper warns about (Eq. 13).
    ``noise`` (standard normal, ``(n, B, act_dim)``) is handed to the policy's
    ``rsample`` when the draws were made before the update
    (:class:`~rkl_bench.algos.tanh_gaussian.TanhGaussian`).
    """
    if n_samples < 1:
        raise RklBenchError(f"reverse_kl needs n_samples >= 1, got {n_samples}")
    if noise is None:
        x = policy.rsample((n_samples,))
    else:
        x = policy.rsample((n_samples,), noise=noise)  # type: ignore[call-arg]
    log_pi = _joint(policy.log_prob(x), x)
    return (log_pi - behaviour_log_prob(x)).mean(dim=0)


def _joint(log_prob: Tensor, actions: Tensor) -> Tensor:
    """Sum per-dimension log-densities over the action axis if not already joint."""
    return log_prob.sum(dim=-1) if log_prob.dim() == actions.dim() else log_prob


def _check_sigma(sigma: float) -> None:
    if not sigma > 0.0:
        raise RklBenchError(f"kernel BC form needs sigma > 0, got {sigma!r}; pass a positive kernel width")
