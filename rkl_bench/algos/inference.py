"""Policy inference for evaluation: a deterministic actor on small numpy batches, allocation-free.

Evaluation calls the policy once per vector-env step on a block of a few
rows (:data:`rkl_bench.evaluation.rollouts.POLICY_BLOCK`): a thousand calls
for 10 HalfCheetah episodes, each as long as ~1.5 env steps. At that size
an eager forward spends a good part of its time outside the matrix
multiplies: module calls, autograd bookkeeping, a fresh tensor for every
layer's output. :func:`actor_actions` runs the same kernels (``torch.addmm``
per layer, in-place ReLU, the actor's own head) into buffers kept per batch
size, so the numbers are bit-identical to ``actor(obs)`` and a small call
costs markedly less (measured in ``docs/speed.md``; ``benchmarks/speed.py``
prints the evaluation loop against raw env stepping).

An actor opts in by having ``net`` (an :func:`~rkl_bench.algos.nets.mlp`:
``Linear``/``ReLU`` layers) and ``head_into(z, out)``, which writes
``forward``'s head of the MLP output ``z`` into ``out`` with the same
kernels. Any other module, a non-CPU device, or a batch larger than
:data:`MAX_BUFFERED_ROWS` takes the plain ``actor(obs)`` path.

The buffers belong to the actor (kept beside it, not in it, so copies and
pickles of an actor never carry them) and are reused by the next call of
the same batch size, so one actor must not run this from two threads at once
(evaluation runs one rollout loop per process). Parameters are read through
views taken on first use: in-place updates and ``load_state_dict`` keep them
valid; replacing a parameter object (``load_state_dict(assign=True)``,
``actor.to(other_device)``) is detected and rebuilds them.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import Tensor, nn

MAX_BUFFERED_ROWS = 64
"""Larger batches (offline analyses, not rollouts) run ``actor(obs)``: no buffers kept for them."""


class _Plan:
    """One actor's layer views and its per-batch-size buffers."""

    def __init__(self, actor: nn.Module) -> None:
        self.slots = [(module._parameters, name, param)
                      for module in actor.modules() for name, param in module._parameters.items()]
        """Where each parameter sits: a replaced parameter object invalidates the plan."""
        self.layers: list[tuple[Tensor, Tensor, bool]] = []
        """``(weight.T, bias, relu after)`` per linear layer; empty for an actor on the plain path."""
        self.buffers: dict[int, tuple[np.ndarray, Tensor, list[Tensor], Tensor]] = {}
        if not _supported(actor):
            return
        modules = list(actor.net)
        for i, module in enumerate(modules):
            if isinstance(module, nn.Linear):
                relu = i + 1 < len(modules) and isinstance(modules[i + 1], nn.ReLU)
                self.layers.append((module.weight.detach().t(), module.bias.detach(), relu))
        self.act_dim = actor.act_dim

    def valid_for(self) -> bool:
        """False once any parameter was replaced (not merely updated in place)."""
        return all(slots.get(name) is param for slots, name, param in self.slots)

    def run(self, actor: nn.Module, obs: np.ndarray) -> np.ndarray:
        rows = obs.shape[0]
        buffers = self.buffers.get(rows)
        if buffers is None:
            buffers = self.buffers[rows] = self._allocate(rows)
        x_numpy, x, hidden, out = buffers
        x_numpy[...] = obs
        # Weights and biases are detached views and the buffers plain tensors: nothing here
        # records autograd history, so no inference-mode context is needed.
        for (weight_t, bias, relu), z in zip(self.layers, hidden):
            torch.addmm(bias, x, weight_t, out=z)
            if relu:
                z.relu_()
            x = z
        actor.head_into(x, out)
        return out.numpy().copy()

    def _allocate(self, rows: int) -> tuple[np.ndarray, Tensor, list[Tensor], Tensor]:
        dtype = self.layers[0][0].dtype
        x = torch.empty(rows, self.layers[0][0].shape[0], dtype=dtype)
        hidden = [torch.empty(rows, weight_t.shape[1], dtype=dtype) for weight_t, _, _ in self.layers]
        out = torch.empty(rows, self.act_dim, dtype=dtype)
        return x.numpy(), x, hidden, out


_PLANS: "weakref.WeakKeyDictionary[nn.Module, _Plan]" = weakref.WeakKeyDictionary()
"""Plans by actor, outside the module so that copies and pickles of an actor never carry buffers."""


def _supported(actor: nn.Module) -> bool:
    if not hasattr(actor, "head_into") or not isinstance(getattr(actor, "net", None), nn.Sequential):
        return False
    params = list(actor.parameters())
    return (
        all(isinstance(m, (nn.Linear, nn.ReLU)) for m in actor.net)
        and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params)
    )


def actor_actions(actor: nn.Module, obs: np.ndarray) -> np.ndarray:
    """``actor(obs)`` for a float32 ``(B, obs_dim)`` array, as float32 numpy ``(B, act_dim)``.

    Bit-identical to the module's forward; fast for small batches of an
    actor that opts in (module docstring). The result is the caller's own
    array (never a view of a buffer).
    """
    if obs.shape[0] <= MAX_BUFFERED_ROWS:
        plan = _PLANS.get(actor)
        if plan is None or not plan.valid_for():
            plan = _PLANS[actor] = _Plan(actor)
        if plan.layers:
            return plan.run(actor, obs)
    device = next(actor.parameters()).device
    with torch.inference_mode():
        return actor(torch.as_tensor(obs, device=device)).to("cpu", torch.float32).numpy()
