"""TD3+BC update speed on one device: one seed eager and compiled, and K seeds vectorised.

    python benchmarks/gpu.py                       # one GPU (cuda), about 5-8 minutes
    python benchmarks/gpu.py --device cpu --ks 4,8 --rounds 3   # the same on a CPU (docs/speed.md)
    python benchmarks/gpu.py --device cpu --tiny   # seconds: the test suite's run of this script

Runs on the learners alone, from a copy of the repository: it imports
``rkl_bench.algos`` and ``rkl_bench.data.dataset`` only, on synthetic
HalfCheetah-shaped data (17-d states, 6-d actions; 256x256 MLPs, batch 256),
and needs torch and numpy, nothing else (no gymnasium, MuJoCo, Ray or
network; h5py and tqdm, which two modules of those packages import at the
top, are replaced by inert stand-ins when they are not installed).

Rows (each: steps/s of the whole update, the seeds' aggregate seed-steps/s,
the set-up time including any compile, and the peak memory):

* ``K=1 eager``: the learner's plain path (modules, ``backward()``, ``torch.optim``);
* ``K=1 compiled``: its fast path (the whole update as one ``torch.compile`` graph);
* ``K=1 graphed``: the same with ``compile_mode: reduce-overhead`` (the step
  replayed as a CUDA graph; on a CPU it is the compiled row again);
* ``K=k vmap`` / ``K=k vmap compiled``: ``k`` seeds trained together
  (:class:`rkl_bench.algos.seeds.SeedStack`: parameters with a leading seed
  axis, one vmapped update, one batch and random stream per seed);
* ``K=1 compiled bf16`` and ``K=k vmap compiled bf16`` (the largest ``k``):
  the same with ``precision: bf16`` (products in bf16, fp32 accumulation),
  only where the device runs bf16 natively (a GPU of compute capability 8.0
  or later; a CPU with AVX512-BF16 or AMX); ``--no-bf16`` leaves them out.

A compiled row whose compile fails says so (``fell back``) and is timed on
what the learner falls back to, as training would be. ``--rounds`` > 1 measures
every row that many times, interleaved, and prints the medians (for a CPU
shared with other jobs). A row is skipped when starting it would pass
``--budget`` seconds (compiles are the long part: a minute or more each on a
cold cache). ``--tiny`` is a toy size (16-wide nets, batch 16) that takes
seconds; it skips compiling unless ``--compile`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import os
import platform
import statistics
import sys
import time
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def install_stand_ins() -> list[str]:
    """Inert modules for the two third-party imports the learners' package chain makes at import time
    but this script never uses (hdf5 files; progress bars): the GPU machine may lack them."""
    installed = []
    if not importable("h5py"):
        h5py = types.ModuleType("h5py")

        def missing(name: str) -> Any:
            raise AttributeError(f"h5py is not installed (h5py.{name}); this script reads no hdf5 file")

        h5py.__getattr__ = missing  # type: ignore[attr-defined]
        h5py.__spec__ = importlib.machinery.ModuleSpec("h5py", None)
        sys.modules["h5py"] = h5py
        installed.append("h5py")
    if not importable("tqdm.auto"):
        tqdm = types.ModuleType("tqdm")
        auto = types.ModuleType("tqdm.auto")

        class Bar:
            def __init__(self, iterable: Any = (), *args: Any, **kwargs: Any) -> None:
                self.iterable = iterable

            def __iter__(self) -> Any:
                return iter(self.iterable)

            def __getattr__(self, name: str) -> Any:
                return lambda *args, **kwargs: None

        auto.tqdm = Bar  # type: ignore[attr-defined]
        tqdm.auto, tqdm.tqdm = auto, Bar  # type: ignore[attr-defined]
        tqdm.__spec__ = importlib.machinery.ModuleSpec("tqdm", None, is_package=True)
        auto.__spec__ = importlib.machinery.ModuleSpec("tqdm.auto", None)
        sys.modules["tqdm"], sys.modules["tqdm.auto"] = tqdm, auto
        installed.append("tqdm")
    return installed


STAND_INS = install_stand_ins()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from rkl_bench.algos.devices import device_name, resolve_device  # noqa: E402
from rkl_bench.algos.precision import EMULATED_ENV, native_bf16  # noqa: E402
from rkl_bench.algos.registry import make_learner, make_learners  # noqa: E402
from rkl_bench.algos.seeds import SeedStack  # noqa: E402
from rkl_bench.data.dataset import OfflineDataset, SeedSampler, TensorSampler  # noqa: E402
from rkl_bench.errors import RklBenchError  # noqa: E402
from benchmarks.machine import cpu_model  # noqa: E402

SIZES = {
    "full": {"rows": 100_000, "obs": 17, "act": 6, "hidden": 256, "batch": 256},
    "tiny": {"rows": 300, "obs": 5, "act": 2, "hidden": 16, "batch": 16},
}


def synthetic(rows: int, obs_dim: int, act_dim: int, seed: int = 0) -> OfflineDataset:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    actions = np.tanh(rng.normal(size=(rows, act_dim))).astype(np.float32)
    return OfflineDataset(obs, actions, rng.normal(size=rows).astype(np.float32),
                          (obs + 0.1 * rng.normal(size=obs.shape)).astype(np.float32),
                          (rng.random(rows) < 0.01).astype(np.float32), env="synthetic", name="synthetic", version="bench")


@dataclass
class Row:
    label: str
    seeds: int
    build: Callable[[], tuple[Callable[[], Any], Callable[[], str]]]
    """Makes the row's update (one call = one update of every seed) and a status function."""
    compiles: bool = False
    times: list[float] = field(default_factory=list)
    setup: float = 0.0
    memory: float | None = None
    status: str = ""
    step: Callable[[], Any] | None = None
    state: Callable[[], str] | None = None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.device = resolve_device(args.device)
        self.size = SIZES["tiny" if args.tiny else "full"]
        self.compile = args.compile if args.compile is not None else not args.tiny
        self.dataset = synthetic(self.size["rows"], self.size["obs"], self.size["act"])
        self.stats = self.dataset.state_stats()
        self.hp = {"hidden_dim": self.size["hidden"], "batch_size": self.size["batch"], "fast_after": 0}
        self.bf16 = args.bf16 and (native_bf16(self.device) is not None or os.environ.get(EMULATED_ENV) == "1")

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def single(self, path: str, mode: str = "default", precision: str = "fp32") -> tuple[Callable[[], Any], Callable[[], str]]:
        learner = make_learner("td3_bc", self.dataset, {**self.hp, "update_path": path, "compile_mode": mode,
                                                        "precision": precision}, 0,
                               str(self.device), state_mean=self.stats[0], state_std=self.stats[1])
        if path == "fast" and not self.compile:
            learner._fast.compiled._compile = False  # type: ignore[union-attr]  # the same function, eager
        sampler = TensorSampler(self.dataset, self.size["batch"], 0, *self.stats, device=self.device)

        def status() -> str:
            if path == "plain":
                return "ok"
            if learner._fast is None:
                return "fell back to plain"
            return "ok" if self.compile else "compile off (--tiny)"

        return (lambda: learner.update(sampler.sample())), status

    def stacked(self, k: int, compile: bool, precision: str = "fp32") -> tuple[Callable[[], Any], Callable[[], str]]:
        learners = make_learners("td3_bc", self.dataset, {**self.hp, "update_path": "plain", "precision": precision},
                                 list(range(k)),
                                 str(self.device), state_mean=self.stats[0], state_std=self.stats[1])
        stack = SeedStack(learners, compile=compile and self.compile)
        sampler = SeedSampler(self.dataset, self.size["batch"], list(range(k)), *self.stats, device=self.device)

        def status() -> str:
            if stack.fell_back:
                return "fell back to eager vmap"
            return "ok" if self.compile or not compile else "compile off (--tiny)"

        return (lambda: stack.update(sampler.sample())), status

    def rows(self, ks: list[int]) -> list[Row]:
        rows = [
            Row("K=1 eager", 1, lambda: self.single("plain")),
            Row("K=1 compiled", 1, lambda: self.single("fast"), compiles=True),
            Row("K=1 graphed", 1, lambda: self.single("fast", "reduce-overhead"), compiles=True),
        ]
        rows += [Row(f"K={k} vmap", k, lambda k=k: self.stacked(k, False)) for k in ks]
        rows += [Row(f"K={k} vmap compiled", k, lambda k=k: self.stacked(k, True), compiles=True) for k in ks]
        if self.bf16:  # bf16 products (fp32 accumulation), where the device has them natively
            rows.append(Row("K=1 compiled bf16", 1, lambda: self.single("fast", precision="bf16"), compiles=True))
            rows += [Row(f"K={k} vmap compiled bf16", k, lambda k=k: self.stacked(k, True, "bf16"), compiles=True)
                     for k in ks[-1:]]
        return rows

    def prepare(self, row: Row, warmup: int) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        row.step, row.state = row.build()
        for _ in range(warmup):
            row.step()
        self.sync()
        row.setup = time.perf_counter() - started
        if self.device.type == "cuda":
            row.memory = torch.cuda.max_memory_allocated(self.device) / 2**20

    def measure(self, row: Row, seconds: float, min_steps: int, clock: Callable[[], float]) -> None:
        assert row.step is not None
        steps = 0
        self.sync()
        started, ticks = time.perf_counter(), clock()
        while steps < min_steps or time.perf_counter() - started < seconds:
            for _ in range(5):
                row.step()
            steps += 5
            if steps >= 50 * min_steps:
                break
        self.sync()
        row.times.append(steps / (clock() - ticks))
        if self.device.type == "cuda":
            row.memory = max(row.memory or 0.0, torch.cuda.max_memory_allocated(self.device) / 2**20)


def peak_rss_mb() -> float | None:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (seconds; compiles off unless --compile)")
    parser.add_argument("--compile", dest="compile", action="store_true", default=None, help="compile even with --tiny")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="no torch.compile (compiled rows run eagerly)")
    parser.add_argument("--ks", default="8,32,128", help="seeds per vectorised row (default 8,32,128)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per row and round (default 6, tiny 0.2)")
    parser.add_argument("--warmup", type=int, default=None, help="updates before timing (default 30, tiny 3)")
    parser.add_argument("--rounds", type=int, default=1, help="measure each row this many times, interleaved; medians")
    parser.add_argument("--budget", type=float, default=420.0, help="skip rows that would start after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (CPU)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall (default), or cpu: this process's CPU time (with --threads 1, the code's own "
                             "cost on a CPU shared with other jobs)")
    parser.add_argument("--skip", default="", help="rows to leave out, comma-separated labels (e.g. 'K=1 graphed')")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false",
                        help="leave out the bf16 rows (K=1 compiled and the largest K vmap compiled, products in "
                             "bf16; run only where the device has bf16 natively)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*TF32.*")
    try:
        bench = Bench(args)
    except RklBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ks = [int(k) for k in args.ks.split(",") if k.strip()]
    seconds = args.seconds if args.seconds is not None else (0.2 if args.tiny else 6.0)
    warmup = args.warmup if args.warmup is not None else (3 if args.tiny else 30)
    min_steps = 5 if args.tiny else 20
    began = time.perf_counter()

    print(f"device: {bench.device} ({device_name(bench.device)}); torch {torch.__version__}, "
          f"python {platform.python_version()}, CPU {cpu_model()}, {torch.get_num_threads()} torch threads")
    print(f"td3_bc, {'tiny' if args.tiny else 'HalfCheetah-shaped'}: {bench.size['rows']} rows, "
          f"{bench.size['obs']}-d states, {bench.size['act']}-d actions, {bench.size['hidden']}x{bench.size['hidden']} MLPs, "
          f"batch {bench.size['batch']}; compile {'on' if bench.compile else 'off'}; {args.clock} clock"
          + (f"; stand-ins for {', '.join(STAND_INS)}" if STAND_INS else ""))
    if args.bf16 and not bench.bf16:
        print(f"bf16 rows left out: {bench.device} has no native bf16")
    skip = {label.strip() for label in args.skip.split(",") if label.strip()}
    rows = [row for row in bench.rows(ks) if row.label not in skip]
    ready: list[Row] = []
    for row in rows:
        if time.perf_counter() - began > args.budget:
            row.status = "skipped (time budget)"
            continue
        try:
            bench.prepare(row, warmup)
            row.status = row.state() if row.state else "ok"
            ready.append(row)
        except Exception as exc:  # noqa: BLE001 - a row that cannot run is reported, the others still run
            row.status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]
            row.step = None
        print(f"  set up {row.label}: {row.setup:.1f} s, {row.status}", flush=True)
    for _ in range(args.rounds):
        for row in ready:
            if row.step is None:
                continue
            try:
                bench.measure(row, seconds, min_steps, time.process_time if args.clock == "cpu" else time.perf_counter)
            except Exception as exc:  # noqa: BLE001
                row.status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]
                row.step = None
    base = next((statistics.median(r.times) for r in rows if r.label == "K=1 eager" and r.times), None)
    memory_label = "peak MiB" if bench.device.type == "cuda" else "-"
    print()
    print(f"{'row':<22}{'steps/s':>10}{'seed-steps/s':>14}{'vs K=1 eager':>14}{'setup s':>9}{memory_label:>10}  status")
    for row in rows:
        if row.times:
            rate = statistics.median(row.times)
            ratio = f"{row.seeds * rate / base:.2f}x" if base else "-"
            memory = f"{row.memory:.0f}" if row.memory is not None else "-"
            print(f"{row.label:<22}{rate:>10.1f}{row.seeds * rate:>14.1f}{ratio:>14}{row.setup:>9.1f}{memory:>10}  {row.status}")
        else:
            print(f"{row.label:<22}{'-':>10}{'-':>14}{'-':>14}{row.setup:>9.1f}{'-':>10}  {row.status or 'not run'}")
    rss = peak_rss_mb()
    print(f"\npeak host memory (this process): {rss:.0f} MiB" if rss is not None else "")
    print(f"total {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
