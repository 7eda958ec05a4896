"""Soft Actor-Critic for the forge's behaviour policies.

D4RL's locomotion datasets were collected with SAC policies (tanh-Gaussian
actor, twin critics, learned temperature); the forge trains the same kind of
agent on gymnasium MuJoCo v5 (Haarnoja et al., 2018, "Soft Actor-Critic
Algorithms and Applications", Algorithm 1 with automatic entropy tuning).

One update, in the order of the paper's algorithm:

1. critics:  y = r + gamma * (1 - d) * (min_j Q'_j(s', a') - alpha * log pi(a'|s')),  a' ~ pi(.|s')
             L_Q = sum_j mean (Q_j(s, a) - y)^2
2. actor:    L_pi = mean (alpha * log pi(a~|s) - min_j Q_j(s, a~)),  a~ ~ pi(.|s)  (updated critics)
3. alpha:    L_alpha = -mean log_alpha * (log pi(a~|s) + target_entropy)
4. targets:  Q' <- (1 - tau) Q' + tau Q

The agent is an :class:`~rkl_bench.algos.base.Updater`: it declares its
networks, optimisers and these four steps, and the learners' driver runs
them on the plain path (``loss.backward()``, ``torch.optim.Adam``; the
reference) or as one compiled function (``fast=True``; within float
tolerance of plain, tested). The temperature's gradient is supplied in
closed form on the fast path (:attr:`~rkl_bench.algos.base.Step.grad`). If
compilation fails, the agent warns and falls back to the plain path. The
checkpoint format is the same for both paths.

All randomness (policy noise) is drawn from the agent's own ``torch.Generator``
*outside* the update, so the two paths consume identical noise and a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from rkl_bench.algos.base import Step, Updater
from rkl_bench.algos.nets import EnsembleCritic, GaussianHead, Nets
from rkl_bench.algos.tanh_gaussian import tanh_gaussian_sample

ReplayBatch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class SACConfig:
    """SAC hyper-parameters (the SAC paper's defaults for MuJoCo)."""

    hidden: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 1.0
    batch_size: int = 256
    adam_eps: float = 1e-8


class SACAgent(Updater):
    """Tanh-Gaussian actor, two critics in one batched module, learned temperature."""

    optimizer_keys = {"actor": "actor_opt", "critic": "critic_opt", "alpha": "alpha_opt"}

    def __init__(
        self, obs_dim: int, act_dim: int, config: SACConfig, seed: int, fast: bool = True
    ) -> None:
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.target_entropy = -float(act_dim)
        self._init_state("cpu")
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            actor = GaussianHead(obs_dim, act_dim, config.hidden)
            critic = EnsembleCritic(obs_dim, act_dim, config.hidden, members=2)
        critic_target = EnsembleCritic(obs_dim, act_dim, config.hidden, members=2)
        critic_target.load_state_dict(critic.state_dict())
        self.log_alpha = torch.tensor([math.log(config.init_alpha)], requires_grad=True)
        self.add_modules(actor=actor, critic=critic, critic_target=critic_target.requires_grad_(False),
                         alpha=[self.log_alpha])
        self.targets = {"critic_target": "critic"}
        eps = config.adam_eps
        self.optimizers = {
            "actor": torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, eps=eps),
            "critic": torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=eps),
            "alpha": torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, eps=eps),
        }
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.generators = {"generator": self.generator}
        self.steps = (
            Step("critic", self.critic_loss),
            Step("actor", self.actor_loss, hands_on=("log_prob",)),
            Step("alpha", self.alpha_loss, grad=self.alpha_grad, targets=True),
        )
        if fast:
            self.enable_fast_path("SAC")

    @property
    def updates(self) -> int:
        return self.total_it

    @property
    def fast(self) -> bool:
        """Whether updates run on the compiled path (False after a fall-back)."""
        return self._fast is not None

    # ------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of raw observations (SAC uses no state normalisation)."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        single = obs_t.dim() == 1
        if single:
            obs_t = obs_t.unsqueeze(0)
        mean, log_std = self.actor(obs_t)
        if deterministic:
            action = torch.tanh(mean)
        else:
            noise = torch.randn(mean.shape, generator=self.generator)
            action, _ = tanh_gaussian_sample(mean, log_std, noise)
        out = action.numpy()
        return out[0] if single else out

    # ------------------------------------------------------------ update
    def inputs(self, batch: ReplayBatch, steps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Policy noise for the next states (critic target) and the states (actor), in that order."""
        b = batch[0].shape[0]
        next_noise = torch.randn((b, self.act_dim), generator=self.generator)
        return {"next_noise": next_noise, "noise": torch.randn((b, self.act_dim), generator=self.generator)}

    def prepare(self, nets: Nets, batch: ReplayBatch, inputs: dict) -> dict[str, Any]:
        (log_alpha,) = nets.alpha
        return {**inputs, "alpha": log_alpha.detach().exp()}  # the temperature before this update

    def critic_loss(self, nets: Nets, batch: ReplayBatch, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Step 1: soft TD targets from the target critics, summed MSE of both critics."""
        obs, actions, rewards, next_obs, not_dones = batch
        with torch.no_grad():
            mean, log_std = nets.actor(next_obs)
            next_action, next_log_prob = tanh_gaussian_sample(mean, log_std, inputs["next_noise"])
            target_q = nets.critic_target(next_obs, next_action)
            soft_value = target_q.min(dim=0).values - inputs["alpha"] * next_log_prob.unsqueeze(-1)
            y = rewards + self.config.gamma * not_dones * soft_value
        q = nets.critic(obs, actions)
        loss = (q - y).pow(2).mean(dim=(1, 2)).sum()
        return loss, {"critic_loss": loss.detach()}

    def actor_loss(self, nets: Nets, batch: ReplayBatch, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Step 2 on the updated, frozen critics; hands ``log pi`` on to the temperature step."""
        obs, alpha = batch[0], inputs["alpha"]
        mean, log_std = nets.actor(obs)
        action, log_prob = tanh_gaussian_sample(mean, log_std, inputs["noise"])
        q = nets.critic_frozen(obs, action).min(dim=0).values.squeeze(-1)
        loss = (alpha * log_prob - q).mean()
        log_prob = log_prob.detach()
        return loss, {"actor_loss": loss.detach(), "alpha": alpha.reshape(()), "entropy": -log_prob.mean(),
                      "log_prob": log_prob}

    def alpha_loss(self, nets: Nets, batch: ReplayBatch, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Step 3: ``-mean log_alpha * (log pi + target_entropy)``."""
        (log_alpha,) = nets.alpha
        return -(log_alpha * (inputs["log_prob"] + self.target_entropy)).mean(), {}

    def alpha_grad(self, nets: Nets, batch: ReplayBatch, inputs: dict) -> list[torch.Tensor]:
        """Step 3's gradient in closed form (the fast path): ``-mean(log pi + target_entropy)``."""
        return [-(inputs["log_prob"] + self.target_entropy).mean().reshape(1)]

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), **self.trainable_state(),
                "log_alpha": self.log_alpha.detach().clone(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_trainable_state(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.total_it = int(state["updates"])
