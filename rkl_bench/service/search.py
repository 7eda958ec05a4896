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
* the storage (``--storage``): a local or shared (NFS) directory, or an
  object-store URI (``s3://``, ``gs://``) that Tune writes the trials to
  through pyarrow. SQLite needs a local file, so with an object store the
  study and the summaries live in a working copy on the driver and are
  copied into the experiment directory in the bucket as the search goes
  (``study_remote``); ``--resume`` on another machine downloads them.

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
still holds it (user attribute ``resume_from``: a path, or a URI that the trial
downloads; a local directory left on another machine is not seen, and the trial
starts from scratch), with the intermediate values it had reported. ASHA's rungs
start with every earlier session's running scores, so a resumed study prunes
as an uninterrupted one would. TPE sees every earlier trial. The Tune trials
of every session share the experiment directory ``<storage>/<name>/``.

At the end (and after an interruption) the driver writes, in the experiment
directory (the working copy, for object storage): ``best_config.yaml`` (the
best COMPLETE trial as a spec ``rkl-bench run`` accepts), ``trials.csv`` and
``search_summary.json``; the ``rkl-bench tune`` verb passes ``draw``, which
draws ``figures/`` from the summary (``rkl_bench.report.search_figures``, a
layer above this one), before an object store gets its copies.

This module is the driver and its Tuner; each other job has its own module:
``study_store`` (the study's storage, opening and checking it), ``study_attrs``
(the user attributes kept on it), ``search_resume`` (interrupted trials going on
from their checkpoints), ``search_budget`` (the budget lines) and
``search_outputs`` (the files above) and ``study_remote`` (the working copy
of a search in an object store).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import SEARCH_RECORD_FILE, STUDY_FILE
from rkl_bench.service.dataset_specs import make_missing_forge_datasets, resolve_datasets
from rkl_bench.service.private_apis import seed_asha_rungs
from rkl_bench.service.ray_runtime import check_cluster_gpus, ray_session
from rkl_bench.service.run import experiment_record, storage_location
from rkl_bench.service.search_budget import budget_estimate, measured_estimate
from rkl_bench.service.search_config import SearchConfig, load_search_config, storage_url
from rkl_bench.service.search_outputs import SearchSummary, summarise, write_text
from rkl_bench.service.search_resume import requeue_interrupted, rung_history
from rkl_bench.service.study_store import (
    create_study,
    finished_count,
    load_study,
    open_storage,
    open_study,
    quiet_optuna,
    storage_file,
)
from rkl_bench.storage import Location, location

# ------------------------------------------------------------------ driver
def run_search(
    config_path: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    storage: str | Path | None = None,
    verbose: int = 1,
    callbacks: Sequence[Any] = (),
    announce: Callable[[str], None] | None = None,
    draw: Callable[[Path], Sequence[Path]] | None = None,
) -> SearchSummary:
    """Run (or resume) the search ``config_path`` describes; see the module docstring.

    ``storage`` is where experiment directories live (Tune's storage path): a local or shared
    directory, or an object-store URI (``study_remote``); ``callbacks`` are extra Tune callbacks,
    ``verbose`` Tune's verbosity; ``announce`` receives the budget lines (the spec's estimate
    first, then a resumed study's measured one) and, for object storage, which study copy is used;
    ``draw`` draws the figures from the summaries in a directory (called once some trial finished,
    before the files are copied to an object store).
    """
    config = load_search_config(config_path)
    if announce:
        announce(budget_estimate(config))
    specs = resolve_datasets(config.experiment)
    storage_dir = storage_location(storage)  # a bad URI or an unreachable bucket: one line, before Ray
    experiment_dir = storage_dir / config.name
    remote = _remote_study(experiment_dir)
    work_dir = experiment_dir if remote is None else remote.work_dir
    url = storage_url(config.search.storage, work_dir)
    record = search_record(config, specs)
    if not resume and location(experiment_dir).is_nonempty_dir():
        raise RklBenchError(
            f"experiment directory {experiment_dir} already exists; pass --resume to continue the search, "
            "or change the config's name or --storage"
        )
    quiet_optuna()
    with _gpus_checked(config, address):
        file = storage_file(url)
        copied = remote is not None and file == work_dir / STUDY_FILE  # the study itself travels to the bucket
        if remote is not None and not resume:
            remote.check_fresh()
        if copied and resume:
            remote.fetch(config.study_name, announce)
        # A study file that does not exist yet is made only once every check has passed and the data is there.
        study_storage = open_storage(url, must_exist=resume) if resume or file is None or file.exists() else None
        study = None if study_storage is None else open_study(study_storage, config.study_name, url, record, resume)
        make_missing_forge_datasets(specs, config.experiment)

        work_dir.mkdir(parents=True, exist_ok=True)
        write_text(work_dir / SEARCH_RECORD_FILE, json.dumps(record, indent=2) + "\n")
        if study is None:
            study_storage = study_storage or open_storage(url)
            study, seed_offset = create_study(study_storage, config, record), 0
        else:
            seed_offset = len(study.get_trials(deepcopy=False))
            requeue_interrupted(study, experiment_dir)
            measured = measured_estimate(config, study)
            if announce and measured:
                announce(measured)
        if remote is not None:  # the bucket has the record and the study before any trial runs
            remote.start(with_study=copied)
        remaining = max(0, config.search.num_samples - finished_count(study))
        trials_run = 0
        try:
            if remaining:
                if copied:
                    from rkl_bench.service.study_remote import StudySnapshots

                    callbacks = [*callbacks, StudySnapshots(remote)]
                with ray_session(address):
                    from rkl_bench.service.datasets_store import put_datasets

                    refs = put_datasets(specs, config.experiment.d4rl_dir)
                    tuner = build_search_tuner(
                        config, specs, refs, study_storage, storage_dir, remaining, callbacks, verbose, seed_offset
                    )
                    trials_run = len(tuner.fit())
        except BaseException:
            if remote is not None:  # the study as far as it got, for a resume from any machine
                remote.upload_quietly(with_study=copied)
            raise
    study = load_study(study_storage, config.study_name)
    summary = summarise(config, study, url, work_dir, trials_run, published=experiment_dir if remote is not None else None)
    figures = tuple(draw(work_dir)) if draw is not None and summary.finished else ()
    names = tuple(remote.upload_quietly(with_study=copied)) if remote is not None else ()
    return dataclasses.replace(summary, experiment_dir=experiment_dir, figures=figures, copied=names)


@contextlib.contextmanager
def _gpus_checked(config: SearchConfig, address: str | None) -> Iterator[None]:
    """A search whose trials ask for GPUs starts Ray first and refuses a cluster without any, before the
    study or the experiment directory is written (the inner ``ray_session`` then uses this Ray)."""
    gpus = config.experiment.resources.gpus
    if gpus <= 0:
        yield
        return
    with ray_session(address):
        check_cluster_gpus(gpus, config.path or config.name)
        yield


def search_record(config: SearchConfig, specs: Sequence[str]) -> dict[str, Any]:
    """What defines a search: the experiment, its datasets and the search's identity (JSON data)."""
    record = experiment_record(config.experiment, specs)
    record["search"] = config.search.identity()
    return json.loads(json.dumps(record))


def _remote_study(experiment_dir: Path | Location) -> Any:
    """The working copy of a search in an object store (``study_remote.RemoteStudy``); None for local storage."""
    if isinstance(experiment_dir, Path):
        return None
    from rkl_bench.service.study_remote import RemoteStudy

    return RemoteStudy.of(experiment_dir)


# -------------------------------------------------------------------- Tune
def build_search_tuner(
    config: SearchConfig,
    specs: Sequence[str],
    refs: Any,
    study_storage: Any,
    storage: Path | Location,
    num_samples: int,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    seed_offset: int = 0,
) -> Any:
    """The Tuner of one session: ``num_samples`` trials sampled by TPE into the study, in the
    experiment directory ``<storage>/<config.name>`` (a local path or an object-store location).

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
        seed_asha_rungs(scheduler, rung_history(load_study(study_storage, config.study_name)))
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
        run_config=run_config(exp, storage, callbacks, verbose),
    )


def search_trial_name(trial: Any) -> str:
    """``trial_<Optuna trial number>``: the progress table and the dashboard use the same numbers."""
    number = trial.config.get("optuna_trial")
    return f"trial_{number:04d}" if isinstance(number, int) else f"trial_{trial.trial_id}"


def search_trial_dirname(trial: Any) -> str:
    return f"{search_trial_name(trial)}_{trial.trial_id}"
