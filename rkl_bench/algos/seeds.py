"""Vectorised seeds: ``K`` learners of one algorithm, config and dataset trained in lockstep by one update.

A learner's update is small (256x256 MLPs, batch 256): on a GPU it is bound
by kernel launches, not arithmetic, and one process per seed leaves the chip
mostly idle. :class:`SeedStack` runs the update of ``K`` seeds as ONE
function over parameters with a leading seed axis: the learner's own
:class:`~rkl_bench.algos.base.Step` losses, written once for one seed, are
mapped over the seeds with ``torch.func.vmap`` (gradients with
``torch.func.grad``, Adam and the Polyak averaging as pure functions), so
each kernel does the work of every seed at once.

What stays per seed, so that seed ``k`` trained here equals seed ``k``
trained alone (within float rounding: batched matrix multiplies round
differently; tested for td3_bc, td3_rkl and bc):

* its own learner object (``learners[k]``), built by the registry exactly as
  a single run builds it: initial weights, behaviour model, lambdas and named
  random streams of its seed;
* its own batch: :class:`~rkl_bench.data.dataset.SeedSampler` draws each
  seed's indices with that seed's generator (one table on the device);
* its own random draws: each learner's ``inputs`` runs on its generators
  before the update, as on its plain path, and the draws are stacked.

The stacked tensors are the truth while training; :meth:`SeedStack.sync`
writes them back into the learners (parameters, Adam moments and step
counts), so ``learners[k].state_dict()`` is a checkpoint of an ordinary run
of seed ``k`` (either can resume the other), and ``learners[k].actor`` is
what evaluation copies. After loading states into the learners,
:meth:`SeedStack.reset` stacks them again.

The mapped update runs through :class:`~rkl_bench.algos.fast.CompiledStep`
(``compile=True``: ``torch.compile`` of the whole vmapped step, on a GPU the
launch savings that make ``K > 1`` pay); a compile failure warns once and
the stack goes on with the same function uncompiled. ``compile_mode:
reduce-overhead`` in the learners' config asks for CUDA graphs, as on the fast
path. Inside the step, matrix multiplies stay on ``torch.addmm``/``bmm``
(:func:`~rkl_bench.algos.fast.without_dnn`: the oneDNN op has no batching rule).
Whether ``K > 1`` pays is measured by ``benchmarks/gpu.py`` (docs/speed.md).

Which learners: those whose losses read only the networks they are handed
and the update's inputs (:data:`STACKABLE`). BRAC's losses read its fitted
behaviour model from the learner itself, which would give every seed the
first seed's; it and the others not listed are refused.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, Sequence

import torch
from torch import Tensor

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.precision import effective_precision
from rkl_bench.algos.fast import (
    AdamState,
    CompiledStep,
    FastPathFailed,
    adam_step,
    compile_options,
    detached,
    mark_static,
    matmul_precision,
    without_dnn,
)
from rkl_bench.data.dataset import Batch
from rkl_bench.errors import RklBenchError

STACKABLE = ("bc", "td3_bc", "td3_rkl")
"""Learners :class:`SeedStack` trains: their losses read only their networks and inputs (tested per learner)."""

BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch))


def check_stackable(algo: str, seeds: int) -> None:
    """Refuse ``seeds > 1`` seeds per process for a learner :class:`SeedStack` does not train."""
    if seeds > 1 and algo not in STACKABLE:
        raise RklBenchError(
            f"seeds_per_trial {seeds} is not available for {algo}: vectorised seeds train {', '.join(STACKABLE)} "
            "(learners whose losses read only their networks and inputs); use seeds_per_trial: 1"
        )


def seed_batch(batch: Batch, k: int) -> Batch:
    """Seed ``k``'s batch of a batch with a leading seed axis (views)."""
    return Batch(**{name: getattr(batch, name)[k] for name in BATCH_FIELDS})


class SeedView:
    """Seed ``k``'s batch as :func:`seed_batch` gives it, each field sliced only when read: what a
    learner's ``inputs`` gets (most read one field or two; at K = 128 the slicing is per update)."""

    __slots__ = ("_batch", "_k")

    def __init__(self, batch: Batch, k: int) -> None:
        self._batch, self._k = batch, k

    def __getattr__(self, name: str) -> Tensor:
        return getattr(self._batch, name)[self._k]


class SeedStack:
    """``learners`` (one algorithm and config, different seeds, at the same step) trained together.

    ``update(batch)`` takes a :class:`Batch` whose fields have a leading seed
    axis (``SeedSampler.sample()``) and returns each seed's metrics, as each
    learner's own ``update`` would. See the module docstring.
    """

    def __init__(self, learners: Sequence[Learner], compile: bool = True) -> None:
        learners = list(learners)
        if not learners:
            raise ValueError("a SeedStack needs at least one learner")
        first = learners[0]
        check_stackable(first.algo, len(learners))
        for other in learners[1:]:
            if type(other) is not type(first) or other.config != first.config:
                raise ValueError("the learners of a SeedStack must share their algorithm and config")
        self.learners = learners
        self.template = first
        """Seed 0's learner: its losses and functional networks, mapped over every seed's parameters."""
        self.cudagraphs = getattr(first.config, "compile_mode", "default") == "reduce-overhead"
        self.precision = effective_precision(getattr(first.config, "precision", "fp32"), first.device)
        """What the stacked update's matrix products run in (the learners' ``precision`` where the hardware has it)."""
        for learner in learners:
            learner.matmul_precision = self.precision  # what their result rows report
        self.step_fn = CompiledStep(vectorised_update, f"{first.algo} x{len(learners)} seeds", compile,
                                    options=compile_options(first.modules, self.cudagraphs))
        self._params: dict[str, list[Tensor]] | None = None
        self._moments: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
        self._adam: list[dict[str, AdamState]] = []
        self._dirty = False
        self.fell_back = False
        """True once a compile failure (warned) left the stack on its uncompiled update."""

    @property
    def seeds(self) -> list[int]:
        return [learner.seed for learner in self.learners]

    # ------------------------------------------------------------ stacking
    def _stack(self) -> None:
        """The learners' parameters and Adam state as ``(K, ...)`` tensors (on every (re)start)."""
        its = {learner.total_it for learner in self.learners}
        if len(its) != 1:
            raise RklBenchError(f"seeds trained together must be at the same update; these are at {sorted(its)}")
        with torch.no_grad():
            self._params = {
                name: [torch.stack(tensors) for tensors in zip(*(detached(l.parameters_of(name)) for l in self.learners))]
                for name in self.template.modules
            }
            self._adam = [{name: AdamState(opt) for name, opt in l.optimizers.items()} for l in self.learners]  # type: ignore[arg-type]
            self._moments = {
                name: ([torch.stack(t) for t in zip(*(a[name].exp_avg for a in self._adam))],
                       [torch.stack(t) for t in zip(*(a[name].exp_avg_sq for a in self._adam))])
                for name in self.template.optimizers
            }
        if self.cudagraphs:
            mark_static([t for views in self._params.values() for t in views]
                        + [t for pair in self._moments.values() for views in pair for t in views])
        for name in self.template.optimizers:
            counts = {a[name].step for a in self._adam}
            if len(counts) != 1:
                raise RklBenchError(f"seeds trained together must have taken the same {name} steps; these took {sorted(counts)}")

    def reset(self) -> None:
        """Forget the stacked state (after states were loaded into the learners); it is stacked again on use."""
        self._params, self._dirty = None, False

    def sync(self) -> None:
        """Write the stacked state back into the learners (before their ``state_dict()``, ``act`` or actor copy)."""
        if not self._dirty or self._params is None:
            return
        with torch.no_grad():
            for k, learner in enumerate(self.learners):
                for name in self.template.modules:
                    torch._foreach_copy_(detached(learner.parameters_of(name)), [t[k] for t in self._params[name]])
                for name, adam in self._adam[k].items():
                    exp_avg, exp_avg_sq = self._moments[name]
                    torch._foreach_copy_(adam.exp_avg, [t[k] for t in exp_avg])
                    torch._foreach_copy_(adam.exp_avg_sq, [t[k] for t in exp_avg_sq])
                    adam.step = self._adam[0][name].step
                    adam.sync()
        self._dirty = False

    # -------------------------------------------------------------- update
    def update(self, batch: Batch) -> list[dict[str, float]]:
        """One update of every seed on its own slice of ``batch``; each seed's metrics."""
        if self._params is None:
            self._stack()
        assert self._params is not None
        for learner in self.learners:
            if not learner.fitted:
                raise RklBenchError(f"{learner.algo} learner was built with fit=False; load a checkpoint before update()")
            learner.total_it += 1
        template = self.template
        steps = tuple(step for step in template.steps if template.total_it % step.every == 0)
        names = tuple(step.module for step in steps)
        drawn = [learner.inputs(SeedView(batch, k), names) for k, learner in enumerate(self.learners)]  # type: ignore[arg-type]
        tensors = {key: torch.stack([d[key] for d in drawn]) for key, value in drawn[0].items() if isinstance(value, Tensor)}
        fixed = {key: value for key, value in drawn[0].items() if key not in tensors}
        if any({key: d[key] for key in fixed} != fixed for d in drawn[1:]):
            raise RklBenchError(f"internal: {template.algo}'s non-tensor inputs differ between seeds trained together")
        adam = {}
        for name in names:
            state = self._adam[0][name]
            bc1, bc2_sqrt = state.advance()
            adam[name] = (bc1, bc2_sqrt, (state.lr, state.beta1, state.beta2, state.eps))
        batch_fields = tuple(getattr(batch, name) for name in BATCH_FIELDS)
        args = (template, names, fixed, self._params, self._moments, adam, batch_fields, tensors)
        with without_dnn(), matmul_precision(self.precision):
            try:
                metrics = self.step_fn(*args)
            except FastPathFailed:  # warned once; nothing was written: the same update, uncompiled
                self.step_fn = CompiledStep(vectorised_update, self.step_fn.what, compile=False)
                self.fell_back = True
                metrics = self.step_fn(*args)
        self._dirty = True
        if not metrics:
            return [{} for _ in self.learners]
        values = torch.stack(list(metrics.values())).tolist()  # (metrics, K): one host sync
        return [dict(zip(metrics, column)) for column in zip(*values)]


def vectorised_update(
    template: Learner,
    names: tuple[str, ...],
    fixed: dict[str, Any],
    params: dict[str, list[Tensor]],
    moments: dict[str, tuple[list[Tensor], list[Tensor]]],
    adam: dict[str, tuple[Tensor, Tensor, tuple[float, float, float, float]]],
    batch_fields: tuple[Tensor, ...],
    inputs: dict[str, Tensor],
) -> dict[str, Tensor]:
    """:func:`seed_update` mapped over the leading seed axis of ``params``, ``moments``, the batch and
    the inputs; the new values written back into ``params`` and ``moments`` (in place). Returns each
    metric as a ``(K,)`` tensor. ``fixed`` (inputs that are not tensors) and ``adam`` (bias corrections
    and hyper-parameters, the same for every seed: they step together) are shared."""
    one_seed = partial(seed_update, template, names, fixed, adam)
    new_params, new_moments, metrics = torch.func.vmap(one_seed)(params, moments, batch_fields, inputs)
    for name, values in new_params.items():
        torch._foreach_copy_(params[name], values)
    for name, (exp_avg, exp_avg_sq) in new_moments.items():
        torch._foreach_copy_(moments[name][0], exp_avg)
        torch._foreach_copy_(moments[name][1], exp_avg_sq)
    return metrics


def seed_update(
    template: Learner,
    names: tuple[str, ...],
    fixed: dict[str, Any],
    adam: dict[str, tuple[Tensor, Tensor, tuple[float, float, float, float]]],
    params: dict[str, list[Tensor]],
    moments: dict[str, tuple[list[Tensor], list[Tensor]]],
    batch_fields: tuple[Tensor, ...],
    inputs: dict[str, Tensor],
) -> tuple[dict[str, list[Tensor]], dict[str, tuple[list[Tensor], list[Tensor]]], dict[str, Tensor]]:
    """One seed's update as a pure function: the plain runner's steps, out of place.

    For each step due (``names``): the gradient of its loss over its module's
    parameters (``torch.func.grad``; the earlier steps' new parameters in
    place of the old), :func:`~rkl_bench.algos.fast.adam_step`, and after a
    step with ``targets`` the Polyak update ``lerp(target, source, tau)``.
    Returns the changed parameters, the new Adam moments and the metrics.
    """
    batch = Batch(**dict(zip(BATCH_FIELDS, batch_fields)))
    inputs = {**inputs, **fixed}
    current = dict(params)
    new_moments: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    metrics: dict[str, Tensor] = {}
    for step in template.steps:
        if step.module not in names:
            continue
        grads, aux = _gradient(template, step, current, batch, inputs)
        exp_avg, exp_avg_sq = moments[step.module]
        bc1, bc2_sqrt, (lr, beta1, beta2, eps) = adam[step.module]
        current[step.module], m, v = adam_step(current[step.module], grads, exp_avg, exp_avg_sq, bc1, bc2_sqrt,
                                               lr, beta1, beta2, eps)
        new_moments[step.module] = (m, v)
        inputs = step.hand_on(aux, inputs, metrics)
        if step.targets:
            tau = template.config.tau
            for target, source in template.targets.items():
                current[target] = [torch.lerp(t, s, tau) for t, s in zip(current[target], current[source])]
    changed = {name: values for name, values in current.items() if values is not params[name]}
    return changed, new_moments, metrics


def _gradient(template: Learner, step: Step, current: dict[str, list[Tensor]], batch: Batch,
              inputs: dict[str, Any]) -> tuple[list[Tensor], dict[str, Tensor]]:
    """``step``'s gradient over its module's parameters (its closed form when it has one) and its metrics."""
    if step.grad is not None:
        nets = template.nets(current)
        return list(step.grad(nets, batch, template.prepare(nets, batch, inputs))), {}

    def objective(leaves: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        nets = template.nets({**current, step.module: leaves})
        return step.loss(nets, batch, template.prepare(nets, batch, inputs))

    grads, aux = torch.func.grad(objective, has_aux=True)(current[step.module])
    return list(grads), aux
