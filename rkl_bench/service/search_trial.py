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

**Staged trials** (``early_stopping.time: steps``): ASHA compares trials after
the same number of gradient steps on *every* dataset. The trial trains each
pair to the first rung (e.g. 25k steps), then each pair on to the next rung
(50k), and so on to ``steps``. A pair's training between rungs is
``run_pair`` resumed from the pair's checkpoint at the previous rung, and the
trainer resumes bit-exactly, so every pair's rows are those of one
uninterrupted grid trial of ``steps`` (``rkl-bench run`` reproduces them).
The rows then also carry

* ``stage_steps`` / ``stage_steps_total``: the last rung every pair has
  reached (0 before the first), of ``steps``; ASHA's clock;
* ``objective``: the aggregate, over the pairs, of each pair's score at that
  rung (the mean of its last ``final_evals`` evaluations up to the rung);
* ``pair_scores``: those per-pair scores, in pair order.

Their checkpoints hold every pair's latest trainer state (the row's own pair
as ``checkpoint.pt``, the others as ``pair_<i>.pt``), so a restarted staged
trial goes on where it stopped.

**Across sessions.** A trial a stopped session left unfinished is asked for
again by the next session with its parameters (``search.py``); when its last
checkpoint is still in the experiment directory, its config carries that
directory as ``resume_from`` and the trial goes on from it, as a restart
within a session does from Tune's checkpoint. In an object store
``resume_from`` is the checkpoint's URI: the trial downloads it into a
temporary directory (through the filesystem Tune gave the trial, so the
endpoint and credentials are Tune's) and loads it from there. A trial whose
checkpoint is that of its very last row (stopped after it, before Tune recorded
its end) trains nothing and reports its objective once more (:func:`finished_row`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from ray import tune

from rkl_bench.layout import SEARCH_PROGRESS_FILE, TRIAL_CHECKPOINT_FILE
from rkl_bench.scratch import scratch_dir
from rkl_bench.service.datasets_store import DatasetRefs, fetch_dataset
from rkl_bench.service.trainable import TrialSettings, run_pair
from rkl_bench.storage import is_uri, location
from rkl_bench.training.trainer import read_checkpoint

TRIAL_KEY = "search_trial"
"""Key of the fixed part of a search trial's config (the rest are the sampled hyper-parameters)."""
OBJECTIVE = "objective"
PAIRS_DONE = "pairs_done"
STAGE_STEPS = "stage_steps"
"""ASHA's clock in a staged search: the last rung every pair has been trained to."""
PAIR_SCORES = "pair_scores"
SCHEMES = {"gcs": {"gs", "gcs"}}
"""URI schemes of a pyarrow filesystem whose ``type_name`` is not its only scheme."""
RESUME_KEY = "resume_from"
"""Config key of a trial that goes on from an earlier session's checkpoint: that checkpoint's directory."""
REPLAYED = "replayed"
"""True in the one row of a trial restored from a checkpoint of its very last row (:func:`finished_row`)."""


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
    stages: list[int] = field(default_factory=list)
    """Rungs, in steps per pair, of a staged trial (the last is ``settings['steps']``);
    empty for a trial that runs its pairs one after the other."""

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

    def trial_finished(self, job: SearchJob) -> bool:
        """Every pair of ``job`` has its final score: nothing is left to train."""
        return self.pair_finished and self.pair == len(job.pairs) - 1


def run_search_trial(config: dict[str, Any], datasets: DatasetRefs) -> None:
    """Tune function trainable of a search (see the module docstring)."""
    entered = time.perf_counter()
    job = SearchJob(**config[TRIAL_KEY])
    settings = TrialSettings(**job.settings)
    torch.set_num_threads(settings.threads)
    # A conditional parameter absent from a trial's sample keeps the learner's default.
    hyperparams = {**job.fixed, **{name: config[name] for name in job.params if name in config}}
    number = config.get("optuna_trial")
    resume_from = config.get(RESUME_KEY)
    if job.stages:
        _run_staged(job, settings, hyperparams, number, datasets, entered, resume_from)
        return
    progress, state = _restore(resume_from)
    if progress.trial_finished(job):
        tune.report(finished_row(job, progress, number))
        return
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


def finished_row(job: SearchJob, progress: Progress | StagedProgress, number: int | None) -> dict[str, Any]:
    """The row a trial restored from the checkpoint of its last row reports, once, before it returns.

    That checkpoint is written before Tune logs its row, and a stop (Ctrl-C, a lost node) can come
    after the row but before Tune records the trial as ended; the trial is then run again from that
    checkpoint with nothing left to train. Without a row Tune rejects its end (no ``objective``) and
    Optuna never learns the value, so the trial reports the objective its progress holds, marked
    ``replayed``; training and evaluation rows are in the earlier trial's directory already.
    """
    total = job.stages[-1] if job.stages else int(job.settings["steps"])
    row: dict[str, Any] = {
        PAIRS_DONE: len(job.pairs),
        "pairs_total": len(job.pairs),
        "step": total,
        "total_steps": total,
        "optuna_trial": number,
        REPLAYED: True,
    }
    if isinstance(progress, StagedProgress):
        scores = progress.stage_scores[-1]
        return {OBJECTIVE: aggregate_scores(scores, job.aggregate), STAGE_STEPS: total, "stage_steps_total": total,
                PAIR_SCORES: scores, **row}
    return {OBJECTIVE: aggregate_scores(progress.finals, job.aggregate), "pair_final": progress.finals[-1], **row}


@contextlib.contextmanager
def _checkpoint_folder(resume_from: str | None) -> Iterator[Path | None]:
    """The checkpoint to go on from: Tune's (a restart in this session) first, else the earlier
    session's ``resume_from`` (a trial that session left unfinished; a URI is downloaded for the
    block), else none."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and resume_from is not None and is_uri(resume_from):
        checkpoint = tune.Checkpoint(*checkpoint_source(resume_from))
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            yield Path(folder)
    else:
        yield None if resume_from is None else Path(resume_from)


def checkpoint_source(uri: str) -> tuple[str, Any]:
    """The path and pyarrow filesystem of a checkpoint URI: the trial's own storage filesystem (Tune's
    endpoint and credentials) when the checkpoint lies in that storage, else the URI's filesystem."""
    from rkl_bench.service.private_apis import trial_storage

    scheme, path = uri.split("://", 1)
    path = path.rstrip("/")
    filesystem, storage_path = trial_storage()
    same_kind = filesystem is not None and scheme in SCHEMES.get(filesystem.type_name, {filesystem.type_name})
    if same_kind and (path == storage_path or path.startswith(storage_path.rstrip("/") + "/")):
        return path, filesystem
    where = location(uri, "resume_from")
    return where.path, where.fs


def _restore(resume_from: str | None = None) -> tuple[Progress, dict[str, Any] | None]:
    with _checkpoint_folder(resume_from) as folder:
        if folder is None:
            return Progress(), None
        progress = Progress(**json.loads((folder / SEARCH_PROGRESS_FILE).read_text(encoding="utf-8")))
        return progress, read_checkpoint(folder / TRIAL_CHECKPOINT_FILE)


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
        (checkpoint_dir / SEARCH_PROGRESS_FILE).write_text(json.dumps(asdict(progress)), encoding="utf-8")
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


# ------------------------------------------------------------------ staged
@dataclass
class StagedProgress:
    """Where a staged trial is. ``stage`` and ``pair`` name the next training to run
    (the rung index, the pair index); ``checkpoint_pair`` is the pair whose state
    the checkpoint's ``checkpoint.pt`` holds."""

    stage: int = 0
    pair: int = 0
    checkpoint_pair: int = 0
    scores: list[list[float]] = field(default_factory=list)
    """Per pair, every evaluation score so far."""
    stage_scores: list[list[float]] = field(default_factory=list)
    """Per finished rung, each pair's score at that rung."""

    def trial_finished(self, job: SearchJob) -> bool:
        """Every pair of ``job`` is past its last rung: nothing is left to train."""
        return self.stage >= len(job.stages)


def _pair_file(index: int) -> str:
    return f"pair_{index}.pt"


def _run_staged(
    job: SearchJob,
    settings: TrialSettings,
    hyperparams: dict[str, Any],
    number: int | None,
    datasets: DatasetRefs,
    entered: float,
    resume_from: str | None = None,
) -> None:
    """Every pair to each rung in turn (module docstring, "Staged trials")."""
    states = scratch_dir("pairs_")
    try:
        progress = _restore_staged(job, states, resume_from)
        if progress.trial_finished(job):
            tune.report(finished_row(job, progress, number))
            return
        while progress.stage < len(job.stages):
            stage, index = progress.stage, progress.pair
            spec, seed = job.pairs[index]
            file = states / _pair_file(index)
            state = read_checkpoint(file) if file.exists() else None
            reporter = _StagedReporter(job, progress, number, states)
            run_pair(job.algo, spec, int(seed), hyperparams, dataclasses.replace(settings, steps=job.stages[stage]),
                     fetch_dataset(datasets[spec]), state, entered, report=reporter)
            if (progress.stage, progress.pair) == (stage, index):
                # Nothing reported: the pair's checkpoint was already at this rung.
                reporter.advance()
            entered = time.perf_counter()
    finally:
        shutil.rmtree(states, ignore_errors=True)


def _restore_staged(job: SearchJob, states: Path, resume_from: str | None = None) -> StagedProgress:
    """The progress of the last reported row, and every pair's state copied into ``states``."""
    with _checkpoint_folder(resume_from) as folder:
        if folder is None:
            return StagedProgress(scores=[[] for _ in job.pairs])
        progress = StagedProgress(**json.loads((folder / SEARCH_PROGRESS_FILE).read_text(encoding="utf-8")))
        for index in range(len(job.pairs)):
            source = folder / (TRIAL_CHECKPOINT_FILE if index == progress.checkpoint_pair else _pair_file(index))
            if source.exists():
                shutil.copyfile(source, states / _pair_file(index))
    return progress


class _StagedReporter:
    """Adds the search fields to a staged trial's rows, keeps every pair's latest
    state, and moves the progress on when a pair reaches its rung."""

    def __init__(self, job: SearchJob, progress: StagedProgress, number: int | None, states: Path) -> None:
        self.job, self.progress, self.number, self.states = job, progress, number, states

    def advance(self) -> None:
        """The current pair has reached the current rung: on to the next pair (or rung)."""
        progress, job = self.progress, self.job
        progress.pair += 1
        if progress.pair == len(job.pairs):
            progress.stage_scores.append([pair_final(s, job.final_evals) for s in progress.scores])
            progress.stage, progress.pair = progress.stage + 1, 0

    def __call__(self, fields: dict[str, Any], checkpoint_dir: Path) -> None:
        progress, job = self.progress, self.job
        index, stage = progress.pair, progress.stage
        progress.scores[index].append(float(fields["normalized_score"]))
        shutil.copyfile(checkpoint_dir / TRIAL_CHECKPOINT_FILE, self.states / _pair_file(index))
        at_rung = fields["step"] >= job.stages[stage]
        final = pair_final(progress.scores[index], job.final_evals) if at_rung and stage == len(job.stages) - 1 else None
        if at_rung:
            self.advance()
        progress.checkpoint_pair = index
        for other in range(len(job.pairs)):
            if other != index and (self.states / _pair_file(other)).exists():
                shutil.copyfile(self.states / _pair_file(other), checkpoint_dir / _pair_file(other))
        (checkpoint_dir / SEARCH_PROGRESS_FILE).write_text(json.dumps(asdict(progress)), encoding="utf-8")
        finished_rungs = len(progress.stage_scores)
        scores = progress.stage_scores[-1] if finished_rungs else []
        total = job.stages[-1]
        row = {
            OBJECTIVE: aggregate_scores(scores, job.aggregate),
            STAGE_STEPS: job.stages[finished_rungs - 1] if finished_rungs else 0,
            "normalized_score": fields["normalized_score"],
            "step": fields["step"],
            **fields,
            "total_steps": total,
            "stage_target": job.stages[stage],
            "stage_steps_total": total,
            PAIRS_DONE: len(job.pairs) if finished_rungs == len(job.stages) else 0,
            "pairs_total": len(job.pairs),
            "pair_final": final,
            PAIR_SCORES: scores,
            "optuna_trial": self.number,
        }
        tune.report(row, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))
