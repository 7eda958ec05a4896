"""Arithmetic precision of a learner's matrix products: ``fp32`` (the default) or ``bf16``.

bf16 halves the bytes a matrix product moves and, on CPUs with bf16 units
(AVX512-BF16; AMX on Intel Sapphire Rapids and later), doubles its rate with
fp32 accumulation. Without such units PyTorch emulates bf16 products, which
is slower than fp32, so asking for bf16 there says so in one line and runs
fp32: the choice must never make a run slower than the default. Results in
bf16 differ from fp32 by rounding; ``docs/speed.md`` says when the trade pays.
"""

from __future__ import annotations

import os
from typing import Callable

import torch

from rkl_bench.algos.config import PRECISIONS

EMULATED_ENV = "RKL_BENCH_BF16_EMULATED"
"""Set to 1 to run bf16 where the hardware only emulates it (slow: for tests and fidelity checks of
the bf16 arithmetic on machines without bf16 units, never for speed)."""


def cpu_capabilities() -> dict:
    """``torch.cpu.get_capabilities()`` where this torch has it (2.8 and later), else {}."""
    get = getattr(torch.cpu, "get_capabilities", None)
    return dict(get()) if get is not None else {}


def native_bf16(device: str | torch.device = "cpu") -> str | None:
    """The hardware feature that runs bf16 products natively on ``device``, or None.

    CPU: AMX-BF16 or AVX512-BF16 (``torch.cpu.get_capabilities()``); CUDA: what
    ``torch.cuda.is_bf16_supported()`` says (compute capability 8.0 and later).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return "CUDA bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    if kind != "cpu":
        return None
    caps = cpu_capabilities()
    if caps.get("amx_bf16"):
        return "AMX-BF16"
    if caps.get("avx512_bf16"):
        return "AVX512-BF16"
    return None


SAID: set[str] = set()


def say_once(line: str) -> None:
    """Print ``line`` once per process (a search builds many learners; the hardware is the same)."""
    if line not in SAID:
        SAID.add(line)
        print(line, flush=True)


def effective_precision(requested: str, device: str | torch.device = "cpu",
                        say: Callable[[str], None] = say_once) -> str:
    """``requested`` where the hardware runs it natively, else ``fp32`` (said in one line).

    With ``RKL_BENCH_BF16_EMULATED=1`` bf16 runs without native support too
    (said in one line): the same arithmetic, far slower.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32" or native_bf16(device):
        return requested
    if os.environ.get(EMULATED_ENV) == "1":
        say(f"precision bf16: no native bf16 on {device}; emulated as {EMULATED_ENV}=1 asks (slower than fp32)")
        return "bf16"
    name = cpu_capabilities().get("cpu_name", "this CPU") if torch.device(device).type == "cpu" else str(device)
    say(f"precision bf16: {name} has no native bf16 (AVX512-BF16 or AMX); running fp32")
    return "fp32"
