"""The four behaviour-cloning signals of Fig. 5, as pure-BC learners, and the
stochastic-policy pieces that BRAC and CDC share.

Fig. 5 of the paper (Sec. V-C) is a controlled study: no RL signal at all,
only one BC signal of Table I, trained on an expert dataset. The four
learners here differ in nothing but that signal (same 256x256 ReLU MLP, Adam
lr 3e-4, batch 256, TD3+BC-normalised states, deterministic evaluation):

* ``bc_weighted_rkl`` (TD3+RKL, Eq. 7 weighted by Eq. 18), deterministic
  ``mu(s)``, its settings are TD3+RKL's (``regulariser``, ``rkl_alpha``,
  ``zeta1``, ``zeta2``, behaviour fit)::

      L = mean_B lambda(s) * reg(mu(s), a, a1, a2)

  With the paper's ``rkl_alpha = 1`` and the squared form, ``reg`` is LINEAR
  in ``mu`` (``2 mu (m - a) + const``, ``m = (a1 + a2)/2``): without a Q term
  nothing holds ``mu`` at the data, and the tanh actor is driven to the
  action bounds, ``mu_j(s) -> sign(E[a_j|s] - E[a_j])`` (tested). The kernel
  form (Eq. 17) or ``rkl_alpha < 1`` clone the data; docs/baselines.md.
* ``bc_mse`` (TD3+BC, Eq. 6): ``L = mean_B mean_j (mu(s) - a)^2``; the ``bc``
  learner under its Fig. 5 name.
* ``bc_forward_kl`` (CDC, Eq. 4): tanh-Gaussian ``pi_phi``,
  ``L = mean_B -log pi_phi(a|s)``, which is ``KL(pi_b || pi_phi)`` up to a
  constant (:func:`~rkl_bench.algos.regularisers.forward_kl`).
* ``bc_reverse_kl`` (BRAC, Eq. 5): tanh-Gaussian ``pi_phi`` and a pre-fitted
  tanh-Gaussian behaviour model ``pi_b``,
  ``L = mean_B KL(pi_phi || pi_b)``, estimated as BRAC's code does with
  ``kl_samples`` reparameterised draws ``x ~ pi_phi``:
  ``mean_x [log pi_phi(x|s) - log pi_b(clip(x)|s)]``
  (:func:`~rkl_bench.algos.regularisers.reverse_kl`).

The stochastic policies are evaluated by their mode ``tanh(mean)``, as BRAC's
code evaluates its policy (``DeterministicSoftPolicy``), so every learner's
``act`` and ``actor(obs)`` are deterministic.

Shared with ``brac.py`` and ``cdc.py``:

* :class:`TanhGaussianActor`: ``a = tanh(mean(s) + std(s) * eps)``, log-std
  squashed into ``[log_std_min, log_std_max]`` as in BRAC's ``ActorNetwork``;
  ``forward`` is the mode, so the module drops into every evaluation path.
* :class:`TanhGaussian`: the policy at a batch of states, duck-typed for the
  regularisers (``rsample`` with the learner's own ``torch.Generator``,
  ``log_prob`` exact for its own samples, clipped ``atanh`` otherwise).
* :func:`fit_tanh_behaviour`: BRAC's behaviour policy (its ``bc_agent.py``),
  maximum likelihood of the clipped dataset actions under a tanh-Gaussian
  plus an entropy bonus whose weight is tuned to a target entropy of
  ``-act_dim``. The network is TD3+RKL's
  :class:`~rkl_bench.algos.behaviour.GaussianBehaviour` (``squash="tanh"``);
  :func:`~rkl_bench.algos.behaviour.fit_behaviour` itself is not used
  because it has no entropy bonus (docs/baselines.md).

Actions are assumed to lie in ``[-1, 1]`` (all MuJoCo locomotion datasets);
the stochastic learners have no ``max_action``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from rkl_bench.algos.bc import BC
from rkl_bench.algos.behaviour import (
    BETA_NORMALIZATIONS,
    BETA_REDUCES,
    SQUASHES,
    GaussianBehaviour,
    dataset_lambdas,
    fit_behaviour,
)
from rkl_bench.algos.base import load_optimizer
from rkl_bench.algos.fast import NoiseQueue
from rkl_bench.algos.nets import (
    DeterministicActor,
    Nets,
    adam,
    critic_apply,
    derive_seed,
    hidden_sizes,
    make_generator,
    mlp,
    mlp_apply,
    seeded_init,
)
from rkl_bench.algos.regularisers import FORMS, bc_loss, forward_kl, reverse_kl
from rkl_bench.algos.td3_bc import act_with, check_checkpoint, positive, positive_int
from rkl_bench.algos.td3_rkl import TD3RKLConfig
from rkl_bench.data.dataset import Batch
from rkl_bench.errors import RklBenchError

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
CLIP_EPS = 1e-3
"""BRAC's ``CLIP_EPS``: dataset actions are clipped to ``[-1 + eps, 1 - eps]`` before ``atanh``."""


# ============================================================ tanh-Gaussian
def tanh_gaussian_log_prob(actions: Tensor, mean: Tensor, log_std: Tensor, clip_eps: float = CLIP_EPS) -> Tensor:
    """Joint ``log pi(a|s)`` of a tanh-Gaussian at given actions, ``(..., act) -> (...)``.

    ``a`` is clipped to ``[-1 + clip_eps, 1 - clip_eps]`` first (actions at the
    bound have no finite density), then ``u = atanh(a)`` and
    ``log N(u; mean, std) - log(1 - a^2)`` summed over action dimensions.
    ``mean``/``log_std`` broadcast against leading sample dimensions.
    """
    a = actions.clamp(-1.0 + clip_eps, 1.0 - clip_eps)
    u = torch.atanh(a)
    normal = -0.5 * ((u - mean) * torch.exp(-log_std)).pow(2) - log_std - 0.5 * LOG_2PI
    return (normal - torch.log1p(-a.pow(2))).sum(dim=-1)


def tanh_gaussian_rsample(mean: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Reparameterised ``x = tanh(mean + std * noise)``; returns ``(x, u, log pi(x))``.

    The log-density uses the pre-tanh ``u`` and ``log(1 - tanh(u)^2) =
    2 (log 2 - u - softplus(-2u))``, exact even where ``tanh`` saturates.
    """
    u = mean + torch.exp(log_std) * noise
    log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * LOG_2PI).sum(dim=-1)
    log_prob = log_prob - (2.0 * (LOG_2 - u - F.softplus(-2.0 * u))).sum(dim=-1)
    return torch.tanh(u), u, log_prob


class TanhGaussian:
    """A tanh-squashed diagonal Gaussian at a batch of states.

    Duck-types the two methods of ``torch.distributions`` that
    :mod:`rkl_bench.algos.regularisers` calls (``rsample``, ``log_prob``) but
    draws its noise from ``generator`` (never the global RNG) and, like
    ``TransformedDistribution``'s cache, evaluates ``log_prob`` of its own
    latest sample from the stored pre-tanh value instead of ``atanh``.
    """

    def __init__(
        self, mean: Tensor, log_std: Tensor, generator: torch.Generator | None, clip_eps: float = CLIP_EPS
    ) -> None:
        self.mean, self.log_std, self.generator, self.clip_eps = mean, log_std, generator, clip_eps
        self._sample: Tensor | None = None
        self._sample_log_prob: Tensor | None = None

    @property
    def mode(self) -> Tensor:
        return torch.tanh(self.mean)

    def rsample(self, sample_shape: tuple[int, ...] = ()) -> Tensor:
        shape = (*sample_shape, *self.mean.shape)
        if isinstance(self.generator, NoiseQueue):  # noise drawn before the update (fast update paths)
            noise = self.generator.take(shape)
        else:
            noise = torch.randn(shape, generator=self.generator, device=self.mean.device, dtype=self.mean.dtype)
        x, _, log_prob = tanh_gaussian_rsample(self.mean, self.log_std, noise)
        self._sample, self._sample_log_prob = x, log_prob
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """Joint log-density ``(..., act) -> (...)``."""
        if x is self._sample:
            return self._sample_log_prob  # type: ignore[return-value]
        return tanh_gaussian_log_prob(x, self.mean, self.log_std, self.clip_eps)


class TanhGaussianActor(nn.Module):
    """``pi_phi(.|s)``: an MLP giving a tanh-Gaussian per state (BRAC's ``ActorNetwork``).

    ``forward(obs)`` is the deterministic mode ``tanh(mean(s))``, what is
    evaluated; :meth:`params` gives ``(mean, log_std)``, the log-std squashed
    smoothly into ``[log_std_min, log_std_max]``.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: tuple[int, ...], log_std_min: float, log_std_max: float
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden)
        self.act_dim = act_dim
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)

    def params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = self.net(obs).split(self.act_dim, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1.0)
        return mean, log_std

    def distribution(self, obs: Tensor, generator: torch.Generator | None, clip_eps: float = CLIP_EPS) -> TanhGaussian:
        mean, log_std = self.params(obs)
        return TanhGaussian(mean, log_std, generator, clip_eps)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.params(obs)[0])

    def head_into(self, z: Tensor, out: Tensor) -> None:
        """``forward``'s head of the MLP output ``z``, written into ``out`` (same kernels, for
        :mod:`rkl_bench.algos.inference`)."""
        torch.tanh(z[:, : self.act_dim], out=out)


class FunctionalTanhGaussianActor:
    """:class:`TanhGaussianActor` as a function of its parameter list (for compiled update steps)."""

    def __init__(self, params: list[Tensor], act_dim: int, log_std_min: float, log_std_max: float) -> None:
        self.p, self.act_dim, self.log_std_min, self.log_std_max = params, act_dim, log_std_min, log_std_max

    def params(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = mlp_apply(self.p, obs).split(self.act_dim, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1.0)
        return mean, log_std

    def distribution(self, obs: Tensor, generator: Any, clip_eps: float = CLIP_EPS) -> TanhGaussian:
        mean, log_std = self.params(obs)
        return TanhGaussian(mean, log_std, generator, clip_eps)

    @classmethod
    def of(cls, module: TanhGaussianActor, params: list[Tensor]) -> "FunctionalTanhGaussianActor":
        return cls(params, module.act_dim, module.log_std_min, module.log_std_max)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Use ``module`` without building a graph for (or accumulating grads in) its weights.

    Gradients still flow to its inputs: the actor's gradient through a critic.
    """
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


# ================================== tanh-Gaussian actor-critic nets (BRAC, CDC)
class TanhGaussianActorCritic:
    """The ``Nets`` of a tanh-Gaussian actor with an ensemble critic and its target
    (BRAC, CDC): the modules for the plain path, their functional forms over a
    parameter dict for the fast path. Losses written against ``Nets`` run on both.

    The host class has ``actor``, ``critic`` and ``critic_target`` modules.
    """

    actor: TanhGaussianActor
    critic: nn.Module
    critic_target: nn.Module

    def nets(self) -> Nets:
        def critic_frozen(obs: Tensor, action: Tensor) -> Tensor:
            with frozen(self.critic):
                return self.critic(obs, action)

        return Nets(actor=self.actor, critic=self.critic, critic_target=self.critic_target,
                    critic_frozen=critic_frozen)

    def functional_nets(self, params: dict[str, list[Tensor]]) -> Nets:
        frozen_critic = [p.detach() for p in params["critic"]]
        return Nets(
            actor=FunctionalTanhGaussianActor.of(self.actor, params["actor"]),
            critic=partial(critic_apply, params["critic"]),
            critic_target=partial(critic_apply, params["critic_target"]),
            critic_frozen=partial(critic_apply, frozen_critic),
        )


# ================================================ BRAC's behaviour policy
@dataclass(frozen=True)
class TanhBehaviourFit:
    """How BRAC's behaviour policy is fitted (defaults: BRAC's ``run_bc.sh`` / ``bc_agent.py``)."""

    steps: int = 300_000
    batch_size: int = 256
    lr: float = 5e-4
    hidden: tuple[int, ...] = (200, 200)
    entropy_bonus: bool = True
    """BRAC's BC agent adds ``alpha_e * log pi_b(x)``, ``x ~ pi_b``, with ``alpha_e`` tuned to entropy ``-act_dim``."""
    clip_eps: float = CLIP_EPS
    fused_adam: bool = True


def fit_tanh_behaviour(
    observations: Tensor, actions: Tensor, fit: TanhBehaviourFit, seed: int, progress: bool = False
) -> tuple[GaussianBehaviour, dict[str, float]]:
    """Fit BRAC's behaviour policy ``pi_b`` on NORMALISED states; return it (eval mode) and fit statistics.

    Per minibatch (BRAC's ``bc_agent.py``)::

        L_b     = mean_B [ alpha_e * log pi_b(x|s) - log pi_b(clip(a)|s) ],   x ~ pi_b(.|s)
        L_alpha = alpha_e * mean_B [ -log pi_b(x|s) - target ],               target = -act_dim

    ``alpha_e = relu(v)``, ``v`` starts at 1 and follows Adam on ``L_alpha``
    with BRAC's ``relu_v2`` gradient (zero only when ``v <= 0`` and the
    gradient would lower it further). ``entropy_bonus=False`` is plain
    maximum likelihood. Seeds: init, batches and sampling noise are separate
    streams of ``seed``; the global RNG is untouched.
    """
    obs, act = observations.float(), actions.float()
    n, obs_dim = obs.shape
    act_dim = act.shape[1]
    device = obs.device
    with seeded_init(seed, "behaviour_init"):
        model = GaussianBehaviour(obs_dim, act_dim, fit.hidden, squash="tanh", beta_normalization="none",
                                  tanh_eps=fit.clip_eps)
    model.to(device)
    optimiser = adam(model.parameters(), fit.lr, fit.fused_adam, device)
    alpha_var = torch.ones((), device=device, requires_grad=True)
    alpha_optimiser = torch.optim.Adam([alpha_var], lr=fit.lr)
    target_entropy = -float(act_dim)
    batches = make_generator(seed, "behaviour_batches", device)
    noise_gen = make_generator(seed, "behaviour_noise", device)

    bar = tqdm(range(fit.steps), desc="behaviour model", disable=not progress, leave=False, unit="step")
    for step in bar:
        idx = torch.randint(n, (fit.batch_size,), generator=batches, device=device)
        mean, log_std = model(obs.index_select(0, idx))
        nll = -tanh_gaussian_log_prob(act.index_select(0, idx), mean, log_std, fit.clip_eps).mean()
        loss = nll
        if fit.entropy_bonus:
            noise = torch.randn(mean.shape, generator=noise_gen, device=device)
            _, _, log_pi = tanh_gaussian_rsample(mean, log_std, noise)
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
    model.eval()
    model.requires_grad_(False)

    with torch.no_grad():
        nlls, log_stds = [], []
        for o, a in zip(obs.split(65536), act.split(65536)):
            mean, log_std = model(o)
            nlls.append(-tanh_gaussian_log_prob(a, mean, log_std, fit.clip_eps))
            log_stds.append(log_std.mean(dim=-1))
        nll_all, log_std_all = torch.cat(nlls), torch.cat(log_stds)
    stats = {
        "nll": float(nll_all.mean()),
        "log_std_mean": float(log_std_all.mean()),
        "log_std_q05": float(torch.quantile(log_std_all.double(), 0.05)),
        "log_std_q95": float(torch.quantile(log_std_all.double(), 0.95)),
        "alpha_entropy": float(alpha_var.detach().clamp_min(0.0)),
        "steps": float(fit.steps),
    }
    return model, stats


def unfitted_tanh_behaviour(
    obs_dim: int, act_dim: int, fit: TanhBehaviourFit, device: torch.device
) -> GaussianBehaviour:
    """The behaviour network, unfitted, to load a checkpoint into (``fit=False`` learners)."""
    model = GaussianBehaviour(obs_dim, act_dim, fit.hidden, squash="tanh", beta_normalization="none",
                              tanh_eps=fit.clip_eps)
    return model.to(device).eval().requires_grad_(False)


def as_tensor(x: np.ndarray | Tensor, device: torch.device) -> Tensor:
    """Float32 tensor on ``device`` from numpy or torch."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x, np.float32))
    return x.to(device=device, dtype=torch.float32).contiguous()


def check_rows(name: str, observations: Tensor, actions: Tensor) -> None:
    if observations.dim() != 2 or actions.dim() != 2 or len(observations) != len(actions) or len(actions) < 2:
        raise RklBenchError(
            f"{name} needs observations (N, obs_dim) and actions (N, act_dim) of equal length N >= 2; "
            f"got {tuple(observations.shape)} and {tuple(actions.shape)}"
        )


def check_log_std_bounds(config: Any) -> None:
    if not (math.isfinite(config.log_std_min) and math.isfinite(config.log_std_max)
            and config.log_std_min < config.log_std_max):
        raise ValueError(
            f"'log_std_min' must be < 'log_std_max' (both finite), "
            f"got {config.log_std_min!r} and {config.log_std_max!r}"
        )


def check_behaviour_fields(config: Any) -> None:
    """Validate the ``behaviour_*`` fields of a config that fits BRAC's behaviour policy."""
    positive(config, "behaviour_lr")
    positive_int(config, "behaviour_steps", "behaviour_batch_size", "behaviour_hidden_dim", "behaviour_hidden_layers")
    if not 0.0 < config.action_clip_eps < 0.5:
        raise ValueError(f"'action_clip_eps' must be in (0, 0.5), got {config.action_clip_eps!r}")


def behaviour_fit_of(config: Any) -> TanhBehaviourFit:
    return TanhBehaviourFit(
        steps=config.behaviour_steps,
        batch_size=config.behaviour_batch_size,
        lr=config.behaviour_lr,
        hidden=hidden_sizes(config.behaviour_hidden_dim, config.behaviour_hidden_layers),
        entropy_bonus=config.behaviour_entropy_bonus,
        clip_eps=config.action_clip_eps,
        fused_adam=config.fused_adam,
    )


_BEHAVIOUR_FIT = TanhBehaviourFit()


# ======================================================== Fig. 5 learners
class BCMSE(BC):
    """Eq. 6 alone: the ``bc`` learner under its Fig. 5 name (same config, same numbers)."""

    algo = "bc_mse"


_RKL = TD3RKLConfig()


@dataclass(frozen=True)
class BCWeightedRKLConfig:
    """TD3+RKL's BC signal alone; actor settings are TD3+BC's, signal settings TD3+RKL's defaults."""

    lr: float = 3e-4
    hidden_dim: int = 256
    hidden_layers: int = 2
    batch_size: int = 256
    max_action: float = 1.0
    fused_adam: bool = True
    regulariser: str = _RKL.regulariser
    """``"squared"`` (Eq. 7), ``"kernel"`` (Eq. 17) or ``"mse"`` (Eq. 6), as in ``td3_rkl``."""
    rkl_alpha: float = _RKL.rkl_alpha
    kernel_sigma: float = _RKL.kernel_sigma
    zeta1: float = _RKL.zeta1
    zeta2: float = _RKL.zeta2
    behaviour_steps: int = _RKL.behaviour_steps
    behaviour_batch_size: int = _RKL.behaviour_batch_size
    behaviour_lr: float = _RKL.behaviour_lr
    behaviour_hidden_dim: int = _RKL.behaviour_hidden_dim
    behaviour_hidden_layers: int = _RKL.behaviour_hidden_layers
    behaviour_squash: str = _RKL.behaviour_squash
    beta_reduce: str = _RKL.beta_reduce
    beta_normalization: str = _RKL.beta_normalization

    behaviour_config = TD3RKLConfig.behaviour_config  # reads the behaviour_* fields above

    def __post_init__(self) -> None:
        positive(self, "lr", "max_action", "kernel_sigma", "behaviour_lr")
        positive_int(self, "hidden_dim", "hidden_layers", "batch_size", "behaviour_steps", "behaviour_batch_size",
                     "behaviour_hidden_dim", "behaviour_hidden_layers")
        for key, allowed in (("regulariser", FORMS), ("behaviour_squash", SQUASHES), ("beta_reduce", BETA_REDUCES),
                             ("beta_normalization", BETA_NORMALIZATIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key!r} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}")
        if self.rkl_alpha < 0:
            raise ValueError(f"'rkl_alpha' must be >= 0, got {self.rkl_alpha!r}")
        for key in ("zeta1", "zeta2"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"{key!r} must be a finite number, got {getattr(self, key)!r}")


class BCWeightedRKL:
    """``L = mean_B lambda(s) * reg(mu(s), a, a1, a2)``: TD3+RKL's actor loss without its Q term."""

    algo = "bc_weighted_rkl"

    def __init__(
        self,
        observations: np.ndarray | Tensor,
        actions: np.ndarray | Tensor,
        config: BCWeightedRKLConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
        fit: bool = True,
    ) -> None:
        """``observations`` are the dataset's NORMALISED states; ``fit=False`` waits for a checkpoint."""
        self.config = cfg = config or BCWeightedRKLConfig()
        self.device = torch.device(device)
        obs, act = as_tensor(observations, self.device), as_tensor(actions, self.device)
        check_rows(self.algo, obs, act)
        self.obs_dim, self.act_dim = obs.shape[1], act.shape[1]
        self.seed = int(seed)
        with seeded_init(seed, "init"):
            self.actor = DeterministicActor(self.obs_dim, self.act_dim, hidden_sizes(cfg.hidden_dim, cfg.hidden_layers),
                                            cfg.max_action)
        self.actor.to(self.device)
        self.optimizer = adam(self.actor.parameters(), cfg.lr, cfg.fused_adam, self.device)
        self.dataset_actions = act
        self.negatives_generator = make_generator(seed, "negative_actions", self.device)
        if fit:  # Algorithm 1, lines 6-8, exactly as td3_rkl does it
            self.behaviour, self.behaviour_stats = fit_behaviour(
                obs, act, cfg.behaviour_config(), derive_seed(seed, "behaviour"), progress=progress)
            self.lambda_table = dataset_lambdas(self.behaviour, obs, cfg.zeta1, cfg.zeta2)
        else:
            self.behaviour = GaussianBehaviour.from_config(self.obs_dim, self.act_dim, cfg.behaviour_config())
            self.behaviour.to(self.device)
            self.behaviour.eval()
            self.behaviour_stats = {}
            self.lambda_table = torch.full((len(obs),), float("nan"), device=self.device)
        self.fitted = fit
        self.total_it = 0

    def update(self, batch: Batch) -> dict[str, float]:
        if not self.fitted:
            raise RklBenchError(f"{self.algo} learner was built with fit=False; load a checkpoint before update()")
        cfg = self.config
        self.total_it += 1
        mu = self.actor(batch.observations)
        weights = self.lambda_table.index_select(0, batch.indices)
        rows = torch.randint(0, len(self.dataset_actions), (2 * len(mu),), generator=self.negatives_generator,
                             device=self.device)
        a1, a2 = self.dataset_actions.index_select(0, rows).view(2, len(mu), -1)
        loss = (weights * bc_loss(cfg.regulariser, mu, batch.actions, a1, a2, cfg.rkl_alpha, cfg.kernel_sigma)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        values = torch.stack([loss.detach(), F.mse_loss(mu.detach(), batch.actions), weights.mean()]).tolist()
        return {"actor_loss": values[0], "reg_loss": values[0], "bc_loss": values[1], "lambda_mean": values[2]}

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        return act_with(self.actor, observations, self.obs_dim)

    @property
    def dataset_lambdas(self) -> np.ndarray:
        """``lambda(s_i)`` of every dataset row, ``(N,)`` float32, as ``td3_rkl`` has (saved for Fig. 4 by the runs)."""
        return self.lambda_table.to("cpu", torch.float32).numpy().copy()

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "total_it": self.total_it,
            "actor": self.actor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "behaviour": self.behaviour.state_dict(),
            "behaviour_stats": dict(self.behaviour_stats),
            "lambda_table": self.lambda_table,
            "negatives_generator": self.negatives_generator.get_state(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        table = state["lambda_table"]
        if tuple(table.shape) != tuple(self.lambda_table.shape):
            raise RklBenchError(
                f"{self.algo} checkpoint has lambdas for {len(table)} dataset rows but this dataset has "
                f"{len(self.lambda_table)}; resume on the dataset the checkpoint was trained on")
        self.actor.load_state_dict(state["actor"])
        load_optimizer(self.optimizer, state["optimizer"])
        self.behaviour.load_state_dict(state["behaviour"])
        self.behaviour.eval()
        self.behaviour_stats = dict(state["behaviour_stats"])
        self.lambda_table = table.to(self.device, torch.float32).clone()
        self.negatives_generator.set_state(state["negatives_generator"])
        self.total_it = int(state["total_it"])
        self.fitted = True


# ----------------------------------------------------- stochastic BC signals
@dataclass(frozen=True)
class BCForwardKLConfig:
    """CDC's BC signal alone (Eq. 4 without Q); actor settings as the other Fig. 5 learners."""

    lr: float = 3e-4
    hidden_dim: int = 256
    hidden_layers: int = 2
    batch_size: int = 256
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    """Log-std range of the tanh-Gaussian (``nets.GaussianHead``'s, also used by ``cdc``)."""
    action_clip_eps: float = CLIP_EPS
    """Dataset actions are clipped to ``[-1 + eps, 1 - eps]`` before their log-density is taken."""
    fused_adam: bool = True

    def __post_init__(self) -> None:
        positive(self, "lr")
        positive_int(self, "hidden_dim", "hidden_layers", "batch_size")
        check_log_std_bounds(self)
        if not 0.0 < self.action_clip_eps < 0.5:
            raise ValueError(f"'action_clip_eps' must be in (0, 0.5), got {self.action_clip_eps!r}")


@dataclass(frozen=True)
class BCReverseKLConfig(BCForwardKLConfig):
    """BRAC's BC signal alone (Eq. 5 without Q), with BRAC's KL estimator and behaviour fit."""

    kl_samples: int = 4
    """Draws ``x ~ pi_phi`` per state in the KL estimate (BRAC's ``n_div_samples``)."""
    behaviour_steps: int = _BEHAVIOUR_FIT.steps
    behaviour_batch_size: int = _BEHAVIOUR_FIT.batch_size
    behaviour_lr: float = _BEHAVIOUR_FIT.lr
    behaviour_hidden_dim: int = _BEHAVIOUR_FIT.hidden[0]
    behaviour_hidden_layers: int = len(_BEHAVIOUR_FIT.hidden)
    behaviour_entropy_bonus: bool = _BEHAVIOUR_FIT.entropy_bonus

    def __post_init__(self) -> None:
        super().__post_init__()
        positive_int(self, "kl_samples")
        check_behaviour_fields(self)


class _StochasticBC:
    """A tanh-Gaussian actor trained on one BC signal; subclasses define :meth:`signal`."""

    algo = ""
    config: BCForwardKLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: BCForwardKLConfig, seed: int, device: str) -> None:
        self.config = cfg = config
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.seed = int(seed)
        self.device = torch.device(device)
        with seeded_init(seed, "init"):
            self.actor = TanhGaussianActor(self.obs_dim, self.act_dim, hidden_sizes(cfg.hidden_dim, cfg.hidden_layers),
                                           cfg.log_std_min, cfg.log_std_max)
        self.actor.to(self.device)
        self.optimizer = adam(self.actor.parameters(), cfg.lr, cfg.fused_adam, self.device)
        self.sample_generator = make_generator(seed, "policy_samples", self.device)
        self.total_it = 0

    def signal(self, batch: Batch, policy: TanhGaussian) -> Tensor:
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, float]:
        self.total_it += 1
        policy = self.actor.distribution(batch.observations, self.sample_generator, self.config.action_clip_eps)
        loss = self.signal(batch, policy).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        values = torch.stack([
            loss.detach(), F.mse_loss(policy.mode.detach(), batch.actions), policy.log_std.detach().mean()
        ]).tolist()
        return {"actor_loss": values[0], "bc_loss": values[1], "log_std_mean": values[2]}

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The policy's mode ``tanh(mean(s))`` for normalised observations."""
        return act_with(self.actor, observations, self.obs_dim)

    def _state(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "total_it": self.total_it,
            "actor": self.actor.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "sample_generator": self.sample_generator.get_state(),
        }

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._state())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.actor.load_state_dict(state["actor"])
        load_optimizer(self.optimizer, state["optimizer"])
        self.sample_generator.set_state(state["sample_generator"])
        self.total_it = int(state["total_it"])


class BCForwardKL(_StochasticBC):
    """``L = mean_B -log pi_phi(clip(a)|s)``: maximum likelihood, CDC's policy constraint alone."""

    algo = "bc_forward_kl"

    def __init__(self, obs_dim: int, act_dim: int, config: BCForwardKLConfig | None = None, seed: int = 0,
                 device: str = "cpu") -> None:
        super().__init__(obs_dim, act_dim, config or BCForwardKLConfig(), seed, device)

    def signal(self, batch: Batch, policy: TanhGaussian) -> Tensor:
        return forward_kl(policy, batch.actions)  # type: ignore[arg-type]


class BCReverseKL(_StochasticBC):
    """``L = mean_B KL(pi_phi || pi_b)`` with BRAC's sampled estimator; ``pi_b`` fitted first."""

    algo = "bc_reverse_kl"
    config: BCReverseKLConfig

    def __init__(
        self,
        observations: np.ndarray | Tensor,
        actions: np.ndarray | Tensor,
        config: BCReverseKLConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
        fit: bool = True,
    ) -> None:
        """``observations`` are the dataset's NORMALISED states; ``fit=False`` waits for a checkpoint."""
        config = config or BCReverseKLConfig()
        dev = torch.device(device)
        obs, act = as_tensor(observations, dev), as_tensor(actions, dev)
        check_rows(self.algo, obs, act)
        super().__init__(obs.shape[1], act.shape[1], config, seed, device)
        fit_config = behaviour_fit_of(config)
        if fit:
            self.behaviour, self.behaviour_stats = fit_tanh_behaviour(
                obs, act, fit_config, derive_seed(seed, "behaviour"), progress)
        else:
            self.behaviour = unfitted_tanh_behaviour(self.obs_dim, self.act_dim, fit_config, self.device)
            self.behaviour_stats = {}
        self.fitted = fit

    def update(self, batch: Batch) -> dict[str, float]:
        if not self.fitted:
            raise RklBenchError(f"{self.algo} learner was built with fit=False; load a checkpoint before update()")
        return super().update(batch)

    def signal(self, batch: Batch, policy: TanhGaussian) -> Tensor:
        b_mean, b_log_std = self.behaviour(batch.observations)
        clip = self.config.action_clip_eps
        behaviour_log_prob = lambda x: tanh_gaussian_log_prob(x, b_mean, b_log_std, clip)  # noqa: E731
        return reverse_kl(policy, behaviour_log_prob, self.config.kl_samples)  # type: ignore[arg-type]

    def _state(self) -> dict[str, Any]:
        state = super()._state()
        state.update(behaviour=self.behaviour.state_dict(), behaviour_stats=dict(self.behaviour_stats))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.behaviour.load_state_dict(state["behaviour"])
        self.behaviour.eval()
        self.behaviour_stats = dict(state["behaviour_stats"])
        self.fitted = True
