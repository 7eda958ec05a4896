"""The "final" score of a run, and per-cell statistics over seeds.

Table II's caption says its scores are "averaged over 10 evaluations with 5
seeds". That can mean the last 10 evaluation points of each run (TD3+BC, whose
protocol the paper follows, reports "the final 10 evaluations") or the 10
episodes of the final evaluation. Both are offered:

* ``last-evals`` (default): per seed, the mean normalised score of the last
  ``k`` evaluation points (``k = 10``). A run with fewer evaluations uses all
  it has; ``final_evals`` in the CSV says how many were averaged.
* ``final-episodes``: per seed, the normalised score of the final evaluation
  alone (itself the mean over its episodes). ``k`` is then the number of
  episodes the paper used; a cell whose final evaluation had fewer is flagged.

A cell is then the mean and standard deviation (population, ``ddof=0``, as
``numpy.std`` gives it) of the per-seed scores. Only runs that reached their
step budget count: a run still training has no final score yet, so it is
listed as incomplete, never averaged in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from rkl_bench.errors import RklBenchError
from rkl_bench.report.datasets import DatasetKey
from rkl_bench.report.results import Evaluation, Run

FINAL_MODES = ("last-evals", "final-episodes")
PAPER_K = 10
PAPER_SEEDS = 5


@dataclass(frozen=True)
class FinalRule:
    """How one run's evaluations become its final score (see the module doc)."""

    mode: str = "last-evals"
    k: int = PAPER_K

    def __post_init__(self) -> None:
        if self.mode not in FINAL_MODES:
            raise RklBenchError(f"unknown final-score mode {self.mode!r}; choose one of {', '.join(FINAL_MODES)}")
        if self.k < 1:
            raise RklBenchError(f"the number of final evaluations/episodes must be at least 1, got {self.k}")

    def evaluations(self, run: Run) -> tuple[Evaluation, ...]:
        """The evaluations the final score averages."""
        keep = self.k if self.mode == "last-evals" else 1
        return run.evaluations[-keep:]

    def score(self, run: Run) -> float:
        return float(np.mean([e.score for e in self.evaluations(run)]))

    def short(self, cell: "CellStats") -> bool:
        """True when a cell's scores rest on fewer evaluations (or episodes) than ``k``."""
        if self.mode == "last-evals":
            return 0 < cell.final_evals < self.k
        return any(e < self.k for e in cell.episodes)

    def describe(self) -> str:
        if self.mode == "last-evals":
            return (f"per seed, the mean normalised score of the last {self.k} evaluation points; "
                    "cells are the mean ± std (ddof=0) of that over seeds")
        return (f"per seed, the normalised score of the final evaluation (expected {self.k} episodes); "
                "cells are the mean ± std (ddof=0) of that over seeds")


@dataclass(frozen=True)
class CellStats:
    """One algorithm on one dataset: per-seed final scores of its complete runs."""

    algo: str
    dataset: DatasetKey
    seeds: tuple[int, ...]
    finals: tuple[float, ...]
    incomplete_seeds: tuple[int, ...]
    expected_seeds: int
    steps: tuple[int, ...]
    """Distinct final steps of the complete runs."""
    episodes: tuple[int, ...]
    """Distinct episode counts of the evaluations averaged."""
    final_evals: int
    """Fewest evaluations averaged for any seed (``k`` when every run has enough)."""
    versions: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.finals)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.finals)) if self.finals else None

    @property
    def std(self) -> float | None:
        return float(np.std(self.finals)) if self.finals else None

    @property
    def partial(self) -> bool:
        return self.n != self.expected_seeds


def cell_stats(runs: Iterable[Run], rule: FinalRule, expected_seeds: int = PAPER_SEEDS) -> dict[tuple[str, DatasetKey], CellStats]:
    """Group runs by (algorithm, dataset) and score each complete run with ``rule``."""
    if expected_seeds < 1:
        raise RklBenchError(f"expected seeds must be at least 1, got {expected_seeds}")
    grouped: dict[tuple[str, DatasetKey], list[Run]] = {}
    for run in runs:
        grouped.setdefault((run.algo, run.dataset), []).append(run)
    cells = {}
    for (algo, dataset), group in grouped.items():
        done = sorted((r for r in group if r.complete), key=lambda r: r.seed)
        used = [rule.evaluations(r) for r in done]
        cells[(algo, dataset)] = CellStats(
            algo=algo,
            dataset=dataset,
            seeds=tuple(r.seed for r in done),
            finals=tuple(rule.score(r) for r in done),
            incomplete_seeds=tuple(sorted(r.seed for r in group if not r.complete)),
            expected_seeds=expected_seeds,
            steps=tuple(sorted({r.final_step for r in done})),
            episodes=tuple(sorted({e.episodes for evals in used for e in evals if e.episodes is not None})),
            final_evals=min((len(evals) for evals in used), default=0),
            versions=tuple(sorted({v for r in done for v in r.dataset_versions})),
        )
    return cells
