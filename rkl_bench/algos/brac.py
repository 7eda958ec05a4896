"""BRAC: behaviour-regularised actor-critic with a KL penalty (BRAC-p by default).

Wu, Tucker & Nachum, "Behavior Regularized Offline Reinforcement Learning"
(2019); the TD3+RKL paper's Table I, Eq. 5::

    maximise_pi  E_{(s,a)~D} [ Q(s, pi(s)) - lambda * KL(pi(.|s) || pi_b(.|s)) ]

Written after the authors' ``brac_primal_agent.py`` (google-research,
``behavior_regularized_offline_rl``) with the KL divergence and its primal
(sampled) estimate, step for step except where noted in docs/baselines.md.

0. **Behaviour policy** ``pi_b`` (before RL, BRAC's ``bc_agent.py``): a
   tanh-Gaussian fitted on the normalised states by maximum likelihood of the
   clipped dataset actions, with an entropy bonus tuned to entropy
   ``-act_dim`` (:func:`~rkl_bench.algos.brac_behaviour.fit_tanh_behaviour`).
   Frozen afterwards.

1. **KL estimate** (``divergences.KL.primal_estimate``), per state, with
   ``kl_samples`` reparameterised draws ``x_k ~ pi(.|s)``::

       KL(s) = mean_k [ log pi(x_k|s) - log pi_b(clip(x_k)|s) ]

   ``clip`` keeps ``x`` in ``[-1 + eps, 1 - eps]`` (``action_clip_eps``).
   The first term is minus the policy's entropy: the exploration incentive
   the TD3+RKL paper points at (Eq. 13).

2. **Critic** (every step), ``num_critics`` Q-networks, targets by Polyak::

       a'  ~ pi(.|s')                                   (one sample, no target actor)
       V'  = nu * min_j Q'_j(s', a') + (1 - nu) * max_j Q'_j(s', a')
             [ - kl_weight * KL(s')   if value_penalty ]  (BRAC-v)
       y   = r + discount * (1 - done) * V'
       L_Q = sum_j mean_B (Q_j(s, a) - y)^2

3. **Actor** (every step)::

       a_p ~ pi(.|s)
       L_pi = mean_B [ kl_weight * KL(s) - [step > warm_start] * Qbar(s, a_p) ]

   with ``Qbar`` the same ``nu`` mix of the critics (``nu = 1``: their min).
   For the first ``warm_start`` steps the actor is trained on the KL alone.

4. Target critics: ``Q' <- (1 - tau) Q' + tau Q`` every step.

Defaults (docs/baselines.md has the sources): ``kl_weight = 0.1`` (BRAC's
alpha in the authors' scripts), BRAC-p (``value_penalty = False``, the
variant whose D4RL scores Table II quotes), 2 critics of 300x300 with lr
1e-3, actor 200x200 with lr 3e-4 and log-std in ``[-5, 0]``, 4 KL samples,
20k warm-start steps, ``nu = 1``, ``tau = 0.005``, batch 256. No entropy
term beyond the KL's own (BRAC's ``alpha_entropy = 0``).

Evaluation uses the policy's mode ``tanh(mean(s))`` (BRAC's ``main`` test
policy). Randomness: policy samples come from a ``torch.Generator`` stream of
the seed, the behaviour fit from its own streams; the global RNG is untouched.

Metrics: ``critic_loss``, ``q_mean`` (critics on the batch's ``(s, a)``),
``actor_loss``, ``kl`` (mean KL estimate on the batch states), ``bc_loss``
(MSE between the policy's mode and the batch actions, comparable with the
other learners' ``bc_loss``), ``log_std_mean``; after the warm start also
``q_policy`` (``Qbar(s, a_p)``).

The learner core (:mod:`rkl_bench.algos.base`) runs these losses on the
plain or the compiled fast path (``update_path``, ``fast_after``). Every
policy sample of an update is drawn before it, in the order the losses
take them, so both paths use the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.config import (
    ActorCritic,
    Execution,
    LearnerConfig,
    TanhPolicy,
    non_negative,
    non_negative_int,
    positive_int,
    within,
)
from rkl_bench.algos.behaviour import GaussianBehaviour
from rkl_bench.algos.brac_behaviour import TanhBehaviourFit, fit_tanh_behaviour, unfitted_tanh_behaviour
from rkl_bench.algos.nets import (
    EnsembleCritic,
    Nets,
    TanhGaussianActor,
    derive_seed,
    ensemble_value,
    hidden_sizes,
    seeded_init,
)
from rkl_bench.algos.regularisers import reverse_kl
from rkl_bench.algos.tanh_gaussian import TanhGaussian
from rkl_bench.data.dataset import Batch


@dataclass(frozen=True)
class BRACBehaviourFields:
    """BRAC's behaviour policy and the KL to it (``brac``, ``bc_reverse_kl``)."""

    behaviour: TanhBehaviourFit = field(default_factory=TanhBehaviourFit)
    """How ``pi_b`` is fitted: ``behaviour.steps``, ``behaviour.entropy_bonus``, ... (BRAC's ``run_bc.sh``)."""
    kl_samples: int = 4
    """Draws ``x ~ pi`` per state in the KL estimate (BRAC's ``n_div_samples``)."""

    aliases: ClassVar[dict[str, str]] = {f"behaviour_{name}": f"behaviour.{name}" for name in (
        "steps", "batch_size", "lr", "hidden_dim", "hidden_layers", "entropy_bonus")}
    """The flat names these had before the nested section (configs and checkpoints use them)."""

    def check(self) -> None:
        positive_int(self, "kl_samples")


@dataclass(frozen=True)
class BRACConfig(BRACBehaviourFields, TanhPolicy, ActorCritic, Execution, LearnerConfig):
    """BRAC's hyper-parameters; defaults from the authors' code and scripts (docs/baselines.md)."""

    kl_weight: float = 0.1
    """lambda of Table I Eq. 5 (BRAC's alpha): weight of the KL penalty. Fixed, as in BRAC's scripts."""
    value_penalty: bool = False
    """Also subtract ``kl_weight * KL(s')`` in the critic target (BRAC-v). Default: BRAC-p (Table II's BRAC)."""
    warm_start: int = 20_000
    """Actor steps on the KL alone before the Q term is switched on."""
    nu: float = 1.0
    """Critic mix ``nu * min + (1 - nu) * max`` (BRAC's ``ensemble_q_lambda``; 1 = min)."""
    num_critics: int = 2
    critic_lr: float = 1e-3
    actor_hidden_dim: int = 200
    critic_hidden_dim: int = 300
    hidden_layers: int = 2
    log_std_max: float = 0.0
    """Top of the actor's log-std range (BRAC's ``ActorNetwork``: [-5, 0])."""

    def check(self) -> None:
        non_negative_int(self, "warm_start")
        positive_int(self, "num_critics", "actor_hidden_dim", "critic_hidden_dim", "hidden_layers")
        within(self, "nu", 0, 1)
        non_negative(self, "kl_weight")


class BRACBehaviour:
    """BRAC's behaviour policy ``pi_b`` (step 0) and the KL to it (step 1), for ``brac`` and ``bc_reverse_kl``."""

    fits_behaviour = True
    config: Any
    behaviour: GaussianBehaviour

    def fit_behaviour(self, observations: Tensor, actions: Tensor,
                      progress: bool) -> tuple[GaussianBehaviour, dict[str, float]]:
        cfg = self.config
        return fit_tanh_behaviour(observations, actions, cfg.behaviour, derive_seed(self.seed, "behaviour"), progress,
                                  clip_eps=cfg.action_clip_eps, fused_adam=cfg.fused_adam)

    def unfitted_behaviour(self, rows: int) -> GaussianBehaviour:
        cfg = self.config
        return unfitted_tanh_behaviour(self.obs_dim, self.act_dim, cfg.behaviour, self.device, cfg.action_clip_eps)

    def kl(self, policy: TanhGaussian, observations: Tensor, noise: Tensor) -> Tensor:
        """Step 1: the sampled ``KL(pi(.|s) || pi_b(.|s))`` per state, ``(B,)``, from ``noise`` ``(k, B, act)``."""
        behaviour_log_prob = partial(self.behaviour.log_prob, observations)  # clips at action_clip_eps
        return reverse_kl(policy, behaviour_log_prob, self.config.kl_samples, noise)  # type: ignore[arg-type]


class BRAC(BRACBehaviour, Learner):
    """BRAC (Wu et al. 2019, Eq. 5): a KL(pi || pi_b) penalty on a tanh-Gaussian actor (module docstring)."""

    algo = "brac"
    config_cls = BRACConfig

    def build(self, observations: Tensor, actions: Tensor) -> None:
        cfg = self.config
        with seeded_init(self.seed, "init"):
            actor = TanhGaussianActor(self.obs_dim, self.act_dim, hidden_sizes(cfg.actor_hidden_dim, cfg.hidden_layers),
                                      cfg.log_std_min, cfg.log_std_max)
            critic = EnsembleCritic(self.obs_dim, self.act_dim, hidden_sizes(cfg.critic_hidden_dim, cfg.hidden_layers),
                                    cfg.num_critics)
        self.add_actor_critic(actor, critic, "critic")
        self.add_generator("sample_generator", self.seed, "policy_samples")
        self.steps = (Step("critic", self.critic_loss), Step("actor", self.actor_loss, targets=True))

    def inputs(self, batch: Batch, steps: tuple[str, ...]) -> dict[str, Any]:
        """The update's policy noise, in the order the losses take it, and whether the Q term is on."""
        cfg, b, a, k = self.config, len(batch.observations), self.act_dim, self.config.kl_samples
        draw = partial(torch.randn, generator=self.sample_generator, device=self.device, dtype=batch.observations.dtype)
        inputs: dict[str, Any] = {"next": draw((b, a))}
        if cfg.value_penalty:
            inputs["next_kl"] = draw((k, b, a))
        inputs.update(policy=draw((b, a)), kl=draw((k, b, a)))
        inputs["q_on"] = self.total_it > cfg.warm_start  # the first warm_start updates: KL only (BRAC's code: one more)
        return inputs

    # ------------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 2."""
        cfg = self.config
        with torch.no_grad():
            next_policy = nets.actor.distribution(batch.next_observations, clip_eps=cfg.action_clip_eps)
            next_action = next_policy.rsample(noise=inputs["next"])
            target_v = ensemble_value(nets.critic_target(batch.next_observations, next_action), cfg.nu)  # (B, 1)
            if cfg.value_penalty:
                kl = self.kl(next_policy, batch.next_observations, inputs["next_kl"])
                target_v = target_v - cfg.kl_weight * kl.unsqueeze(-1)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_v
        q = nets.critic(batch.observations, batch.actions)  # (M, B, 1)
        critic_loss = (q - target_q).pow(2).mean(dim=(1, 2)).sum()
        return critic_loss, {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, nets: Nets, batch: Batch, inputs: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 3, with the critics' weights frozen."""
        cfg = self.config
        policy = nets.actor.distribution(batch.observations, clip_eps=cfg.action_clip_eps)
        action = policy.rsample(noise=inputs["policy"])  # drawn every step: the noise does not depend on warm_start
        kl = self.kl(policy, batch.observations, inputs["kl"])
        actor_loss = cfg.kl_weight * kl.mean()
        metrics: dict[str, Tensor] = {}
        if inputs["q_on"]:
            q_policy = ensemble_value(nets.critic_frozen(batch.observations, action), cfg.nu).mean()
            actor_loss = actor_loss - q_policy
            metrics["q_policy"] = q_policy.detach()
        metrics.update(
            actor_loss=actor_loss.detach(),
            kl=kl.detach().mean(),
            bc_loss=F.mse_loss(policy.mode.detach(), batch.actions),
            log_std_mean=policy.log_std.detach().mean(),
        )
        return actor_loss, metrics
