"""BRAC's behaviour policy ``pi_b``: a tanh-Gaussian fitted with BRAC's entropy bonus.

BRAC (Wu et al., 2019) and the reverse-KL BC signal of Fig. 5
(``bc_reverse_kl``) need a behaviour policy whose samples and densities live
in the action box: :class:`~rkl_bench.algos.behaviour.GaussianBehaviour` with
``squash="tanh"``, fitted by maximum likelihood plus BRAC's tuned entropy
bonus (its ``bc_agent.py``; docs/baselines.md). TD3+RKL's own behaviour model
(:func:`~rkl_bench.algos.behaviour.fit_behaviour`) is plain maximum
likelihood and keeps only the log-variance. Both fits go through the
behaviour cache (:mod:`.behaviour_cache`), under different kinds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from rkl_bench.algos.behaviour import GaussianBehaviour
from rkl_bench.algos.behaviour_cache import fit_settings, load_or_fit
from rkl_bench.algos.config import Checked, positive, positive_int
from rkl_bench.algos.nets import adam, make_generator, seeded_init
from rkl_bench.algos.tanh_gaussian import CLIP_EPS, tanh_gaussian_log_prob, tanh_gaussian_sample


@dataclass(frozen=True)
class TanhBehaviourFit(Checked):
    """How BRAC's behaviour policy is fitted (defaults: BRAC's ``run_bc.sh`` / ``bc_agent.py``)."""

    steps: int = 300_000
    batch_size: int = 256
    lr: float = 5e-4
    hidden_dim: int = 200
    hidden_layers: int = 2
    entropy_bonus: bool = True
    """BRAC's BC agent adds ``alpha_e * log pi_b(x)``, ``x ~ pi_b``, with ``alpha_e`` tuned to entropy
    ``-act_dim``; false: plain maximum likelihood."""

    def check(self) -> None:
        positive_int(self, "steps", "batch_size", "hidden_dim", "hidden_layers")
        positive(self, "lr")

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.hidden_dim,) * self.hidden_layers


TANH_FIT_FIELDS = ("steps", "batch_size", "lr", "hidden_dim", "hidden_layers", "entropy_bonus")
"""The :class:`TanhBehaviourFit` settings the fitted weights depend on (all of them)."""


class _TanhFitRecord(nn.Module):
    """What the behaviour cache keeps of a tanh fit: the model's weights and the entropy weight
    ``alpha_e`` the fit ended with (reported in the fit statistics)."""

    def __init__(self, model: GaussianBehaviour) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("alpha_entropy", torch.zeros((), device=next(model.parameters()).device))


def fit_tanh_behaviour(
    observations: Tensor, actions: Tensor, fit: TanhBehaviourFit, seed: int, progress: bool = False,
    clip_eps: float = CLIP_EPS, fused_adam: bool = True, cache: bool = True,
) -> tuple[GaussianBehaviour, dict[str, float]]:
    """Fit BRAC's behaviour policy ``pi_b`` on NORMALISED states; return it (eval mode) and fit statistics.

    Per minibatch (BRAC's ``bc_agent.py``)::

        L_b     = mean_B [ alpha_e * log pi_b(x|s) - log pi_b(clip(a)|s) ],   x ~ pi_b(.|s)
        L_alpha = alpha_e * mean_B [ -log pi_b(x|s) - target ],               target = -act_dim

    ``alpha_e = relu(v)``, ``v`` starts at 1 and follows Adam on ``L_alpha``
    with BRAC's ``relu_v2`` gradient (zero only when ``v <= 0`` and the
    gradient would lower it further). ``entropy_bonus=False`` is plain
    maximum likelihood. Dataset actions are clipped by ``clip_eps`` (also the
    model's ``tanh_eps``). Seeds: init, batches and sampling noise are
    separate streams of ``seed``; the global RNG is untouched, so reading a
    fit from the behaviour cache (``cache``; shared by ``brac`` and
    ``bc_reverse_kl``, bit-identical to fitting again) leaves every later
    draw of the learner as it was.
    """
    obs, act = observations.float(), actions.float()
    obs_dim, act_dim = obs.shape[1], act.shape[1]
    with seeded_init(seed, "behaviour_init"):
        model = GaussianBehaviour(obs_dim, act_dim, fit.hidden, squash="tanh", beta_normalization="none",
                                  tanh_eps=clip_eps)
    model.to(obs.device)
    record = _TanhFitRecord(model)
    settings = {**fit_settings(fit, TANH_FIT_FIELDS), "clip_eps": clip_eps, "fused_adam": fused_adam}
    load_or_fit(record, lambda: record.alpha_entropy.copy_(_train_tanh(model, obs, act, fit, seed, progress,
                                                                       clip_eps, fused_adam)),
                obs, act, settings, seed, "tanh", cache)
    model.eval()
    model.requires_grad_(False)

    with torch.no_grad():
        nlls, log_stds = [], []
        for o, a in zip(obs.split(65536), act.split(65536)):
            mean, log_std = model(o)
            nlls.append(-tanh_gaussian_log_prob(a, mean, log_std, clip_eps))
            log_stds.append(log_std.mean(dim=-1))
        nll_all, log_std_all = torch.cat(nlls), torch.cat(log_stds)
    stats = {
        "nll": float(nll_all.mean()),
        "log_std_mean": float(log_std_all.mean()),
        "log_std_q05": float(torch.quantile(log_std_all.double(), 0.05)),
        "log_std_q95": float(torch.quantile(log_std_all.double(), 0.95)),
        "alpha_entropy": float(record.alpha_entropy),
        "steps": float(fit.steps),
    }
    return model, stats


def _train_tanh(model: GaussianBehaviour, obs: Tensor, act: Tensor, fit: TanhBehaviourFit, seed: int, progress: bool,
                clip_eps: float, fused_adam: bool) -> Tensor:
    """The Adam steps of :func:`fit_tanh_behaviour` on ``model`` (in place); the final ``alpha_e``."""
    n, act_dim, device = obs.shape[0], act.shape[1], obs.device
    optimiser = adam(model.parameters(), fit.lr, fused_adam, device)
    alpha_var = torch.ones((), device=device, requires_grad=True)
    alpha_optimiser = torch.optim.Adam([alpha_var], lr=fit.lr)
    target_entropy = -float(act_dim)
    batches = make_generator(seed, "behaviour_batches", device)
    noise_gen = make_generator(seed, "behaviour_noise", device)

    bar = tqdm(range(fit.steps), desc="behaviour model", disable=not progress, leave=False, unit="step")
    for step in bar:
        idx = torch.randint(n, (fit.batch_size,), generator=batches, device=device)
        mean, log_std = model(obs.index_select(0, idx))
        nll = -tanh_gaussian_log_prob(act.index_select(0, idx), mean, log_std, clip_eps).mean()
        loss = nll
        if fit.entropy_bonus:
            noise = torch.randn(mean.shape, generator=noise_gen, device=device)
            _, log_pi = tanh_gaussian_sample(mean, log_std, noise)
            loss = loss + alpha_var.detach().clamp_min(0.0) * log_pi.mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if fit.entropy_bonus:
            grad = -log_pi.detach().mean() - target_entropy  # d L_alpha / d alpha_e
            alpha_var.grad = grad * ((alpha_var.detach() > 0) | (grad < 0)).float()  # relu_v2
            alpha_optimiser.step()
        if progress and step % 1000 == 0:
            bar.set_postfix(nll=f"{nll.item():.3f}")
    bar.close()
    return alpha_var.detach().clamp_min(0.0)


def unfitted_tanh_behaviour(
    obs_dim: int, act_dim: int, fit: TanhBehaviourFit, device: torch.device, clip_eps: float = CLIP_EPS
) -> GaussianBehaviour:
    """The behaviour network, unfitted, to load a checkpoint into (``fit=False`` learners)."""
    model = GaussianBehaviour(obs_dim, act_dim, fit.hidden, squash="tanh", beta_normalization="none",
                              tanh_eps=clip_eps)
    return model.to(device).eval().requires_grad_(False)
