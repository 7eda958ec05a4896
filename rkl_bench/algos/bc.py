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

Update paths (``update_path``), as in :mod:`rkl_bench.algos.td3_bc`:
``"plain"`` is the module, ``backward()`` and ``torch.optim.Adam``;
``"fast"`` (default) runs the same :meth:`BC.loss` through the actor's
functional form, its gradient and the Adam step as one compiled function
(:mod:`rkl_bench.algos.fast`), falling back to the plain path with a warning
if compiling fails.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rkl_bench.algos.base import load_optimizer
from rkl_bench.algos.fast import FastPathFailed, FastUpdate, adam_apply, check_update_path, networks_finite, value_and_grad
from rkl_bench.algos.nets import DeterministicActor, Nets, actor_apply, adam, hidden_sizes, seeded_init
from rkl_bench.algos.td3_bc import act_with, check_checkpoint, non_negative_int, positive, positive_int
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
    """Updates run on the plain path before the compiled one takes over (compiling costs 10-60 s)."""

    def __post_init__(self) -> None:
        check_update_path(self.update_path)
        non_negative_int(self, "fast_after")
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
        self._fast: FastUpdate | None = None
        if cfg.update_path == "fast":
            self._fast = FastUpdate(self.algo, self.fast_step, {"actor": self.actor}, {"actor": self.optimizer})

    def loss(self, nets: Nets, batch: Batch) -> torch.Tensor:
        """Eq. 6 alone: ``mean_B mean_j (mu(s) - a)^2``."""
        return F.mse_loss(nets.actor(batch.observations), batch.actions)

    def update(self, batch: Batch) -> dict[str, float]:
        self.total_it += 1
        if self._fast is not None and self.total_it > self.config.fast_after:
            try:
                value = self._fast(("actor",), batch).item()
            except FastPathFailed:
                self._fast = None  # warned; continue on the plain path
            else:
                return {"bc_loss": value, "actor_loss": value}
        loss = self.loss(Nets(actor=self.actor), batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        value = loss.detach().item()
        return {"bc_loss": value, "actor_loss": value}

    def fast_step(self, params: dict[str, list[torch.Tensor]], adam: dict[str, tuple], batch: Batch) -> torch.Tensor:
        """Loss, gradient and Adam step as one pure function (compiled by :class:`FastUpdate`)."""
        max_action = self.config.max_action

        def objective(actor_params: list[torch.Tensor]):
            nets = Nets(actor=lambda obs: actor_apply(actor_params, obs, max_action))
            return self.loss(nets, batch), None

        grads, loss, _ = value_and_grad(objective, params["actor"])
        adam_apply(params["actor"], grads, *adam["actor"])
        return loss

    def parameters_finite(self) -> bool:
        """True when every network and optimiser tensor is finite."""
        return networks_finite([self.actor], [self.optimizer])

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic ``mu(s)`` for normalised observations ``(B, obs_dim)`` or ``(obs_dim,)``."""
        return act_with(self.actor, observations, self.obs_dim)

    def state_dict(self) -> dict[str, Any]:
        if self._fast is not None:
            self._fast.sync()
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
        load_optimizer(self.optimizer, state["optimizer"])
        self.total_it = int(state["total_it"])
        if self._fast is not None:
            self._fast.reset()
