"""The four behaviour-cloning signals of Fig. 5, as pure-BC learners.

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

The signals' maths live where their learners' do: TD3+RKL's weighted
signal in :mod:`rkl_bench.algos.td3_rkl`, BRAC's behaviour policy and KL in
:mod:`rkl_bench.algos.brac`, the tanh-Gaussian in
:mod:`rkl_bench.algos.tanh_gaussian`. Actions are assumed to lie in
``[-1, 1]`` (all MuJoCo locomotion datasets); the stochastic learners have
no ``max_action``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from rkl_bench.algos.base import Learner, Step, ordered, positive, positive_int, within
from rkl_bench.algos.bc import BC
from rkl_bench.algos.brac import BRACBehaviour, check_behaviour_fit
from rkl_bench.algos.nets import Nets, TanhGaussianActor, hidden_sizes, seeded_init
from rkl_bench.algos.regularisers import forward_kl
from rkl_bench.algos.tanh_gaussian import CLIP_EPS, TanhGaussian
from rkl_bench.algos.behaviour import TanhBehaviourFit
from rkl_bench.algos.td3_rkl import TD3RKLConfig, WeightedRKLSignal, check_signal
from rkl_bench.data.dataset import Batch

_RKL = TD3RKLConfig()
_BEHAVIOUR_FIT = TanhBehaviourFit()


class BCMSE(BC):
    """Eq. 6 alone: the ``bc`` learner under its Fig. 5 name (same config, same numbers)."""

    algo = "bc_mse"
    summary = "Fig. 5: TD3+BC's BC signal alone (Eq. 6, MSE)"


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
        positive(self, "lr", "max_action")
        positive_int(self, "hidden_dim", "hidden_layers", "batch_size")
        check_signal(self)


class BCWeightedRKL(WeightedRKLSignal, BC):
    """``L = mean_B lambda(s) * reg(mu(s), a, a1, a2)``: TD3+RKL's actor loss without its Q term."""

    algo = "bc_weighted_rkl"
    config_cls = BCWeightedRKLConfig
    summary = "Fig. 5: TD3+RKL's BC signal alone (Eq. 7 x Eq. 18)"

    def build(self, observations: Tensor, actions: Tensor) -> None:
        super().build(observations, actions)
        self.build_signal(actions)

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, Tensor]:
        return self.signal_inputs(batch)

    def loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[Tensor, dict[str, Tensor]]:
        reg_loss, metrics = self.weighted_signal(batch, nets.actor(batch.observations), inputs)
        return reg_loss, {**metrics, "actor_loss": reg_loss.detach()}


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
        ordered(self, "log_std_min", "log_std_max")
        within(self, "action_clip_eps", 0, 0.5, low_open=True, high_open=True)


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
        check_behaviour_fit(self)


class BCForwardKL(Learner):
    """``L = mean_B -log pi_phi(clip(a)|s)``: maximum likelihood, CDC's policy constraint alone."""

    algo = "bc_forward_kl"
    config_cls = BCForwardKLConfig
    summary = "Fig. 5: CDC's BC signal alone (forward KL, Eq. 4)"
    optimizer_keys = {"actor": "optimizer"}

    def build(self, observations: Tensor, actions: Tensor) -> None:
        cfg = self.config
        with seeded_init(self.seed, "init"):
            actor = TanhGaussianActor(self.obs_dim, self.act_dim, hidden_sizes(cfg.hidden_dim, cfg.hidden_layers),
                                      cfg.log_std_min, cfg.log_std_max)
        self.add_modules(actor=actor)
        self.add_optimizers(cfg.fused_adam, actor=cfg.lr)
        self.add_generator("sample_generator", self.seed, "policy_samples")
        self.steps = (Step("actor", self.loss),)

    def loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[Tensor, dict[str, Tensor]]:
        policy = nets.actor.distribution(batch.observations, clip_eps=self.config.action_clip_eps)
        loss = self.signal(batch, policy, inputs).mean()
        return loss, {"actor_loss": loss.detach(), "bc_loss": F.mse_loss(policy.mode.detach(), batch.actions),
                      "log_std_mean": policy.log_std.detach().mean()}

    def signal(self, batch: Batch, policy: TanhGaussian, inputs: dict) -> Tensor:
        return forward_kl(policy, batch.actions)  # type: ignore[arg-type]


class BCReverseKL(BRACBehaviour, BCForwardKL):
    """``L = mean_B KL(pi_phi || pi_b)`` with BRAC's sampled estimator; ``pi_b`` fitted first."""

    algo = "bc_reverse_kl"
    config_cls = BCReverseKLConfig
    summary = "Fig. 5: BRAC's BC signal alone (reverse KL, Eq. 5)"

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, Tensor]:
        """The KL estimate's ``kl_samples`` standard-normal draws per state."""
        shape = (self.config.kl_samples, *batch.actions.shape)
        return {"kl": torch.randn(shape, generator=self.sample_generator, device=self.device,
                                  dtype=batch.observations.dtype)}

    def signal(self, batch: Batch, policy: TanhGaussian, inputs: dict) -> Tensor:
        return self.kl(policy, batch.observations, inputs["kl"])
