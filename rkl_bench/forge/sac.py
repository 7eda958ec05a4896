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

The losses are written once, as functions of explicit parameter dicts
(``torch.func.functional_call``). Two drivers use them:

* the *plain* path: ``loss.backward()`` and ``torch.optim.Adam``, readable and
  the numerical reference;
* the *fast* path: the whole update (three gradients, three Adam steps, Polyak
  averaging) as one pure function compiled by ``torch.compile``, which removes
  Python and allocator overhead between the many small kernels. It mirrors
  ``torch.optim.Adam``'s arithmetic, so both paths give the same parameters
  within float tolerance (tested). If compilation fails, the agent warns and
  falls back to the plain path.

All randomness (policy noise) is drawn from the agent's own ``torch.Generator``
*outside* the update, so the two paths consume identical noise and a resumed
run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from rkl_bench.algos.nets import EnsembleCritic, GaussianHead

Params = dict[str, torch.Tensor]


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
        self._fast_step: Callable[..., Any] | None = None
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
    def _critic_loss(
        self,
        critic_params: Params,
        target_params: Params,
        actor_params: Params,
        alpha: torch.Tensor,
        obs: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        next_obs: torch.Tensor,
        not_dones: torch.Tensor,
        next_noise: torch.Tensor,
    ) -> torch.Tensor:
        with torch.no_grad():
            mean, log_std = functional_call(self.actor, actor_params, (next_obs,))
            next_action, next_log_prob = tanh_gaussian_sample(mean, log_std, next_noise)
            target_q = functional_call(self.critic_target, target_params, (next_obs, next_action))
            soft_value = target_q.min(dim=0).values - alpha * next_log_prob.unsqueeze(-1)
            y = rewards + self.config.gamma * not_dones * soft_value
        q = functional_call(self.critic, critic_params, (obs, actions))
        return (q - y).pow(2).mean(dim=(1, 2)).sum()

    def _actor_loss(
        self,
        actor_params: Params,
        critic_params: Params,
        alpha: torch.Tensor,
        obs: torch.Tensor,
        noise: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = functional_call(self.actor, actor_params, (obs,))
        action, log_prob = tanh_gaussian_sample(mean, log_std, noise)
        q = functional_call(self.critic, critic_params, (obs, action)).min(dim=0).values.squeeze(-1)
        return (alpha * log_prob - q).mean(), log_prob.detach()

    # ------------------------------------------------------------ update
    def update(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
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
                warnings.warn(f"compiled SAC update failed ({exc!r}); falling back to the plain path")
                self.fast, self._fast_step = False, None
                self._resync_optimizer_steps()
        return self._update_plain(batch, next_noise, noise)

    def _update_plain(self, batch, next_noise, noise) -> dict[str, float]:
        obs, actions, rewards, next_obs, not_dones = batch
        alpha = self.log_alpha.detach().exp()
        critic_params = dict(self.critic.named_parameters())
        actor_params = dict(self.actor.named_parameters())
        target_params = dict(self.critic_target.named_parameters())
        critic_loss = self._critic_loss(
            critic_params, target_params, actor_params, alpha,
            obs, actions, rewards, next_obs, not_dones, next_noise,
        )
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        frozen_critic = {k: v.detach() for k, v in critic_params.items()}
        actor_loss, log_prob = self._actor_loss(actor_params, frozen_critic, alpha, obs, noise)
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
    def _build_fast_step(self) -> Callable[..., Any] | None:
        """The whole update as one pure function, compiled; None if compile is unavailable."""
        cfg = self.config
        b1, b2 = 0.9, 0.999

        def adam(params: list[torch.Tensor], grads, m, v, lr, bc1, bc2_sqrt):
            # torch.optim.Adam's arithmetic (single-tensor path), out of place.
            new_m = [mi.lerp(g, 1 - b1) for mi, g in zip(m, grads)]
            new_v = [vi * b2 + (1 - b2) * g * g for vi, g in zip(v, grads)]
            step_size = lr / bc1
            new_p = [
                p - step_size * mi / (vi.sqrt() / bc2_sqrt + cfg.adam_eps)
                for p, mi, vi in zip(params, new_m, new_v)
            ]
            return new_p, new_m, new_v

        actor_names = [n for n, _ in self.actor.named_parameters()]
        critic_names = [n for n, _ in self.critic.named_parameters()]

        def step(actor_p, critic_p, target_p, log_alpha, opt_state, bc1, bc2_sqrt, batch, next_noise, noise):
            obs, actions, rewards, next_obs, not_dones = batch
            a_params = dict(zip(actor_names, actor_p))
            c_params = dict(zip(critic_names, critic_p))
            t_params = dict(zip(critic_names, target_p))
            alpha = log_alpha.exp()
            critic_loss_fn = lambda cp: self._critic_loss(  # noqa: E731
                cp, t_params, a_params, alpha, obs, actions, rewards, next_obs, not_dones, next_noise
            )
            c_grads, critic_loss = grad_and_value(critic_loss_fn)(c_params)
            new_critic, cm, cv = adam(
                critic_p, [c_grads[n] for n in critic_names], opt_state["critic_m"], opt_state["critic_v"],
                cfg.critic_lr, bc1, bc2_sqrt,
            )
            new_c_params = {n: p.detach() for n, p in zip(critic_names, new_critic)}
            a_grads, (actor_loss, log_prob) = grad_and_value(
                lambda ap: self._actor_loss(ap, new_c_params, alpha, obs, noise), has_aux=True
            )(a_params)
            new_actor, am, av = adam(
                actor_p, [a_grads[n] for n in actor_names], opt_state["actor_m"], opt_state["actor_v"],
                cfg.actor_lr, bc1, bc2_sqrt,
            )
            # d/dlog_alpha of -mean(log_alpha * (log_prob + H)) in closed form.
            alpha_grad = -(log_prob + self.target_entropy).mean().reshape(1)
            (new_log_alpha,), (lm,), (lv,) = adam(
                [log_alpha], [alpha_grad], opt_state["alpha_m"], opt_state["alpha_v"], cfg.alpha_lr, bc1, bc2_sqrt
            )
            new_target = [t.lerp(c, cfg.tau) for t, c in zip(target_p, new_critic)]
            new_opt = {
                "critic_m": cm, "critic_v": cv, "actor_m": am, "actor_v": av,
                "alpha_m": [lm], "alpha_v": [lv],
            }
            metrics = torch.stack([critic_loss.detach(), actor_loss.detach(), alpha.reshape(()), -log_prob.mean()])
            return new_actor, new_critic, new_target, new_log_alpha, new_opt, metrics

        try:
            return torch.compile(step, dynamic=False)
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"torch.compile unavailable ({exc!r}); using the plain SAC update")
            self.fast = False
            return None

    def _opt_state_tensors(self) -> dict[str, list[torch.Tensor]]:
        """Adam moments as lists, created lazily as torch.optim.Adam would (zeros)."""
        out: dict[str, list[torch.Tensor]] = {}
        for key, opt, params in (
            ("critic", self.critic_opt, list(self.critic.parameters())),
            ("actor", self.actor_opt, list(self.actor.parameters())),
            ("alpha", self.alpha_opt, [self.log_alpha]),
        ):
            ms, vs = [], []
            for p in params:
                state = opt.state[p]
                if "exp_avg" not in state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
            out[f"{key}_m"], out[f"{key}_v"] = ms, vs
        return out

    def _update_fast(self, batch, next_noise, noise) -> dict[str, float]:
        opt_state = self._opt_state_tensors()
        t = self._optimizer_step_count() + 1
        bc1 = torch.tensor([1 - 0.9**t], dtype=torch.float32)
        bc2_sqrt = torch.tensor([math.sqrt(1 - 0.999**t)], dtype=torch.float32)
        actor_p = [p.detach() for p in self.actor.parameters()]
        critic_p = [p.detach() for p in self.critic.parameters()]
        target_p = [p.detach() for p in self.critic_target.parameters()]
        new_actor, new_critic, new_target, new_log_alpha, new_opt, metrics = self._fast_step(
            actor_p, critic_p, target_p, self.log_alpha.detach(), opt_state, bc1, bc2_sqrt,
            batch, next_noise, noise,
        )
        with torch.no_grad():
            torch._foreach_copy_(actor_p, new_actor)
            torch._foreach_copy_(critic_p, new_critic)
            torch._foreach_copy_(target_p, new_target)
            self.log_alpha.copy_(new_log_alpha)
            for key in new_opt:
                torch._foreach_copy_(opt_state[key], new_opt[key])
        self._set_optimizer_step_count(t)
        values = metrics.tolist()
        return dict(zip(("critic_loss", "actor_loss", "alpha", "entropy"), values))

    def _optimizer_step_count(self) -> int:
        state = self.alpha_opt.state.get(self.log_alpha, {})
        return int(state["step"].item()) if "step" in state else 0

    def _set_optimizer_step_count(self, t: int) -> None:
        for opt in (self.critic_opt, self.actor_opt, self.alpha_opt):
            for group in opt.param_groups:
                for p in group["params"]:
                    opt.state[p]["step"] = torch.tensor(float(t))

    def _resync_optimizer_steps(self) -> None:
        self._set_optimizer_step_count(self._optimizer_step_count())

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
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
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])

    def parameters_finite(self) -> bool:
        tensors = [*self.actor.parameters(), *self.critic.parameters(), self.log_alpha]
        return all(bool(torch.isfinite(t).all()) for t in tensors)
