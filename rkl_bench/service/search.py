"""``rkl-bench tune CONFIG``: an Optuna study of one learner's hyper-parameters, run by Ray Tune.

The pieces:

* the spec (``search_config``): an experiment spec plus ``search:``;
* a trial (``search_trial``): one sample of the space, trained and evaluated
  on every (dataset, seed) pair in turn; its objective is the mean (or
  median) final normalised score over the pairs;
* the sampler: Optuna's TPE through Tune's ``OptunaSearch`` (a subclass,
  :class:`StudySearch`, that reports one intermediate value per finished
  pair and records early-stopped trials as PRUNED), behind a
  ``ConcurrencyLimiter``;
* early stopping: Tune's ASHA on ``pairs_done`` (ranks trials by their
  running score after the same pairs);
* the study: Optuna storage, SQLite in the experiment directory unless
  ``search.storage`` names another (any RDB URL, or ``journal:<file>``). Only
  the driver talks to it, so SQLite is enough on a cluster too; a shared
  database or journal file lets optuna-dashboard watch from elsewhere.

Order (as in ``rkl-bench run``): every check that can fail (spec, datasets,
experiment directory, study existence versus ``--resume``) happens before Ray
starts, and missing forge datasets are made before Ray starts.

Resume. The study is the record of the search: ``--resume`` opens it (the
spec must define the same trials: only ``num_samples`` and
``max_concurrent`` may change, so a search can be extended), counts its
finished trials (COMPLETE, PRUNED, FAIL) against ``num_samples``, marks
trials left RUNNING by an interrupted session as FAIL (user attribute
``interrupted``) and enqueues their parameters again, so they run first.
Such a trial goes on from its last checkpoint when the experiment directory
still holds it (user attribute ``resume_from``; on another machine it starts
from scratch), with the intermediate values it had reported. ASHA's rungs
start with every earlier session's running scores, so a resumed study prunes
as an uninterrupted one would. TPE sees every earlier trial. The Tune trials
of every session share the experiment directory ``<storage>/<name>/``.

At the end (and after an interruption) the driver writes, in the experiment
directory: ``best_config.yaml`` (the best COMPLETE trial as a spec
``rkl-bench run`` accepts), ``trials.csv`` and ``search_summary.json``; the
``rkl-bench tune`` verb then draws ``figures/`` from the summary
(``rkl_bench.report.search_figures``, a layer above this one).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import (
    BEST_CONFIG_FILE,
    RESULT_FILE,
    SEARCH_PROGRESS_FILE,
    SEARCH_RECORD_FILE,
    SEARCH_SUMMARY_FILE,
    TRIAL_CHECKPOINT_FILE,
    TRIALS_FILE,
)
from rkl_bench.service.config import load_config
from rkl_bench.service.dataset_specs import make_missing_forge_datasets, resolve_datasets
from rkl_bench.service.private_apis import fail_trial, seed_asha_rungs
from rkl_bench.service.ray_runtime import ray_session
from rkl_bench.service.run import DEFAULT_STORAGE, experiment_record
from rkl_bench.service.search_config import JOURNAL_PREFIX, SearchConfig, load_search_config, storage_url

RECORD_ATTR = "rkl_bench_search"
"""Study user attribute holding what defines the search (compared on ``--resume``)."""
INTERRUPTED_ATTR = "interrupted"
RERUN_ATTR = "rerun_of"
RESUME_ATTR = "resume_from"
"""User attribute of a re-asked interrupted trial: the checkpoint directory it goes on from."""
RESUMED_VALUES_ATTR = "resumed_values"
"""... and the intermediate values ``[step, value]`` it had reported before (copied into the new trial)."""
TUNE_TRIAL_ATTR = "tune_trial_id"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]


@dataclass(frozen=True)
class SearchSummary:
    experiment_dir: Path
    storage: str
    study_name: str
    trials_run: int
    """Tune trials started by this session."""
    complete: int
    pruned: int
    failed: int
    interrupted: int
    """Trials this session left unfinished (stopped with Ctrl-C); ``--resume`` re-runs them."""
    num_samples: int
    best: BestTrial | None
    best_config: Path | None

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed


# ------------------------------------------------------------------ driver
def run_search(
    config_path: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    storage: str | Path | None = None,
    verbose: int = 1,
    callbacks: Sequence[Any] = (),
) -> SearchSummary:
    """Run (or resume) the search ``config_path`` describes; see the module docstring.

    ``storage`` is where experiment directories live (Tune's storage path);
    ``callbacks`` are extra Tune callbacks, ``verbose`` Tune's verbosity.
    """
    config = load_search_config(config_path)
    specs = resolve_datasets(config.experiment)
    experiment_dir = _local_storage(storage) / config.name
    url = storage_url(config.search.storage, experiment_dir)
    record = search_record(config, specs)
    if not resume and experiment_dir.is_dir() and any(experiment_dir.iterdir()):
        raise RklBenchError(
            f"experiment directory {experiment_dir} already exists; pass --resume to continue the search, "
            "or change the config's name or --storage"
        )
    _quiet_optuna()
    # A study file that does not exist yet is made only once every check has passed and the data is there.
    file = _storage_file(url)
    study_storage = open_storage(url, must_exist=resume) if resume or file is None or file.exists() else None
    study = None if study_storage is None else _open_study(study_storage, config.study_name, url, record, resume)
    make_missing_forge_datasets(specs, config.experiment)

    experiment_dir.mkdir(parents=True, exist_ok=True)
    _write_text(experiment_dir / SEARCH_RECORD_FILE, json.dumps(record, indent=2) + "\n")
    if study is None:
        study_storage = study_storage or open_storage(url)
        study, seed_offset = _create_study(study_storage, config, record), 0
    else:
        seed_offset = len(study.get_trials(deepcopy=False))
        _requeue_interrupted(study, experiment_dir)
    remaining = max(0, config.search.num_samples - _finished_count(study))
    trials_run = 0
    if remaining:
        with ray_session(address):
            from rkl_bench.service.datasets_store import put_datasets

            refs = put_datasets(specs, config.experiment.d4rl_dir)
            tuner = build_search_tuner(
                config, specs, refs, study_storage, experiment_dir, remaining, callbacks, verbose, seed_offset
            )
            trials_run = len(tuner.fit())
    study = _load_study(study_storage, config.study_name)
    return summarise(config, study, url, experiment_dir, trials_run)


def search_record(config: SearchConfig, specs: Sequence[str]) -> dict[str, Any]:
    """What defines a search: the experiment, its datasets and the search's identity (JSON data)."""
    record = experiment_record(config.experiment, specs)
    record["search"] = config.search.identity()
    return json.loads(json.dumps(record))


# ----------------------------------------------------------------- storage
def _local_storage(storage: str | Path | None) -> Path:
    """``--storage`` of a search: a local (or NFS) directory, or a ``file://`` URI; an object store is refused
    with one line (the study's SQLite file and the summaries are written as local files)."""
    from rkl_bench.storage import is_uri, location

    if is_uri(str(storage or "")) and not str(storage).startswith("file://"):
        raise RklBenchError(
            f"--storage {storage}: a search keeps its Optuna study and summaries as files in the experiment directory, "
            "so it needs a local or shared (NFS) directory; object storage is for `rkl-bench run` (docs/cluster.md)"
        )
    return location(storage or DEFAULT_STORAGE, "--storage").local.resolve()


def _storage_file(url: str) -> Path | None:
    """The file behind a SQLite or journal storage; None for a database server."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def open_storage(url: str, must_exist: bool = False) -> Any:
    """An Optuna storage for ``url`` (RDB URL or ``journal:<file>``); a clear error if it cannot open."""
    import optuna

    if url.startswith(JOURNAL_PREFIX):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL_PREFIX):])
        if must_exist and not path.is_file():
            raise RklBenchError(f"nothing to resume: journal file {path} does not exist; run without --resume to start")
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if must_exist and not path.is_file():
            raise RklBenchError(f"nothing to resume: study database {path} does not exist; run without --resume to start")
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # noqa: BLE001 - drivers and servers fail in many ways; one line says which
        raise RklBenchError(f"cannot open the study storage {url} ({type(exc).__name__}: {exc}); check search.storage") from None


def _open_study(storage: Any, name: str, url: str, record: dict[str, Any], resume: bool) -> Any:
    """The existing study when resuming (checked against ``record``); None for a new one."""
    import optuna

    exists = name in {s.study_name for s in storage.get_all_studies()}
    if not resume:
        if exists:
            raise RklBenchError(
                f"study {name!r} already exists in {url}; pass --resume to continue it, "
                "or set search.study_name (or the config's name) to start another"
            )
        return None
    if not exists:
        raise RklBenchError(f"nothing to resume: no study {name!r} in {url}; run without --resume to start it")
    study = optuna.load_study(study_name=name, storage=storage)
    recorded = study.user_attrs.get(RECORD_ATTR)
    if recorded != record:
        raise RklBenchError(
            f"study {name!r} in {url} was started with a different search ({_differences(recorded, record)} differ); "
            "resume with the original config (only search.num_samples and search.max_concurrent may change), "
            "or start a new study under another name"
        )
    return study


def _differences(recorded: Any, record: dict[str, Any]) -> str:
    if not isinstance(recorded, dict):
        return "the study was not started by rkl-bench tune; everything"
    keys = []
    for part in ("config", "search"):
        old, new = recorded.get(part) or {}, record.get(part) or {}
        keys += [f"{'search.' if part == 'search' else ''}{k}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if recorded.get("dataset_specs") != record.get("dataset_specs"):
        keys.append("dataset specs")
    return ", ".join(keys) or "nothing visible"


def _create_study(storage: Any, config: SearchConfig, record: dict[str, Any]) -> Any:
    import optuna

    study = optuna.create_study(storage=storage, study_name=config.study_name, direction="maximize")
    study.set_user_attr(RECORD_ATTR, record)
    study.set_user_attr("objective", objective_text(config))
    for point in config.search.initial_points:
        study.enqueue_trial(dict(point), user_attrs={"initial_point": True})
    return study


def _load_study(storage: Any, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def _requeue_interrupted(study: Any, experiment_dir: Path) -> list[int]:
    """Trials left RUNNING by a stopped session: FAIL (``interrupted``) and their parameters enqueued
    again; one whose last checkpoint is still in ``experiment_dir`` goes on from it (``resume_from``),
    carrying the intermediate values it had reported, so nothing it had finished is trained again."""
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


def furthest_checkpoint(trial: Any, trials: Sequence[Any], experiment_dir: Path) -> tuple[Any, Path] | None:
    """The checkpoint ``trial`` goes on from, and the Optuna trial that wrote it: of ``trial`` and the
    interrupted trials it re-runs (``rerun_of``, same parameters and job, so their states are its
    states too), the one that got furthest (by the progress the checkpoint records). None when none
    is in ``experiment_dir``."""
    by_number = {t.number: t for t in trials}
    best: tuple[tuple[int, ...], Any, Path] | None = None
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


def progress_key(checkpoint: Path) -> tuple[int, ...]:
    """How far a search trial's checkpoint is, comparable between checkpoints of one job: a staged
    trial's evaluations so far (over every pair), else (finished pairs, evaluations of the current one).
    Read from the checkpoint itself: a resumed trial's ``result.json`` holds only its own session's rows."""
    progress = json.loads((checkpoint / SEARCH_PROGRESS_FILE).read_text(encoding="utf-8"))
    if "stage" in progress:
        return (sum(len(scores) for scores in progress.get("scores", [])),)
    return (len(progress.get("finals", [])), len(progress.get("scores", [])))


def last_checkpoint(experiment_dir: Path, tune_trial_id: Any) -> Path | None:
    """The checkpoint of the last row Tune logged for trial ``tune_trial_id`` in ``experiment_dir``
    (its ``checkpoint_dir_name``) if it is still there and whole; else None (another machine).

    Not simply the newest checkpoint directory: a worker writes a row's checkpoint before the
    driver logs the row, so a stop can leave a checkpoint newer than ``result.json``; going on
    from it would leave that row out of the trial's rows.
    """
    if not isinstance(tune_trial_id, str) or not tune_trial_id.isalnum():
        return None
    for folder in experiment_dir.glob(f"trial_*_{tune_trial_id}"):
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
                return checkpoint.resolve()
    return None


def _whole_checkpoint(checkpoint: Path) -> bool:
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


def _finished_count(study: Any) -> int:
    """Trials that count against ``num_samples``: COMPLETE, PRUNED and FAIL (but not interrupted ones)."""
    from optuna.trial import TrialState

    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED_ATTR))
    )


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def objective_text(config: SearchConfig) -> str:
    exp, obj = config.experiment, config.search.objective
    text = (
        f"{obj.aggregate} over {len(exp.datasets)} dataset(s) x {len(exp.seeds)} seed(s) of the final normalised score "
        f"(mean of the last {obj.final_evals} evaluation(s) of {exp.evaluation.episodes} episodes) after {exp.steps} steps"
    )
    if config.staged and len(config.stages) > 1:
        text += f"; every dataset trained to {', '.join(f'{s:,}' for s in config.stages[:-1])} steps before early stopping compares"
    return text


REFERENCE_RATES = (380.0, 175.0)
"""Fast-path TD3+BC-sized steps/s per core measured on the fastest and slowest of the
project's machines (docs/speed.md), for the estimate printed before a search starts."""


def budget_estimate(config: SearchConfig, cores: int | None = None) -> str:
    """Gradient steps a search will take, with and without early stopping, and the wall
    time they mean at :data:`REFERENCE_RATES` on ``cores`` cores (one trial per core);
    printed before the search starts, so nobody starts a two-day search by accident."""
    exp, search = config.experiment, config.search
    trials, pairs = search.num_samples, config.num_pairs
    worst = trials * pairs * exp.steps
    stopping = search.early_stopping
    if stopping.kind == "asha" and config.staged:
        # A fraction 1 / rf^k of the trials goes on past the k-th rung (ASHA's expectation).
        rungs, rf, spent = config.stages, stopping.reduction_factor, 0.0
        for k, rung in enumerate(rungs):
            spent += (rung - (rungs[k - 1] if k else 0)) / rf**k
        expected = trials * pairs * spent
    elif stopping.kind == "asha":
        rf, grace, spent, k, done = stopping.reduction_factor, config.grace_period, 0.0, 0, 0
        rung = grace
        while done < pairs:
            upto = min(pairs, rung)
            spent += (upto - done) / rf**k
            done, rung, k = upto, rung * rf, k + 1
        expected = trials * spent * exp.steps
    else:
        expected = worst
    cores = max(1, min(cores or os.cpu_count() or 1, search.max_concurrent))
    fast, slow = REFERENCE_RATES

    def hours(steps: float, rate: float) -> str:
        return f"{steps / (rate * cores) / 3600:.1f} h"

    return (
        f"budget: {trials} trials x {pairs} (dataset, seed) pair(s) x {exp.steps:,} steps = {worst / 1e6:.1f}M gradient steps "
        f"at most; about {expected / 1e6:.1f}M with early stopping. On {cores} core(s) at {fast:.0f}-{slow:.0f} steps/s "
        f"per core: {hours(expected, fast)} to {hours(expected, slow)} (at most {hours(worst, fast)} to {hours(worst, slow)}), "
        "plus evaluation and behaviour fits."
    )


# -------------------------------------------------------------------- Tune
def build_search_tuner(
    config: SearchConfig,
    specs: Sequence[str],
    refs: Any,
    study_storage: Any,
    experiment_dir: Path,
    num_samples: int,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    seed_offset: int = 0,
) -> Any:
    """The Tuner of one session: ``num_samples`` trials sampled by TPE into the study.

    The sampler's seed is ``search.sampler.seed + seed_offset``; a resumed session passes the
    number of trials already in the study, so its random draws do not repeat the first session's.
    """
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from rkl_bench.service.search_trial import (
        OBJECTIVE,
        PAIRS_DONE,
        STAGE_STEPS,
        TRIAL_KEY,
        SearchJob,
        run_search_trial,
        search_pairs,
    )
    from rkl_bench.service.study_search import ConditionalSpace, StudySearch
    from rkl_bench.service.trainable import TrialSettings
    from rkl_bench.service.tuner import make_trainable, run_config

    search, exp = config.search, config.experiment
    sampler = optuna.samplers.TPESampler(
        seed=None if search.sampler.seed is None else search.sampler.seed + seed_offset,
        n_startup_trials=search.sampler.n_startup_trials,
        multivariate=search.sampler.multivariate,
        # A conditional space: multivariate TPE models the parameters that appear together as a group.
        group=search.sampler.multivariate and search.conditional,
        constant_liar=search.sampler.constant_liar,
    )
    clock = STAGE_STEPS if config.staged else PAIRS_DONE
    searcher = StudySearch(
        space=ConditionalSpace(search.space) if search.conditional else {p.name: p.distribution() for p in search.space},
        clock=clock,
        metric=OBJECTIVE,
        mode="max",
        sampler=sampler,
        study_name=config.study_name,
        storage=study_storage,
    )
    pairs = search_pairs(specs, exp.seeds)
    if search.early_stopping.kind == "asha":
        scheduler: Any = ASHAScheduler(
            time_attr=clock,
            metric=OBJECTIVE,
            mode="max",
            max_t=exp.steps if config.staged else len(pairs),
            grace_period=config.grace_period,
            reduction_factor=search.early_stopping.reduction_factor,
        )
        # A resumed study: this session's ASHA compares its trials with every earlier session's too.
        seed_asha_rungs(scheduler, rung_history(_load_study(study_storage, config.study_name)))
    else:
        scheduler = FIFOScheduler()
    job = SearchJob(
        algo=config.algo,
        fixed=config.fixed,
        params=list(search.names),
        pairs=pairs,
        settings=TrialSettings.of(exp).as_dict(),
        final_evals=search.objective.final_evals,
        aggregate=search.objective.aggregate,
        stages=list(config.stages) if config.staged else [],
    )
    trainable = make_trainable(exp, refs, run_search_trial)
    return tune.Tuner(
        trainable,
        param_space={TRIAL_KEY: job.as_dict()},
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent),
            scheduler=scheduler,
            # No metric here: Tune would rank trials by their last running score and call an
            # early-stopped trial "best"; the study ranks COMPLETE trials only.
            num_samples=num_samples,
            trial_name_creator=search_trial_name,
            trial_dirname_creator=search_trial_dirname,
            reuse_actors=True,
        ),
        run_config=run_config(exp, experiment_dir.parent, callbacks, verbose),
    )


def search_trial_name(trial: Any) -> str:
    """``trial_<Optuna trial number>``: the progress table and the dashboard use the same numbers."""
    number = trial.config.get("optuna_trial")
    return f"trial_{number:04d}" if isinstance(number, int) else f"trial_{trial.trial_id}"


def search_trial_dirname(trial: Any) -> str:
    return f"{search_trial_name(trial)}_{trial.trial_id}"


# ----------------------------------------------------------------- outputs
def summarise(
    config: SearchConfig,
    study: Any,
    url: str,
    experiment_dir: Path,
    trials_run: int = 0,
) -> SearchSummary:
    """Count the study's trials and write the best config, the trial table and the summary
    (``search_summary.json``, from which ``rkl_bench.report.search_figures`` draws)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if complete:
        top = max(complete, key=lambda t: (t.value, -t.number))
        best = BestTrial(top.number, float(top.value), dict(top.params))
    importances = _importances(study, complete)
    best_path = write_best_config(config, best, url, experiment_dir / BEST_CONFIG_FILE) if best else None
    rows = [_trial_row(t, config.experiment.steps if config.staged else None) for t in trials]
    _write_text(experiment_dir / TRIALS_FILE, _csv(rows, config.search.names, pair_labels(config), config.staged))
    summary_data = {
        "study_name": config.study_name,
        "storage": url,
        "objective": objective_text(config),
        "aggregate": config.search.objective.aggregate,
        "clock": "steps" if config.staged else "pairs",
        "pair_labels": pair_labels(config),
        "num_samples": config.search.num_samples,
        "best": None if best is None else vars(best),
        "importances": importances,
        "importances_from": len(complete) if importances else 0,
        "space": {p.name: p.as_dict() for p in config.search.space},
        "trials": rows,
    }
    _write_text(experiment_dir / SEARCH_SUMMARY_FILE, json.dumps(summary_data, indent=2, default=str) + "\n")
    states = [t.state for t in trials]
    return SearchSummary(
        experiment_dir=experiment_dir,
        storage=url,
        study_name=config.study_name,
        trials_run=trials_run,
        complete=states.count(TrialState.COMPLETE),
        pruned=states.count(TrialState.PRUNED),
        failed=sum(1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED_ATTR)),
        # Trials left RUNNING by an earlier session were failed when this one began.
        interrupted=states.count(TrialState.RUNNING),
        num_samples=config.search.num_samples,
        best=best,
        best_config=best_path,
    )


def _trial_row(trial: Any, staged_steps: int | None = None) -> dict[str, Any]:
    """A trial as plain data; ``staged_steps`` is a staged search's steps per pair (None otherwise)."""
    intermediate = {int(k): float(v) for k, v in sorted(trial.intermediate_values.items())}
    clock = max(intermediate, default=0)
    staged = staged_steps is not None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": None if trial.value is None else float(trial.value),
        # A staged trial's clock is steps per pair; every pair is done once it reaches ``steps``.
        "pairs_done": (len(trial.user_attrs.get("pair_scores") or []) if clock >= staged_steps else 0) if staged else clock,
        **({"steps_reached": clock} if staged else {}),
        "pair_scores": trial.user_attrs.get("pair_scores"),
        "params": dict(trial.params),
        "intermediate": intermediate,
        "tune_trial_id": trial.user_attrs.get(TUNE_TRIAL_ATTR),
        "initial_point": bool(trial.user_attrs.get("initial_point")),
        "rerun_of": trial.user_attrs.get(RERUN_ATTR),
        "seconds": None if trial.duration is None else trial.duration.total_seconds(),
    }


def pair_labels(config: SearchConfig) -> list[str]:
    """Column names of the per-pair scores in ``trials.csv``: ``score:<dataset>`` (plus ``@<seed>`` with several seeds)."""
    from rkl_bench.service.search_trial import search_pairs

    specs = config.experiment.datasets
    seeds = config.experiment.seeds
    pairs = search_pairs(list(specs), seeds)
    return [f"score:{spec}" + (f"@{seed}" if len(seeds) > 1 else "") for spec, seed in pairs]


def _csv(rows: list[dict[str, Any]], names: Sequence[str], labels: Sequence[str] = (), staged: bool = False) -> str:
    """One row per trial: its state, objective, progress, parameters (empty where a
    conditional one was not sampled) and, where recorded, each pair's score at the
    trial's last clock tick (the scores behind ``value``)."""
    out = io.StringIO()
    progress = ["pairs_done", "steps_reached"] if staged else ["pairs_done"]
    columns = ["number", "state", "value", *progress, *names, *labels, "tune_trial_id", "initial_point", "rerun_of", "seconds"]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        scores = row.get("pair_scores") or []
        writer.writerow({
            **{k: row[k] for k in columns if k in row},
            **{n: row["params"].get(n) for n in names},
            **{label: score for label, score in zip(labels, scores)},
        })
    return out.getvalue()


MIN_TRIALS_FOR_IMPORTANCES = 10


def _importances(study: Any, complete: list[Any]) -> dict[str, float] | None:
    """Parameter importances over COMPLETE trials (Optuna's PED-ANOVA); None below
    :data:`MIN_TRIALS_FOR_IMPORTANCES`.

    PED-ANOVA asks which values the top ``target_quantile`` of trials took; Optuna advises
    at least 5 trials there, so the quantile is ``max(0.1, 5 / n)`` for ``n`` trials (the
    default 0.1 from 50 trials on). Fewer than 10 trials give no estimate worth drawing.
    """
    import optuna

    if len(complete) < MIN_TRIALS_FOR_IMPORTANCES:
        return None
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=max(0.1, 5 / len(complete)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)  # COMPLETE trials only
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        logger.info("no parameter importances: %s", exc)
        return None
    return {name: float(value) for name, value in values.items()}


def write_best_config(config: SearchConfig, best: BestTrial, url: str, path: Path) -> Path:
    """The experiment spec with the best trial's hyper-parameters, checked by ``load_config``."""
    data = config.experiment.to_dict()
    data["name"] = f"{config.name}-best"
    data["algorithms"] = {config.algo: config.hyperparams(best.params)}
    header = (
        f"# Best trial of study {config.study_name!r} ({url}): trial {best.number}, objective {best.value:.3f}\n"
        f"# = {objective_text(config)}.\n"
        f"# Searched: {', '.join(f'{k}={v!r}' for k, v in best.params.items())}.\n"
        f"# Run it (and change datasets/seeds/steps for a bigger grid): rkl-bench run {path}\n"
    )
    text = header + yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        load_config(tmp)
    except RklBenchError as exc:
        tmp.unlink(missing_ok=True)
        raise RklBenchError(f"internal: the best configuration does not load back ({exc})") from None
    os.replace(tmp, path)
    return path


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
