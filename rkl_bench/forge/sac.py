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

The losses are written once, against a :class:`~rkl_bench.algos.nets.Nets`
(the modules, or their functional forms bound to parameter lists). Two
drivers use them:

* the *plain* path: ``loss.backward()`` and ``torch.optim.Adam``, readable and
  the numerical reference;
* the *fast* path: the whole update (three gradients, three Adam steps, Polyak
  averaging) as one pure function compiled by ``torch.compile``, through the
  shared machinery of :mod:`rkl_bench.algos.fast` (functional Adam over the
  optimisers' own state, oneDNN matrix multiplies, compile with fall-back).
  Both paths give the same parameters within float tolerance (tested), and
  the checkpoint format is the same for both. If compilation fails, the agent
  warns and falls back to the plain path.

All randomness (policy noise) is drawn from the agent's own ``torch.Generator``
*outside* the update, so the two paths consume identical noise and a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rkl_bench.algos.base import load_optimizer
from rkl_bench.algos.fast import FastPathFailed, FastUpdate, adam_apply, all_finite, polyak, value_and_grad
from rkl_bench.algos.nets import EnsembleCritic, GaussianHead, Nets, critic_apply, gaussian_apply

Batch = tuple[torch.Tensor, ...]


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


def tanh_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample a = tanh(mean + std * noise) and its log-density.

    ``log(1 - tanh(u)^2)`` is computed as ``2 * (log 2 - u - softplus(-2u))``,
    exact and stable even where tanh saturates.
    """
    pre_tanh = mean + log_std.exp() * noise
    log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_prob = log_prob - (2.0 * (math.log(2.0) - pre_tanh - nn.functional.softplus(-2.0 * pre_tanh))).sum(-1)
    return torch.tanh(pre_tanh), log_prob


class SACAgent:
    """Tanh-Gaussian actor, two critics in one batched module, learned temperature."""

    def __init__(
        self, obs_dim: int, act_dim: int, config: SACConfig, seed: int, fast: bool = True
    ) -> None:
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.target_entropy = -float(act_dim)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.actor = GaussianHead(obs_dim, act_dim, config.hidden)
            self.critic = EnsembleCritic(obs_dim, act_dim, config.hidden, members=2)
        self.critic_target = EnsembleCritic(obs_dim, act_dim, config.hidden, members=2)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor([math.log(config.init_alpha)], requires_grad=True)
        eps = config.adam_eps
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, eps=eps)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr, eps=eps)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr, eps=eps)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.updates = 0
        self._fast_step: FastUpdate | None = None
        self.fast = fast

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

    # ------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, alpha: torch.Tensor, batch: Batch, next_noise: torch.Tensor) -> torch.Tensor:
        """Step 1: soft TD targets from the target critics, summed MSE of both critics."""
        obs, actions, rewards, next_obs, not_dones = batch
        with torch.no_grad():
            mean, log_std = nets.actor(next_obs)
            next_action, next_log_prob = tanh_gaussian_sample(mean, log_std, next_noise)
            target_q = nets.critic_target(next_obs, next_action)
            soft_value = target_q.min(dim=0).values - alpha * next_log_prob.unsqueeze(-1)
            y = rewards + self.config.gamma * not_dones * soft_value
        q = nets.critic(obs, actions)
        return (q - y).pow(2).mean(dim=(1, 2)).sum()

    def actor_loss(
        self, nets: Nets, alpha: torch.Tensor, obs: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 2 on the updated, frozen critics; also returns ``log pi`` for the temperature step."""
        mean, log_std = nets.actor(obs)
        action, log_prob = tanh_gaussian_sample(mean, log_std, noise)
        q = nets.critic_frozen(obs, action).min(dim=0).values.squeeze(-1)
        return (alpha * log_prob - q).mean(), log_prob.detach()

    # ------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, float]:
        """One SAC update on ``(obs, actions, rewards (B,1), next_obs, not_dones (B,1))``."""
        b = batch[0].shape[0]
        next_noise = torch.randn((b, self.act_dim), generator=self.generator)
        noise = torch.randn((b, self.act_dim), generator=self.generator)
        self.updates += 1
        if self.fast and self._fast_step is None:
            self._fast_step = self._build_fast_step()
        if self.fast and self._fast_step is not None:
            try:
                return self._update_fast(batch, next_noise, noise)
            except Exception as exc:  # noqa: BLE001 - any compile/runtime failure falls back
                if not isinstance(exc, FastPathFailed):  # FastUpdate has warned already
                    warnings.warn(f"compiled SAC update failed ({exc!r}); falling back to the plain path")
                self.fast, self._fast_step = False, None
        return self._update_plain(batch, next_noise, noise)

    def _update_plain(self, batch, next_noise, noise) -> dict[str, float]:
        alpha = self.log_alpha.detach().exp()
        frozen = [p.detach() for p in self.critic.parameters()]
        nets = Nets(actor=self.actor, critic=self.critic, critic_target=self.critic_target,
                    critic_frozen=lambda o, a: critic_apply(frozen, o, a, dnn=False))
        critic_loss = self.critic_loss(nets, alpha, batch, next_noise)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        actor_loss, log_prob = self.actor_loss(nets, alpha, batch[0], noise)
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()

        alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.critic_target.parameters()), list(self.critic.parameters()), self.config.tau
            )
        return {
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "alpha": alpha.item(),
            "entropy": -log_prob.mean().item(),
        }

    # ------------------------------------------------------------ fast path
    def _build_fast_step(self) -> FastUpdate:
        """The whole update as one pure function (:meth:`fast_step`), compiled on first call."""
        return FastUpdate(
            "SAC",
            self.fast_step,
            modules={"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target,
                     "alpha": [self.log_alpha]},
            optimizers={"critic": self.critic_opt, "actor": self.actor_opt, "alpha": self.alpha_opt},
        )

    def functional_nets(self, params: dict[str, list[torch.Tensor]]) -> Nets:
        act_dim = self.act_dim
        frozen = [p.detach() for p in params["critic"]]
        return Nets(
            actor=lambda obs: gaussian_apply(params["actor"], obs, act_dim),
            critic=lambda obs, action: critic_apply(params["critic"], obs, action),
            critic_target=lambda obs, action: critic_apply(params["critic_target"], obs, action),
            critic_frozen=lambda obs, action: critic_apply(frozen, obs, action),
        )

    def fast_step(self, params, adam, batch, next_noise, noise) -> torch.Tensor:
        """Critic, actor and temperature steps and the target update; writes into ``params``."""
        cfg = self.config
        (log_alpha,) = params["alpha"]
        alpha = log_alpha.exp()

        def critic_objective(critic_params):
            nets = self.functional_nets({**params, "critic": critic_params})
            return self.critic_loss(nets, alpha, batch, next_noise), None

        grads, critic_loss, _ = value_and_grad(critic_objective, params["critic"])
        new_critic = adam_apply(params["critic"], grads, *adam["critic"])

        def actor_objective(actor_params):
            nets = self.functional_nets({**params, "critic": new_critic, "actor": actor_params})
            return self.actor_loss(nets, alpha, batch[0], noise)

        grads, actor_loss, log_prob = value_and_grad(actor_objective, params["actor"])
        adam_apply(params["actor"], grads, *adam["actor"])
        # d/dlog_alpha of -mean(log_alpha * (log_prob + H)), in closed form.
        alpha_grad = -(log_prob + self.target_entropy).mean().reshape(1)
        adam_apply(params["alpha"], [alpha_grad], *adam["alpha"])
        polyak(params["critic_target"], new_critic, cfg.tau)
        return torch.stack([critic_loss, actor_loss, alpha.reshape(()), -log_prob.mean()])

    def _update_fast(self, batch, next_noise, noise) -> dict[str, float]:
        metrics = self._fast_step(("critic", "actor", "alpha"), batch, next_noise, noise)
        return dict(zip(("critic_loss", "actor_loss", "alpha", "entropy"), metrics.tolist()))

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        if isinstance(self._fast_step, FastUpdate):
            self._fast_step.sync()
        return {
            "config": asdict(self.config),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(),
            "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        load_optimizer(self.actor_opt, state["actor_opt"])
        load_optimizer(self.critic_opt, state["critic_opt"])
        load_optimizer(self.alpha_opt, state["alpha_opt"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
        if isinstance(self._fast_step, FastUpdate):
            self._fast_step.reset()

    def parameters_finite(self) -> bool:
        return all_finite([*self.actor.parameters(), *self.critic.parameters(), self.log_alpha])
