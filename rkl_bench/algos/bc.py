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
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rkl_bench.algos.nets import DeterministicActor, adam, hidden_sizes, seeded_init
from rkl_bench.algos.td3_bc import act_with, check_checkpoint, positive, positive_int
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

    def __post_init__(self) -> None:
        positive(self, "lr", "max_action")
        positive_int(self, "hidden_dim", "hidden_layers", "batch_size")


class BC:
    """Deterministic behaviour cloning by mean squared error."""

    algo = "bc"

    def __init__(
        self, obs_dim: int, act_dim: int, config: BCConfig | None = None, seed: int = 0, device: str = "cpu"
    ) -> None:
        self.config = cfg = config or BCConfig()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.seed = int(seed)
        self.device = torch.device(device)
        with seeded_init(seed, "init"):
            self.actor = DeterministicActor(obs_dim, act_dim, hidden_sizes(cfg.hidden_dim, cfg.hidden_layers), cfg.max_action)
        self.actor.to(self.device)
        self.optimizer = adam(self.actor.parameters(), cfg.lr, cfg.fused_adam, self.device)
        self.total_it = 0

    def update(self, batch: Batch) -> dict[str, float]:
        self.total_it += 1
        loss = F.mse_loss(self.actor(batch.observations), batch.actions)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        value = loss.item()
        return {"bc_loss": value, "actor_loss": value}

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic ``mu(s)`` for normalised observations ``(B, obs_dim)`` or ``(obs_dim,)``."""
        return act_with(self.actor, observations, self.obs_dim, self.device)

    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                "algo": self.algo,
                "config": dataclasses.asdict(self.config),
                "total_it": self.total_it,
                "actor": self.actor.state_dict(),
                "optimizer": self.optimizer.state_dict(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.actor.load_state_dict(state["actor"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.total_it = int(state["total_it"])
