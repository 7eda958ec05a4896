"""Result rows on disk -> runs (one algorithm, dataset and seed each).

An experiment directory holds result rows in either layout, at any depth:

* ``<run>/metrics.jsonl``: the single-run training loop;
* ``<trial>/result.json``: a Ray Tune trial (JSON lines, with Tune's own keys
  such as ``training_iteration`` mixed in; those are ignored).

A line is a result row when it has ``normalized_score``; it must then carry
the rest of the contract (docs/architecture.md, "Result rows"). Lines without
it (Tune bookkeeping) are skipped. Nothing unreadable is dropped silently:

* a torn last line (what a killed writer leaves) is skipped with a warning
  naming the file and line, and that file's run counts as missing: it is
  left out of the cells, so ``n`` falls below the expected count, as for a
  partial experiment (its other rows still draw the learning curves);
* an unreadable line before the last (a torn or edited middle line) is an
  error, since dropping evaluations in the middle would change the scores.

``Experiment.warnings`` lists every such problem; ``rkl-bench report --strict``
turns any of them into exit status 2.

The same (algorithm, dataset, seed) found in two directories is an error:
averaging both would count one seed twice, keeping one would be a guess.

A **results archive** (``rkl-bench results export``, :mod:`rkl_bench.training.archive`:
``archive.json`` + ``rows.jsonl``) reads like an experiment directory; its
runs carry lambda(s) as histograms instead of ``lambdas.npz``.
:func:`load_experiments` reads several directories and archives as one
experiment: a run found in two inputs is kept once when its evaluations are
equal in both (an archive and the directory it was exported from, two
archives sharing a trial) and is an error otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import RESULT_FILES
from rkl_bench.report.algos import canonical_algo
from rkl_bench.report.datasets import DatasetKey, dataset_key
from rkl_bench.storage import shown
from rkl_bench.training.archive import check_not_torn, is_archive, load_archive

SCORE_KEY = "normalized_score"
REQUIRED_KEYS = ("algo", "dataset", "seed", "step", SCORE_KEY)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a run: its step, D4RL-normalised score and episode count."""

    step: int
    score: float
    episodes: int | None


@dataclass(frozen=True)
class Run:
    """All evaluations of one algorithm on one dataset with one seed, sorted by step."""

    algo: str
    dataset: DatasetKey
    seed: int
    directory: Path
    evaluations: tuple[Evaluation, ...]
    total_steps: int | None
    dataset_versions: tuple[str, ...]
    damaged: bool = False
    """A line of its result file could not be read: the run counts as missing."""
    lambda_histograms: Any = None
    """From an archive: per dataset component ``{"counts": [...], "range": [0, 1], ...}``; None otherwise."""

    @property
    def final_step(self) -> int:
        return self.evaluations[-1].step

    @property
    def complete(self) -> bool:
        """Reached its step budget (runs whose rows do not say their budget count as complete);
        a damaged run never counts as complete."""
        return not self.damaged and (self.total_steps is None or self.final_step >= self.total_steps)


@dataclass(frozen=True)
class Experiment:
    root: Path
    runs: tuple[Run, ...]
    files: tuple[Path, ...]
    """Result files read (the report lists them so a reader can check its inputs)."""
    warnings: tuple[str, ...] = ()
    """Unreadable lines skipped (``<file>:<line>: ...``), each naming what it cost."""
    roots: tuple[Path, ...] = ()
    """Every input directory or archive (``root`` alone when empty)."""

    @property
    def inputs(self) -> tuple[Path, ...]:
        return self.roots or (self.root,)


def load_experiments(paths: Any) -> Experiment:
    """Several experiment directories and archives as one experiment (see the module doc)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if not paths:
        raise RklBenchError("no experiment directory or results archive given")
    parts = [load_experiment(p) for p in paths]
    if len(parts) == 1:
        return parts[0]
    runs: dict[tuple[str, DatasetKey, int], Run] = {}
    for part in parts:
        for run in part.runs:
            key = (run.algo, run.dataset, run.seed)
            if key in runs:
                kept = runs[key]
                if kept.evaluations != run.evaluations:
                    raise RklBenchError(
                        f"{run.algo} on {run.dataset.name} with seed {run.seed} is in both {kept.directory} and "
                        f"{run.directory} with different evaluations; keep one of them"
                    )
                if kept.lambda_histograms is None and run.lambda_histograms is not None:
                    runs[key] = dataclasses.replace(kept, lambda_histograms=run.lambda_histograms)
                continue
            runs[key] = run
    merged = tuple(sorted(runs.values(), key=lambda r: (r.dataset, r.algo, r.seed)))
    return Experiment(parts[0].root, merged, tuple(f for p in parts for f in p.files),
                      tuple(w for p in parts for w in p.warnings), roots=tuple(p.root for p in parts))


def load_experiment(experiment_dir: str | Path) -> Experiment:
    """Read every result row under ``experiment_dir`` (or in a results archive there);
    raise :class:`RklBenchError` if there are none."""
    root = Path(experiment_dir).expanduser()
    check_not_torn(root)
    if is_archive(root):
        return _load_archive(root)
    if not root.exists():
        raise RklBenchError(f"experiment directory {root} does not exist; pass the directory a run or `rkl-bench train --out` wrote")
    if not root.is_dir():
        raise RklBenchError(f"{root} is not a directory; pass the experiment directory, not a file in it")
    files = tuple(_result_files(root))
    grouped: dict[tuple[str, DatasetKey, int], dict[str, Any]] = {}
    warnings: list[str] = []
    damaged_files: set[Path] = set()
    for path in files:
        for line_no, row in _read_rows(path, warnings, damaged_files):
            _add_row(grouped, path, line_no, row)
    damaged_dirs = {path.parent for path in damaged_files}
    for key, acc in grouped.items():
        acc["damaged"] = acc["directory"] in damaged_dirs
    lost = damaged_dirs - {acc["directory"] for acc in grouped.values()}
    for directory in sorted(lost):
        warnings.append(f"{shown(directory)}: no readable result row left; that run is missing from every table")
    if not grouped:
        looked = f"read {len(files)} result file(s) but none holds a row with {SCORE_KEY!r}" if files else "found no " + " or ".join(RESULT_FILES)
        detail = f" ({'; '.join(warnings)})" if warnings else ""
        raise RklBenchError(f"no result rows under {root}: {looked}{detail}; is this an experiment directory, and has any evaluation finished?")
    runs = tuple(sorted((_make_run(key, acc) for key, acc in grouped.items()), key=lambda r: (r.dataset, r.algo, r.seed)))
    return Experiment(root, runs, files, tuple(warnings))


def _load_archive(root: Path) -> Experiment:
    archive = load_archive(root)
    grouped: dict[tuple[str, DatasetKey, int], dict[str, Any]] = {}
    histograms = {}
    rows_file = root / "rows.jsonl"
    for trial in archive.trials.values():
        for number, row in enumerate(trial.rows, 1):
            _add_row(grouped, rows_file, number, row)
        histograms[(canonical_algo(trial.algo), dataset_key(trial.dataset), trial.seed)] = trial.lambdas or None
    if not grouped:
        raise RklBenchError(f"results archive {root} holds no trial")
    runs = tuple(sorted((dataclasses.replace(_make_run(key, acc), lambda_histograms=histograms.get(key))
                         for key, acc in grouped.items()), key=lambda r: (r.dataset, r.algo, r.seed)))
    return Experiment(root, runs, (root / "archive.json", rows_file))


def _result_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in RESULT_FILES:
            if name in filenames:
                yield Path(dirpath) / name


def _read_rows(path: Path, warnings: list[str], damaged: set[Path]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of one file; a torn last line is recorded in ``warnings`` and ``damaged`` (see the module doc)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RklBenchError(f"{path}: cannot be read ({exc.strerror or exc}); fix its permissions or remove it") from None
    lines = data.split(b"\n")
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else f"not valid JSON ({exc.msg})"
            if index == len(lines) - 1:  # no newline after it: torn by a killed writer, or still being written
                warnings.append(
                    f"{shown(path)}:{index + 1}: torn last line skipped ({reason}); that run counts as missing "
                    "until it is rerun or resumed"
                )
                damaged.add(path)
                continue
            raise RklBenchError(f"{path}:{index + 1}: {reason}; fix or delete that line") from None
        if not isinstance(row, dict):
            raise RklBenchError(f"{path}:{index + 1}: expected a JSON object per line, got {type(row).__name__}")
        if SCORE_KEY in row:
            yield index + 1, row


def _add_row(grouped: dict, path: Path, line_no: int, row: dict[str, Any]) -> None:
    where = f"{path}:{line_no}"
    missing = [key for key in REQUIRED_KEYS if row.get(key) is None]
    if missing:
        raise RklBenchError(f"{where}: result row lacks {', '.join(missing)} (see 'Result rows' in docs/architecture.md)")
    score = _number(row[SCORE_KEY], SCORE_KEY, where)
    if not math.isfinite(score):
        raise RklBenchError(f"{where}: {SCORE_KEY} is {score}; a finished evaluation must give a finite score")
    algo, dataset = canonical_algo(str(row["algo"])), dataset_key(str(row["dataset"]))
    seed = int(_number(row["seed"], "seed", where))
    acc = grouped.setdefault((algo, dataset, seed), {"directory": path.parent, "by_step": {}, "total_steps": None, "versions": set()})
    if acc["directory"] != path.parent:
        raise RklBenchError(
            f"{algo} on {dataset.name} with seed {seed} appears in both {acc['directory']} and {path.parent}; "
            "report one experiment at a time (point at its directory) or remove the duplicate run"
        )
    step = int(_number(row["step"], "step", where))
    episodes = row.get("eval_episodes")
    acc["by_step"][step] = Evaluation(step, score, None if episodes is None else int(_number(episodes, "eval_episodes", where)))
    if row.get("total_steps") is not None:
        acc["total_steps"] = int(_number(row["total_steps"], "total_steps", where))
    if row.get("dataset_version"):
        acc["versions"].add(str(row["dataset_version"]))


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RklBenchError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)


def _make_run(key: tuple[str, DatasetKey, int], acc: dict[str, Any]) -> Run:
    algo, dataset, seed = key
    evaluations = tuple(acc["by_step"][step] for step in sorted(acc["by_step"]))
    return Run(algo, dataset, seed, acc["directory"], evaluations, acc["total_steps"], tuple(sorted(acc["versions"])),
               damaged=acc.get("damaged", False))
