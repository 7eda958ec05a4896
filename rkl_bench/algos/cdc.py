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
    TanhGaussian,
    TanhGaussianActor,
    TanhGaussianActorCritic,
    check_log_std_bounds,
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
    hidden_sizes,
    make_generator,
    seeded_init,
    soft_update,
)
from rkl_bench.algos.regularisers import forward_kl
from rkl_bench.algos.td3_bc import act_with, check_checkpoint, non_negative_int, positive, positive_int
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
    update_path: str = "fast"
    """``"fast"``: the compiled whole-step update (rkl_bench/algos/fast.py); ``"plain"``: eager."""
    fast_after: int = 10_000
    """Updates on the plain path before the compiled one takes over (compiling costs 10-60 s)."""

    def __post_init__(self) -> None:
        check_update_path(self.update_path)
        non_negative_int(self, "fast_after")
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


class CDC(TanhGaussianActorCritic):
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
        self._fast: FastUpdate | None = None
        if cfg.update_path == "fast":
            self._fast = FastUpdate(
                self.algo, self.fast_step,
                modules={"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target},
                optimizers={"actor": self.actor_optimizer, "critic": self.critic_optimizer},
            )

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, float]:
        """Lines 4-8 of Algorithm 1: critic step, actor step, target update."""
        self.total_it += 1
        cfg = self.config
        # Every policy sample of the update, drawn up front in the order the losses take them.
        noise = NoiseQueue.draw(self.noise_shapes(batch), self.sample_generator, batch.observations)
        if self._fast is not None and self.total_it > cfg.fast_after:
            try:
                metrics = self._fast(("critic", "actor"), batch, noise._tensors)
            except FastPathFailed:
                self._fast = None  # warned; redo this update on the plain path with the same noise
            else:
                return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
        # pi(.|s) once: its graph serves the actor step, its detached copy the Delta candidates.
        policy = self.actor.distribution(batch.observations, noise, cfg.action_clip_eps)
        metrics = self.critic_step(batch, policy, noise)
        metrics.update(self.actor_step(batch, policy))
        soft_update(self.critic_target, self.critic, cfg.tau)
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

    def noise_shapes(self, batch: Batch) -> list[tuple[int, ...]]:
        """Shapes of the standard-normal draws of one update, in the order the losses consume them."""
        b, a, n = len(batch.observations), self.act_dim, self.config.num_samples
        return [(n, b, a)] + ([(n, b, a)] if self.config.eta > 0 else []) + [(b, a)]

    # ------------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, batch: Batch, policy: TanhGaussian, noise: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Lines 5-6 and the Delta penalty; ``noise`` is a generator or a :class:`NoiseQueue`."""
        cfg = self.config
        n, m = cfg.num_samples, cfg.num_critics
        s, a = batch.observations, batch.actions
        b = len(s)
        with torch.no_grad():
            next_policy = nets.actor.distribution(batch.next_observations, noise)
            next_actions = next_policy.rsample((n,))  # (N, B, A)
            q_next = nets.critic_target(_repeat(batch.next_observations, n), next_actions.reshape(n * b, -1))
            target_v = ensemble_value(q_next.view(m, n, b), cfg.nu).amax(dim=0)  # max_k Qbar'(s', a'_k), (B,)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_v.unsqueeze(-1)
            if cfg.eta > 0:
                candidates = TanhGaussian(policy.mean.detach(), policy.log_std.detach(), noise)
                a_hat = candidates.rsample((n,))  # (N, B, A)
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

    def actor_loss(self, nets: Nets, batch: Batch, policy: TanhGaussian) -> tuple[Tensor, dict[str, Tensor]]:
        """Line 7, with the critics' weights frozen."""
        cfg = self.config
        action = policy.rsample()
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

    # -------------------------------------------------------------- plain path
    def critic_step(self, batch: Batch, policy: TanhGaussian, noise: Any = None) -> dict[str, Tensor]:
        critic_loss, metrics = self.critic_loss(self.nets(), batch, policy,
                                                self.sample_generator if noise is None else noise)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        return metrics

    def actor_step(self, batch: Batch, policy: TanhGaussian) -> dict[str, Tensor]:
        actor_loss, metrics = self.actor_loss(self.nets(), batch, policy)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return metrics

    # --------------------------------------------------------------- fast path
    def fast_step(self, params: dict[str, list[Tensor]], adam: dict[str, tuple], batch: Batch,
                  noise: list[Tensor]) -> dict[str, Tensor]:
        """The whole update as one pure function (compiled by :class:`~rkl_bench.algos.fast.FastUpdate`)."""
        cfg = self.config
        queue = NoiseQueue(noise)
        with torch.no_grad():  # pi(.|s) for the Delta candidates (the actor is not updated yet)
            policy = self.functional_nets(params).actor.distribution(batch.observations, queue, cfg.action_clip_eps)

        def critic_objective(critic_params: list[Tensor]):
            return self.critic_loss(self.functional_nets({**params, "critic": critic_params}), batch, policy, queue)

        grads, _, metrics = value_and_grad(critic_objective, params["critic"])
        new_critic = adam_apply(params["critic"], grads, *adam["critic"])
        updated = {**params, "critic": new_critic}

        def actor_objective(actor_params: list[Tensor]):
            nets = self.functional_nets({**updated, "actor": actor_params})
            return self.actor_loss(nets, batch, nets.actor.distribution(batch.observations, queue, cfg.action_clip_eps))

        grads, _, actor_metrics = value_and_grad(actor_objective, params["actor"])
        adam_apply(params["actor"], grads, *adam["actor"])
        polyak(params["critic_target"], new_critic, cfg.tau)
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
        })

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        load_optimizer(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer(self.critic_optimizer, state["critic_optimizer"])
        self.sample_generator.set_state(state["sample_generator"])
        self.total_it = int(state["total_it"])
        if self._fast is not None:
            self._fast.reset()


def _repeat(x: Tensor, n: int) -> Tensor:
    """``(B, d) -> (n * B, d)``, sample-major: row ``k * B + i`` is ``x[i]``."""
    return x.unsqueeze(0).expand(n, -1, -1).reshape(n * len(x), -1)
