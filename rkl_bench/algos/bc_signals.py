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

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.bc import BC, ClonedActor
from rkl_bench.algos.brac import BRACBehaviour, BRACBehaviourFields
from rkl_bench.algos.config import LearnerConfig, Network, TanhPolicy, positive
from rkl_bench.algos.nets import Nets, TanhGaussianActor, hidden_sizes, seeded_init
from rkl_bench.algos.regularisers import forward_kl
from rkl_bench.algos.tanh_gaussian import TanhGaussian
from rkl_bench.algos.td3_rkl import WeightedRKLFields, WeightedRKLSignal
from rkl_bench.data.dataset import Batch


class BCMSE(BC):
    """Eq. 6 alone: the ``bc`` learner under its Fig. 5 name (same config, same numbers)."""

    algo = "bc_mse"


@dataclass(frozen=True)
class BCWeightedRKLConfig(WeightedRKLFields, ClonedActor, LearnerConfig):
    """TD3+RKL's BC signal alone; actor settings are TD3+BC's, signal settings TD3+RKL's defaults."""


class BCWeightedRKL(WeightedRKLSignal, BC):
    """Fig. 5, TD3+RKL's signal: ``L = mean_B lambda(s) * reg(mu(s), a, a1, a2)`` (Eq. 7 x Eq. 18, no Q term)."""

    algo = "bc_weighted_rkl"
    config_cls = BCWeightedRKLConfig

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
class BCForwardKLConfig(TanhPolicy, Network, LearnerConfig):
    """CDC's BC signal alone (Eq. 4 without Q); actor settings as the other Fig. 5 learners."""

    lr: float = 3e-4

    def check(self) -> None:
        positive(self, "lr")


@dataclass(frozen=True)
class BCReverseKLConfig(BRACBehaviourFields, BCForwardKLConfig):
    """BRAC's BC signal alone (Eq. 5 without Q), with BRAC's KL estimator and behaviour fit."""


class BCForwardKL(Learner):
    """Fig. 5, CDC's signal: ``L = mean_B -log pi_phi(clip(a)|s)``, the forward KL of Eq. 4 (maximum likelihood)."""

    algo = "bc_forward_kl"
    config_cls = BCForwardKLConfig
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
    """Fig. 5, BRAC's signal: ``L = mean_B KL(pi_phi || pi_b)`` (Eq. 5), BRAC's estimator; ``pi_b`` fitted first."""

    algo = "bc_reverse_kl"
    config_cls = BCReverseKLConfig

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, Tensor]:
        """The KL estimate's ``kl_samples`` standard-normal draws per state."""
        shape = (self.config.kl_samples, *batch.actions.shape)
        return {"kl": torch.randn(shape, generator=self.sample_generator, device=self.device,
                                  dtype=batch.observations.dtype)}

    def signal(self, batch: Batch, policy: TanhGaussian, inputs: dict) -> Tensor:
        return self.kl(policy, batch.observations, inputs["kl"])
