"""TD3+RKL: TD3 with a per-state weighted reverse-KL-inspired BC regulariser.

The method of ``shared/paper/td3_rkl.txt``, Algorithm 1. TD3+RKL is TD3+BC
(:mod:`rkl_bench.algos.td3_bc`, whose critic step, policy delay, target
networks and Q normalisation it keeps; Sec. IV-C) with two changes:

1. **Aleatoric uncertainty** (Algorithm 1, lines 5-8). Before any RL, a
   state-conditioned diagonal Gaussian ``pi_psi(a|s)`` is fitted to the
   dataset (normalised states) by maximum likelihood, and its log-variance
   ``beta(s) = log sigma_psi(s)^2`` becomes a per-state BC weight (Eq. 18)::

       lambda(s) = 1 / (1 + exp(zeta1 * beta(s) - zeta2))   in [0, 1]

   ``lambda`` is computed once for every dataset row after the fit and looked
   up by the batch's row indices (line 16 needs it only on batch states).
   How the per-dimension log-variances become one ``beta`` and whether the
   Gaussian lives before or after a tanh are options of
   :class:`~rkl_bench.algos.behaviour.BehaviourConfig`, the config's nested
   ``behaviour`` section (``behaviour.beta_reduce``, ``behaviour.squash``, ...).

2. **The BC term** (Eq. 7, line 17). The actor minimises::

       - q_weight / mean_B|Q1(s, mu(s))| * mean_B Q1(s, mu(s))
       + mean_B lambda(s) * reg(mu(s), a, a1, a2)

   where ``a1, a2`` are two actions drawn uniformly from the whole dataset per
   batch row and ``reg`` is :func:`~rkl_bench.algos.regularisers.bc_loss`
   (action dimensions averaged):

   * ``"squared"`` (default, Eq. 7): ``(mu - a)^2 - rkl_alpha * (mu - (a1 + a2)/2)^2``;
   * ``"kernel"`` (Eq. 17): ``-exp(-(mu - a)^2 / (2 sigma^2)) + rkl_alpha * exp(-(mu - (a1+a2)/2)^2 / (2 sigma^2))``;
   * ``"mse"`` (Eq. 6): ``(mu - a)^2``. With ``lambda = 1`` (``zeta1 = 0``,
     large ``zeta2``) this is TD3+BC exactly (tested).

``q_weight`` is TD3+BC's alpha (2.5); ``rkl_alpha`` is the paper's alpha in
Eq. 7 (1.0). The paper reuses the letter; this code does not.

Randomness: target policy noise and the negative actions ``a1, a2`` come from
two separate ``torch.Generator`` streams of the learner's seed, so changing
the regulariser never shifts the noise (and TD3+BC's noise stream is the same
as here). The behaviour fit has its own seed stream.

Metrics: TD3+BC's (``critic_loss``, ``q_mean`` every step; ``actor_loss``,
``bc_loss`` = plain MSE to the batch actions on actor steps) plus, on actor
steps, ``reg_loss`` (the weighted regulariser term ``mean_B lambda * reg``)
and ``lambda_mean`` (mean lambda over the batch states).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from rkl_bench.algos.config import ConfigError, finite, non_negative, one_of, positive
from rkl_bench.algos.behaviour import BehaviourConfig, GaussianBehaviour, dataset_lambdas, fit_behaviour, lambda_weights
from rkl_bench.algos.nets import derive_seed
from rkl_bench.algos.regularisers import FORMS, bc_loss
from rkl_bench.algos.td3_bc import TD3BC, TD3BCConfig
from rkl_bench.data.dataset import Batch
from rkl_bench.errors import RklBenchError


@dataclass(frozen=True)
class WeightedRKLFields:
    """The weighted-RKL signal's settings (``td3_rkl``, ``bc_weighted_rkl``; Sec. V: zeta1 = 10, zeta2 = 5,
    alpha = 1.0), and its behaviour model."""

    zeta1: float = 10.0
    """Slope of Eq. 18 in ``beta`` (paper: 10)."""
    zeta2: float = 5.0
    """Offset of Eq. 18 (paper: 5); ``lambda = 0.5`` where ``beta = zeta2 / zeta1``."""
    lambda_floor: float = 0.0
    """Not the paper's (0): ``lambda(s) = lambda_floor + (1 - lambda_floor) * Eq. 18``, a least weight of
    the BC term in every state. The tuning study on the forge mixtures found its best settings at
    lambda(s) ~ 0 on every random row, TD3 unconstrained there (docs/tuning.md); a floor keeps some
    pull toward the data where the behaviour spreads wide. In [0, 1]; 1 is a constant weight."""
    rkl_alpha: float = 1.0
    """The paper's alpha: weight of the negative sample in Eq. 7 / Eq. 17 (paper: 1.0)."""
    regulariser: str = "squared"
    """BC form: ``"squared"`` (Eq. 7), ``"kernel"`` (Eq. 17) or ``"mse"`` (Eq. 6, TD3+BC's)."""
    kernel_sigma: float = math.sqrt(0.5)
    """Kernel width for ``"kernel"``: with ``sigma^2 = 1/2`` the kernel's gradient near the data
    equals the ``"mse"`` form's, so ``q_weight`` keeps its TD3+BC meaning (regularisers.py)."""
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    """The behaviour model (Algorithm 1, lines 6-8) and how ``beta(s)`` is read from it: ``behaviour.steps``,
    ``behaviour.beta_normalization``, ... (docs/regularisers.md)."""

    aliases: ClassVar[dict[str, str]] = {
        "behaviour_steps": "behaviour.steps", "behaviour_batch_size": "behaviour.batch_size",
        "behaviour_lr": "behaviour.lr", "behaviour_hidden_dim": "behaviour.hidden_dim",
        "behaviour_hidden_layers": "behaviour.hidden_layers", "behaviour_squash": "behaviour.squash",
        "beta_reduce": "behaviour.beta_reduce", "beta_normalization": "behaviour.beta_normalization",
    }
    """The flat names these had before the nested section (configs, searches and checkpoints use them)."""

    def check(self) -> None:
        positive(self, "kernel_sigma")
        one_of(self, "regulariser", FORMS)
        non_negative(self, "rkl_alpha")
        finite(self, "zeta1", "zeta2")
        if not 0.0 <= self.lambda_floor <= 1.0:
            raise ConfigError.bad("lambda_floor", f"must be in [0, 1], got {self.lambda_floor!r}")


@dataclass(frozen=True)
class TD3RKLConfig(WeightedRKLFields, TD3BCConfig):
    """TD3+BC's hyper-parameters plus the weighted-RKL signal's."""


class WeightedRKLSignal:
    """TD3+RKL's BC signal and what it needs: ``mean_B lambda(s) * reg(mu(s), a, a1, a2)``.

    Mixed into a learner (``td3_rkl``, ``bc_weighted_rkl``): the behaviour
    model fitted before training (Algorithm 1, lines 6-8), ``lambda(s)`` of
    every dataset row computed once after it (:attr:`lambda_table`, in the
    checkpoint), and the negative actions ``a1, a2`` drawn from the dataset's
    actions with the learner's ``negatives_generator``.
    """

    fits_behaviour = True
    config: Any

    def build_signal(self, actions: torch.Tensor) -> None:
        self.dataset_actions = actions
        self.add_generator("negatives_generator", self.seed, "negative_actions")  # type: ignore[attr-defined]
        self._rows: torch.Tensor | None = None

    def fit_behaviour(self, observations: torch.Tensor, actions: torch.Tensor,
                      progress: bool) -> tuple[GaussianBehaviour, dict[str, float]]:
        cfg = self.config
        behaviour, stats = fit_behaviour(observations, actions, cfg.behaviour,
                                         derive_seed(self.seed, "behaviour"), progress=progress)
        self.lambda_table = dataset_lambdas(behaviour, observations, cfg.zeta1, cfg.zeta2, floor=cfg.lambda_floor)
        return behaviour, stats

    def unfitted_behaviour(self, rows: int) -> GaussianBehaviour:
        self.lambda_table = torch.full((rows,), float("nan"), device=self.device)
        model = GaussianBehaviour.from_config(self.obs_dim, self.act_dim, self.config.behaviour)
        return model.to(self.device).eval()

    def signal_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``lambda(s)`` of the batch rows (looked up, Eq. 18) and the negative actions ``a1, a2``.

        ``a1, a2`` are ``2B`` rows drawn uniformly from the whole dataset
        (Eq. 7), into buffers reused from update to update.
        """
        b = len(batch.indices)
        if self._rows is None or len(self._rows) != 2 * b:
            self._rows = torch.empty(2 * b, dtype=torch.long, device=self.device)
            self._negatives = torch.empty(2 * b, self.act_dim, device=self.device)
            self._weights = torch.empty(b, device=self.device)
        rows = torch.randint(0, len(self.dataset_actions), (2 * b,), generator=self.negatives_generator,
                             device=self.device, out=self._rows)
        negatives = torch.index_select(self.dataset_actions, 0, rows, out=self._negatives).view(2, b, -1)
        weights = torch.index_select(self.lambda_table, 0, batch.indices, out=self._weights)  # lambda(s), (B,)
        return {"weights": weights, "a1": negatives[0], "a2": negatives[1]}

    def weighted_signal(self, batch: Batch, pi: torch.Tensor,
                        inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 7 (or 17, or 6) weighted by Eq. 18: ``mean_B lambda(s) * reg`` and its metrics."""
        cfg, weights = self.config, inputs["weights"]
        reg = bc_loss(cfg.regulariser, pi, batch.actions, inputs["a1"], inputs["a2"], cfg.rkl_alpha,
                      cfg.kernel_sigma)  # (B,)
        reg_loss = (weights * reg).mean()
        return reg_loss, {"bc_loss": F.mse_loss(pi.detach(), batch.actions), "reg_loss": reg_loss.detach(),
                          "lambda_mean": weights.mean()}

    @torch.no_grad()
    def lambdas(self, observations_normalised: np.ndarray) -> np.ndarray:
        """Eq. 18's ``lambda(s)`` for any normalised states ``(B, obs_dim)`` -> ``(B,)`` float32
        (``(obs_dim,)`` -> a 0-d array), e.g. for the report's Fig. 4."""
        obs = np.asarray(observations_normalised, dtype=np.float32)
        if obs.shape[-1:] != (self.obs_dim,) or obs.ndim not in (1, 2):
            raise ValueError(f"lambdas() expects states of shape (B, {self.obs_dim}) or ({self.obs_dim},), got {obs.shape}")
        x = torch.as_tensor(obs, device=self.device).reshape(-1, self.obs_dim)
        beta = torch.cat([self.behaviour.beta(chunk) for chunk in x.split(65536)]) if len(x) else x.new_zeros(0)
        lam = lambda_weights(beta, self.config.zeta1, self.config.zeta2,
                             self.config.lambda_floor).to("cpu", torch.float32).numpy()
        return lam[0] if obs.ndim == 1 else lam

    @property
    def dataset_lambdas(self) -> np.ndarray:
        """``lambda(s_i)`` of every dataset row, ``(N,)`` float32 (a copy of :attr:`lambda_table`; Fig. 4)."""
        return self.lambda_table.to("cpu", torch.float32).numpy().copy()

    def extra_state(self) -> dict[str, Any]:
        return {"lambda_table": self.lambda_table}

    def check_state(self, state: Mapping[str, Any]) -> None:
        table = state["lambda_table"]
        if tuple(table.shape) != tuple(self.lambda_table.shape):
            raise RklBenchError(
                f"{self.algo} checkpoint has lambdas for {len(table)} dataset rows but this dataset has "
                f"{len(self.lambda_table)}; resume on the dataset the checkpoint was trained on"
            )

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.lambda_table = state["lambda_table"].to(self.device, torch.float32).clone()


class TD3RKL(WeightedRKLSignal, TD3BC):
    """The TD3+RKL learner: TD3+BC with the weighted-RKL signal as its BC term (module docstring)."""

    algo = "td3_rkl"
    config_cls = TD3RKLConfig

    def build(self, observations: torch.Tensor, actions: torch.Tensor) -> None:
        super().build(observations, actions)
        self.build_signal(actions)

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        inputs = super().inputs(batch, steps)
        return {**inputs, **self.signal_inputs(batch)} if "actor" in steps else inputs

    def actor_loss(self, batch: Batch, pi: torch.Tensor, q1: torch.Tensor,
                   inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 7 with Eq. 18's per-state weights, TD3+BC's Q normalisation."""
        lmbda = self.config.q_weight / q1.abs().mean().detach()
        reg_loss, metrics = self.weighted_signal(batch, pi, inputs)
        return -lmbda * q1.mean() + reg_loss, metrics
