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

from rkl_bench.algos.base import Learner, Step, non_negative_int, one_of, positive, positive_int
from rkl_bench.algos.fast import UPDATE_PATHS
from rkl_bench.algos.nets import DeterministicActor, Nets, hidden_sizes, seeded_init
from rkl_bench.data.dataset import Batch


@dataclass(frozen=True)
class BCConfig:
    """BC's hyper-parameters (TD3+BC's actor settings)."""

    lr: float = 3e-4
    hidden_dim: int = 256
    hidden_layers: int = 2
    batch_size: int = 256
    """Minibatch size; read by the training loop's sampler, not by the learner."""
    max_action: float = 1.0
    fused_adam: bool = True
    update_path: str = "fast"
    """``"fast"``: the compiled update step; ``"plain"``: eager module and ``torch.optim``."""
    fast_after: int = 10_000
    """Updates run on the plain path before the compiled one takes over (docs/speed.md)."""

    def __post_init__(self) -> None:
        one_of(self, "update_path", UPDATE_PATHS)
        non_negative_int(self, "fast_after")
        positive(self, "lr", "max_action")
        positive_int(self, "hidden_dim", "hidden_layers", "batch_size")


class BC(Learner):
    """Deterministic behaviour cloning by mean squared error."""

    algo = "bc"
    config_cls = BCConfig
    summary = "behaviour cloning, deterministic MSE"
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
        return loss, {"bc_loss": loss.detach(), "actor_loss": loss.detach()}
