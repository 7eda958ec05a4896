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

The learner core (:mod:`rkl_bench.algos.base`) runs these losses on the
plain or the compiled fast path (``update_path``, ``fast_after``); the
update's ``pi(.|s)`` is computed once (:meth:`CDC.prepare`) and shared by
the critic's candidates and the actor. Every policy sample of an update is
drawn before it, in the order the losses take them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.config import (
    ActorCritic,
    Execution,
    LearnerConfig,
    Network,
    TanhPolicy,
    non_negative,
    positive_int,
    within,
)
from rkl_bench.algos.nets import EnsembleCritic, Nets, TanhGaussianActor, ensemble_value, hidden_sizes, seeded_init
from rkl_bench.algos.regularisers import forward_kl
from rkl_bench.algos.tanh_gaussian import TanhGaussian
from rkl_bench.data.dataset import Batch


@dataclass(frozen=True)
class CDCConfig(TanhPolicy, ActorCritic, Network, Execution, LearnerConfig):
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

    def check(self) -> None:
        positive_int(self, "num_critics", "num_samples")
        within(self, "nu", 0, 1)
        non_negative(self, "kl_weight", "eta")


class CDC(Learner):
    """CDC (Fakoor et al. 2021, Eq. 4): a log pi(a|s) term and the Delta critic penalty (module docstring)."""

    algo = "cdc"
    config_cls = CDCConfig

    def build(self, observations: Tensor, actions: Tensor) -> None:
        cfg = self.config
        hidden = hidden_sizes(cfg.hidden_dim, cfg.hidden_layers)
        with seeded_init(self.seed, "init"):
            actor = TanhGaussianActor(self.obs_dim, self.act_dim, hidden, cfg.log_std_min, cfg.log_std_max)
            critic = EnsembleCritic(self.obs_dim, self.act_dim, hidden, members=cfg.num_critics)
        self.add_actor_critic(actor, critic, "critic")
        self.add_generator("sample_generator", self.seed, "policy_samples")
        self.steps = (Step("critic", self.critic_loss), Step("actor", self.actor_loss, targets=True))

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, Tensor]:
        """The update's policy noise (line 5's samples, then the actor's), in the order the losses take it."""
        b, a, n = len(batch.observations), self.act_dim, self.config.num_samples
        draw = partial(torch.randn, generator=self.sample_generator, device=self.device, dtype=batch.observations.dtype)
        inputs = {"next": draw((n, b, a))}
        if self.config.eta > 0:
            inputs["candidates"] = draw((n, b, a))
        inputs["policy"] = draw((b, a))
        return inputs

    def prepare(self, nets: Nets, batch: Batch, inputs: dict) -> dict[str, Any]:
        """``pi(.|s)`` once: its graph serves the actor step, its detached copy the Delta candidates."""
        return {**inputs, "pi": nets.actor.distribution(batch.observations, clip_eps=self.config.action_clip_eps)}

    # ------------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Lines 5-6 and the Delta penalty."""
        cfg = self.config
        n, m = cfg.num_samples, cfg.num_critics
        s, a = batch.observations, batch.actions
        b = len(s)
        with torch.no_grad():
            next_actions = nets.actor.distribution(batch.next_observations).rsample((n,), inputs["next"])  # (N, B, A)
            q_next = nets.critic_target(_repeat(batch.next_observations, n), next_actions.reshape(n * b, -1))
            target_v = ensemble_value(q_next.view(m, n, b), cfg.nu).amax(dim=0)  # max_k Qbar'(s', a'_k), (B,)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_v.unsqueeze(-1)
            if cfg.eta > 0:
                pi = inputs["pi"]
                a_hat = TanhGaussian(pi.mean.detach(), pi.log_std.detach()).rsample((n,), inputs["candidates"])
                q_hat = nets.critic(_repeat(s, n), a_hat.reshape(n * b, -1)).view(m, n, b)
                best = q_hat.argmax(dim=1)  # (M, B): each critic's own argmax over the N candidates
                a_best = a_hat[best, torch.arange(b, device=s.device)]  # (M, B, A)
        if cfg.eta > 0:  # one forward for Q_j(s, a) and Q_j(s, a_hat*_j), every critic on its own inputs
            obs_in = torch.cat([s, s]).expand(m, -1, -1)
            act_in = torch.cat([a.expand(m, -1, -1), a_best], dim=1)
            q_data, q_best = nets.critic(obs_in, act_in).split(b, dim=1)  # (M, B, 1) each
            delta = F.relu(q_best - q_data).pow(2).mean(dim=(1, 2))  # (M,)
        else:
            q_data = nets.critic(s, a)
            delta = q_data.new_zeros(m)
        td_loss = (q_data - target_q).pow(2).mean(dim=(1, 2)).sum()
        critic_loss = td_loss + cfg.eta * delta.sum()
        return critic_loss, {
            "critic_loss": critic_loss.detach(),
            "td_loss": td_loss.detach(),
            "delta": delta.detach().mean(),
            "q_mean": q_data.detach().mean(),
        }

    def actor_loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Line 7, with the critics' weights frozen."""
        cfg, policy = self.config, inputs["pi"]
        action = policy.rsample(noise=inputs["policy"])
        q_policy = ensemble_value(nets.critic_frozen(batch.observations, action), cfg.nu).mean()
        nll = forward_kl(policy, batch.actions).mean()  # type: ignore[arg-type]
        actor_loss = -q_policy + cfg.kl_weight * nll
        return actor_loss, {
            "actor_loss": actor_loss.detach(),
            "q_policy": q_policy.detach(),
            "nll": nll.detach(),
            "bc_loss": F.mse_loss(policy.mode.detach(), batch.actions),
            "log_std_mean": policy.log_std.detach().mean(),
        }


def _repeat(x: Tensor, n: int) -> Tensor:
    """``(B, d) -> (n * B, d)``, sample-major: row ``k * B + i`` is ``x[i]``."""
    return x.unsqueeze(0).expand(n, -1, -1).reshape(n * len(x), -1)
