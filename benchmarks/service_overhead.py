"""What the Ray service costs on top of the training itself, on this machine.

Prints three figures of ``rkl-bench run``:

* scheduling overhead per trial: the experiment's wall time (Ray already
  started) times the trials running at once, less the time the trials spent
  inside the trainable (their own ``wall_time``), per trial. It covers
  placement, worker start, Tune's bookkeeping and checkpoint sync;
* memory per extra trial on a node: the proportional set size (PSS, shared
  pages split between their users, so the object store's one copy of the
  dataset is not counted again per trial) of a trial's worker process and of
  its evaluation actor, medians over the run;
* the dataset's size, for scale: one copy per node, in the object store.

The grid is BC (small networks) on synthetic Hopper data, a few hundred
gradient steps per trial, so the fixed costs dominate; this is on purpose.

    .venv/bin/python benchmarks/service_overhead.py [--trials 8] [--rows 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import yaml


def pss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def ray_processes() -> dict[str, list[int]]:
    """Trial workers and evaluation actors of this machine, by their Ray process titles."""
    found: dict[str, list[int]] = {"trial": [], "eval_actor": []}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            title = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::EvalActor"):
            found["eval_actor"].append(int(entry.name))
        elif title.startswith(("ray::ImplicitFunc", "ray::run_trial", "ray::_Inner")):
            found["trial"].append(int(entry.name))
    return found


class MemorySampler(threading.Thread):
    """Samples the PSS of every trial worker and evaluation actor twice a second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: dict[str, list[int]] = {"trial": [], "eval_actor": []}
        self.concurrent: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            procs = ray_processes()
            for kind, pids in procs.items():
                for pid in pids:
                    try:
                        self.samples[kind].append(pss_bytes(pid))
                    except OSError:
                        pass
            self.concurrent.append(len(procs["trial"]))
            self.stop.wait(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per dataset component")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="rkl_bench_overhead_"))
    os.environ["D4RL_DATASET_DIR"] = str(work / "d4rl")
    from rkl_bench.data.registry import load_dataset
    from rkl_bench.data.synthetic import write_synthetic_d4rl
    from rkl_bench.service.ray_runtime import ray_session
    from rkl_bench.service.run import run_experiment

    for i, kind in enumerate(("random", "expert")):
        write_synthetic_d4rl(work / "d4rl", "hopper", kind, rows=args.rows, episode=1000, seed=i)
    dataset = load_dataset("hopper-random-expert-v2")
    dataset_mb = sum(getattr(dataset, k).nbytes for k in ("observations", "actions", "rewards", "next_observations", "terminals")) / 2**20

    config = {
        "name": "overhead",
        "algorithms": {"bc": {"hidden_dim": 64, "batch_size": 64}},
        "datasets": ["hopper-random-expert"],
        "dataset_source": "d4rl",
        "seeds": list(range(args.trials)),
        "steps": args.steps,
        "evaluation": {"interval": args.steps // 2, "episodes": 2},
        "resources": {"cpus": 1, "threads": 1},
        "eval_actors": {"count": 1, "envs_per_actor": 2, "cpus": 0},
    }
    config_path = work / "overhead.yaml"
    config_path.write_text(yaml.safe_dump(config))

    cpus = os.cpu_count() or 1
    started = time.perf_counter()
    with ray_session(num_cpus=cpus):
        ray_ready = time.perf_counter()
        sampler = MemorySampler()
        sampler.start()
        fit_started = time.perf_counter()
        summary = run_experiment(config_path, storage=work / "results", verbose=0)
        fit_seconds = time.perf_counter() - fit_started
        sampler.stop.set()
        sampler.join()

    inside = []
    for folder in summary.experiment_dir.iterdir():
        rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()] if (folder / "result.json").exists() else []
        if rows:
            inside.append(rows[-1]["wall_time"])
    concurrency = min(cpus, args.trials)
    overhead = (fit_seconds * concurrency - sum(inside)) / len(inside)
    mib = 2**20
    print(f"machine: {cpus} CPUs; grid: {args.trials} BC trials x {args.steps} steps, {concurrency} at a time")
    print(f"{'Ray start (local, once per run)':<48} {ray_ready - started:8.2f} s")
    print(f"{'experiment wall time (Ray up)':<48} {fit_seconds:8.2f} s")
    print(f"{'time inside trials, median per trial':<48} {statistics.median(inside):8.2f} s")
    print(f"{'scheduling overhead per trial':<48} {overhead:8.2f} s")
    for kind, label in (("trial", "trial worker"), ("eval_actor", "evaluation actor")):
        if sampler.samples[kind]:
            print(f"{'PSS per ' + label + ', median':<48} {statistics.median(sampler.samples[kind]) / mib:8.1f} MiB")
    if sampler.samples["trial"] and sampler.samples["eval_actor"]:
        per_trial = statistics.median(sampler.samples["trial"]) + statistics.median(sampler.samples["eval_actor"])
        print(f"{'memory per extra trial on a node':<48} {per_trial / mib:8.1f} MiB")
    print(f"{'dataset (one copy per node, object store)':<48} {dataset_mb:8.1f} MiB")
    print(f"{'most trials seen running at once':<48} {max(sampler.concurrent, default=0):8d}")
    print(f"finished {summary.finished}/{summary.trials}; files in {work}")


if __name__ == "__main__":
    main()
