"""The fast runner every learner shares: a learner's update steps as one compiled function.

A learner's *plain* path (:meth:`rkl_bench.algos.base.Updater.plain_update`)
is readable eager PyTorch: modules, ``loss.backward()``, ``torch.optim.Adam``.
It is the numerical reference. The *fast* path (:func:`run_steps`) runs the
same losses (each written once, as a function of the networks it is handed)
through the networks' functional forms, takes their gradients, applies Adam
and the Polyak averaging, all in one pure function that ``torch.compile``
turns into one graph. What the compiled step removes:

* Python and dispatcher overhead between the ~100 small kernels of a step,
  autograd's bookkeeping, and the allocator traffic of temporaries (inductor
  plans the buffers once and fuses the elementwise work: ReLU masks, loss
  heads, Adam and the target update become a handful of loops);
* on CPUs where MKL runs its AVX2 kernels (AMD), much of the matrix-multiply
  time: :func:`linear` sends matrix multiplies whose sizes are all at least
  :data:`DNN_MIN_DIM` to oneDNN, whose JIT kernels use AVX-512; narrow ones
  stay on MKL, which has less fixed cost (measurements in ``docs/speed.md``).

Pieces here (nothing here knows a particular learner):

* :func:`linear` and the ``rkl_bench::linear_<hash>`` op (oneDNN matmul +
  autograd; the hash of this file in its name keeps inductor's caches honest);
* :func:`matmul_precision`: the block in which :func:`linear` multiplies in
  bf16 (fp32 accumulation, fp32 outside the product; ``precision: bf16``);
* :func:`value_and_grad`: ``torch.autograd.grad`` of a loss w.r.t. a list of
  tensors, usable eagerly and inside the compiled step;
* :class:`AdamState` / :func:`adam_step`: ``torch.optim.Adam``'s arithmetic as
  a pure function over the optimiser's own state tensors, so checkpoints keep
  ``torch.optim.Adam.state_dict()``'s format and either path can resume the
  other's checkpoint. The step count lives in Python and reaches the compiled
  code as bias-correction tensors of shape ``(1,)`` (nothing 0-d is mutated in
  the graph; docs/speed.md says why);
* :func:`run_steps`: the runner itself; :class:`FastUpdate` drives it
  (parameter views, Adam state, compilation) and :class:`CompiledStep` is
  ``torch.compile`` with fall-back: any failure while compiling or running
  warns once and tells the learner to use its plain path.

Noise and other random draws never happen inside a compiled step: the learner
draws them from its own generators beforehand (``Updater.inputs``), so both
paths consume identical random streams and a resumed run draws what an
uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from rkl_bench.algos.config import PRECISIONS

RECOMPILE_LIMIT = 64
"""Graphs dynamo keeps per step function (``torch._dynamo.config.recompile_limit`` is raised to this)."""

DNN_MIN_DIM = 16
"""A matrix multiply goes to oneDNN when its reduction and output sizes are both >= this
(narrower ones, e.g. a critic's 1-wide output layer, run faster on MKL; docs/speed.md)."""


# ---------------------------------------------------------------- linear
def _dnn_available() -> bool:
    if os.environ.get("RKL_BENCH_NO_ONEDNN"):
        return False
    try:
        return bool(torch.backends.mkldnn.is_available()) and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except Exception:  # noqa: BLE001 - any probing failure means "not available"
        return False


DNN_AVAILABLE = _dnn_available()
_LIB: torch.library.Library | None = None


def _source_tag() -> str:
    """A hash of this file, part of the op's name.

    Inductor's on-disk caches key compiled graphs by the traced forward graph;
    the backward of a custom op comes from its Python autograd formula, which
    the key does not cover. Naming the op after this file's contents makes any
    edit here a cache miss instead of a stale (wrong) compiled backward.
    """
    try:
        with open(__file__, "rb") as f:
            return hashlib.sha1(f.read()).hexdigest()[:10]
    except OSError:
        return "nosource"


OP_NAME = f"linear_{_source_tag()}"


def _register_dnn_op() -> bool:
    """Define ``rkl_bench::linear`` on oneDNN, with fake and autograd kernels.

    ``linear(x, w, b, grad_in_out) = x @ w.T + b`` for a weight ``w`` of shape
    ``(out, in)``, contiguous or a transposed view of an ``(in, out)`` tensor
    (both are read in place by oneDNN). ``grad_in_out`` says which: the weight
    gradient is then produced in the same layout as the stored weight, so the
    Adam step that follows reads it contiguously.
    """
    global _LIB
    if not DNN_AVAILABLE:
        return False
    if _LIB is not None:
        return True
    lib = torch.library.Library("rkl_bench", "DEF")
    # Exact strides: inductor must hand the op the layouts it was traced with (the choices
    # between oneDNN and MKL below are made from them).
    tags = (torch.Tag.needs_exact_strides,) if hasattr(torch.Tag, "needs_exact_strides") else ()
    lib.define(f"{OP_NAME}(Tensor x, Tensor w, Tensor? b, bool grad_in_out) -> Tensor", tags=tags)
    pointwise = torch.ops.mkldnn._linear_pointwise.default

    def cpu_impl(x: Tensor, w: Tensor, b: Tensor | None, grad_in_out: bool) -> Tensor:
        # oneDNN wants x in rows (a strided x, e.g. a column view of the sampler's gathered
        # block, runs a far slower reference kernel or fails) and w in rows or columns.
        if not _readable_weight(w):
            w = w.contiguous()
        return pointwise(x.contiguous(), w, b, "none", [], "")

    lib.impl(OP_NAME, cpu_impl, "CPU")

    def fake(x: Tensor, w: Tensor, b: Tensor | None, grad_in_out: bool) -> Tensor:
        return x.new_empty(x.shape[0], w.shape[0])

    torch.library.register_fake(f"rkl_bench::{OP_NAME}", fake, lib=lib)

    def setup_context(ctx: Any, inputs: tuple, output: Tensor) -> None:
        x, w, b, grad_in_out = inputs
        ctx.save_for_backward(x, w)
        ctx.has_bias = b is not None
        ctx.grad_in_out = grad_in_out

    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, w = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:  # (B, out) @ (out, in)
            gx = _matmul(grad, w)
        if ctx.needs_input_grad[1]:  # in the stored weight's layout
            gw = _matmul(x.t(), grad).t() if ctx.grad_in_out else _matmul(grad.t(), x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum(0)
        return gx, gw, gb, None

    torch.library.register_autograd(f"rkl_bench::{OP_NAME}", backward, setup_context=setup_context, lib=lib)
    _LIB = lib
    return True


_DNN_OP_OK = _register_dnn_op()


_DNN_OP = getattr(torch.ops.rkl_bench, OP_NAME).default if _DNN_OP_OK else None


def _dnn_linear(x: Tensor, w: Tensor, b: Tensor | None, grad_in_out: bool) -> Tensor:
    return _DNN_OP(x, w, b, grad_in_out)  # type: ignore[misc]


_DNN_OFF = False
"""Set by :func:`without_dnn` (the vectorised-seeds step: the oneDNN op has no ``vmap`` batching rule)."""


@contextlib.contextmanager
def without_dnn() -> Iterator[None]:
    """Matrix multiplies on ``torch.addmm``/``bmm`` only, inside the block (what ``torch.func.vmap`` can batch)."""
    global _DNN_OFF
    before, _DNN_OFF = _DNN_OFF, True
    try:
        yield
    finally:
        _DNN_OFF = before


def _use_dnn(x: Tensor, k: int, n: int) -> bool:
    return (_DNN_OP_OK and not _DNN_OFF and x.device.type == "cpu" and x.dtype == torch.float32
            and k >= DNN_MIN_DIM and n >= DNN_MIN_DIM)


def _readable_weight(w: Tensor) -> bool:
    """Rows or columns of a 2-D tensor are dense (oneDNN reads either in place)."""
    rows, cols = w.shape
    s0, s1 = w.stride()
    return (s1 == 1 and (s0 == cols or rows == 1)) or (s0 == 1 and (s1 == rows or cols == 1))


def _matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for 2-D tensors, on oneDNN when both the reduction and output widths are large.

    oneDNN needs ``a`` in rows: a transposed ``a`` (every product that sums
    over the batch, i.e. weight gradients) costs it a copy, worth paying only
    for a wide output; MKL reads the transpose in place.
    """
    if (_use_dnn(a, a.shape[1], b.shape[1]) and _readable_weight(b)
            and (a.is_contiguous() or b.shape[1] >= 4 * DNN_MIN_DIM)):
        # The copy of a transposed ``a`` is made in the graph, where inductor can fuse it
        # into the kernel that produces ``a`` (e.g. the ReLU mask of the layer's gradient).
        return _dnn_linear(a.contiguous(), b.t(), None, False)
    return torch.mm(a, b)


_BF16 = False
"""Set by :func:`matmul_precision` ("bf16"): :func:`linear` and :func:`linear_in_out` multiply in bf16."""


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Inside the block, :func:`linear` / :func:`linear_in_out` run their products in ``precision``.

    ``"bf16"``: the inputs and the weight are rounded to bf16 and multiplied
    with fp32 accumulation (``torch.mm`` on bf16 tensors: oneDNN's bf16
    kernels where the CPU has AVX512-BF16 or AMX, tensor cores on a GPU); the
    product comes back as fp32 and the bias is added in fp32. Everything else
    (master weights, their gradients, Adam state, targets, losses) stays
    fp32: autograd rounds the incoming gradient to bf16 for the backward
    products and hands fp32 gradients to the weights. A compiled step reads
    the flag when it is traced (dynamo guards on it), so fp32 and bf16 steps
    are separate graphs.
    """
    global _BF16
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be {' or '.join(PRECISIONS)}, got {precision!r}")
    before, _BF16 = _BF16, precision == "bf16"
    try:
        yield
    finally:
        _BF16 = before


def _bf16_product(x: Tensor, weight_in_out: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight_in_out + bias`` with the product in bf16 (fp32 accumulation), returned in fp32."""
    out = torch.mm(x.to(torch.bfloat16), weight_in_out.to(torch.bfloat16)).to(torch.float32)
    return out if bias is None else out + bias


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None, dnn: bool = True) -> Tensor:
    """``x @ weight.T + bias`` for an ``(out, in)`` weight: ``nn.Linear``'s maths.

    With ``dnn`` (the fast path) a large matrix multiply runs on oneDNN, the
    rest on ``torch.addmm`` as ``nn.Linear`` would. Same numbers up to float
    rounding either way. Inside :func:`matmul_precision` ("bf16") the product
    is a bf16 one instead.
    """
    if _BF16 and x.dtype == torch.float32:
        return _bf16_product(x, weight.t(), bias)
    if dnn and _use_dnn(x, weight.shape[1], weight.shape[0]) and weight.is_contiguous():
        return _dnn_linear(x, weight, bias, False)
    if bias is None:
        return torch.mm(x, weight.t())
    return torch.addmm(bias, x, weight.t())


def linear_in_out(x: Tensor, weight: Tensor, bias: Tensor | None = None, dnn: bool = True) -> Tensor:
    """``x @ weight + bias`` for an ``(in, out)`` weight (one member of an ensemble layer)."""
    if _BF16 and x.dtype == torch.float32:
        return _bf16_product(x, weight, bias)
    if dnn and _use_dnn(x, weight.shape[0], weight.shape[1]) and weight.is_contiguous():
        return _dnn_linear(x, weight.t(), bias, True)
    if bias is None:
        return torch.mm(x, weight)
    return torch.addmm(bias, x, weight)


# ---------------------------------------------------------------- gradients
def value_and_grad(
    loss_fn: Callable[[list[Tensor]], tuple[Tensor, Any]], params: Sequence[Tensor]
) -> tuple[list[Tensor], Tensor, Any]:
    """Gradients of ``loss_fn(params)[0]`` w.r.t. ``params``; returns ``(grads, loss, aux)``.

    ``params`` are taken as plain tensors and re-enter autograd as fresh
    leaves, so this is a pure function of its inputs (eager or compiled).
    """
    leaves = [p.detach().requires_grad_(True) for p in params]
    with torch.enable_grad():
        loss, aux = loss_fn(leaves)
        grads = torch.autograd.grad(loss, leaves)
    return list(grads), loss.detach(), aux


# ---------------------------------------------------------------- Adam
class AdamState:
    """The Adam moments and step count of one ``torch.optim.Adam``, seen as lists for a pure step.

    The moment tensors are the optimiser's own ``exp_avg`` / ``exp_avg_sq``
    (created as ``torch.optim.Adam`` would, zeros, on first use), updated in
    place by the fast step, so ``optimizer.state_dict()`` stays the
    checkpoint. The step count is kept here as a Python int and written back
    into the optimiser's per-parameter ``step`` tensors by :meth:`sync`
    (before every ``state_dict()``), in the dtype and device the optimiser
    itself uses.
    """

    def __init__(self, optimizer: torch.optim.Adam) -> None:
        if len(optimizer.param_groups) != 1:
            raise ValueError("AdamState supports one parameter group")
        self.optimizer = optimizer
        group = optimizer.param_groups[0]
        if group["amsgrad"] or group["maximize"] or group["weight_decay"] != 0:
            raise ValueError("AdamState mirrors plain Adam only (no amsgrad, maximize or weight decay)")
        self.params: list[Tensor] = list(group["params"])
        self.lr = float(group["lr"])
        self.beta1, self.beta2 = (float(b) for b in group["betas"])
        self.eps = float(group["eps"])
        self.fused = bool(group.get("fused"))
        self.exp_avg: list[Tensor] = []
        self.exp_avg_sq: list[Tensor] = []
        for p in self.params:
            state = optimizer.state[p]
            if "exp_avg" not in state:
                state["step"] = self._step_tensor(0, p)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.exp_avg.append(state["exp_avg"])
            self.exp_avg_sq.append(state["exp_avg_sq"])
        first = optimizer.state[self.params[0]]
        self.step = int(first["step"].item())
        device = self.params[0].device
        self._bc1 = torch.zeros(1, device=device)
        self._bc2_sqrt = torch.zeros(1, device=device)

    def _step_tensor(self, t: int, p: Tensor) -> Tensor:
        # torch.optim.Adam's convention: float32 on the parameter's device when fused, else on CPU.
        device = p.device if self.optimizer.param_groups[0].get("fused") else torch.device("cpu")
        return torch.tensor(float(t), dtype=torch.float32, device=device)

    def advance(self) -> tuple[Tensor, Tensor]:
        """Count one step; its bias corrections ``1 - beta1^t`` and ``sqrt(1 - beta2^t)`` as ``(1,)`` tensors."""
        self.step += 1
        t = self.step
        self._bc1.fill_(1.0 - self.beta1**t)
        self._bc2_sqrt.fill_(math.sqrt(1.0 - self.beta2**t))
        return self._bc1, self._bc2_sqrt

    def sync(self) -> None:
        """Write the step count into the optimiser's state (for ``state_dict()`` or the plain path)."""
        for p in self.params:
            state = self.optimizer.state[p]
            state["step"] = self._step_tensor(self.step, p)


def adam_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avg: Sequence[Tensor],
    exp_avg_sq: Sequence[Tensor],
    bc1: Tensor,
    bc2_sqrt: Tensor,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """One Adam step, out of place: ``torch.optim.Adam``'s arithmetic (no weight decay).

    ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 v + (1 - beta2) g^2``,
    ``p = p - lr / bc1 * m / (sqrt(v) / bc2_sqrt + eps)``. Returns new
    parameters and moments; the compiled step writes them back in place.
    """
    new_m = [m.lerp(g, 1.0 - beta1) for m, g in zip(exp_avg, grads)]
    new_v = [v * beta2 + (1.0 - beta2) * g * g for v, g in zip(exp_avg_sq, grads)]
    step_size = lr / bc1
    new_p = [p - step_size * m / (v.sqrt() / bc2_sqrt + eps) for p, m, v in zip(params, new_m, new_v)]
    return new_p, new_m, new_v


def adam_apply(
    params: list[Tensor],
    grads: Sequence[Tensor],
    exp_avg: list[Tensor],
    exp_avg_sq: list[Tensor],
    bc1: Tensor,
    bc2_sqrt: Tensor,
    hyper: tuple[float, float, float, float],
) -> list[Tensor]:
    """:func:`adam_step` written back into ``params`` and the moments (in place); returns the new values.

    ``hyper`` is ``(lr, beta1, beta2, eps)``. The arguments after ``grads``
    are exactly one entry of the ``adam`` dict :class:`FastUpdate` hands a
    step, so a learner writes ``adam_apply(params, grads, *adam["critic"])``.
    Inside a compiled step the copies become in-place writes of the fused
    kernels.
    """
    lr, beta1, beta2, eps = hyper
    new_p, new_m, new_v = adam_step(params, grads, exp_avg, exp_avg_sq, bc1, bc2_sqrt, lr, beta1, beta2, eps)
    torch._foreach_copy_(params, new_p)
    torch._foreach_copy_(exp_avg, new_m)
    torch._foreach_copy_(exp_avg_sq, new_v)
    return new_p


def polyak(target: list[Tensor], source: Sequence[Tensor], tau: float) -> None:
    """``target <- (1 - tau) target + tau source`` in place (the same ``lerp`` as the plain path)."""
    torch._foreach_lerp_(target, list(source), tau)


def detached(params: Iterable[Tensor]) -> list[Tensor]:
    """Plain tensors sharing storage with ``params`` (what a compiled step mutates in place)."""
    return [p.detach() for p in params]


# ---------------------------------------------------------------- compile
class CompiledStep:
    """``torch.compile(fn)`` that never crashes a run: on failure it warns and reports itself broken.

    ``CompiledStep(fn, "td3_bc")(*args)`` returns ``fn``'s result, compiled
    on first call. If compiling or running raises, the exception is turned
    into one ``UserWarning`` naming ``what`` and :attr:`failed` is set; the
    call then raises :class:`FastPathFailed` so the learner redoes the step on
    its plain path. ``compile=False`` runs ``fn`` eagerly (a debugging aid and
    the reference for the compiled function).
    """

    def __init__(
        self, fn: Callable[..., Any], what: str, compile: bool = True, options: dict[str, Any] | None = None
    ) -> None:
        self.what = what
        self.failed = False
        self.calls = 0
        self._fn = fn
        self._compiled: Callable[..., Any] | None = None
        self._compile = compile
        self._options = options

    def __call__(self, *args: Any) -> Any:
        if self.failed:
            raise FastPathFailed(self.what)
        try:
            if not self._compile:
                return self._fn(*args)
            if self._compiled is None:
                # torch.autograd.grad inside the step: dynamo traces it into the joint graph.
                # (Set for the process: it only lets compiled code trace what would otherwise break.)
                torch._dynamo.config.trace_autograd_ops = True
                # One graph per (learner class, update kind, shapes, hyper-parameter values): a Ray
                # worker reused across the trials of a search meets many; past dynamo's default of
                # 8 per function it would silently run the step uncompiled.
                torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
                self._compiled = torch.compile(self._fn, dynamic=False, fullgraph=True, options=self._options)
            out = self._compiled(*args)
            self.calls += 1
            return out
        except Exception as exc:  # noqa: BLE001 - a compiler bug must not end a training run
            self.failed = True
            warnings.warn(
                f"compiled {self.what} update failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "falling back to the plain path",
                stacklevel=3,
            )
            raise FastPathFailed(self.what) from exc


def run_steps(
    params: dict[str, list[Tensor]],
    adam: dict[str, tuple],
    learner: Any,
    batch: Any,
    inputs: dict[str, Any],
    names: tuple[str, ...],
) -> dict[str, Tensor]:
    """The fast runner: ``learner``'s steps on the modules in ``names``, as one pure function.

    Mirrors the plain runner step by step: each step's loss on the networks'
    functional forms (``learner.nets(params)``, the earlier steps' new
    parameters in place of the old), its gradient (autograd, or the step's
    own ``grad``), the Adam step written into the parameter and moment
    tensors, and after a step with ``targets`` the Polyak update of the target
    pairs. ``learner.prepare`` is evaluated inside each step's objective (the
    plain runner evaluates it once: the values are the same, the parameters it
    reads are not stepped before the step that uses them). Returns the metrics
    as 0-d tensors. Compiled by :class:`FastUpdate`.
    """
    current = dict(params)
    metrics: dict[str, Tensor] = {}
    for step in learner.steps:
        if step.module not in names:
            continue
        if step.grad is None:
            def objective(leaves: list[Tensor], step: Any = step, current: dict = current, inputs: dict = inputs):
                nets = learner.nets({**current, step.module: leaves})
                return step.loss(nets, batch, learner.prepare(nets, batch, inputs))

            grads, _, aux = value_and_grad(objective, current[step.module])
        else:
            nets = learner.nets(current)
            grads, aux = step.grad(nets, batch, learner.prepare(nets, batch, inputs)), {}
        current[step.module] = adam_apply(params[step.module], grads, *adam[step.module])
        inputs = step.hand_on(aux, inputs, metrics)
        if step.targets:
            for target, source in learner.targets.items():
                polyak(params[target], current[source], learner.config.tau)
    return metrics


class FastUpdate:
    """Drives :func:`run_steps` for one learner: parameter views, Adam state, compilation and fall-back.

    ``params[name]`` are the parameters of ``modules[name]`` (a module or a
    list of tensors) as plain tensors sharing their storage (the step writes
    new values into them); ``adam[name]``, for each optimiser that steps on
    this call, ``(exp_avg, exp_avg_sq, bc1, bc2_sqrt, (lr, beta1, beta2,
    eps))``: the arguments of :func:`adam_apply` after the gradients.

    ``FastUpdate(...)(learner, names, batch, inputs)`` advances the step
    counts of the optimisers in ``names`` and runs the compiled step, its
    matrix products in ``precision`` (:func:`matmul_precision`). On
    failure it undoes the count, writes the optimiser state back and
    re-raises :class:`FastPathFailed` (after one warning), so the caller can
    redo the update on its plain path with nothing lost.
    """

    def __init__(
        self,
        what: str,
        modules: dict[str, torch.nn.Module | Sequence[Tensor]],
        optimizers: dict[str, torch.optim.Optimizer],
        compile: bool = True,
        cudagraphs: bool = False,
        precision: str = "fp32",
    ) -> None:
        self.what = what
        self.cudagraphs = cudagraphs
        self.precision = precision
        self.compiled = CompiledStep(run_steps, what, compile, options=compile_options(modules, cudagraphs))
        self.modules = modules
        self.optimizers = optimizers
        self._params: dict[str, list[Tensor]] | None = None
        self._adam: dict[str, AdamState] | None = None

    def reset(self) -> None:
        """Forget the views (after ``load_state_dict`` replaced the optimiser state)."""
        self._params, self._adam = None, None

    def sync(self) -> None:
        """Write step counts back into the optimisers (before ``state_dict()``)."""
        if self._adam is not None:
            for state in self._adam.values():
                state.sync()

    def __call__(self, learner: Any, names: tuple[str, ...], batch: Any, inputs: dict[str, Any]) -> dict[str, Tensor]:
        if self._params is None or self._adam is None:
            self._params = {
                name: detached(m.parameters() if isinstance(m, torch.nn.Module) else m)
                for name, m in self.modules.items()
            }
            self._adam = {name: AdamState(opt) for name, opt in self.optimizers.items()}  # type: ignore[arg-type]
            if self.cudagraphs:
                mark_static([t for views in self._params.values() for t in views]
                            + [t for state in self._adam.values() for t in state.exp_avg + state.exp_avg_sq])
        adam = {}
        for name in names:
            state = self._adam[name]
            bc1, bc2_sqrt = state.advance()
            hyper = (state.lr, state.beta1, state.beta2, state.eps)
            adam[name] = (state.exp_avg, state.exp_avg_sq, bc1, bc2_sqrt, hyper)
        try:
            with matmul_precision(self.precision):
                return self.compiled(self._params, adam, learner, batch, inputs, names)
        except FastPathFailed:
            for name in names:
                self._adam[name].step -= 1
            self.sync()
            raise

    @property
    def failed(self) -> bool:
        return self.compiled.failed


def compile_options(modules: dict[str, Any], cudagraphs: bool = False) -> dict[str, Any]:
    """Inductor options for a step over these parameters.

    On CPU, ``cpp_wrapper``: the compiled step's driver code (the ~50-100
    kernel and library calls of one update) is generated as C++ instead of
    Python: a few percent more update steps/s at about twice the compile
    time (docs/speed.md). With ``cudagraphs`` (``compile_mode:
    reduce-overhead``), ``triton.cudagraphs``: what ``torch.compile``'s
    ``mode="reduce-overhead"`` sets (the mode cannot be given beside
    options); it replays the step's kernels as one CUDA graph, and does
    nothing for a CPU graph.
    """
    devices = set()
    for m in modules.values():
        for p in m.parameters() if isinstance(m, torch.nn.Module) else m:
            devices.add(p.device.type)
    options: dict[str, Any] = {"cpp_wrapper": True} if devices == {"cpu"} else {}
    if cudagraphs:
        options["triton.cudagraphs"] = True
    return options


def mark_static(tensors: Iterable[Tensor]) -> None:
    """Tell the compiler these inputs keep their memory from call to call (parameters, Adam moments):
    a CUDA graph may then write them in place instead of refusing a graph that mutates its inputs."""
    for t in tensors:
        torch._dynamo.mark_static_address(t)


class FastPathFailed(RuntimeError):
    """Raised by :class:`CompiledStep` after it warned; the learner continues on its plain path."""
