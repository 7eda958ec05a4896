"""The Tune trial of a search: one hyper-parameter sample over every (dataset, seed) pair.

A trial runs its pairs one after the other, in one fixed order shared by all
trials of the search: seed-major, ``(d1, s1), (d2, s1), ..., (d1, s2), ...``,
so the first ``len(datasets)`` pairs already cover every dataset once. Each
pair is exactly a grid trial (``trainable.run_pair``: same Trainer, seeds,
evaluation actors and result rows), so a pair's numbers equal those of
``rkl-bench run`` with the same hyper-parameters.

Every evaluation is one Tune result: the grid's result row (``algo``,
``dataset``, ``seed``, ``step``, ``normalized_score``...) plus

* ``pairs_done`` / ``pairs_total``: finished pairs so far, of all;
* ``pair_final``: on the row that ends a pair, the pair's final score (mean
  normalised score of its last ``final_evals`` evaluations), else None;
* ``objective``: the aggregate (mean or median) of the finished pairs' final
  scores; NaN before the first pair ends. On the last row it is the trial's
  objective; on earlier rows it is the running score that early stopping
  compares (ASHA at ``pairs_done`` milestones, so two trials are always
  compared over the same pairs).

Every row carries a checkpoint: the trainer's state plus ``search_progress.json``
(the pair, the finished pairs' final scores, the current pair's scores so far),
so a restarted trial goes on mid-pair exactly as a grid trial does.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from ray import tune

from rkl_bench.service.datasets_store import DatasetRefs, fetch_dataset
from rkl_bench.service.trainable import CHECKPOINT_FILE, TrialSettings, run_pair
from rkl_bench.training.trainer import read_checkpoint

TRIAL_KEY = "search_trial"
"""Key of the fixed part of a search trial's config (the rest are the sampled hyper-parameters)."""
PROGRESS_FILE = "search_progress.json"
OBJECTIVE = "objective"
PAIRS_DONE = "pairs_done"


@dataclass(frozen=True)
class SearchJob:
    """The fixed part of every search trial's config (plain data, saved by Tune)."""

    algo: str
    fixed: dict[str, Any]
    params: list[str]
    pairs: list[list[Any]]
    """``[dataset spec, seed]`` in the order trials run them."""
    settings: dict[str, Any]
    final_evals: int
    aggregate: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_pairs(specs: Sequence[str], seeds: Sequence[int]) -> list[list[Any]]:
    """Seed-major order: one seed over every dataset, then the next seed."""
    return [[spec, int(seed)] for seed in seeds for spec in specs]


def pair_final(scores: Sequence[float], final_evals: int) -> float:
    """A pair's final score: the mean of its last ``final_evals`` evaluation scores."""
    last = list(scores)[-final_evals:]
    return float(sum(last) / len(last))


def aggregate_scores(finals: Sequence[float], how: str) -> float:
    """The objective over finished pairs (NaN when none has finished)."""
    if not finals:
        return math.nan
    return float(statistics.median(finals) if how == "median" else statistics.fmean(finals))


@dataclass
class Progress:
    """Where a trial is: ``pair`` is the pair of the checkpoint it belongs to."""

    pair: int = 0
    finals: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def pair_finished(self) -> bool:
        return len(self.finals) > self.pair


def run_search_trial(config: dict[str, Any], datasets: DatasetRefs) -> None:
    """Tune function trainable of a search (see the module docstring)."""
    entered = time.perf_counter()
    job = SearchJob(**config[TRIAL_KEY])
    settings = TrialSettings(**job.settings)
    torch.set_num_threads(settings.threads)
    hyperparams = {**job.fixed, **{name: config[name] for name in job.params}}
    number = config.get("optuna_trial")
    progress, state = _restore()
    start = progress.pair + 1 if progress.pair_finished else progress.pair
    if progress.pair_finished:
        state = None
    for index in range(start, len(job.pairs)):
        spec, seed = job.pairs[index]
        if index != progress.pair:
            progress = Progress(pair=index, finals=progress.finals)
        reporter = _PairReporter(job, progress, number)
        # The worker's evaluation pool (eval_actors.trial_pool) is taken and given back per pair.
        run_pair(job.algo, spec, int(seed), hyperparams, settings, fetch_dataset(datasets[spec]), state, entered,
                 report=reporter)
        state, entered = None, time.perf_counter()


def _restore() -> tuple[Progress, dict[str, Any] | None]:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return Progress(), None
    with checkpoint.as_directory() as folder:
        progress = Progress(**json.loads((Path(folder) / PROGRESS_FILE).read_text(encoding="utf-8")))
        return progress, read_checkpoint(Path(folder) / CHECKPOINT_FILE)


class _PairReporter:
    """Adds the search fields to a pair's rows and keeps the trial's progress in each checkpoint."""

    def __init__(self, job: SearchJob, progress: Progress, number: int | None) -> None:
        self.job, self.progress, self.number = job, progress, number

    def __call__(self, fields: dict[str, Any], checkpoint_dir: Path) -> None:
        progress = self.progress
        progress.scores.append(float(fields["normalized_score"]))
        final = None
        if fields["step"] >= fields["total_steps"]:
            final = pair_final(progress.scores, self.job.final_evals)
            progress.finals.append(final)
            progress.scores = []
        (checkpoint_dir / PROGRESS_FILE).write_text(json.dumps(asdict(progress)), encoding="utf-8")
        # Search fields first: Tune's progress table shows a result's first four numbers.
        row = {
            OBJECTIVE: aggregate_scores(progress.finals, self.job.aggregate),
            PAIRS_DONE: len(progress.finals),
            "normalized_score": fields["normalized_score"],
            "step": fields["step"],
            **fields,
            "optuna_trial": self.number,
            "pairs_total": len(self.job.pairs),
            "pair_final": final,
        }
        tune.report(row, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
