"""TD3+BC: TD3 with a behaviour-cloning term in the actor loss.

Fujimoto & Gu, "A Minimalist Approach to Offline Reinforcement Learning"
(NeurIPS 2021); the TD3+RKL paper's Table I, Eq. 6. Written to match the
authors' code (github.com/sfujim/TD3_BC) step for step:

Critic (TD3, Algorithm 1 lines 11-14 of the TD3+RKL paper), every step::

    a'  = clip(mu_target(s') + clip(N(0, policy_noise), -noise_clip, noise_clip), -1, 1)
    y   = r + discount * (1 - done) * min_j Q_target_j(s', a')
    L_Q = sum_j mean_B (Q_j(s, a) - y)^2

Actor (Eq. 6), every ``policy_freq``-th step, then Polyak-averaged targets::

    lmbda = q_weight / mean_B |Q_1(s, mu(s))|          (no gradient through lmbda)
    L_mu  = -lmbda * mean_B Q_1(s, mu(s)) + mean_B mean_j (mu(s) - a)^2

``q_weight`` is TD3+BC's alpha (2.5). The two critics are one
:class:`~rkl_bench.algos.nets.EnsembleCritic` (Q1 is member 0); the actor's
Q is evaluated with the critic weights detached, so the actor step builds no
graph for them (the official code computes and then discards those grads).

Step counting follows the official code: ``total_it`` is incremented first,
the actor is updated when ``total_it % policy_freq == 0`` (steps 2, 4, ...).

Metrics returned by :meth:`TD3BC.update`: ``critic_loss`` and ``q_mean``
(mean of both critics on the batch's ``(s, a)``) on every step; ``actor_loss``
and ``bc_loss`` only on actor steps (they are not computed otherwise; a logger
should average each key over the steps where it appears).

Subclasses (TD3+RKL) change only :meth:`TD3BC.actor_loss` (and
:meth:`TD3BC.actor_inputs`, the random draws and lookups it needs).

The losses are written once, against a :class:`~rkl_bench.algos.nets.Nets`;
the learner core (:mod:`rkl_bench.algos.base`) runs them on the plain path
(modules, ``backward()``, ``torch.optim.Adam``) or the compiled fast path
(``update_path``, ``fast_after``; docs/speed.md). Target noise comes from
the learner's generator before the update, so both paths draw the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.config import ActorCritic, Execution, LearnerConfig, Network, non_negative, positive, positive_int
from rkl_bench.algos.fast import detached
from rkl_bench.algos.nets import (
    DeterministicActor,
    EnsembleCritic,
    Nets,
    critic_member_apply,
    hidden_sizes,
    seeded_init,
)
from rkl_bench.data.dataset import Batch


@dataclass(frozen=True)
class TD3BCConfig(ActorCritic, Network, Execution, LearnerConfig):
    """TD3+BC's hyper-parameters; defaults are the paper's (Sec. 5 / Appendix) and official code's."""

    q_weight: float = 2.5
    """TD3+BC's alpha: weight of the normalised Q term (paper: 2.5 on all D4RL tasks)."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (times ``max_action``)."""
    noise_clip: float = 0.5
    """Clip of that noise (times ``max_action``)."""
    policy_freq: int = 2
    """Actor and target updates every ``policy_freq`` critic steps."""
    max_action: float = 1.0

    def check(self) -> None:
        positive(self, "max_action")
        positive_int(self, "policy_freq")
        non_negative(self, "policy_noise", "noise_clip", "q_weight")


class TD3BC(Learner):
    """TD3+BC (Fujimoto & Gu 2021, Eq. 6; see the module docstring for the update)."""

    algo = "td3_bc"
    config_cls = TD3BCConfig

    def build(self, observations: torch.Tensor, actions: torch.Tensor) -> None:
        cfg = self.config
        hidden = hidden_sizes(cfg.hidden_dim, cfg.hidden_layers)
        with seeded_init(self.seed, "init"):
            actor = DeterministicActor(self.obs_dim, self.act_dim, hidden, cfg.max_action)
            critic = EnsembleCritic(self.obs_dim, self.act_dim, hidden, members=2)
        self.add_actor_critic(actor, critic, "actor", "critic")
        self.add_generator("noise_generator", self.seed, "target_policy_noise")
        self._noise: torch.Tensor | None = None
        self.steps = (Step("critic", self.critic_loss),
                      Step("actor", self.policy_loss, every=cfg.policy_freq, targets=True))

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Standard-normal target-policy noise ``(B, act_dim)`` (scaled and clipped in the loss)."""
        shape = batch.actions.shape
        if self._noise is None or self._noise.shape != shape:
            self._noise = torch.empty(shape, device=self.device, dtype=batch.actions.dtype)
        return {"noise": torch.randn(shape, generator=self.noise_generator, out=self._noise)}

    def nets(self, params: dict[str, list[torch.Tensor]] | None = None) -> Nets:
        """The four networks, and ``q1``: the first critic on frozen weights (the actor's Q)."""
        nets = super().nets(params)
        if params is None:
            nets.q1 = lambda obs, action: self.critic.member(obs, action, 0, detach_params=True)
        else:
            frozen = detached(params["critic"])
            nets.q1 = lambda obs, action: critic_member_apply(frozen, torch.cat([obs, action], dim=-1), 0)
        return nets

    # ------------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD3's clipped double-Q loss with target policy smoothing (module docstring)."""
        cfg = self.config
        with torch.no_grad():
            noise = (inputs["noise"] * (cfg.policy_noise * cfg.max_action)).clamp(
                -cfg.noise_clip * cfg.max_action, cfg.noise_clip * cfg.max_action
            )
            next_action = (nets.actor_target(batch.next_observations) + noise).clamp(-cfg.max_action, cfg.max_action)
            target_q = nets.critic_target(batch.next_observations, next_action).amin(dim=0)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_q
        q = nets.critic(batch.observations, batch.actions)  # (2, B, 1)
        critic_loss = (q - target_q).pow(2).mean(dim=(1, 2)).sum()  # = mse(Q1, y) + mse(Q2, y)
        return critic_loss, {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}

    def policy_loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actor objective at ``mu(s)``, with Q1 evaluated on frozen critic weights."""
        pi = nets.actor(batch.observations)
        actor_loss, metrics = self.actor_loss(batch, pi, nets.q1(batch.observations, pi), inputs)
        metrics["actor_loss"] = actor_loss.detach()
        return actor_loss, metrics

    def actor_loss(self, batch: Batch, pi: torch.Tensor, q1: torch.Tensor,
                   inputs: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 6: ``-q_weight / mean|Q1| * mean Q1(s, mu(s)) + mse(mu(s), a)``."""
        lmbda = self.config.q_weight / q1.abs().mean().detach()
        bc_loss = F.mse_loss(pi, batch.actions)
        return -lmbda * q1.mean() + bc_loss, {"bc_loss": bc_loss.detach()}
