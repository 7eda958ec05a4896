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
   ``-act_dim`` (:func:`~rkl_bench.algos.bc_signals.fit_tanh_behaviour`).
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

Update paths (``update_path``): ``"plain"`` runs the losses below on the
modules with ``backward()`` and ``torch.optim``; ``"fast"`` (default, after
``fast_after`` plain updates) runs the same losses on the networks'
functional forms as one compiled step (:mod:`rkl_bench.algos.fast`). The
policy samples of an update are drawn before it, in the order the losses
take them (:class:`~rkl_bench.algos.fast.NoiseQueue`), so both paths use
the same noise.
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
    TanhBehaviourFit,
    TanhGaussian,
    TanhGaussianActor,
    TanhGaussianActorCritic,
    as_tensor,
    behaviour_fit_of,
    check_behaviour_fields,
    check_log_std_bounds,
    check_rows,
    fit_tanh_behaviour,
    tanh_gaussian_log_prob,
    unfitted_tanh_behaviour,
)
from rkl_bench.algos.base import load_optimizer
from rkl_bench.algos.fast import (
    FastPathFailed,
    FastUpdate,
    NoiseQueue,
    adam_apply,
    check_update_path,
    networks_finite,
    polyak,
    value_and_grad,
)
from rkl_bench.algos.nets import (
    EnsembleCritic,
    Nets,
    adam,
    derive_seed,
    hidden_sizes,
    make_generator,
    seeded_init,
    soft_update,
)
from rkl_bench.algos.regularisers import reverse_kl
from rkl_bench.algos.td3_bc import act_with, check_checkpoint, non_negative_int, positive, positive_int
from rkl_bench.data.dataset import Batch
from rkl_bench.errors import RklBenchError

_FIT = TanhBehaviourFit()


@dataclass(frozen=True)
class BRACConfig:
    """BRAC's hyper-parameters; defaults from the authors' code and scripts (docs/baselines.md)."""

    kl_weight: float = 0.1
    """lambda of Table I Eq. 5 (BRAC's alpha): weight of the KL penalty. Fixed, as in BRAC's scripts."""
    value_penalty: bool = False
    """Also subtract ``kl_weight * KL(s')`` in the critic target (BRAC-v). Default: BRAC-p (Table II's BRAC)."""
    kl_samples: int = 4
    """Draws ``x ~ pi`` per state in the KL estimate (BRAC's ``n_div_samples``)."""
    warm_start: int = 20_000
    """Actor steps on the KL alone before the Q term is switched on."""
    nu: float = 1.0
    """Critic mix ``nu * min + (1 - nu) * max`` (BRAC's ``ensemble_q_lambda``; 1 = min)."""
    num_critics: int = 2
    discount: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 1e-3
    actor_hidden_dim: int = 200
    critic_hidden_dim: int = 300
    hidden_layers: int = 2
    batch_size: int = 256
    """Minibatch size; read by the training loop's sampler, not by the learner."""
    log_std_min: float = -5.0
    log_std_max: float = 0.0
    """Range of the actor's log-std (BRAC's ``ActorNetwork``: [-5, 0])."""
    action_clip_eps: float = CLIP_EPS
    behaviour_steps: int = _FIT.steps
    behaviour_batch_size: int = _FIT.batch_size
    behaviour_lr: float = _FIT.lr
    behaviour_hidden_dim: int = _FIT.hidden[0]
    behaviour_hidden_layers: int = len(_FIT.hidden)
    behaviour_entropy_bonus: bool = _FIT.entropy_bonus
    fused_adam: bool = True
    update_path: str = "fast"
    """``"fast"``: the compiled whole-step update (rkl_bench/algos/fast.py); ``"plain"``: eager."""
    fast_after: int = 10_000
    """Updates on the plain path before the compiled one takes over (compiling costs 10-60 s)."""

    def __post_init__(self) -> None:
        check_update_path(self.update_path)
        non_negative_int(self, "fast_after")
        positive(self, "discount", "tau", "actor_lr", "critic_lr")
        positive_int(self, "kl_samples", "num_critics", "actor_hidden_dim", "critic_hidden_dim", "hidden_layers",
                     "batch_size")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"'tau' must be in (0, 1], got {self.tau!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"'discount' must be in (0, 1], got {self.discount!r}")
        if not 0.0 <= self.nu <= 1.0:
            raise ValueError(f"'nu' must be in [0, 1], got {self.nu!r}")
        if not self.kl_weight >= 0:
            raise ValueError(f"'kl_weight' must be >= 0, got {self.kl_weight!r}")
        if isinstance(self.warm_start, bool) or not isinstance(self.warm_start, int) or self.warm_start < 0:
            raise ValueError(f"'warm_start' must be a whole number >= 0, got {self.warm_start!r}")
        check_log_std_bounds(self)
        check_behaviour_fields(self)


def ensemble_value(q: Tensor, nu: float) -> Tensor:
    """``nu * min_j Q_j + (1 - nu) * max_j Q_j`` over the leading critic axis."""
    if nu == 1.0:
        return q.amin(dim=0)
    return nu * q.amin(dim=0) + (1.0 - nu) * q.amax(dim=0)


class BRAC(TanhGaussianActorCritic):
    """The BRAC learner (see the module docstring)."""

    algo = "brac"

    def __init__(
        self,
        observations: np.ndarray | Tensor,
        actions: np.ndarray | Tensor,
        config: BRACConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
        fit: bool = True,
    ) -> None:
        """``observations`` are the dataset's NORMALISED states, ``actions`` its actions, row by row.

        ``fit=False`` skips the behaviour fit; the learner is then usable only
        after :meth:`load_state_dict` of a checkpoint, which carries ``pi_b``.
        """
        self.config = cfg = config or BRACConfig()
        self.device = torch.device(device)
        obs, act = as_tensor(observations, self.device), as_tensor(actions, self.device)
        check_rows(self.algo, obs, act)
        self.obs_dim, self.act_dim = obs.shape[1], act.shape[1]
        self.seed = int(seed)
        with seeded_init(seed, "init"):
            self.actor = TanhGaussianActor(self.obs_dim, self.act_dim,
                                           hidden_sizes(cfg.actor_hidden_dim, cfg.hidden_layers),
                                           cfg.log_std_min, cfg.log_std_max)
            self.critic = EnsembleCritic(self.obs_dim, self.act_dim,
                                         hidden_sizes(cfg.critic_hidden_dim, cfg.hidden_layers), cfg.num_critics)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.actor_lr, cfg.fused_adam, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.critic_lr, cfg.fused_adam, self.device)
        self.sample_generator = make_generator(seed, "policy_samples", self.device)
        fit_config = behaviour_fit_of(cfg)
        if fit:
            self.behaviour, self.behaviour_stats = fit_tanh_behaviour(
                obs, act, fit_config, derive_seed(seed, "behaviour"), progress)
        else:
            self.behaviour = unfitted_tanh_behaviour(self.obs_dim, self.act_dim, fit_config, self.device)
            self.behaviour_stats = {}
        self.fitted = fit
        self.total_it = 0
        self._fast: FastUpdate | None = None
        if cfg.update_path == "fast":
            self._fast = FastUpdate(
                self.algo, self.fast_step,
                modules={"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target},
                optimizers={"actor": self.actor_optimizer, "critic": self.critic_optimizer},
            )

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, float]:
        """One critic step, one actor step, one target update."""
        if not self.fitted:
            raise RklBenchError("brac learner was built with fit=False; load a checkpoint before update()")
        q_on = self.total_it >= self.config.warm_start  # first warm_start updates: KL only (BRAC's code: one more)
        self.total_it += 1
        # Every policy sample of the update, drawn up front in the order the losses take them.
        noise = NoiseQueue.draw(self.noise_shapes(batch), self.sample_generator, batch.observations)
        if self._fast is not None and self.total_it > self.config.fast_after:
            try:
                metrics = self._fast(("critic", "actor"), batch, noise._tensors, q_on)
            except FastPathFailed:
                self._fast = None  # warned; redo this update on the plain path with the same noise
            else:
                return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
        metrics = self.critic_step(batch, noise)
        metrics.update(self.actor_step(batch, q_on, noise))
        soft_update(self.critic_target, self.critic, self.config.tau)
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

    def noise_shapes(self, batch: Batch) -> list[tuple[int, ...]]:
        """Shapes of the standard-normal draws of one update, in the order the losses consume them."""
        b, a, k = len(batch.observations), self.act_dim, self.config.kl_samples
        critic = [(b, a)] + ([(k, b, a)] if self.config.value_penalty else [])
        return critic + [(b, a), (k, b, a)]

    def kl(self, policy: TanhGaussian, observations: Tensor) -> Tensor:
        """Step 1: the sampled ``KL(pi(.|s) || pi_b(.|s))`` per state, shape ``(B,)``."""
        b_mean, b_log_std = self.behaviour(observations)
        clip = self.config.action_clip_eps
        behaviour_log_prob = lambda x: tanh_gaussian_log_prob(x, b_mean, b_log_std, clip)  # noqa: E731
        return reverse_kl(policy, behaviour_log_prob, self.config.kl_samples)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, batch: Batch, noise: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 2; ``noise`` is a generator or a :class:`NoiseQueue`."""
        cfg = self.config
        with torch.no_grad():
            next_policy = nets.actor.distribution(batch.next_observations, noise, cfg.action_clip_eps)
            next_action = next_policy.rsample()
            target_v = ensemble_value(nets.critic_target(batch.next_observations, next_action), cfg.nu)  # (B, 1)
            if cfg.value_penalty:
                target_v = target_v - cfg.kl_weight * self.kl(next_policy, batch.next_observations).unsqueeze(-1)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_v
        q = nets.critic(batch.observations, batch.actions)  # (M, B, 1)
        critic_loss = (q - target_q).pow(2).mean(dim=(1, 2)).sum()
        return critic_loss, {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}

    def actor_loss(self, nets: Nets, batch: Batch, q_on: bool, noise: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Step 3, with the critics' weights frozen."""
        cfg = self.config
        policy = nets.actor.distribution(batch.observations, noise, cfg.action_clip_eps)
        action = policy.rsample()  # drawn on every step, so the sample stream does not depend on warm_start
        kl = self.kl(policy, batch.observations)
        actor_loss = cfg.kl_weight * kl.mean()
        metrics: dict[str, Tensor] = {}
        if q_on:
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

    # -------------------------------------------------------------- plain path
    def critic_step(self, batch: Batch, noise: Any = None) -> dict[str, Tensor]:
        critic_loss, metrics = self.critic_loss(self.nets(), batch, self.sample_generator if noise is None else noise)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        return metrics

    def actor_step(self, batch: Batch, q_on: bool, noise: Any = None) -> dict[str, Tensor]:
        actor_loss, metrics = self.actor_loss(self.nets(), batch, q_on,
                                              self.sample_generator if noise is None else noise)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return metrics

    # --------------------------------------------------------------- fast path
    def fast_step(self, params: dict[str, list[Tensor]], adam: dict[str, tuple], batch: Batch,
                  noise: list[Tensor], q_on: bool) -> dict[str, Tensor]:
        """The whole update as one pure function (compiled by :class:`~rkl_bench.algos.fast.FastUpdate`)."""
        queue = NoiseQueue(noise)

        def critic_objective(critic_params: list[Tensor]):
            return self.critic_loss(self.functional_nets({**params, "critic": critic_params}), batch, queue)

        grads, _, metrics = value_and_grad(critic_objective, params["critic"])
        new_critic = adam_apply(params["critic"], grads, *adam["critic"])
        updated = {**params, "critic": new_critic}

        def actor_objective(actor_params: list[Tensor]):
            return self.actor_loss(self.functional_nets({**updated, "actor": actor_params}), batch, q_on, queue)

        grads, _, actor_metrics = value_and_grad(actor_objective, params["actor"])
        adam_apply(params["actor"], grads, *adam["actor"])
        polyak(params["critic_target"], new_critic, self.config.tau)
        return {**metrics, **actor_metrics}

    def parameters_finite(self) -> bool:
        """True when every network and optimiser tensor is finite."""
        return networks_finite([self.actor, self.critic, self.critic_target],
                               [self.actor_optimizer, self.critic_optimizer])

    # --------------------------------------------------------------------- act
    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The policy's mode ``tanh(mean(s))`` for normalised observations ``(B, obs_dim)`` or ``(obs_dim,)``."""
        return act_with(self.actor, observations, self.obs_dim)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """A deep copy of everything a bit-exact resume needs (the fitted ``pi_b`` included)."""
        if self._fast is not None:
            self._fast.sync()
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
            "behaviour": self.behaviour.state_dict(),
            "behaviour_stats": dict(self.behaviour_stats),
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        load_optimizer(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer(self.critic_optimizer, state["critic_optimizer"])
        self.sample_generator.set_state(state["sample_generator"])
        self.behaviour.load_state_dict(state["behaviour"])
        self.behaviour.eval()
        self.behaviour_stats = dict(state["behaviour_stats"])
        self.total_it = int(state["total_it"])
        self.fitted = True
        if self._fast is not None:
            self._fast.reset()
