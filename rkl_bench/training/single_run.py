"""``rkl-bench train``: one learner, one dataset, one seed, no Ray.

A run lives in its out directory::

    run.json         the spec and dataset version (the run's identity)
    metrics.jsonl    one result row per evaluation (docs/architecture.md)
    checkpoint.pt    learner + sampler state, step, loss sums (atomic)

Rows are made every ``eval_every`` steps and at the end; checkpoints every
``checkpoint_every`` steps (default ``eval_every``) and at the end, each
written after the row of the same step. Running the same command again
resumes: the log is cut back to the checkpoint's step and training goes on
from there, drawing the same batches and evaluating on the same episodes, so
the rows equal those of an uninterrupted run except for the timing fields.
A finished run is reported and left alone; a different spec in the same
directory is refused. Ctrl-C leaves the last checkpoint as it was.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rkl_bench.algos.devices import resolve_device
from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.data.envs import gym_env_id
from rkl_bench.data.registry import load_dataset
from rkl_bench.data.validate import check_env_spaces
from rkl_bench.errors import RklBenchError
from rkl_bench.layout import LAMBDAS_FILE, METRICS_FILE, RUN_CHECKPOINT_FILE, RUN_FILE
from rkl_bench.training.files import check_writable_dir, save_json
from rkl_bench.training.lambdas import save_lambdas
from rkl_bench.training.metrics import LossMeter, append_row, read_rows, truncate_rows
from rkl_bench.training.result_row import finish_row, precision_fields, progress_fields, score_fields
from rkl_bench.training.trainer import Trainer, read_checkpoint

TIMING_KEYS = ("wall_time", "steps_per_second", "eval_seconds")
"""Row keys that measure the machine, not the run; left out of equality checks."""
IDENTITY_KEYS = ("algo", "dataset", "seed", "steps", "eval_every", "eval_episodes", "evaluate", "hyperparams")
"""Spec fields that change a run's results; resuming with any of them different is refused."""
PROGRESS_CHUNK = 100
"""Gradient steps between progress-bar updates (results do not depend on it)."""


@dataclass(frozen=True, kw_only=True)
class TrainSpec:
    """What to train, for how long, and where the run lives."""

    algo: str
    dataset: str
    seed: int = 0
    steps: int
    eval_every: int = 5000
    eval_episodes: int = 10
    out_dir: Path
    evaluate: bool = True
    d4rl_dir: str | Path | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int | None = None
    """Default: ``eval_every``."""
    device: str = "cpu"
    """Where the learner trains: ``cpu``, ``cuda`` or ``cuda:N``. Not part of the run's identity: a
    run may resume on another device (the numbers then differ by the devices' rounding)."""

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise RklBenchError(f"{name} must be a positive whole number, got {value!r}")
        if self.checkpoint_every is not None and (
            not isinstance(self.checkpoint_every, int) or self.checkpoint_every <= 0
        ):
            raise RklBenchError(f"checkpoint_every must be a positive whole number, got {self.checkpoint_every!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise RklBenchError(f"seed must be a whole number >= 0, got {self.seed!r}")
        if not self.algo or not self.dataset:
            raise RklBenchError("a run needs an algorithm and a dataset (--algo, --dataset)")
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @property
    def checkpoint_interval(self) -> int:
        return self.checkpoint_every or self.eval_every

    def identity(self) -> dict[str, Any]:
        """The fields that define the run, JSON-normalised (as run.json stores them)."""
        return json.loads(json.dumps({key: getattr(self, key) for key in IDENTITY_KEYS}))


@dataclass(frozen=True)
class SingleRunSummary:
    """What a call to :func:`train` did."""

    out_dir: Path
    step: int
    """Gradient steps done (``spec.steps`` once finished)."""
    last_row: dict[str, Any] | None
    resumed_from: int
    """Step the run resumed from (0 for a fresh run)."""
    already_finished: bool


def train(spec: TrainSpec) -> SingleRunSummary:
    """Train (or resume, or report a finished) run; see the module docstring."""
    device = resolve_device(spec.device)  # before anything is written: a missing GPU leaves no run behind
    out = spec.out_dir
    check_writable_dir(out, "--out")
    run_file, metrics_file, checkpoint_file = out / RUN_FILE, out / METRICS_FILE, out / RUN_CHECKPOINT_FILE
    recorded = _check_run_dir(spec, run_file, metrics_file, checkpoint_file)
    checkpoint = read_checkpoint(checkpoint_file) if recorded and checkpoint_file.exists() else None
    if checkpoint is not None and checkpoint["step"] >= spec.steps:
        print(f"run in {out} already finished ({spec.steps} steps); results in {metrics_file}")
        rows = read_rows(metrics_file)
        return SingleRunSummary(out, int(checkpoint["step"]), rows[-1] if rows else None, int(checkpoint["step"]), True)

    dataset = load_dataset(spec.dataset, d4rl_dir=spec.d4rl_dir)
    if recorded and recorded.get("dataset_version") != dataset.version:
        raise RklBenchError(
            f"{out} holds a run on data version {recorded.get('dataset_version')}, but {spec.dataset} is now "
            f"{dataset.version}; use another --out"
        )
    env_id = _eval_env(spec, dataset)
    if env_id is not None:
        check_env_spaces(dataset, env_id)
    trainer = Trainer(
        spec.algo, dataset, spec.hyperparams, spec.seed, env_id=env_id, device=str(device), progress=True,
        checkpoint=checkpoint,
    )
    if not recorded:
        save_json(run_file, _run_record(spec, dataset, env_id, trainer))
    if not (out / LAMBDAS_FILE).exists():
        save_lambdas(trainer.learner, dataset, out)
    truncate_rows(metrics_file, trainer.step)
    try:
        return _loop(spec, trainer, dataset, checkpoint)
    finally:
        trainer.close()


def _check_run_dir(spec: TrainSpec, run_file: Path, metrics_file: Path, checkpoint_file: Path) -> dict | None:
    """The recorded run, if any; refuse a directory that holds another run."""
    if not run_file.exists():
        if checkpoint_file.exists() or metrics_file.exists():
            raise RklBenchError(
                f"{spec.out_dir} holds run files but no {RUN_FILE}, so they cannot be checked; use another --out"
            )
        return None
    try:
        recorded = json.loads(run_file.read_text(encoding="utf-8"))
        theirs = recorded["spec"]
    except (OSError, ValueError, KeyError, TypeError):
        raise RklBenchError(f"{run_file} is not an rkl-bench run record; use another --out") from None
    if not isinstance(theirs, dict):
        raise RklBenchError(f"{run_file} is not an rkl-bench run record; use another --out")
    mine = spec.identity()
    diff = [key for key in IDENTITY_KEYS if theirs.get(key) != mine[key]]
    if diff:
        detail = ", ".join(f"{key}: {theirs.get(key)!r} there vs {mine[key]!r} here" for key in diff)
        raise RklBenchError(
            f"{spec.out_dir} holds a different run ({detail}); use another --out, or the same flags to resume it"
        )
    return recorded


def _eval_env(spec: TrainSpec, dataset: OfflineDataset) -> str | None:
    if not spec.evaluate:
        return None
    env_id = gym_env_id(dataset)
    if env_id is None:
        raise RklBenchError(
            f"dataset {spec.dataset!r} (env {dataset.env!r}, version {dataset.version!r}) has no gymnasium "
            "environment to evaluate in; train with --no-eval"
        )
    return env_id


def _run_record(spec: TrainSpec, dataset: OfflineDataset, env_id: str | None, trainer: Trainer) -> dict[str, Any]:
    config = getattr(trainer.learner, "config", None)
    learner_config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}
    return {
        "spec": spec.identity(),
        "checkpoint_every": spec.checkpoint_interval,
        "dataset_version": dataset.version,
        "dataset_name": dataset.name,
        "env_id": env_id,
        "learner_config": json.loads(json.dumps(learner_config, default=str)),
        "device": str(trainer.device),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _loop(spec: TrainSpec, trainer: Trainer, dataset: OfflineDataset, checkpoint: dict | None) -> SingleRunSummary:
    """Train from ``trainer.step`` to ``spec.steps``, writing rows and checkpoints on schedule."""
    out = spec.out_dir
    meter = LossMeter()
    clock = {"wall_time": 0.0, "train_seconds": 0.0, "last_score": None}
    if checkpoint is not None:
        meter.load_state_dict(checkpoint["extra"]["losses"])
        clock = dict(checkpoint["extra"]["clock"])
    resumed_from = trainer.step
    session_start = time.perf_counter() - clock["wall_time"]
    last_row_step = trainer.step - trainer.step % spec.eval_every
    last_row = None
    bar = tqdm(
        total=spec.steps, initial=trainer.step, desc=f"{spec.algo} {dataset.name} s{spec.seed}",
        unit="step", dynamic_ncols=True, mininterval=1.0,
        postfix={"score": "-" if clock["last_score"] is None else f"{clock['last_score']:.1f}"},
    )
    try:
        while trainer.step < spec.steps:
            step = trainer.step
            n = min(
                PROGRESS_CHUNK,
                spec.eval_every - step % spec.eval_every,
                spec.checkpoint_interval - step % spec.checkpoint_interval,
                spec.steps - step,
            )
            started = time.perf_counter()
            trainer.train_steps(n, meter)
            clock["train_seconds"] += time.perf_counter() - started
            bar.update(n)
            step = trainer.step
            if step % spec.eval_every == 0 or step == spec.steps:
                last_row = _row(spec, trainer, dataset, meter, clock, step - last_row_step, session_start)
                append_row(out / METRICS_FILE, last_row)
                clock["last_score"] = last_row["normalized_score"]
                clock["train_seconds"] = 0.0
                last_row_step = step
                meter = LossMeter()
                bar.set_postfix(_postfix(last_row), refresh=False)
            if step % spec.checkpoint_interval == 0 or step == spec.steps:
                clock["wall_time"] = time.perf_counter() - session_start
                trainer.save(out / RUN_CHECKPOINT_FILE, {"losses": meter.state_dict(), "clock": clock})
    finally:
        bar.close()
    return SingleRunSummary(out, trainer.step, last_row, resumed_from, False)


def _row(
    spec: TrainSpec,
    trainer: Trainer,
    dataset: OfflineDataset,
    meter: LossMeter,
    clock: dict[str, Any],
    steps_since_row: int,
    session_start: float,
) -> dict[str, Any]:
    """One result row (``result_row.py``; keys: docs/architecture.md, "Result rows")."""
    result = trainer.evaluate(spec.eval_episodes) if spec.evaluate else None
    train_seconds = clock["train_seconds"]
    progress = progress_fields(
        {"algo": spec.algo, "dataset": spec.dataset, "dataset_version": dataset.version, "seed": spec.seed,
         **precision_fields(trainer.learner)},
        step=trainer.step,
        total_steps=spec.steps,
        losses=meter.means(),
        wall_time=time.perf_counter() - session_start,
        steps_per_second=steps_since_row / train_seconds if train_seconds > 0 else None,
    )
    return finish_row(progress, score_fields(result))


def _postfix(row: dict[str, Any]) -> dict[str, str]:
    """Progress-bar postfix: the last normalised score and the training speed."""
    score = row["normalized_score"]
    postfix = {"score": "-" if score is None else f"{score:.1f}"}
    if row["steps_per_second"]:
        postfix["step/s"] = f"{row['steps_per_second']:.0f}"
    return postfix
