"""Peer agreement: our td3_bc and d3rlpy's TD3PlusBC on the same transitions, budget and seeds.

    .venv/bin/python benchmarks/peer_agreement.py DATASET [--steps 20000] [--eval-every 5000]
        [--eval-episodes 10] [--seeds 0,1] [--last-k 10] [--sides ours,d3rlpy] [--json OUT.json]

``DATASET`` is anything ``rkl-bench train --dataset`` takes (a forge name such
as ``forge-v5-quick/hopper-medium`` or a mixture ``forge-v5-quick/hopper-random-expert``,
made here if missing; a D4RL-layout hdf5 path; a D4RL name). d3rlpy runs in
its own virtualenv (``bash benchmarks/make_peer_venv.sh``; d3rlpy 2.8 pins
gymnasium 1.0), as a subprocess: ``benchmarks/peer_d3rlpy_worker.py``.

What is the same on both sides:

* the transitions: the dataset is loaded once by rkl_bench (D4RL
  ``qlearning_dataset`` semantics, ``rkl_bench/data/d4rl.py``; a mixture is the
  concatenation of its parts) and these exact float32 arrays are handed to
  d3rlpy in an ``.npz`` (the worker checks that every transition d3rlpy can
  sample equals the row of the same index);
* the hyper-parameters, TD3+BC's paper values: actor and critic lr 3e-4,
  batch 256, alpha 2.5, discount 0.99, tau 0.005, policy noise 0.2 clipped at
  0.5, actor and targets every 2nd step, two critics, 256x256 ReLU MLPs,
  states normalised by the dataset's mean and population std + 1e-3;
* the budget (gradient steps), the evaluation steps and the seeds;
* the evaluator: after every ``--eval-every`` steps the policy is rolled out
  by rkl_bench's ``Evaluator`` on the dataset's gymnasium MuJoCo env (v5 for
  forge data) with the episode seeds of ``rkl-bench train``
  (``eval_seed(seed, step)``). The d3rlpy worker exports its actor in a
  neutral ``.npz`` (weights of the known MLP and the normaliser it used), the
  driver loads it into rkl_bench's actor and evaluates it with the same code
  path as our own policy;
* one torch thread on both sides; the training clock counts gradient steps
  only (batch sampling included, evaluation and export excluded).

Our side is ``Trainer("td3_bc", ...)`` driven as ``rkl-bench train --algo td3_bc``
drives it (same batches, same evaluation episodes, so the same scores;
``tests/test_peer_agreement.py`` checks it). Differences between the two
libraries that are not removed are listed in ``docs/reproduction.md``.

The final score of a seed is the mean normalised score of its last
``--last-k`` evaluations (the report's ``last-evals`` rule); the table gives
it per seed and the mean ± std (ddof=0) over seeds, and the training speed of
each side in gradient steps/s, by the wall clock and by the training
thread's CPU clock (the steadier figure on a shared machine).

Exit status: 0 on success, 2 with one ``error:`` line for bad input (or a
missing d3rlpy virtualenv), 1 if the d3rlpy worker fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from rkl_bench.errors import RklBenchError  # noqa: E402

WORKER = Path(__file__).resolve().with_name("peer_d3rlpy_worker.py")
PEER_VENV = Path(__file__).resolve().with_name(".venv-d3rlpy")
PEER_PYTHON = PEER_VENV / "bin" / "python"
MAKE_VENV = "bash benchmarks/make_peer_venv.sh"
NEUTRAL_FORMAT = "rkl-peer-actor-v1"
"""Must equal ``peer_d3rlpy_worker.FORMAT`` (tested)."""
SIDES = ("ours", "d3rlpy")
LABELS = {"ours": "ours (td3_bc)", "d3rlpy": "d3rlpy TD3PlusBC"}
TRANSITION_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


# ------------------------------------------------------------------ results
@dataclass
class Evaluation:
    step: int
    normalized_score: float | None
    return_mean: float
    train_wall_seconds: float
    """Training time of the interval that ended at ``step`` (wall clock)."""
    train_cpu_seconds: float
    """The same by the training thread's CPU clock."""


@dataclass
class SideRun:
    side: str
    seed: int
    evaluations: list[Evaluation] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def final(self, k: int) -> float | None:
        scores = [e.normalized_score for e in self.evaluations[-k:]]
        return None if not scores or any(s is None for s in scores) else float(np.mean(scores))

    def steps(self) -> int:
        return self.evaluations[-1].step if self.evaluations else 0

    def speed(self, clock: str) -> float | None:
        seconds = sum(getattr(e, f"train_{clock}_seconds") for e in self.evaluations)
        return self.steps() / seconds if seconds > 0 else None


# ------------------------------------------------------------ neutral actor
def load_neutral_actor(path: str | Path) -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """A neutral-format actor file (``peer_d3rlpy_worker.py``) as rkl_bench's ``DeterministicActor``,
    with the ``(mean, divisor)`` its states are normalised by."""
    from rkl_bench.algos.nets import DeterministicActor

    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: np.asarray(f[key]) for key in f.files}
    except (OSError, ValueError) as exc:
        raise RklBenchError(f"{path}: not a readable actor file ({exc})") from None
    if str(arrays.get("format", "")) != NEUTRAL_FORMAT:
        raise RklBenchError(f"{path}: not a {NEUTRAL_FORMAT} actor file")
    layers = sum(1 for key in arrays if key.startswith("w") and key[1:].isdigit())
    weights = [arrays[f"w{i}"] for i in range(layers)]
    obs_dim, act_dim = weights[0].shape[1], weights[-1].shape[0]
    hidden = tuple(w.shape[0] for w in weights[:-1])
    actor = DeterministicActor(obs_dim, act_dim, hidden, float(arrays["max_action"]))
    state = {}
    for i in range(layers):
        state[f"net.{2 * i}.weight"] = torch.from_numpy(arrays[f"w{i}"].astype(np.float32))
        state[f"net.{2 * i}.bias"] = torch.from_numpy(arrays[f"b{i}"].astype(np.float32))
    actor.load_state_dict(state)
    actor.requires_grad_(False)
    return actor, arrays["obs_mean"].astype(np.float32), arrays["obs_divisor"].astype(np.float32)


def actor_policy(actor: torch.nn.Module):
    """``normalised obs (B, obs) -> actions``, through the inference path our learners' ``act`` uses."""
    from rkl_bench.algos.base import act_with

    obs_dim = actor.net[0].in_features
    return lambda obs: act_with(actor, obs, obs_dim)


# ---------------------------------------------------------------- machine
def cpu_model() -> str:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name", platform.processor() or platform.machine())
    detail = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields)
    return f"{name} ({detail})" if detail else name


def machine_lines(threads: int) -> list[str]:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average at start {load}",
        f"torch threads: {threads} on both sides",
    ]


# ------------------------------------------------------------------ input
def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise RklBenchError(f"--seeds must be whole numbers separated by commas (0,1,2), got {text!r}") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise RklBenchError(f"--seeds must be distinct whole numbers >= 0, got {text!r}")
    return seeds


def parse_sides(text: str) -> list[str]:
    sides = [part.strip() for part in text.split(",") if part.strip()]
    bad = [s for s in sides if s not in SIDES]
    if not sides or bad or len(set(sides)) != len(sides):
        raise RklBenchError(f"--sides takes {' and/or '.join(SIDES)} separated by a comma, got {text!r}")
    return [s for s in SIDES if s in sides]


def check_args(args: argparse.Namespace) -> None:
    for name in ("steps", "eval_every", "eval_episodes", "last_k", "threads"):
        value = getattr(args, name)
        if value <= 0:
            raise RklBenchError(f"--{name.replace('_', '-')} must be a positive whole number, got {value}")
    if args.steps % args.eval_every:
        raise RklBenchError(
            f"--steps ({args.steps}) must be a multiple of --eval-every ({args.eval_every}): "
            "both sides evaluate at the same steps"
        )
    if args.update_path not in ("fast", "plain"):
        raise RklBenchError(f"--update-path must be fast or plain, got {args.update_path!r}")


def check_peer(python: Path) -> dict[str, str]:
    """The d3rlpy venv's versions (``worker --check``); a clear error if it is missing or broken."""
    if not python.exists():
        raise RklBenchError(
            f"the d3rlpy virtualenv is missing ({python} not found); create it with `{MAKE_VENV}`, "
            "or run our side alone with --sides ours"
        )
    try:
        done = subprocess.run([str(python), str(WORKER), "--check"], capture_output=True, text=True,
                              timeout=300, env=worker_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RklBenchError(f"cannot run {python} ({exc}); recreate the venv with `{MAKE_VENV}`") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RklBenchError(f"the d3rlpy virtualenv {python} does not work ({last}); recreate it with `{MAKE_VENV}`")
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RklBenchError(f"{WORKER.name} --check printed no versions; recreate the venv with `{MAKE_VENV}`") from None


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def load_data(spec: str):
    """The dataset as ``rkl-bench train`` loads it; missing forge files are made first."""
    from rkl_bench.data.registry import forge_path, load_dataset, parse_dataset_name

    name = parse_dataset_name(spec)
    if name.source == "forge" and any(not forge_path(name.env or "", k, name.profile).is_file() for k in name.kinds):
        from rkl_bench.forge.make import make_datasets

        print(f"making forge dataset {spec} ...", file=sys.stderr, flush=True)
        make_datasets([spec], progress=True)
    return load_dataset(spec)


# ------------------------------------------------------------------- sides
def run_ours(dataset, env_id: str, seed: int, args: argparse.Namespace) -> SideRun:
    """td3_bc through rkl_bench's Trainer, evaluated as ``rkl-bench train`` evaluates."""
    from rkl_bench.training.trainer import Trainer

    run = SideRun("ours", seed)
    trainer = Trainer("td3_bc", dataset, {"update_path": args.update_path}, seed, env_id=env_id)
    try:
        while trainer.step < args.steps:
            wall, cpu = time.perf_counter(), time.thread_time()
            trainer.train_steps(args.eval_every)
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            result = trainer.evaluate(args.eval_episodes)
            run.evaluations.append(Evaluation(trainer.step, result.normalized_mean, result.return_mean, wall, cpu))
            progress("ours", seed, run.evaluations[-1], args.steps, args.eval_every)
    finally:
        trainer.close()
    return run


def run_d3rlpy(dataset, env_id: str, seed: int, args: argparse.Namespace, data_file: Path, work: Path) -> SideRun:
    """d3rlpy's TD3PlusBC in the worker; its exported actors evaluated here with our Evaluator."""
    from rkl_bench.evaluation import Evaluator
    from rkl_bench.training.trainer import eval_seed

    out = work / f"d3rlpy_seed{seed}"
    log = work / f"d3rlpy_seed{seed}.log"
    cmd = [str(args.peer_python), str(WORKER), "--data", str(data_file), "--out", str(out),
           "--steps", str(args.steps), "--eval-every", str(args.eval_every), "--seed", str(seed),
           "--threads", str(args.threads)]
    with open(log, "w", encoding="utf-8") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=worker_env()).returncode
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        sys.stderr.write("\n".join(tail) + "\n")
        raise WorkerFailed(f"the d3rlpy worker failed for seed {seed} (exit {code}); its log: {log}")
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    run = SideRun("d3rlpy", seed, extra={k: result[k] for k in
                                         ("transitions_checked", "episodes", "versions", "setup_seconds")})
    run.extra["export_max_abs_diff"] = max(s["export_max_abs_diff"] for s in result["segments"])
    ours_mean, ours_std = dataset.state_stats()
    with Evaluator(env_id, env_family=dataset.env) as evaluator:
        for seg in result["segments"]:
            actor, mean, divisor = load_neutral_actor(out / seg["actor"])
            run.extra["normaliser_max_abs_diff"] = max(
                run.extra.get("normaliser_max_abs_diff", 0.0),
                float(np.max(np.abs(mean - ours_mean))), float(np.max(np.abs(divisor - ours_std))))
            ev = evaluator.evaluate(actor_policy(actor), args.eval_episodes, eval_seed(seed, seg["step"]),
                                    mean, divisor)
            run.evaluations.append(Evaluation(seg["step"], ev.normalized_mean, ev.return_mean,
                                              seg["wall_seconds"], seg["cpu_seconds"]))
            progress("d3rlpy", seed, run.evaluations[-1], args.steps, args.eval_every)
    return run


class WorkerFailed(Exception):
    pass


def progress(side: str, seed: int, e: Evaluation, steps: int, interval: int) -> None:
    speed = interval / e.train_wall_seconds if e.train_wall_seconds > 0 else float("nan")
    print(f"{side} seed {seed}: step {e.step}/{steps}, score {fmt(e.normalized_score)}, {speed:.0f} steps/s",
          file=sys.stderr, flush=True)


# ------------------------------------------------------------------- table
def fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def mean_std(values: Sequence[float | None], digits: int = 1) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals):.{digits}f}"


def table(runs: dict[str, dict[int, SideRun]], seeds: list[int], sides: list[str], k: int) -> list[str]:
    """The per-seed table, Markdown; cells of a side not run say ``n/a``."""
    def cell(side: str, seed: int, what: str) -> float | None:
        run = runs.get(side, {}).get(seed)
        if run is None:
            return None
        return run.final(k) if what == "score" else run.speed(what)

    cols = [("score", f"{LABELS[s]} score", s) for s in SIDES] + \
           [(clock, f"{s} steps/s ({clock})", s) for clock in ("wall", "cpu") for s in SIDES]
    lines = ["| seed | " + " | ".join(c[1] for c in cols) + " |",
             "|---:|" + "---:|" * len(cols)]
    for seed in seeds:
        lines.append(f"| {seed} | " + " | ".join(
            fmt(cell(side, seed, what), 1 if what == "score" else 0) for what, _, side in cols) + " |")
    lines.append("| mean ± std | " + " | ".join(
        mean_std([cell(side, seed, what) for seed in seeds], 1 if what == "score" else 0)
        for what, _, side in cols) + " |")
    return lines


def agreement(runs: dict[str, dict[int, SideRun]], seeds: list[int], k: int) -> str | None:
    if not all(side in runs for side in SIDES):
        return None
    ours = [runs["ours"][s].final(k) for s in seeds]
    theirs = [runs["d3rlpy"][s].final(k) for s in seeds]
    if any(v is None for v in ours + theirs):
        return None
    diff = float(np.mean(ours) - np.mean(theirs))
    n = len(seeds)
    if n < 2:
        return f"difference of means (ours - d3rlpy): {diff:+.1f}; one seed, no seed noise to compare with"
    # standard error of the difference from the seed-to-seed spread (sample std, ddof=1)
    se = float(np.sqrt(np.var(ours, ddof=1) / n + np.var(theirs, ddof=1) / n))
    within = abs(diff) <= 2 * se
    return (f"difference of means (ours - d3rlpy): {diff:+.1f}; its standard error from the seed spread: "
            f"{se:.1f} -> {'within' if within else 'NOT within'} 2 standard errors ({n} seeds)")


def curves(runs: dict[str, dict[int, SideRun]], seeds: list[int]) -> list[str]:
    lines = []
    for side, by_seed in runs.items():
        for seed in seeds:
            run = by_seed[seed]
            prev = [0] + [e.step for e in run.evaluations[:-1]]
            lines.append(f"{side} seed {seed}: " + ", ".join(
                f"{e.step}: {fmt(e.normalized_score)} ({fmt((e.step - p) / e.train_wall_seconds, 0)}/s)"
                for e, p in zip(run.evaluations, prev)))
    return lines


# -------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dataset", help="forge name, D4RL name or D4RL-layout hdf5 path")
    parser.add_argument("--steps", type=int, default=20_000, help="gradient-step budget per run (default 20000)")
    parser.add_argument("--eval-every", type=int, default=5_000, help="steps between evaluations (default 5000)")
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default 10)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds (default 0,1)")
    parser.add_argument("--last-k", type=int, default=10,
                        help="final score = mean of the last K evaluations (the report's rule; default 10)")
    parser.add_argument("--sides", default="ours,d3rlpy", help="ours, d3rlpy or both (default both)")
    parser.add_argument("--update-path", default="fast",
                        help="our td3_bc's update path: fast (default, as rkl-bench train) or plain (eager)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on each side (default 1)")
    parser.add_argument("--peer-python", type=Path, default=PEER_PYTHON,
                        help=f"python of the d3rlpy venv (default {PEER_PYTHON.relative_to(ROOT)})")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the transitions, d3rlpy's actors and logs here (default: a temporary dir)")
    parser.add_argument("--json", type=Path, default=None, help="write every evaluation and timing here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except RklBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WorkerFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _main(args: argparse.Namespace) -> int:
    check_args(args)
    seeds, sides = parse_seeds(args.seeds), parse_sides(args.sides)
    if args.json is not None and args.json.parent and not args.json.parent.is_dir():
        raise RklBenchError(f"--json: directory {args.json.parent} does not exist")
    peer_versions = check_peer(args.peer_python) if "d3rlpy" in sides else None
    torch.set_num_threads(args.threads)

    import gymnasium

    from rkl_bench import __version__
    from rkl_bench.data.envs import gym_env_id
    from rkl_bench.data.validate import check_env_spaces

    dataset = load_data(args.dataset)
    env_id = gym_env_id(dataset)
    if env_id is None:
        raise RklBenchError(f"dataset {args.dataset!r} (env {dataset.env!r}) has no gymnasium environment to "
                            "evaluate in; peer agreement needs a MuJoCo dataset")
    check_env_spaces(dataset, env_id)

    header = [
        f"peer agreement: {args.dataset} ({dataset.version}, {len(dataset.observations)} transitions), "
        f"evaluated on {env_id}",
        f"budget: {args.steps} gradient steps, {args.eval_episodes} episodes every {args.eval_every} steps, "
        f"seeds {','.join(map(str, seeds))}, final score = mean of the last {args.last_k} evaluations",
        *machine_lines(args.threads),
        f"ours: rkl_bench {__version__} td3_bc (update_path={args.update_path}), torch {torch.__version__}, "
        f"gymnasium {gymnasium.__version__}",
    ]
    if peer_versions:
        header.append("d3rlpy: " + ", ".join(f"{k} {v}" for k, v in peer_versions.items())
                      + f" ({args.peer_python})")
    print("\n".join(header), flush=True)

    runs: dict[str, dict[int, SideRun]] = {}
    with tempfile.TemporaryDirectory(prefix="peer_agreement_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data_file = work / "transitions.npz"
        if "d3rlpy" in sides:
            np.savez(data_file, **{key: getattr(dataset, key) for key in TRANSITION_FIELDS})
        for seed in seeds:  # interleaved by seed, so a change of load on the machine weighs on both sides
            if "ours" in sides:
                runs.setdefault("ours", {})[seed] = run_ours(dataset, env_id, seed, args)
            if "d3rlpy" in sides:
                runs.setdefault("d3rlpy", {})[seed] = run_d3rlpy(dataset, env_id, seed, args, data_file, work)

    lines = ["", *table(runs, seeds, sides, args.last_k)]
    note = agreement(runs, seeds, args.last_k)
    if note:
        lines += ["", note]
    if "d3rlpy" in runs:
        first = next(iter(runs["d3rlpy"].values())).extra
        worst_export = max(r.extra["export_max_abs_diff"] for r in runs["d3rlpy"].values())
        worst_norm = max(r.extra["normaliser_max_abs_diff"] for r in runs["d3rlpy"].values())
        lines.append(f"d3rlpy checks: all {first['transitions_checked']} transitions equal ours "
                     f"({first['episodes']} d3rlpy episodes); exported actor vs d3rlpy predict max |diff| "
                     f"{worst_export:.1e}; its state normaliser vs ours max |diff| {worst_norm:.1e}")
    lines += ["", "normalised score per evaluation (step: score (gradient steps/s by the wall clock in the interval before it)):", *curves(runs, seeds)]
    print("\n".join(lines), flush=True)
    if args.json is not None:
        payload = {
            "header": header,
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "runs": {side: {str(seed): asdict(run) for seed, run in by_seed.items()} for side, by_seed in runs.items()},
            "table": lines,
        }
        args.json.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
