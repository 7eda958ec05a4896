"""CDC: Continuous Doubly Constrained batch RL.

Fakoor, Mueller, Asadi, Chaudhari & Smola, "Continuous Doubly Constrained
Batch Reinforcement Learning" (NeurIPS 2021), Algorithm 1; the TD3+RKL
paper's Table I, Eq. 4. Two constraints on an actor-critic with a stochastic
(tanh-Gaussian) policy ``pi`` and an ensemble of ``M = num_critics`` critics:

* **policy constraint** (CDC Eq. 9-11; Table I Eq. 4): the actor also
  maximises ``kl_weight * log pi(a|s)`` on the dataset's ``(s, a)``, i.e. it
  minimises ``KL(pi_b || pi)`` up to a constant without modelling ``pi_b``
  (:func:`~rkl_bench.algos.regularisers.forward_kl`). The TD3+RKL paper
  calls it what it is, a forward KL (its footnote 1): mean-seeking.
* **value constraint** (CDC Eq. 6-7): each critic is penalised where the best
  of ``N`` policy actions looks better than the dataset action,
  ``Delta_j(s, a) = ([max_k Q_j(s, a_hat_k) - Q_j(s, a)]_+)^2``.

Per step (Algorithm 1, lines 4-8), with ``Qbar = nu * min_j Q_j + (1 - nu) *
max_j Q_j`` (CDC Eq. 5)::

    a'_k  ~ pi(.|s'),  a_hat_k ~ pi(.|s),   k = 1..N               (line 5)
    y     = r + discount * (1 - done) * max_k Qbar'(s', a'_k)       (line 6, EMaQ-style target)
    L_Q   = sum_j mean_B [ (Q_j(s, a) - y)^2 + eta * Delta_j(s, a) ]
    L_pi  = mean_B [ -Qbar(s, a_p) - kl_weight * log pi(clip(a)|s) ],  a_p ~ pi(.|s)   (line 7)
    Q'_j <- (1 - tau) Q'_j + tau Q_j                                 (line 8)

``Delta_j``'s gradient is ``2 eps (grad Q_j(s, a_hat*) - grad Q_j(s, a))``
(CDC Eq. 8) with ``a_hat*`` the argmax of the ``N`` candidates: the max is
found without a graph over all ``N * B`` candidates, then only ``Q_j(s, a_hat*_j)``
is evaluated with gradients (same gradient, ``N`` times less backward work).
Batch means replace the paper's batch sums (a constant factor in the step
size). There is no target actor and no policy delay (Algorithm 1 has none).

Defaults: ``M = 4``, ``nu = 0.75`` (the paper, Sec. 3.3); ``N = 10``,
``eta = 1``, ``kl_weight = 1``, lr 3e-4, 256x256, tau 0.005, batch 256 are our
choices where the paper's main text gives no value (docs/baselines.md says
why). Evaluation uses the policy's mode ``tanh(mean(s))``.

Metrics: ``critic_loss`` (TD + penalty), ``td_loss``, ``delta`` (mean penalty
per critic, before ``eta``), ``q_mean``, ``actor_loss``, ``q_policy``,
``nll`` (``-log pi(a|s)``, the policy constraint), ``bc_loss`` (MSE between the
mode and the batch actions), ``log_std_mean``.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rkl_bench.algos.bc_signals import (
    CLIP_EPS,
    TanhGaussian,
    TanhGaussianActor,
    check_log_std_bounds,
    frozen,
)
from rkl_bench.algos.nets import EnsembleCritic, adam, hidden_sizes, make_generator, seeded_init, soft_update
from rkl_bench.algos.regularisers import forward_kl
from rkl_bench.algos.td3_bc import act_with, check_checkpoint, positive, positive_int
from rkl_bench.data.dataset import Batch


@dataclass(frozen=True)
class CDCConfig:
    """CDC's hyper-parameters (paper values where it gives them; docs/baselines.md for the rest)."""

    kl_weight: float = 1.0
    """lambda of CDC Eq. 11 / Table I Eq. 4: weight of ``log pi(a|s)`` in the actor objective."""
    eta: float = 1.0
    """Weight of the extra-overestimation penalty Delta (CDC Eq. 7); 0 switches it off."""
    nu: float = 0.75
    """Ensemble mix ``nu * min + (1 - nu) * max`` (CDC Eq. 5; the paper's 0.75)."""
    num_critics: int = 4
    """M, critics in the ensemble (the paper's 4)."""
    num_samples: int = 10
    """N, policy actions per state for the target's max and for Delta (not given in the main text)."""
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden_dim: int = 256
    hidden_layers: int = 2
    batch_size: int = 256
    """Minibatch size; read by the training loop's sampler, not by the learner."""
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    action_clip_eps: float = CLIP_EPS
    """Dataset actions are clipped to ``[-1 + eps, 1 - eps]`` before ``log pi(a|s)``."""
    fused_adam: bool = True

    def __post_init__(self) -> None:
        positive(self, "discount", "tau", "actor_lr", "critic_lr")
        positive_int(self, "num_critics", "num_samples", "hidden_dim", "hidden_layers", "batch_size")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"'tau' must be in (0, 1], got {self.tau!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"'discount' must be in (0, 1], got {self.discount!r}")
        if not 0.0 <= self.nu <= 1.0:
            raise ValueError(f"'nu' must be in [0, 1], got {self.nu!r}")
        for key in ("kl_weight", "eta"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"{key!r} must be >= 0, got {getattr(self, key)!r}")
        check_log_std_bounds(self)
        if not 0.0 < self.action_clip_eps < 0.5:
            raise ValueError(f"'action_clip_eps' must be in (0, 0.5), got {self.action_clip_eps!r}")


def ensemble_value(q: Tensor, nu: float) -> Tensor:
    """CDC Eq. 5: ``nu * min_j Q_j + (1 - nu) * max_j Q_j`` over the leading critic axis."""
    return nu * q.amin(dim=0) + (1.0 - nu) * q.amax(dim=0)


class CDC:
    """The CDC learner (see the module docstring)."""

    algo = "cdc"

    def __init__(
        self, obs_dim: int, act_dim: int, config: CDCConfig | None = None, seed: int = 0, device: str = "cpu"
    ) -> None:
        self.config = cfg = config or CDCConfig()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.seed = int(seed)
        self.device = torch.device(device)
        hidden = hidden_sizes(cfg.hidden_dim, cfg.hidden_layers)
        with seeded_init(seed, "init"):
            self.actor = TanhGaussianActor(self.obs_dim, self.act_dim, hidden, cfg.log_std_min, cfg.log_std_max)
            self.critic = EnsembleCritic(self.obs_dim, self.act_dim, hidden, members=cfg.num_critics)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.actor_lr, cfg.fused_adam, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.critic_lr, cfg.fused_adam, self.device)
        self.sample_generator = make_generator(seed, "policy_samples", self.device)
        self.total_it = 0

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, float]:
        """Lines 4-8 of Algorithm 1: critic step, actor step, target update."""
        self.total_it += 1
        cfg = self.config
        # pi(.|s) once: its graph serves the actor step, its detached copy the Delta candidates.
        policy = self.actor.distribution(batch.observations, self.sample_generator, cfg.action_clip_eps)
        metrics = self.critic_step(batch, policy)
        metrics.update(self.actor_step(batch, policy))
        soft_update(self.critic_target, self.critic, cfg.tau)
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

    def critic_step(self, batch: Batch, policy: TanhGaussian) -> dict[str, Tensor]:
        cfg = self.config
        n, m = cfg.num_samples, cfg.num_critics
        s, a = batch.observations, batch.actions
        b = len(s)
        with torch.no_grad():
            next_policy = self.actor.distribution(batch.next_observations, self.sample_generator)
            next_actions = next_policy.rsample((n,))  # (N, B, A)
            q_next = self.critic_target(_repeat(batch.next_observations, n), next_actions.reshape(n * b, -1))
            target_v = ensemble_value(q_next.view(m, n, b), cfg.nu).amax(dim=0)  # max_k Qbar'(s', a'_k), (B,)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_v.unsqueeze(-1)
            if cfg.eta > 0:
                candidates = TanhGaussian(policy.mean.detach(), policy.log_std.detach(), self.sample_generator)
                a_hat = candidates.rsample((n,))  # (N, B, A)
                q_hat = self.critic(_repeat(s, n), a_hat.reshape(n * b, -1)).view(m, n, b)
                best = q_hat.argmax(dim=1)  # (M, B): each critic's own argmax over the N candidates
                a_best = a_hat[best, torch.arange(b, device=s.device)]  # (M, B, A)
        if cfg.eta > 0:  # one forward for Q_j(s, a) and Q_j(s, a_hat*_j), every critic on its own inputs
            obs_in = torch.cat([s, s]).expand(m, -1, -1)
            act_in = torch.cat([a.expand(m, -1, -1), a_best], dim=1)
            q_data, q_best = self.critic(obs_in, act_in).split(b, dim=1)  # (M, B, 1) each
            delta = F.relu(q_best - q_data).pow(2).mean(dim=(1, 2))  # (M,)
        else:
            q_data = self.critic(s, a)
            delta = q_data.new_zeros(m)
        td_loss = (q_data - target_q).pow(2).mean(dim=(1, 2)).sum()
        critic_loss = td_loss + cfg.eta * delta.sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        return {
            "critic_loss": critic_loss.detach(),
            "td_loss": td_loss.detach(),
            "delta": delta.detach().mean(),
            "q_mean": q_data.detach().mean(),
        }

    def actor_step(self, batch: Batch, policy: TanhGaussian) -> dict[str, Tensor]:
        cfg = self.config
        action = policy.rsample()
        with frozen(self.critic):
            q_policy = ensemble_value(self.critic(batch.observations, action), cfg.nu).mean()
        nll = forward_kl(policy, batch.actions).mean()  # type: ignore[arg-type]
        actor_loss = -q_policy + cfg.kl_weight * nll
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return {
            "actor_loss": actor_loss.detach(),
            "q_policy": q_policy.detach(),
            "nll": nll.detach(),
            "bc_loss": F.mse_loss(policy.mode.detach(), batch.actions),
            "log_std_mean": policy.log_std.detach().mean(),
        }

    # --------------------------------------------------------------------- act
    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The policy's mode ``tanh(mean(s))`` for normalised observations ``(B, obs_dim)`` or ``(obs_dim,)``."""
        return act_with(self.actor, observations, self.obs_dim, self.device)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return copy.deepcopy({
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "total_it": self.total_it,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "sample_generator": self.sample_generator.get_state(),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.sample_generator.set_state(state["sample_generator"])
        self.total_it = int(state["total_it"])


def _repeat(x: Tensor, n: int) -> Tensor:
    """``(B, d) -> (n * B, d)``, sample-major: row ``k * B + i`` is ``x[i]``."""
    return x.unsqueeze(0).expand(n, -1, -1).reshape(n * len(x), -1)
