"""The learner core: a learner declares what it is, and one driver runs its update, plain or fast.

Learners are plain PyTorch (DESIGN.md, layer 2): they know nothing of Ray,
files or environments. The training loop (single run or Ray Tune trial)
drives them through four methods: ``update(batch) -> dict[str, float]`` (one
update on a minibatch of normalised states; scalar losses for logging),
``act(obs) -> actions`` (deterministic actions for normalised observations,
numpy in and out), ``state_dict()`` and ``load_state_dict()`` (everything a
bit-exact resume needs).

A learner file declares, and this module does the rest:

* its **modules** (networks and their targets), **optimisers** (one Adam per
  trained module), named **random streams** and **target pairs**, with
  :meth:`Updater.add_modules`, :meth:`Updater.add_targets`,
  :meth:`Updater.add_optimizers` and :meth:`Updater.add_generator`;
* its **steps**: an ordered tuple of :class:`Step`, each a pure loss
  ``loss(nets, batch, inputs) -> (loss, metrics)`` of one module's
  parameters (critic; actor on its delay; SAC's temperature);
* :meth:`Updater.inputs`: the update's random draws and lookups, made before
  any step from the learner's own generators (so both runners see the same
  numbers and a loss is a pure function);
* where needed, :meth:`Updater.prepare` (values computed once per update and
  shared by the steps: CDC's ``pi(.|s)``, SAC's temperature) and
  :meth:`Updater.nets` extras (a critic with frozen weights).

:class:`Updater` (shared with the forge's SAC) owns ``update()``: it picks
the steps due, draws the inputs, and runs them on

* the **plain runner** (:meth:`Updater.plain_update`): the modules,
  ``loss.backward()`` and ``torch.optim.Adam``; the readable reference;
* the **fast runner** (:func:`rkl_bench.algos.fast.run_steps`): the same
  losses through the networks' functional forms, gradients, Adam and Polyak
  averaging as one compiled function; on a compile failure it warns once and
  the update is redone on the plain runner.

It also owns the metric conversion (one host sync per update), the state of
modules, optimisers (loaded as copies) and generators, the fast path's
sync/reset around checkpoints, and the finite-parameter check.
:class:`Learner` adds what the offline learners share: construction from
the dataset's rows, the hyper-parameter check of a checkpoint, acting with
the actor, and a behaviour model fitted before training (TD3+RKL, BRAC, two
Fig. 5 signals). ``docs/architecture.md`` walks through adding a learner.

Hyper-parameters are frozen dataclasses (:mod:`rkl_bench.algos.config`).
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from rkl_bench.algos.behaviour_cache import fit_counts
from rkl_bench.algos.config import flat_config
from rkl_bench.algos.fast import FastPathFailed, FastUpdate, detached
from rkl_bench.algos.precision import effective_precision
from rkl_bench.algos.inference import actor_actions
from rkl_bench.algos.nets import Nets, adam, critic_apply, load_generator_state, make_generator, soft_update
from rkl_bench.errors import RklBenchError

Loss = Callable[[Nets, Any, dict], "tuple[Tensor, dict[str, Tensor]]"]


@dataclass(frozen=True)
class Step:
    """One gradient step of an update: minimise ``loss(nets, batch, inputs)`` over ``module``'s parameters.

    ``loss`` returns ``(loss, metrics)``, the metrics 0-d tensors. The step
    uses the optimiser of ``module`` and sees the modules as the earlier
    steps of the same update left them.
    """

    module: str
    loss: Loss
    every: int = 1
    """Run on the updates whose count is a multiple of this (TD3's policy delay)."""
    targets: bool = False
    """Polyak-average the target pairs (``config.tau``) after this step."""
    hands_on: tuple[str, ...] = ()
    """Keys of ``metrics`` that are not logged but added to the inputs of the later steps (SAC's log pi)."""
    grad: Callable[[Nets, Any, dict], list[Tensor]] | None = None
    """The fast runner's gradient in closed form instead of autograd of ``loss`` (SAC's temperature)."""

    def hand_on(self, aux: dict[str, Tensor], inputs: dict[str, Any], metrics: dict[str, Tensor]) -> dict[str, Any]:
        """Log ``aux``'s metrics into ``metrics``; return ``inputs`` plus what this step hands on."""
        metrics.update({k: v for k, v in aux.items() if k not in self.hands_on})
        return {**inputs, **{k: aux[k] for k in self.hands_on}} if self.hands_on else inputs


def to_floats(metrics: Mapping[str, Tensor]) -> dict[str, float]:
    """0-d tensors to Python floats with one host sync. When every name holds the same tensor
    (BC's ``bc_loss`` is its ``actor_loss``) it is read once, without a ``stack``."""
    values = list(metrics.values())
    first = values[0]
    if all(value is first for value in values):
        return dict.fromkeys(metrics, first.item())
    return dict(zip(metrics, torch.stack(values).tolist()))


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a *copy* of ``state`` into ``optimizer``.

    ``torch.optim.Optimizer.load_state_dict`` keeps the dict's ``step``
    tensors as they are, so two learners loaded from one state dict would
    share their Adam step counters and each would advance the other's bias
    correction (tested: ``test_learners_loaded_from_one_state_dict_train_independently``).
    """
    optimizer.load_state_dict(copy.deepcopy(state))


class Updater:
    """The update driver and the trainable state behind it (see the module docstring)."""

    steps: tuple[Step, ...] = ()
    optimizer_keys: ClassVar[dict[str, str]] = {}
    """Checkpoint key of a module's optimiser when it is not ``<module>_optimizer``."""
    fast_after: int = 0

    def _init_state(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.modules: dict[str, nn.Module | list[Tensor]] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.generators: dict[str, torch.Generator] = {}
        self.streams: dict[str, tuple[int, str]] = {}
        """``(seed, stream)`` each generator was made from (to reseed it from a checkpoint of another device)."""
        self.targets: dict[str, str] = {}
        self.total_it = 0
        self._fast: FastUpdate | None = None
        self.matmul_precision = "fp32"
        """What the fast path's matrix products run in (``config.precision`` where the hardware has it)."""

    # ------------------------------------------------------------ declaring
    def add_modules(self, **modules: nn.Module | list[Tensor]) -> None:
        """Networks (or a list of tensors, SAC's temperature) by name; moved to the device, set as attributes."""
        for name, module in modules.items():
            if isinstance(module, nn.Module):
                module.to(self.device)
            self.modules[name] = module
            setattr(self, name, module)

    def add_targets(self, **pairs: str) -> None:
        """``target_name="source_name"``: a frozen copy of the source, Polyak-averaged towards it."""
        for target, source in pairs.items():
            self.add_modules(**{target: copy.deepcopy(self.modules[source]).requires_grad_(False)})
            self.targets[target] = source

    def add_optimizers(self, fused: bool, **lrs: float) -> None:
        """One Adam per trained module: ``add_optimizers(fused, actor=3e-4, critic=3e-4)``."""
        for name, lr in lrs.items():
            self.optimizers[name] = adam(self.parameters_of(name), lr, fused, self.device)

    def add_actor_critic(self, actor: nn.Module, critic: nn.Module, *targets: str) -> None:
        """An ``actor`` and a ``critic`` trained by Adam at ``config.actor_lr``/``critic_lr``, with target
        copies of the modules named in ``targets`` (``critic_target`` for ``"critic"``)."""
        cfg = self.config
        self.add_modules(actor=actor, critic=critic)
        self.add_targets(**{f"{name}_target": name for name in targets})
        self.add_optimizers(cfg.fused_adam, actor=cfg.actor_lr, critic=cfg.critic_lr)

    def add_generator(self, name: str, seed: int, stream: str) -> torch.Generator:
        """A named random stream of the seed (:func:`~rkl_bench.algos.nets.make_generator`), set as an attribute."""
        generator = make_generator(seed, stream, self.device)
        self.generators[name] = generator
        self.streams[name] = (int(seed), stream)
        setattr(self, name, generator)
        return generator

    def enable_fast_path(self, name: str) -> None:
        self.matmul_precision = effective_precision(getattr(self.config, "precision", "fp32"), self.device)
        self._fast = FastUpdate(name, self.modules, self.optimizers,
                                cudagraphs=getattr(self.config, "compile_mode", "default") == "reduce-overhead",
                                precision=self.matmul_precision)

    def parameters_of(self, name: str) -> list[Tensor]:
        module = self.modules[name]
        return list(module.parameters()) if isinstance(module, nn.Module) else list(module)

    # ------------------------------------------------------ what a learner adds
    def inputs(self, batch: Any, steps: tuple[str, ...]) -> dict[str, Any]:
        """The update's random draws and lookups (``steps``: the modules stepped this update)."""
        return {}

    def prepare(self, nets: Nets, batch: Any, inputs: dict[str, Any]) -> dict[str, Any]:
        """Values every step of the update shares, added to ``inputs`` (once per update on the plain path)."""
        return inputs

    def nets(self, params: dict[str, list[Tensor]] | None = None) -> Nets:
        """The networks a loss sees: the modules (``params=None``) or their functional forms over ``params``.

        A module named ``critic`` also gives ``critic_frozen``: the critic on
        detached weights, so an actor's gradient flows through its actions
        only (no graph, no ``.grad`` for the critic).
        """
        if params is None:
            nets = Nets(**self.modules)
        else:
            nets = Nets(**{name: module.functional(params[name]) if isinstance(module, nn.Module) else params[name]
                           for name, module in self.modules.items()})
        if "critic" in self.modules:
            frozen = detached(self.parameters_of("critic") if params is None else params["critic"])
            nets.critic_frozen = partial(critic_apply, frozen, dnn=params is not None)
        return nets

    # -------------------------------------------------------------- update
    def update(self, batch: Any) -> dict[str, float]:
        """One update: the steps due, on the fast runner when it is on (falling back once), else plain."""
        self.total_it += 1
        steps = tuple(step for step in self.steps if self.total_it % step.every == 0)
        names = tuple(step.module for step in steps)
        inputs = self.inputs(batch, names)
        if self._fast is not None and self.total_it > self.fast_after:
            try:
                return to_floats(self._fast(self, names, batch, inputs))
            except FastPathFailed:
                self._fast = None  # warned; the optimiser state is current: redo the update on the plain path
        return to_floats(self.plain_update(steps, batch, inputs))

    def plain_update(self, steps: Sequence[Step], batch: Any, inputs: dict[str, Any]) -> dict[str, Tensor]:
        """The plain runner: each step's loss on the modules, ``backward()``, ``torch.optim`` step."""
        nets = self.nets()
        inputs = self.prepare(nets, batch, inputs)
        metrics: dict[str, Tensor] = {}
        for step in steps:
            loss, aux = step.loss(nets, batch, inputs)
            optimizer = self.optimizers[step.module]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            inputs = step.hand_on(aux, inputs, metrics)
            if step.targets:
                for target, source in self.targets.items():
                    soft_update(self.modules[target], self.modules[source], self.config.tau)
        return metrics

    # --------------------------------------------------------------- state
    def trainable_state(self) -> dict[str, Any]:
        """Modules, optimisers and generators by their checkpoint keys (live tensors: copy before keeping)."""
        if self._fast is not None:
            self._fast.sync()
        state: dict[str, Any] = {name: m.state_dict() for name, m in self.modules.items() if isinstance(m, nn.Module)}
        state.update({self.optimizer_key(name): opt.state_dict() for name, opt in self.optimizers.items()})
        state.update({name: g.get_state() for name, g in self.generators.items()})
        return state

    def load_trainable_state(self, state: Mapping[str, Any]) -> None:
        for name, module in self.modules.items():
            if isinstance(module, nn.Module):
                module.load_state_dict(state[name])
        for name, optimizer in self.optimizers.items():
            load_optimizer(optimizer, state[self.optimizer_key(name)])
        reseeded = []
        for name, generator in self.generators.items():
            if name not in self.streams:  # set directly, not by add_generator (the forge's SAC): its own device
                generator.set_state(state[name])
            elif not load_generator_state(generator, state[name], *self.streams[name], int(state.get("total_it", 0))):
                reseeded.append(name)
        if reseeded:
            warnings.warn(f"checkpoint's random streams ({', '.join(reseeded)}) are of another device type than "
                          f"{self.device.type}; they go on from a seed of their step instead", RuntimeWarning, stacklevel=3)
        if self._fast is not None:
            self._fast.reset()

    def optimizer_key(self, name: str) -> str:
        return self.optimizer_keys.get(name, f"{name}_optimizer")

    def parameters_finite(self) -> bool:
        """True when every parameter and optimiser tensor is finite (a dropped in-place write shows as NaN)."""
        tensors = [p for name in self.modules for p in self.parameters_of(name)]
        for optimizer in self.optimizers.values():
            tensors += [v for s in optimizer.state.values() for v in s.values() if isinstance(v, Tensor)]
        return all(bool(torch.isfinite(t).all()) for t in tensors)


class Learner(Updater):
    """An offline learner: built from the dataset's rows, driven by the training loop.

    ``observations`` are the dataset's NORMALISED states and ``actions`` its
    actions, row by row; most learners read only their shapes. With
    ``fit=False`` a learner that fits a behaviour model skips the fit and
    is usable only after :meth:`load_state_dict` of a checkpoint carrying it.
    """

    algo: ClassVar[str] = ""
    config_cls: ClassVar[type]
    fits_behaviour: ClassVar[bool] = False

    def __init__(
        self,
        observations: np.ndarray | Tensor,
        actions: np.ndarray | Tensor,
        config: Any = None,
        seed: int = 0,
        device: str = "cpu",
        progress: bool = False,
        fit: bool = True,
    ) -> None:
        self.config = config if config is not None else self.config_cls()
        self.seed = int(seed)
        self._init_state(device)
        obs, act = as_rows(self.algo, observations, actions, self.device)
        self.obs_dim, self.act_dim = obs.shape[1], act.shape[1]
        self.build(obs, act)
        if self.fits_behaviour:
            if fit:
                started, (read, trained) = time.perf_counter(), fit_counts()
                if not progress:  # a trial has no bar: say what its first minutes are spent on
                    print(f"{self.algo} seed {self.seed}: behaviour model on {len(obs):,} rows: reading it "
                          "from the behaviour cache, or fitting it", file=sys.stderr, flush=True)
                self.behaviour, self.behaviour_stats = self.fit_behaviour(obs, act, progress)
                if not progress:
                    print(f"{self.algo} seed {self.seed}: behaviour model {_fit_outcome(read, trained)}, ready after "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            else:
                self.behaviour, self.behaviour_stats = self.unfitted_behaviour(len(obs)), {}
        self.fitted = fit or not self.fits_behaviour
        self.fast_after = getattr(self.config, "fast_after", 0)
        if getattr(self.config, "update_path", "plain") == "fast":
            self.enable_fast_path(self.algo)

    def build(self, observations: Tensor, actions: Tensor) -> None:
        """Declare the modules, optimisers, generators and steps (the learner's constructor)."""
        raise NotImplementedError

    def fit_behaviour(self, observations: Tensor, actions: Tensor,
                      progress: bool) -> tuple[nn.Module, dict[str, float]]:
        """Fit the behaviour model on the dataset's rows (``fits_behaviour`` learners)."""
        raise NotImplementedError

    def unfitted_behaviour(self, rows: int) -> nn.Module:
        """The behaviour model to load a checkpoint into (``fit=False``)."""
        raise NotImplementedError

    def update(self, batch: Any) -> dict[str, float]:
        if not self.fitted:
            raise RklBenchError(f"{self.algo} learner was built with fit=False; load a checkpoint before update()")
        return super().update(batch)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions (the actor's ``forward``) for normalised observations ``(B, obs)`` or ``(obs,)``."""
        return act_with(self.actor, observations, self.obs_dim)

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """A deep copy of everything a bit-exact resume needs (the same for both update paths)."""
        state = {"algo": self.algo, "config": dataclasses.asdict(self.config), "total_it": self.total_it,
                 **self.trainable_state()}
        if self.fits_behaviour:
            state.update(behaviour=self.behaviour.state_dict(), behaviour_stats=dict(self.behaviour_stats))
        state.update(self.extra_state())
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_checkpoint(self, state)
        self.check_state(state)
        self.load_trainable_state(state)
        self.total_it = int(state["total_it"])
        if self.fits_behaviour:
            self.behaviour.load_state_dict(state["behaviour"])
            self.behaviour.eval()
            self.behaviour_stats = dict(state["behaviour_stats"])
            self.fitted = True
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        """Checkpoint entries beyond modules, optimisers, generators and the behaviour model."""
        return {}

    def check_state(self, state: Mapping[str, Any]) -> None:
        """Refuse a checkpoint that does not fit this learner's data, before anything is loaded."""

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Load what :meth:`extra_state` wrote."""


# ------------------------------------------------------------ shared helpers
def as_rows(name: str, observations: np.ndarray | Tensor, actions: np.ndarray | Tensor,
            device: torch.device) -> tuple[Tensor, Tensor]:
    """The dataset's rows as float32 tensors on ``device``; refuses anything but ``(N, obs)``/``(N, act)`` pairs."""
    obs, act = (torch.as_tensor(np.asarray(x, np.float32) if isinstance(x, np.ndarray) else x)
                .to(device=device, dtype=torch.float32).contiguous() for x in (observations, actions))
    if obs.dim() != 2 or act.dim() != 2 or len(obs) != len(act) or len(act) < 1:
        raise RklBenchError(
            f"{name} needs observations (N, obs_dim) and actions (N, act_dim) of equal length N >= 1; "
            f"got {tuple(obs.shape)} and {tuple(act.shape)}"
        )
    return obs, act


def act_with(actor: nn.Module, observations: np.ndarray, obs_dim: int) -> np.ndarray:
    """Run a deterministic actor on numpy observations; float32 ``(B, act)`` or ``(act,)`` out.

    Evaluation calls this once per vector-env step, so small batches go
    through :func:`~rkl_bench.algos.inference.actor_actions` (the forward's
    kernels on preallocated buffers, identical numbers; docs/speed.md).
    """
    obs = np.asarray(observations, dtype=np.float32)
    if obs.shape[-1:] != (obs_dim,) or obs.ndim not in (1, 2):
        raise ValueError(f"act() expects observations of shape (B, {obs_dim}) or ({obs_dim},), got {obs.shape}")
    out = actor_actions(actor, obs.reshape(-1, obs_dim))
    return out[0] if obs.ndim == 1 else out


EXECUTION_KEYS = ("update_path", "fast_after", "compile_mode")
"""Config keys that choose how the update is executed, not what it computes: a checkpoint made
with other values (or before they existed) resumes, continuing within float rounding."""


def check_checkpoint(learner: Learner, state: Mapping[str, Any]) -> None:
    """Refuse a checkpoint of another algorithm or other hyper-parameters, naming the difference."""
    algo = state.get("algo")
    if algo != learner.algo:
        raise RklBenchError(f"checkpoint is for algorithm {algo!r}, not {learner.algo!r}; load it into a {algo} learner")
    mine = flat_config(type(learner.config), dataclasses.asdict(learner.config))
    theirs = flat_config(type(learner.config), state.get("config", {}))
    diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k) and k not in EXECUTION_KEYS)
    if diff:
        detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs {mine.get(k)!r}" for k in diff)
        raise RklBenchError(
            f"{learner.algo} checkpoint was saved with other hyper-parameters ({detail}); "
            "resume with the checkpoint's hyper-parameters"
        )


def _fit_outcome(read_before: int, trained_before: int) -> str:
    """How the behaviour fits since the counts ``(read_before, trained_before)`` were made, for a trial's log."""
    read, trained = (now - before for now, before in zip(fit_counts(), (read_before, trained_before)))
    if read and trained:
        return f"{trained} fitted, {read} read from the behaviour cache"
    return "read from the behaviour cache" if read else "fitted"
