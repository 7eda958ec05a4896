"""Which device a learner trains on: ``cpu``, ``cuda`` or ``cuda:N``, checked before anything runs.

A run names its device as text (``rkl-bench train --device``, a trial's
settings). :func:`resolve_device` turns it into a ``torch.device`` and
refuses, in one line naming it, a device this process cannot use: an
unknown name, CUDA in a torch built without it or on a machine without a
GPU, or a GPU index past the ones visible. The training loop calls it before
it writes anything, so a typo or a missing GPU never leaves a half-made run
directory behind.

Under Ray a trial that reserves GPUs sees only its own (Ray sets
``CUDA_VISIBLE_DEVICES``), so ``cuda`` means the trial's GPU there.

What stays on the CPU whatever the device: evaluation (rollouts get a CPU
copy of the actor, :func:`cpu_copy`) and checkpoints (:func:`to_cpu`:
every tensor saved from the CPU, so a checkpoint trained on a GPU loads on
a machine without one).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import torch
from torch import nn

from rkl_bench.errors import RklBenchError

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
"""What a device may be written as."""


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a ``torch.device`` this process can train on; otherwise one :class:`RklBenchError` line."""
    text = str(name).strip()
    if not DEVICE_PATTERN.fullmatch(text):
        raise RklBenchError(f"device {text!r} is not one of cpu, cuda, cuda:N (N = 0, 1, ...)")
    device = torch.device(text)
    if device.type == "cpu":
        return device
    if torch.version.cuda is None:
        raise RklBenchError(
            f"device {text!r} is not available: this torch ({torch.__version__}) was built without CUDA; "
            "train with --device cpu, or install a CUDA build of torch"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise RklBenchError(f"device {text!r} is not available: no CUDA GPU is visible to this process; train with --device cpu")
    index = 0 if device.index is None else device.index
    if index >= count:
        raise RklBenchError(
            f"device {text!r} is not available: {count} CUDA GPU(s) visible (cuda:0 to cuda:{count - 1})"
        )
    return device


def device_name(device: torch.device | str) -> str:
    """What the device is, for a benchmark's or a run's record (``cpu`` or the GPU's name)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) on the CPU, as its own compact copy
    where it is not already a CPU tensor owning exactly its data.

    What a checkpoint is saved as: device-independent (loadable without the GPU it was trained on), and
    never the whole storage of a view (a seed's slice of a stacked tensor, :mod:`rkl_bench.algos.seeds`).
    """
    if isinstance(obj, torch.Tensor):
        if obj.device.type != "cpu":
            return obj.detach().to("cpu")
        if obj.untyped_storage().nbytes() != obj.nbytes or obj.storage_offset() != 0:
            return obj.clone()
        return obj
    if isinstance(obj, dict):
        return {key: to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(to_cpu(value) for value in obj)
    return obj


def cpu_copy(module: nn.Module) -> nn.Module:
    """A frozen CPU copy of ``module``: what evaluation rolls out (training may go on changing the original)."""
    return copy.deepcopy(module).to("cpu").requires_grad_(False).eval()
