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

Two update paths compute these same losses (``update_path`` in the config):

* ``"plain"``: the modules, ``loss.backward()`` and ``torch.optim.Adam``;
  the readable reference.
* ``"fast"`` (default): the whole step (critic loss and gradient, Adam, and on
  actor steps the actor loss and gradient, Adam and both Polyak updates) as
  one function compiled by ``torch.compile``, through the functional forms of
  the networks (:mod:`rkl_bench.algos.fast`). Same numbers up to float
  rounding (tested); the same optimiser state, so checkpoints of either path
  resume on either. If compiling fails, the learner warns and stays on the
  plain path.

The losses are written once, against a :class:`~rkl_bench.algos.nets.Nets`
(modules on the plain path, bound functional forms on the fast path). Target
noise and every other random draw come from the learner's generators before
the step, so both paths consume identical random streams.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rkl_bench.algos.base import load_optimizer
from rkl_bench.algos.inference import actor_actions
from rkl_bench.algos.fast import (
    FastPathFailed,
    FastUpdate,
    adam_apply,
    networks_finite,
    check_update_path,
    polyak,
    value_and_grad,
)
from rkl_bench.algos.nets import (
    DeterministicActor,
    EnsembleCritic,
    Nets,
    actor_apply,
    adam,
    critic_apply,
    critic_member_apply,
    hidden_sizes,
    make_generator,
    seeded_init,
    soft_update,
)
from rkl_bench.data.dataset import Batch
from rkl_bench.errors import RklBenchError


@dataclass(frozen=True)
class TD3BCConfig:
    """TD3+BC's hyper-parameters; defaults are the paper's (Sec. 5 / Appendix) and official code's."""

    q_weight: float = 2.5
    """TD3+BC's alpha: weight of the normalised Q term (paper: 2.5 on all D4RL tasks)."""
    discount: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target networks."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise (times ``max_action``)."""
    noise_clip: float = 0.5
    """Clip of that noise (times ``max_action``)."""
    policy_freq: int = 2
    """Actor and target updates every ``policy_freq`` critic steps."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    hidden_dim: int = 256
    hidden_layers: int = 2
    batch_size: int = 256
    """Minibatch size; read by the training loop's sampler, not by the learner."""
    max_action: float = 1.0
    fused_adam: bool = True
    """Use the fused Adam kernel (same maths, ~1e-6 rounding differences; much faster on CPU)."""
    update_path: str = "fast"
    """``"fast"``: the compiled whole-step update; ``"plain"``: eager modules and ``torch.optim``
    (same numbers up to float rounding; see the module docstring and docs/speed.md)."""
    fast_after: int = 10_000
    """With ``update_path="fast"``, the first ``fast_after`` updates run on the plain path: compiling
    costs 10-60 s of CPU, which only pays back after a few thousand steps (docs/speed.md)."""

    def __post_init__(self) -> None:
        check_update_path(self.update_path)
        non_negative_int(self, "fast_after")
        positive(self, "discount", "tau", "actor_lr", "critic_lr", "max_action")
        positive_int(self, "policy_freq", "hidden_dim", "hidden_layers", "batch_size")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"'tau' must be in (0, 1], got {self.tau!r}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"'discount' must be in (0, 1], got {self.discount!r}")
        if self.policy_noise < 0 or self.noise_clip < 0:
            raise ValueError("'policy_noise' and 'noise_clip' must be >= 0")
        if self.q_weight < 0:
            raise ValueError(f"'q_weight' must be >= 0, got {self.q_weight!r}")


def positive(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the first field of ``config`` in ``names`` that is not > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{name!r} must be > 0, got {value!r}")


def non_negative_int(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the first field in ``names`` that is not a whole number >= 0."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name!r} must be a whole number >= 0, got {value!r}")


def positive_int(config: Any, *names: str) -> None:
    """Raise ``ValueError`` naming the first field in ``names`` that is not a whole number >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name!r} must be a whole number >= 1, got {value!r}")


class TD3BC:
    """The TD3+BC learner (see the module docstring for the update)."""

    algo = "td3_bc"

    def __init__(
        self, obs_dim: int, act_dim: int, config: TD3BCConfig | None = None, seed: int = 0, device: str = "cpu"
    ) -> None:
        self.config = cfg = config or TD3BCConfig()
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.seed = int(seed)
        self.device = torch.device(device)
        hidden = hidden_sizes(cfg.hidden_dim, cfg.hidden_layers)
        with seeded_init(seed, "init"):
            self.actor = DeterministicActor(obs_dim, act_dim, hidden, cfg.max_action)
            self.critic = EnsembleCritic(obs_dim, act_dim, hidden, members=2)
        self.actor.to(self.device)
        self.critic.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), cfg.actor_lr, cfg.fused_adam, self.device)
        self.critic_optimizer = adam(self.critic.parameters(), cfg.critic_lr, cfg.fused_adam, self.device)
        self.noise_generator = make_generator(seed, "target_policy_noise", self.device)
        self.total_it = 0
        self._noise: torch.Tensor | None = None
        self._fast = self._make_fast() if cfg.update_path == "fast" else None

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, float]:
        """One critic step, and every ``policy_freq``-th call one actor step and target update."""
        self.total_it += 1
        actor_step = self.total_it % self.config.policy_freq == 0
        noise = self.target_noise(batch)
        inputs = self.actor_inputs(batch) if actor_step else {}
        if self._fast is not None and self.total_it > self.config.fast_after:
            try:
                stepping = ("critic", "actor") if actor_step else ("critic",)
                metrics = self._fast(stepping, batch, noise, inputs, actor_step)
            except FastPathFailed:
                self._fast = None  # warned; the optimiser state is already current
            else:
                return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))
        metrics = self.critic_step(batch, noise)
        if actor_step:
            metrics.update(self.actor_step(batch, inputs))
            soft_update(self.critic_target, self.critic, self.config.tau)
            soft_update(self.actor_target, self.actor, self.config.tau)
        return dict(zip(metrics, torch.stack(list(metrics.values())).tolist()))

    def target_noise(self, batch: Batch) -> torch.Tensor:
        """Standard-normal target-policy noise for the batch, ``(B, act_dim)`` (scaled and clipped in the loss)."""
        shape = batch.actions.shape
        if self._noise is None or self._noise.shape != shape:
            self._noise = torch.empty(shape, device=self.device, dtype=batch.actions.dtype)
        return torch.randn(shape, generator=self.noise_generator, out=self._noise)

    def actor_inputs(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Per-step tensors :meth:`actor_loss` needs beyond the batch (random draws, table lookups).

        Drawn before the step so the loss stays a pure function; TD3+BC needs none.
        """
        return {}

    # ------------------------------------------------------------------ losses
    def critic_loss(self, nets: Nets, batch: Batch, noise: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """TD3's clipped double-Q loss with target policy smoothing (module docstring)."""
        cfg = self.config
        with torch.no_grad():
            noise = (noise * (cfg.policy_noise * cfg.max_action)).clamp(
                -cfg.noise_clip * cfg.max_action, cfg.noise_clip * cfg.max_action
            )
            next_action = (nets.actor_target(batch.next_observations) + noise).clamp(-cfg.max_action, cfg.max_action)
            target_q = nets.critic_target(batch.next_observations, next_action).amin(dim=0)
            target_q = batch.rewards + batch.not_dones * cfg.discount * target_q
        q = nets.critic(batch.observations, batch.actions)  # (2, B, 1)
        critic_loss = (q - target_q).pow(2).mean(dim=(1, 2)).sum()  # = mse(Q1, y) + mse(Q2, y)
        return critic_loss, {"critic_loss": critic_loss.detach(), "q_mean": q.detach().mean()}

    def policy_loss(
        self, nets: Nets, batch: Batch, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The actor objective at ``mu(s)``, with Q1 evaluated on frozen critic weights."""
        pi = nets.actor(batch.observations)
        q1 = nets.q1(batch.observations, pi)
        actor_loss, metrics = self.actor_loss(batch, pi, q1, inputs)
        metrics["actor_loss"] = actor_loss.detach()
        return actor_loss, metrics

    def actor_loss(
        self, batch: Batch, pi: torch.Tensor, q1: torch.Tensor, inputs: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 6: ``-q_weight / mean|Q1| * mean Q1(s, mu(s)) + mse(mu(s), a)``."""
        lmbda = self.config.q_weight / q1.abs().mean().detach()
        bc_loss = F.mse_loss(pi, batch.actions)
        return -lmbda * q1.mean() + bc_loss, {"bc_loss": bc_loss.detach()}

    # -------------------------------------------------------------- plain path
    def nets(self) -> Nets:
        """The modules, for the plain path."""
        return Nets(
            actor=self.actor,
            actor_target=self.actor_target,
            critic=self.critic,
            critic_target=self.critic_target,
            q1=lambda obs, action: self.critic.member(obs, action, 0, detach_params=True),
        )

    def critic_step(self, batch: Batch, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        critic_loss, metrics = self.critic_loss(self.nets(), batch, noise)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()
        return metrics

    def actor_step(self, batch: Batch, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        actor_loss, metrics = self.policy_loss(self.nets(), batch, inputs)
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        return metrics

    # --------------------------------------------------------------- fast path
    def functional_nets(self, params: dict[str, list[torch.Tensor]]) -> Nets:
        """The networks as functions of parameter lists (``params[name]``), for the fast path."""
        max_action = self.config.max_action
        frozen = [p.detach() for p in params["critic"]]
        return Nets(
            actor=partial(actor_apply, params["actor"], max_action=max_action),
            actor_target=partial(actor_apply, params["actor_target"], max_action=max_action),
            critic=partial(critic_apply, params["critic"]),
            critic_target=partial(critic_apply, params["critic_target"]),
            q1=lambda obs, action: critic_member_apply(frozen, torch.cat([obs, action], dim=-1), 0),
        )

    def _make_fast(self) -> FastUpdate:
        return FastUpdate(
            self.algo,
            self.fast_step,
            modules={"actor": self.actor, "critic": self.critic,
                     "actor_target": self.actor_target, "critic_target": self.critic_target},
            optimizers={"actor": self.actor_optimizer, "critic": self.critic_optimizer},
        )

    def fast_step(
        self,
        params: dict[str, list[torch.Tensor]],
        adam: dict[str, tuple],
        batch: Batch,
        noise: torch.Tensor,
        inputs: dict[str, torch.Tensor],
        actor_step: bool,
    ) -> dict[str, torch.Tensor]:
        """The whole update as one pure function of its tensors (compiled by :class:`FastUpdate`).

        Writes the new parameters, targets and Adam moments into the given
        tensors; returns the metrics (0-d tensors).
        """
        cfg = self.config

        def critic_objective(critic_params: list[torch.Tensor]):
            return self.critic_loss(self.functional_nets({**params, "critic": critic_params}), batch, noise)

        grads, _, metrics = value_and_grad(critic_objective, params["critic"])
        new_critic = adam_apply(params["critic"], grads, *adam["critic"])
        if actor_step:
            updated = {**params, "critic": new_critic}

            def actor_objective(actor_params: list[torch.Tensor]):
                return self.policy_loss(self.functional_nets({**updated, "actor": actor_params}), batch, inputs)

            grads, _, actor_metrics = value_and_grad(actor_objective, params["actor"])
            new_actor = adam_apply(params["actor"], grads, *adam["actor"])
            polyak(params["critic_target"], new_critic, cfg.tau)
            polyak(params["actor_target"], new_actor, cfg.tau)
            metrics = {**metrics, **actor_metrics}
        return metrics

    def parameters_finite(self) -> bool:
        """True when every network and optimiser tensor is finite."""
        return networks_finite([self.actor, self.critic, self.actor_target, self.critic_target],
                               [self.actor_optimizer, self.critic_optimizer])

    # --------------------------------------------------------------------- act
    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic ``mu(s)`` for normalised observations ``(B, obs_dim)`` or ``(obs_dim,)``."""
        return act_with(self.actor, observations, self.obs_dim)

    # ------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        """A deep copy of everything a bit-exact resume needs (the same for both update paths)."""
        if self._fast is not None:
            self._fast.sync()
        return copy.deepcopy(self._state())

    def _state(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "config": dataclasses.asdict(self.config),
            "total_it": self.total_it,
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "noise_generator": self.noise_generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_target.load_state_dict(state["critic_target"])
        load_optimizer(self.actor_optimizer, state["actor_optimizer"])
        load_optimizer(self.critic_optimizer, state["critic_optimizer"])
        self.noise_generator.set_state(state["noise_generator"])
        self.total_it = int(state["total_it"])
        if self._fast is not None:
            self._fast.reset()


# ------------------------------------------------------------ shared helpers
def act_with(actor: torch.nn.Module, observations: np.ndarray, obs_dim: int) -> np.ndarray:
    """Run a deterministic actor on numpy observations; float32 ``(B, act)`` or ``(act,)`` out.

    Evaluation calls this once per vector-env step, so small batches go
    through :func:`~rkl_bench.algos.inference.actor_actions` (the forward's
    kernels on preallocated buffers: identical numbers, ~23% less time).
    """
    obs = np.asarray(observations, dtype=np.float32)
    if obs.shape[-1:] != (obs_dim,) or obs.ndim not in (1, 2):
        raise ValueError(f"act() expects observations of shape (B, {obs_dim}) or ({obs_dim},), got {obs.shape}")
    out = actor_actions(actor, obs.reshape(-1, obs_dim))
    return out[0] if obs.ndim == 1 else out


EXECUTION_KEYS = ("update_path", "fast_after")
"""Config keys that choose how the update is executed, not what it computes: a checkpoint made
with other values (or before they existed) resumes, continuing within float rounding."""


def check_checkpoint(learner: Any, state: dict[str, Any]) -> None:
    """Refuse a checkpoint of another algorithm or other hyper-parameters, naming the difference."""
    algo = state.get("algo")
    if algo != learner.algo:
        raise RklBenchError(f"checkpoint is for algorithm {algo!r}, not {learner.algo!r}; load it into a {algo} learner")
    mine = dataclasses.asdict(learner.config)
    theirs = state.get("config", {})
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k) and k not in EXECUTION_KEYS)
    if diff:
        detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs {mine.get(k)!r}" for k in diff)
        raise RklBenchError(
            f"{learner.algo} checkpoint was saved with other hyper-parameters ({detail}); "
            "resume with the checkpoint's hyper-parameters"
        )
