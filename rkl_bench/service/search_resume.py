"""Resuming a search across sessions: trials a stopped session left RUNNING go on from their checkpoints.

A stopped session leaves its running trials RUNNING in the study. The next session marks them FAIL
(``interrupted``) and enqueues their parameters again; the re-asked trial goes on from the furthest
checkpoint of the trial it re-runs (and of the trials that one re-ran), carrying the intermediate
values they had reported, so nothing finished is trained twice. A new session's ASHA starts from
every earlier trial's rung values (:func:`rung_history`), so it prunes as one uninterrupted session would.

The experiment directory may be local (the checkpoint is named by its absolute path) or in an object
store (``--storage s3://...``): the checkpoints are found through ``rkl_bench.storage`` and named by
their URI, which the trial downloads before it loads it (``search_trial``), so a search resumed on a
new machine goes on from the checkpoints in the bucket.
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any, Sequence

from rkl_bench.layout import RESULT_FILE, SEARCH_PROGRESS_FILE, TRIAL_CHECKPOINT_FILE
from rkl_bench.service.private_apis import fail_trial
from rkl_bench.service.study_attrs import (
    INTERRUPTED_ATTR,
    RERUN_ATTR,
    RESUME_ATTR,
    RESUMED_VALUES_ATTR,
    TUNE_TRIAL_ATTR,
)
from rkl_bench.storage import Location, location

Where = Path | Location
"""An experiment directory or a checkpoint: a local path, or a location in an object store."""


def requeue_interrupted(study: Any, experiment_dir: Where) -> list[int]:
    """Trials left RUNNING by a stopped session: FAIL (``interrupted``) and their parameters enqueued
    again; one whose last checkpoint is still in ``experiment_dir`` goes on from it (``resume_from``:
    its path, or its URI in an object store), carrying the intermediate values it had reported, so
    nothing it had finished is trained again."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    numbers = []
    for trial in trials:
        if trial.state != TrialState.RUNNING:
            continue
        fail_trial(study, trial, INTERRUPTED_ATTR)
        if trial.params:
            attrs: dict[str, Any] = {RERUN_ATTR: trial.number}
            found = furthest_checkpoint(trial, trials, experiment_dir)
            if found is not None:
                source, checkpoint = found
                attrs[RESUME_ATTR] = str(checkpoint)
                attrs[RESUMED_VALUES_ATTR] = [[int(k), float(v)] for k, v in sorted(source.intermediate_values.items())]
            study.enqueue_trial(dict(trial.params), user_attrs=attrs)
        numbers.append(trial.number)
    return numbers


def furthest_checkpoint(trial: Any, trials: Sequence[Any], experiment_dir: Where) -> tuple[Any, Where] | None:
    """The checkpoint ``trial`` goes on from, and the Optuna trial that wrote it: of ``trial`` and the
    interrupted trials it re-runs (``rerun_of``, same parameters and job, so their states are its
    states too), the one that got furthest (by the progress the checkpoint records). None when none
    is in ``experiment_dir``."""
    by_number = {t.number: t for t in trials}
    best: tuple[tuple[int, ...], Any, Where] | None = None
    seen: set[int] = set()
    current = trial
    while current is not None and current.number not in seen:
        seen.add(current.number)
        checkpoint = last_checkpoint(experiment_dir, current.user_attrs.get(TUNE_TRIAL_ATTR))
        if checkpoint is not None:
            key = progress_key(checkpoint)
            if best is None or key > best[0]:
                best = (key, current, checkpoint)
        current = by_number.get(current.user_attrs.get(RERUN_ATTR))
    return None if best is None else (best[1], best[2])


def progress_key(checkpoint: Where) -> tuple[int, ...]:
    """How far a search trial's checkpoint is, comparable between checkpoints of one job: a staged
    trial's evaluations so far (over every pair), else (finished pairs, evaluations of the current one).
    Read from the checkpoint itself: a resumed trial's ``result.json`` holds only its own session's rows."""
    progress = json.loads((location(checkpoint) / SEARCH_PROGRESS_FILE).read_text(encoding="utf-8"))
    if "stage" in progress:
        return (sum(len(scores) for scores in progress.get("scores", [])),)
    return (len(progress.get("finals", [])), len(progress.get("scores", [])))


def last_checkpoint(experiment_dir: Where, tune_trial_id: Any) -> Where | None:
    """The checkpoint of the last row Tune logged for trial ``tune_trial_id`` in ``experiment_dir``
    (its ``checkpoint_dir_name``) if it is still there and whole; else None (not in this storage).
    A local checkpoint comes back as its resolved path, one in an object store as its location.

    Not simply the newest checkpoint directory: a worker writes a row's checkpoint before the
    driver logs the row, so a stop can leave a checkpoint newer than ``result.json``; going on
    from it would leave that row out of the trial's rows.
    """
    if not isinstance(tune_trial_id, str) or not tune_trial_id.isalnum():
        return None
    root = location(experiment_dir)
    for folder in root.children():
        if not fnmatch.fnmatchcase(folder.name, f"trial_*_{tune_trial_id}"):
            continue
        try:
            lines = (folder / RESULT_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in reversed(lines):
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a torn last line
            name = row.get("checkpoint_dir_name") if isinstance(row, dict) else None
            checkpoint = folder / str(name)
            if name and _whole_checkpoint(checkpoint):
                return checkpoint.local.resolve() if checkpoint.is_local else checkpoint
    return None


def _whole_checkpoint(checkpoint: Location) -> bool:
    try:
        json.loads((checkpoint / SEARCH_PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (checkpoint / TRIAL_CHECKPOINT_FILE).is_file()


def rung_history(study: Any) -> dict[int, list[float]]:
    """Every earlier trial's running objective at each step it reported (the study's intermediate values),
    by step: what an ASHA of a new session compares its trials with. Interrupted trials are left out:
    they go on in the new session and report their rungs there."""
    history: dict[int, list[float]] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(INTERRUPTED_ATTR):
            continue
        for step, value in trial.intermediate_values.items():
            if math.isfinite(value):
                history.setdefault(int(step), []).append(float(value))
    return history
