"""Per-core matrix-multiply rates in fp32 and bf16, printed at the top of ``speed.py``.

Machines differ by 2x in these rates, so speed figures from two machines are
compared only as ratios, with these lines beside them. The sizes are the
learners' (256-wide layers, batch 256) and one larger (512). On a CPU without
native bf16 (AVX512-BF16 or AMX) PyTorch emulates bf16 products, and the
bf16 rate shows it.
"""

from __future__ import annotations

import time

import torch

from rkl_bench.algos.precision import cpu_capabilities, native_bf16


def gemm_gflops(n: int, dtype: torch.dtype, seconds: float = 0.3) -> float:
    """GFLOP/s of ``n x n @ n x n`` in ``dtype`` on this thread (best of 3 timed blocks)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = 0.0
    for _ in range(3):
        reps, start = 0, time.thread_time()
        while time.thread_time() - start < seconds / 3:
            torch.mm(a, b)
            reps += 1
        elapsed = time.thread_time() - start
        best = max(best, 2 * n**3 * reps / elapsed / 1e9)
    return best


def gemm_lines(sizes: tuple[int, ...] = (256, 512)) -> list[str]:
    """The CPU model, whether bf16 is native, and fp32 / bf16 GFLOP/s per core at each size."""
    caps = cpu_capabilities()
    native = native_bf16("cpu")
    lines = [f"CPU: {caps.get('cpu_name', 'unknown')}, {caps.get('num_physical_cores', '?')} cores; "
             f"bf16 {'native (' + native + ')' if native else 'not native (AVX512-BF16/AMX absent: emulated)'}"]
    with torch.inference_mode():
        for n in sizes:
            fp32, bf16 = gemm_gflops(n, torch.float32), gemm_gflops(n, torch.bfloat16)
            lines.append(f"GEMM {n}x{n}, one thread: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s "
                         f"(bf16/fp32 {bf16 / fp32:.2f}x)")
    return lines
