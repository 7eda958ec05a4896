"""``rkl-bench results status ARCHIVE --running DIR``: the trials a grid has in flight, from their files.

An archive holds finished trials only, so ``results status`` on it alone
counts a trial that is two thirds done as work left, and its plan of what
fits in ``--time-limit`` hands out a run slot the trial still holds. The
experiment directories of the parts that run now (or ran, and stopped with
their machine or session) say the rest: per trial, the step its seeds have
reached, how fast it went lately, when it last wrote a row, and the newest
checkpoint a bare ``--resume`` of that directory goes on from
(docs/cluster.md). Finished trials there that the archive lacks are named
too: an export away from being held.

Everything is read from plain files (Tune's ``params.json`` and
``result.json``; nothing is unpickled) and no Ray is started. Whether a
trial still runs is not in its files: the age of its last row tells, and a
trial silent for much longer than its rows' interval has stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import RESULT_FILE
from rkl_bench.training.archive import ArchivedTrial, TrialDirRows, TrialKey, trial_dir_rows

PARAMS_FILE = "params.json"
RECENT_ROWS = 3
"""The last rows a trial's recent speed is averaged over."""


@dataclass(frozen=True)
class UnfinishedTrial:
    """One trial of an experiment directory that has not reached its last step."""

    directory: Path
    storage: Path
    """The ``--running`` folder it was found in (what a bare ``--resume`` of it is given)."""
    algo: str
    dataset: str
    seeds: tuple[int, ...]
    step: int
    """The step every seed of the trial has reached (0 before the first row)."""
    total_steps: int
    steps_per_second: float | None
    """Steps per second of the trial's seeds together, lately (None before a row; see :func:`_recent_speed`)."""
    last_row_age_s: float | None
    checkpoint: str | None
    """The newest ``checkpoint_*`` folder of the trial, if any."""

    @property
    def keys(self) -> list[TrialKey]:
        return [(self.algo, self.dataset, seed) for seed in self.seeds]

    @property
    def seconds_left(self) -> float | None:
        """Wall-clock seconds left at the recent speed (None when the trial has no row yet)."""
        if not self.steps_per_second:
            return None
        return max(0, self.total_steps - self.step) / self.steps_per_second

    def line(self) -> str:
        seeds = ",".join(map(str, self.seeds))
        where = f"{self.algo} on {self.dataset.split('/')[-1]} (seeds {seeds}, in {self.storage})"
        if self.step == 0 or self.last_row_age_s is None:
            return f"{where}: no result row of every seed yet (start-up or behaviour fits)"
        parts = [f"step {self.step:,} of {self.total_steps:,}", f"last row {_age(self.last_row_age_s)} ago"]
        if self.seconds_left is not None:
            parts.append(f"{self.steps_per_second:.0f} steps/s lately, about {self.seconds_left / 3600:.1f} h left")
        if self.checkpoint:
            parts.append(f"newest checkpoint {self.checkpoint}")
        return f"{where}: " + "; ".join(parts)


@dataclass(frozen=True)
class ExperimentProgress:
    """What one experiment directory holds beyond an archive: unfinished trials, and finished ones."""

    directory: Path
    unfinished: tuple[UnfinishedTrial, ...]
    finished: tuple[ArchivedTrial, ...]


def experiment_progress(experiment_dir: str | Path, now: float | None = None) -> ExperimentProgress:
    """The trials of ``experiment_dir`` (a ``--storage``'s experiment folder, or the storage folder
    itself): every Tune trial folder with a ``params.json``, unfinished or finished."""
    root = Path(experiment_dir).expanduser()
    if not root.is_dir():
        raise RklBenchError(f"--running {experiment_dir}: no such directory")
    now = time.time() if now is None else now
    unfinished, finished = [], []
    for params_path in sorted(root.rglob(PARAMS_FILE)):
        directory = params_path.parent
        params = _read_params(params_path)
        if params is None:
            continue
        read = trial_dir_rows(directory) if (directory / RESULT_FILE).is_file() else None
        by_seed = read.by_seed if read is not None else {}
        done = [trial for trial in (read.finished() if read is not None else []) if trial is not None]
        finished += done
        seeds = tuple(int(s) for s in params.get("seeds") or [params.get("seed", 0)])
        if len(done) == len(seeds):
            continue
        total = int((params.get("settings") or {}).get("steps") or 0)
        lasts = [rows[-1] for rows in by_seed.values() if rows]
        step = min((int(row["step"]) for row in lasts), default=0) if len(lasts) == len(seeds) else 0
        unfinished.append(UnfinishedTrial(
            directory, root, str(params.get("algo")), str(params.get("dataset")), seeds, step, total,
            _recent_speed(read), None if read is None or not lasts else now - read.modified,
            _newest_checkpoint(directory)))
    if not unfinished and not finished:
        raise RklBenchError(f"--running {experiment_dir}: no Tune trial folders (with {PARAMS_FILE}) in it; "
                            "give the --storage folder of a run, or its experiment folder")
    return ExperimentProgress(root, tuple(unfinished), tuple(finished))


def _read_params(path: Path) -> dict[str, Any] | None:
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return params if isinstance(params, dict) and "algo" in params and "dataset" in params else None


def _recent_speed(read: TrialDirRows | None) -> float | None:
    """Steps per second of the trial's seeds together over its last :data:`RECENT_ROWS` intervals, by
    Tune's clock of the first seed's rows (training, evaluation and checkpoints: what the time left
    is spent on; a stack's seeds advance together); else the rows' own ``steps_per_second`` (training
    alone, so an estimate that errs short)."""
    if read is None or not read.by_seed:
        return None
    seed = min(read.by_seed)
    rows, clock = read.by_seed[seed][-RECENT_ROWS - 1:], read.clock.get(seed, [])[-RECENT_ROWS - 1:]
    pairs = [(b["step"] - a["step"], tb - ta) for a, b, ta, tb in zip(rows, rows[1:], clock, clock[1:])
             if ta is not None and tb is not None and tb > ta and b["step"] > a["step"]]
    if pairs:
        return sum(steps for steps, _ in pairs) / sum(seconds for _, seconds in pairs)
    speeds = [float(r["steps_per_second"]) for r in rows[-RECENT_ROWS:]
              if isinstance(r.get("steps_per_second"), (int, float)) and math.isfinite(r["steps_per_second"])
              and r["steps_per_second"] > 0]
    return sum(speeds) / len(speeds) if speeds else None


def _newest_checkpoint(directory: Path) -> str | None:
    names = sorted(p.name for p in directory.glob("checkpoint_*") if p.is_dir())
    return names[-1] if names else None


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def in_flight(progress: Sequence[ExperimentProgress], cells: set[TrialKey]) -> list[UnfinishedTrial]:
    """The unfinished trials of ``progress`` that are trials of the grid whose seed runs are ``cells``."""
    return [t for p in progress for t in p.unfinished if set(t.keys) & cells]


def progress_lines(progress: Sequence[ExperimentProgress], held: set[TrialKey], cells: set[TrialKey]) -> list[str]:
    """The lines ``results status --running`` adds: each unfinished trial of the grid, and how many
    seed runs finished in those folders are not in the archive yet."""
    lines = []
    unfinished = in_flight(progress, cells)
    if unfinished:
        lines.append(f"in flight ({len(unfinished)} trial(s) in the --running folders, not finished):")
        lines += [f"  {trial.line()}" for trial in unfinished]
    for p in progress:
        new = sorted({t.key for t in p.finished if t.key in cells} - held)
        if new:
            lines.append(f"finished in {p.directory} and not in the archive: {len(new)} seed run(s); "
                         f"export them (rkl-bench results export {p.directory} --out ARCHIVE)")
    foreign = sum(1 for p in progress for t in p.unfinished if not set(t.keys) & cells)
    if foreign:
        lines.append(f"({foreign} unfinished trial(s) there are not of this grid: left out)")
    return lines
