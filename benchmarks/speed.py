"""Learner, SAC, evaluation and dataset-generation speed, measured interleaved in one run.

    nice -n 5 .venv/bin/python benchmarks/speed.py [--threads 1] [--rounds 5] [--steps 100]

For each learner (HalfCheetah-shaped: 17-d states, 6-d actions, 256x256 MLPs,
batch 256, the TensorSampler drawing batches as training does) it prints the
update steps/s of the plain eager path and of the fast path, their ratio, and
the share of the *matrix-multiply bound* reached, all measured in the same run
(with ``--precisions fp32,bf16``, the default, also the bf16 fast path and the
same products' bf16 bound where the CPU has bf16 units, or everywhere with
``--emulated-bf16``):

* the bound: the matrix multiplies one plain update issues (recorded with a
  dispatch mode over a whole policy-delay cycle, shapes and strides as issued),
  each timed alone at the best of MKL (what eager ``torch.mm`` uses) and
  oneDNN, summed per step. Both kernels are measured because on AMD CPUs MKL
  runs its AVX2 code and oneDNN's AVX-512 kernels are ~2x faster on 256-wide
  matrices; a bound from MKL alone would be beaten by the fast path.
* rounds interleave plain, fast and bound (order rotating), so other jobs on
  the machine weigh on all three alike; the medians over rounds are printed.

Two clocks: ``wall`` (what a run experiences) and ``cpu`` (thread CPU time of
this process, ``--threads 1`` only): on a machine shared with other jobs the
CPU clock counts only the time the benchmark actually ran, so it is the
steadier figure of the code's own speed.

Then: SAC env steps/s of the forge's training loop (env step + update) with
the fast and the plain agent; evaluation (``Evaluator`` with a TD3-sized
actor through ``learner.act``) and dataset generation (``forge.generate``
rollouts of a SAC-sized policy) next to raw stepping of the same sub-envs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rkl_bench.algos import make_learner  # noqa: E402
from rkl_bench.data.dataset import OfflineDataset, TensorSampler  # noqa: E402

aten = torch.ops.aten
MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
HP = {
    "td3_bc": {},
    "td3_rkl": {"behaviour_steps": 200},
    "bc": {},
    "brac": {"behaviour_steps": 200, "warm_start": 0},
    "cdc": {},
}


# ----------------------------------------------------------------- clocks
def cpu_clock(threads: int) -> Callable[[], float]:
    return time.thread_time if threads == 1 else time.process_time


# ----------------------------------------------------------------- bound
class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, list[Any]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in MATMULS:
            specs = [(tuple(a.shape), tuple(a.stride())) if isinstance(a, torch.Tensor) else a for a in args]
            self.ops.append((func, specs))
        return func(*args, **(kwargs or {}))


def _tensor(spec: Any) -> Any:
    if not isinstance(spec, tuple) or not spec or not isinstance(spec[0], tuple):
        return spec
    shape, stride = spec
    size = 1 + sum((s - 1) * st for s, st in zip(shape, stride)) if all(shape) else 1
    return torch.randn(max(size, 1)).as_strided(shape, stride)


def _onednn_equivalent(func, args) -> Callable[[], Any] | None:
    """The same product on oneDNN (``mkldnn._linear_pointwise``), or None if it has no 2-D form."""
    if not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return None
    lp = torch.ops.mkldnn._linear_pointwise.default

    def vec(bias, n):
        if bias is None:
            return None
        if bias.numel() == n:
            return bias.reshape(n)
        return False

    if func is aten.mm.default:
        a, b = args
        return lambda: lp(a, b.t(), None, "none", [], "")
    if func is aten.addmm.default:
        bias, a, b = args[:3]
        v = vec(bias, b.shape[1])
        if v is False:
            return None
        return lambda: lp(a, b.t(), v, "none", [], "")
    if func in (aten.bmm.default, aten.baddbmm.default):
        bias, (a, b) = (args[0], args[1:3]) if func is aten.baddbmm.default else (None, args[:2])
        parts = []
        for i in range(a.shape[0]):
            v = None if bias is None else vec(bias[i if bias.shape[0] > 1 else 0], b.shape[2])
            if v is False:
                return None
            parts.append((a[i], b[i].t(), v))
        return lambda: [lp(x, w, v, "none", [], "") for x, w, v in parts]
    return None


@dataclass
class Bound:
    """The matrix multiplies of one update step, each timed alone; per-step seconds at the best kernel."""

    ops: list[tuple[Callable[[], Any], Callable[[], Any] | None]]
    steps: int

    @classmethod
    def record(cls, learner: Any, sample: Callable[[], Any], steps: int) -> "Bound":
        for _ in range(steps):  # optimiser state exists: no first-step extras in the record
            learner.update(sample())
        with _Recorder() as rec:
            for _ in range(steps):
                learner.update(sample())
        ops, low = [], []
        for func, specs in rec.ops:
            args = [_tensor(s) for s in specs]
            ops.append(((lambda f=func, a=args: f(*a)), _onednn_equivalent(func, args)))
            args16 = [a.to(torch.bfloat16) if isinstance(a, torch.Tensor) else a for a in args]
            low.append(lambda f=func, a=args16: f(*a))
        return cls(ops, steps, low)

    bf16_ops: list[Callable[[], Any]] | None = None
    """The same products on bf16 operands (``torch.mm``'s bf16 kernels: oneDNN where the CPU has them)."""

    def measure_bf16(self, clock: Callable[[], float], reps: int = 20) -> float:
        """Seconds per update step of the recorded products in bf16: the bf16 fast path's bound."""
        total = 0.0
        for run in self.bf16_ops or []:
            run()
            start = clock()
            for _ in range(reps):
                run()
            total += (clock() - start) / reps
        return total / self.steps

    def measure(self, clock: Callable[[], float], reps: int = 20) -> tuple[float, float]:
        """Seconds per update step: (MKL only, best of MKL and oneDNN per product)."""
        mkl = best = 0.0
        for run_mkl, run_dnn in self.ops:
            times = []
            for run in (run_mkl, run_dnn):
                if run is None:
                    continue
                run()
                start = clock()
                for _ in range(reps):
                    run()
                times.append((clock() - start) / reps)
            mkl += times[0]
            best += min(times)
        return mkl / self.steps, best / self.steps

    @property
    def count(self) -> float:
        return len(self.ops) / self.steps


# ----------------------------------------------------------------- learners
def synthetic(n: int, obs_dim: int = 17, act_dim: int = 6, seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    w = rng.normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    actions = np.clip(np.tanh(obs @ w) + 0.3 * rng.normal(size=(n, act_dim)), -1, 1).astype(np.float32)
    next_obs = (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32)
    rewards = rng.normal(size=n).astype(np.float32)
    terminals = (rng.random(n) < 0.001).astype(np.float32)
    return OfflineDataset(obs, actions, rewards, next_obs, terminals, env="toy", name="bench", version="bench")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def bench_learners(names: list[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    dataset = synthetic(args.rows)
    clock = cpu_clock(args.threads)
    rows = []
    for name in names:
        hp = HP.get(name, {})
        try:
            plain = make_learner(name, dataset, {**hp, "update_path": "plain"}, seed=0)
            fast = make_learner(name, dataset, {**hp, "update_path": "fast", "fast_after": 0}, seed=0)
            fast16 = None
            if "bf16" in args.precisions:
                fast16 = make_learner(name, dataset, {**hp, "update_path": "fast", "fast_after": 0,
                                                      "precision": "bf16"}, seed=0)
                if fast16.matmul_precision != "bf16":  # no bf16 units: the learner said so; fp32 is measured
                    fast16 = None
        except Exception as exc:  # noqa: BLE001 - a learner without a fast path is reported, not fatal
            print(f"{name}: skipped ({exc})", flush=True)
            continue
        sampler = TensorSampler(dataset, plain.config.batch_size, 0, *dataset.state_stats())
        started = time.perf_counter()
        for _ in range(4):
            fast.update(sampler.sample())
        compile_s = time.perf_counter() - started
        if fast16 is not None:
            for _ in range(4):
                fast16.update(sampler.sample())
        cycle = getattr(plain.config, "policy_freq", 1)
        bound = Bound.record(make_learner(name, dataset, {**hp, "update_path": "plain"}, seed=1),
                             sampler.sample, 2 * cycle)
        wall: dict[str, list[float]] = {"plain": [], "fast": [], "fast16": []}
        cpu: dict[str, list[float]] = {"plain": [], "fast": [], "fast16": []}
        bwall: dict[str, list[float]] = {"mkl": [], "best": [], "bf16": []}
        bcpu: dict[str, list[float]] = {"mkl": [], "best": [], "bf16": []}
        steps = args.steps - args.steps % cycle
        jobs = ["plain", "fast", "bound"] + (["fast16", "bound16"] if fast16 is not None else [])
        for r in range(args.rounds):
            turn = r % len(jobs)
            for job in jobs[turn:] + jobs[:turn]:
                if job == "bound":
                    mkl_c, best_c = bound.measure(clock)
                    mkl_w, best_w = bound.measure(time.perf_counter)
                    bcpu["mkl"].append(1 / mkl_c)
                    bcpu["best"].append(1 / best_c)
                    bwall["mkl"].append(1 / mkl_w)
                    bwall["best"].append(1 / best_w)
                    continue
                if job == "bound16":
                    bcpu["bf16"].append(1 / bound.measure_bf16(clock))
                    bwall["bf16"].append(1 / bound.measure_bf16(time.perf_counter))
                    continue
                learner = {"plain": plain, "fast": fast, "fast16": fast16}[job]
                w0, c0 = time.perf_counter(), clock()
                for _ in range(steps):
                    learner.update(sampler.sample())
                wall[job].append(steps / (time.perf_counter() - w0))
                cpu[job].append(steps / (clock() - c0))
        fell_back = fast._fast is None or (fast16 is not None and fast16._fast is None)
        rows.append({
            "learner": name, "compile_s": compile_s, "fell_back": fell_back, "matmuls": bound.count,
            "finite": bool(getattr(fast, "parameters_finite", lambda: True)()),
            **{f"wall_{k}": _median(v) for k, v in wall.items()},
            **{f"cpu_{k}": _median(v) for k, v in cpu.items()},
            **{f"wall_bound_{k}": _median(v) for k, v in bwall.items()},
            **{f"cpu_bound_{k}": _median(v) for k, v in bcpu.items()},
        })
        print(f"  measured {name} ({compile_s:.0f} s to compile)", flush=True)
    return rows


def print_learner_table(rows: list[dict[str, Any]], threads: int) -> None:
    print(f"\nLearner update steps/s ({threads} thread{'s' if threads > 1 else ''}; medians of interleaved rounds)")
    head = (f"{'learner':9s} {'clock':5s} {'plain':>7s} {'fast':>7s} {'fast/plain':>10s} "
            f"{'bound':>7s} {'fast/bound':>10s} {'plain/bound':>11s} {'bound(MKL)':>10s}")
    low = any(not np.isnan(row["wall_fast16"]) for row in rows)
    if low:
        head += f" {'bf16 fast':>9s} {'bf16/fp32':>9s} {'bf16 bound':>10s} {'bf16/bound':>10s}"
    print(head)
    print("-" * len(head))
    for row in rows:
        for clock in ("wall", "cpu"):
            plain, fast = row[f"{clock}_plain"], row[f"{clock}_fast"]
            bound, bound_mkl = row[f"{clock}_bound_best"], row[f"{clock}_bound_mkl"]
            if np.isnan(plain):
                continue
            line = (f"{row['learner']:9s} {clock:5s} {plain:7.0f} {fast:7.0f} {fast / plain:9.2f}x "
                    f"{bound:7.0f} {100 * fast / bound:9.0f}% {100 * plain / bound:10.0f}% {bound_mkl:10.0f}")
            fast16, bound16 = row[f"{clock}_fast16"], row[f"{clock}_bound_bf16"]
            if low and not np.isnan(fast16):
                line += f" {fast16:9.0f} {fast16 / fast:8.2f}x {bound16:10.0f} {100 * fast16 / bound16:9.0f}%"
            print(line)
        notes = f"{row['matmuls']:.1f} matmuls/step, compile {row['compile_s']:.0f} s"
        if row["fell_back"]:
            notes += ", FAST PATH FELL BACK TO PLAIN"
        if not row["finite"]:
            notes += ", NON-FINITE PARAMETERS"
        print(f"{'':9s} ({notes})")


# ----------------------------------------------------------------- SAC
def bench_sac(args: argparse.Namespace) -> dict[str, float]:
    from rkl_bench.forge.sac import SACConfig
    from rkl_bench.forge.train_policy import SACRun, SACTrainConfig

    config = SACTrainConfig(start_steps=300, total_steps=100_000, sac=SACConfig())
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, fast in (("plain", False), ("fast", True)):
            run = SACRun("halfcheetah", 0, config, Path(tmp) / name, fast)
            for _ in range(config.start_steps + 5):  # warm-up and compile
                run.step()
            runs[name] = run
        torch.set_num_threads(args.threads)  # SACRun sets its configured thread count
        clock = cpu_clock(args.threads)
        wall: dict[str, list[float]] = {"plain": [], "fast": []}
        cpu: dict[str, list[float]] = {"plain": [], "fast": []}
        for r in range(args.rounds):
            for name in (("plain", "fast") if r % 2 == 0 else ("fast", "plain")):
                run = runs[name]
                w0, c0 = time.perf_counter(), clock()
                for _ in range(args.steps):
                    run.step()
                wall[name].append(args.steps / (time.perf_counter() - w0))
                cpu[name].append(args.steps / (clock() - c0))
        out = {f"wall_{k}": _median(v) for k, v in wall.items()}
        out.update({f"cpu_{k}": _median(v) for k, v in cpu.items()})
        out["fell_back"] = not runs["fast"].agent.fast
        return out


# ----------------------------------------------------------------- threads
def bench_threads(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """TD3+BC's fast and plain update at 1 and 2 torch threads, interleaved (wall clock)."""
    dataset = synthetic(args.rows)
    learners = {
        "plain": make_learner("td3_bc", dataset, {"update_path": "plain"}, seed=0),
        "fast": make_learner("td3_bc", dataset, {"update_path": "fast", "fast_after": 0}, seed=0),
    }
    sampler = TensorSampler(dataset, 256, 0, *dataset.state_stats())
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for learner in learners.values():
            for _ in range(4):
                learner.update(sampler.sample())
    rates: dict[str, dict[str, list[float]]] = {f"{k}@{t}": {"wall": []} for k in learners for t in (1, 2)}
    for r in range(args.rounds):
        for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
            torch.set_num_threads(threads)
            for name, learner in learners.items():
                w0 = time.perf_counter()
                for _ in range(args.steps):
                    learner.update(sampler.sample())
                rates[f"{name}@{threads}"]["wall"].append(args.steps / (time.perf_counter() - w0))
    torch.set_num_threads(args.threads)
    return {k: {c: _median(v) for c, v in d.items()} for k, d in rates.items()}


@contextlib.contextmanager
def quiet_stdout_fd():
    """Silence C-level prints (MuJoCo's per-model 'settotalmass' warning) around env construction."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# ----------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=100, help="update steps per learner per round")
    parser.add_argument("--rows", type=int, default=200_000, help="rows of the synthetic dataset")
    parser.add_argument("--learners", default="td3_bc,td3_rkl,bc,brac,cdc")
    parser.add_argument("--skip", default="",
                        help="comma list of sections to skip: learners,threads,sac,eval,generate")
    parser.add_argument("--env", default="HalfCheetah-v4")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="fast-path precisions to measure: fp32 always; bf16 where the CPU has native bf16 "
                             "(or with --emulated-bf16)")
    parser.add_argument("--emulated-bf16", action="store_true",
                        help="measure bf16 also without bf16 units (emulated: shows what it costs there)")
    args = parser.parse_args()
    args.precisions = [p for p in args.precisions.split(",") if p]
    if args.emulated_bf16:
        from rkl_bench.algos.precision import EMULATED_ENV

        os.environ[EMULATED_ENV] = "1"
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    skip = set(filter(None, args.skip.split(",")))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.threads} thread(s), "
          f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    from benchmarks.gemm import gemm_lines

    for line in gemm_lines():
        print(line, flush=True)

    if "learners" not in skip:
        rows = bench_learners([n for n in args.learners.split(",") if n], args)
        print_learner_table(rows, args.threads)
    if "threads" not in skip:
        rates = bench_threads(args)
        print("\nThreads: TD3+BC update steps/s (wall) at 1 and 2 torch threads, interleaved")
        for name in ("plain", "fast"):
            one, two = rates[f"{name}@1"]["wall"], rates[f"{name}@2"]["wall"]
            print(f"  {name:5s} 1 thread {one:7.0f}   2 threads {two:7.0f}   2/1 {two / one:.2f}x")
    if "sac" not in skip:
        with quiet_stdout_fd():
            sac = bench_sac(args)
        print(f"\nSAC training loop (HalfCheetah-v5, env step + update), env steps/s")
        for clock in ("wall", "cpu"):
            print(f"  {clock:5s} plain {sac[f'{clock}_plain']:7.0f}   fast {sac[f'{clock}_fast']:7.0f}   "
                  f"fast/plain {sac[f'{clock}_fast'] / sac[f'{clock}_plain']:.2f}x")
        if sac["fell_back"]:
            print("  FAST PATH FELL BACK TO PLAIN")
    if "eval" not in skip or "generate" not in skip:
        from benchmarks.env_speed import env_speed_table

        env_speed_table(args.env, args.rounds, threads=args.threads,
                        evaluation="eval" not in skip, generation="generate" not in skip, quiet=quiet_stdout_fd)
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
