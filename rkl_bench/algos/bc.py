"""BC: behaviour cloning with a deterministic policy.

The BC baseline of the TD3+RKL paper's Table II. It is TD3+BC's actor trained
on the BC term alone (Eq. 6 without the Q term)::

    L_mu = mean_B mean_j (mu(s) - a)^2,      mu(s) = max_action * tanh(MLP(s))

Settings are those of TD3+BC's actor: 256x256 ReLU MLP with a tanh output,
Adam with lr 3e-4, batch 256, TD3+BC-normalised states, 1M steps. These are
also CORL's ``any_percent_bc.py`` (with ``frac = 1``, i.e. plain BC). The
TD3+BC paper's own BC baseline could not be checked against its appendix
here (no offline copy); if it differs, only ``lr`` would change and it is a
hyper-parameter.

Metrics of :meth:`BC.update`: ``bc_loss`` (and ``actor_loss``, the same
number, so every learner logs an ``actor_loss``).

The learner core (:mod:`rkl_bench.algos.base`) runs :meth:`BC.loss` on the
plain path or the compiled fast path (``update_path``, ``fast_after``).
``docs/architecture.md`` uses ``bc_mse`` (this learner under its Fig. 5 name)
as the worked example of adding a learner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.config import Execution, LearnerConfig, Network, positive
from rkl_bench.algos.nets import DeterministicActor, Nets, hidden_sizes, seeded_init
from rkl_bench.data.dataset import Batch


@dataclass(frozen=True)
class ClonedActor(Network):
    """A deterministic actor trained on a BC signal alone: TD3+BC's actor settings (``bc``, ``bc_weighted_rkl``)."""

    lr: float = 3e-4
    max_action: float = 1.0

    def check(self) -> None:
        positive(self, "lr", "max_action")


@dataclass(frozen=True)
class BCConfig(ClonedActor, Execution, LearnerConfig):
    """BC's hyper-parameters."""


class BC(Learner):
    """Behaviour cloning: a deterministic actor fitted by mean squared error (Table II's BC)."""

    algo = "bc"
    config_cls = BCConfig
    optimizer_keys = {"actor": "optimizer"}

    def build(self, observations: torch.Tensor, actions: torch.Tensor) -> None:
        cfg = self.config
        with seeded_init(self.seed, "init"):
            actor = DeterministicActor(self.obs_dim, self.act_dim, hidden_sizes(cfg.hidden_dim, cfg.hidden_layers),
                                       cfg.max_action)
        self.add_modules(actor=actor)
        self.add_optimizers(cfg.fused_adam, actor=cfg.lr)
        self.steps = (Step("actor", self.loss),)

    def loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 6 alone: ``mean_B mean_j (mu(s) - a)^2``."""
        loss = F.mse_loss(nets.actor(batch.observations), batch.actions)
        value = loss.detach()
        return loss, {"bc_loss": value, "actor_loss": value}
