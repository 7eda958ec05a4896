"""``rkl-bench run CONFIG``: check, make data, start Ray, run (or resume) the grid.

Order matters: everything that can be wrong with the request (config keys
and values, algorithm names, dataset names and files, the experiment
directory versus ``--resume``) is checked before Ray starts, and missing
forge datasets are made before Ray starts too, so Ray's start-up is only paid
for a run that can go through.

``--storage`` is a local directory or a URI of an object store (``s3://``,
``gs://``; ``rkl_bench.storage``): Tune writes there through a pyarrow
filesystem, and the record, the digest checks and the archive of a resume
read there through the same layer. A bucket that does not exist or does not
answer is one error line before Ray starts.

The experiment directory ``<storage>/<name>/`` is Tune's, plus
``rkl_bench_experiment.json``: the config it was started with. ``--resume``
refuses a directory started with another config, and a run without
``--resume`` refuses a directory that exists, so results of two different
configs never mix.

The record also holds the SHA-256 of every file Tune unpickles on restore
(``tune_state.py``): ``--resume`` refuses state this service did not write,
and a directory other users can write, before Ray starts (``docs/security.md``).
Everything else that can be checked without Ray is checked before it too: the
storage directory is a directory this user can write, and every dataset loads
and fits its evaluation env (dims and dtypes), so bad data costs one
``error:`` line, not a cluster start-up and a failed trial.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from rkl_bench.data.envs import gym_env_id
from rkl_bench.data.registry import load_dataset
from rkl_bench.data.validate import check_env_spaces
from rkl_bench.errors import RklBenchError
from rkl_bench.layout import EXPERIMENT_RECORD_FILE, TUNER_FILE
from rkl_bench.service.config import ExperimentConfig, load_config
from rkl_bench.service.export_as_finished import ExportAsFinished
from rkl_bench.service.dataset_specs import make_missing_forge_datasets, resolve_datasets
from rkl_bench.service.grid_cells import grid_cells
from rkl_bench.service.grid_part import grid_part
from rkl_bench.service.time_limit import plan_grid
from rkl_bench.service.grid_budget import archived_rates, budget_lines, concurrent_trials
from rkl_bench.service.ray_runtime import (
    DEFAULT_CONNECT_TIMEOUT_S,
    check_cluster_gpus,
    check_dashboard_available,
    ray_session,
)
from rkl_bench.storage import Location, check_reachable, location, native
from rkl_bench.service.tune_state import (
    check_private,
    read_record,
    record_digests,
    state_files,
    verify_tune_state,
    write_record,
)
from rkl_bench.training.archive import (
    IDENTITY_KEYS, Archive, TrialKey, check_not_torn, display_name, is_archive, load_archive, sub_grid_difference,
)

DEFAULT_STORAGE = Path("ray_results")


@dataclass(frozen=True)
class GridSummary:
    experiment_dir: Path | Location
    """A local directory, or a location in an object store (``--storage s3://...``)."""
    trials: int
    finished: int
    errored: int
    seeds: int
    """Seeds per (algorithm, dataset) cell: what a complete cell of the report has."""
    errors: tuple[str, ...] = ()
    """One line per failed trial: its name and the last line of its error."""
    archived: int = 0
    """Trials of the grid taken from a results archive (``resume=ARCHIVE``), not run; counted in ``finished``."""
    archive: Path | Location | None = None
    smoke_of: Path | None = None
    """The report folder of the run this one is a smoke budget of (the config's ``smoke_of``)."""
    deferred: int = 0
    """Trials (seed runs) left for a later run by ``time_limit``: not started, not counted as interrupted."""

    @property
    def interrupted(self) -> bool:
        """Trials neither finished nor failed: the run was stopped (Ctrl-C); ``--resume`` goes on."""
        return self.finished + self.errored + self.deferred < self.trials


def run_experiment(
    config_path: str | Path,
    *,
    address: str | None = None,
    resume: bool | str | Path = False,
    storage: str | Path | None = None,
    dashboard: bool = False,
    verbose: int = 1,
    callbacks: Sequence[Any] = (),
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    learners: Sequence[str] = (),
    datasets: Sequence[str] = (),
    time_limit: float | None = None,
    export_to: str | Path | None = None,
    cpus: int | None = None,
) -> GridSummary:
    """Run the experiment ``config_path`` describes; see the module docstring.

    ``resume`` is ``True`` to go on from the experiment directory's Tune state,
    or the path of a results archive of this experiment: its trials are not
    run again (see :func:`matching_archive`). ``callbacks`` are extra Tune
    callbacks; ``verbose`` is Tune's verbosity (0 silent, 1 the progress table,
    2 every result); ``connect_timeout`` bounds the wait for the cluster at ``address``.
    ``learners`` and ``datasets`` run a part of the grid (:mod:`.grid_part`). ``time_limit`` (seconds,
    with an archive) starts only the trials expected to end within it (:mod:`.time_limit`). ``export_to``
    (a local archive) receives each trial's rows as it finishes (:mod:`.export_as_finished`). ``cpus`` is the
    CPUs of the local Ray (default the machine's): fewer leave cores to other work on the machine (another part
    of a grid, a laptop's user), and the time plan and forge files use as many.
    """
    started = time.monotonic()
    if dashboard:
        if address is not None:
            raise RklBenchError("--dashboard starts the dashboard of a local Ray; a cluster joined with --address has its own")
        check_dashboard_available()
    config = grid_part(load_config(config_path), learners, datasets)
    check_local_cpus(cpus, address, config)
    specs = resolve_datasets(config)
    from rkl_bench.training.files import check_writable_dir

    storage_dir = storage_location(storage)
    experiment_dir = storage_dir / config.name
    record = experiment_record(config, specs)
    archive = None if isinstance(resume, bool) else native(location(resume, "--resume"))
    if isinstance(archive, Location):
        check_reachable(archive, "--resume")
    if time_limit is not None and archive is None:
        raise RklBenchError("--time-limit needs --resume ARCHIVE: trial lengths come from the archive's measured rates")
    if time_limit is not None and address is not None:
        raise RklBenchError("--time-limit plans on a local Ray's run slots (its CPUs); with --address the cluster's are "
                            "not known before it starts, so it is not supported there yet")
    held = matching_archive(archive, record, config, specs) if archive is not None else None
    export_target = None if export_to is None else export_archive(export_to, storage_dir, record, config, specs)
    cells = grid_cells(config, specs)
    skip = set() if held is None else set(held.trials) & cells
    total = len(cells)
    rates = None if held is None else archived_rates(held)
    for line in budget_lines(config, specs, skip, rates, concurrent_trials(config, address, cpus)):
        print(line, flush=True)
    if archive is not None and len(skip) == total:
        return GridSummary(experiment_dir, total, total, 0, len(config.seeds), archived=total, archive=archive,
                           smoke_of=config.smoke_of_dir)
    # An archive resume starts the missing trials in a new directory, or goes on with one it started.
    fresh_from_archive = archive is not None and not location(experiment_dir).is_nonempty_dir()
    _check_experiment_dir(experiment_dir, record, bool(resume) and not fresh_from_archive)
    later = (read_record(experiment_dir) or {}).get("deferred_trials") if resume and not fresh_from_archive else None
    if later:
        print(f"note: {len(later)} seed run(s) of this grid were deferred by --time-limit and are not in {experiment_dir}; "
              "export it into the archive and run with --resume ARCHIVE under another --storage for them", flush=True)
    if time_limit is not None and not fresh_from_archive:
        raise RklBenchError(f"--time-limit plans a new experiment directory, but {experiment_dir} exists: export it into "
                            "the archive and remove it, or use another --storage")
    make_missing_forge_datasets(specs, config, refresh=not resume, jobs=cpus)
    check_datasets(specs, config)
    deferred: set[TrialKey] = set()
    if time_limit is not None:
        plan = plan_grid(config, specs, skip, rates or {}, time_limit - (time.monotonic() - started),
                         concurrent_trials(config, None, cpus))
        for line in plan.lines():
            print(line, flush=True)
        deferred = plan.deferred_keys
        if len(skip | deferred) == total:
            return GridSummary(experiment_dir, total, len(skip), 0, len(config.seeds), archived=len(skip),
                               archive=archive, smoke_of=config.smoke_of_dir, deferred=len(deferred))

    with ray_session(address, dashboard, num_cpus=cpus, connect_timeout=connect_timeout):
        check_cluster_gpus(config.resources.gpus, config.path or config.name)  # before anything is written
        from rkl_bench.service.datasets_store import put_datasets
        from rkl_bench.service.tuner import TrialErrors, build_tuner, can_restore, restore_tuner

        refs = put_datasets(specs, config.d4rl_dir)
        if resume and not fresh_from_archive and can_restore(experiment_dir):
            verify_tune_state(experiment_dir)  # again: nothing may have changed since the check before Ray
            tuner = restore_tuner(config, refs, experiment_dir)
        else:
            location(experiment_dir).makedirs()
            write_record(experiment_dir, {**record, **({"archived_trials": sorted(skip)} if skip else {}),
                                          **({"deferred_trials": sorted(deferred)} if deferred else {})})
            tuner = build_tuner(config, specs, refs, storage_dir, callbacks, verbose, skip=skip | deferred,
                                ordered=time_limit is not None)
            record_digests(experiment_dir, [experiment_dir / TUNER_FILE])
        TrialErrors.seen.clear()
        with ExportAsFinished(experiment_dir, export_target) if export_target is not None else nullcontext():
            grid = tuner.fit()
        # Tune's last write (a forced snapshot at the end of fit) is recorded by
        # StateDigests when it ran any step; a restored run with nothing left to
        # do runs none, so its new session files are recorded here.
        record_digests(experiment_dir, list(state_files(experiment_dir)))
        archived = total - len(deferred) - sum(seeds_of(result) for result in grid)
        errored = sum(seeds_of(result) for result in grid if result.error is not None)
        return GridSummary(
            experiment_dir, total, archived + finished_trials(grid, config.steps), errored,
            len(config.seeds), trial_errors(grid, TrialErrors.seen), archived=archived, archive=archive,
            smoke_of=config.smoke_of_dir, deferred=len(deferred),
        )


def storage_location(storage: str | Path | None) -> Path | Location:
    """``--storage`` checked before Ray starts: a local directory this user can write (resolved),
    or an object-store location whose bucket exists and answers."""
    from rkl_bench.training.files import check_writable_dir

    where = native(location(storage or DEFAULT_STORAGE, "--storage"))
    if isinstance(where, Location):
        check_reachable(where, "--storage")
        if where.is_file():
            raise RklBenchError(f"--storage {where} is a file, not a directory; pass a prefix to write under")
        return where
    where = where.resolve()
    check_writable_dir(where, "--storage")
    return where


def export_archive(export_to: str | Path, storage_dir: Path | Location, record: Mapping[str, Any],
                   config: ExperimentConfig, specs: Sequence[str]) -> Path:
    """``--export-to`` checked before Ray starts (:mod:`.export_as_finished`): a local path, with a local
    ``--storage``, that is absent or empty (a new archive) or an archive this grid may merge into."""
    from rkl_bench.training.files import check_writable_dir

    if isinstance(storage_dir, Location):
        raise RklBenchError(f"--export-to needs a local --storage (the run exports from the experiment directory on a "
                            f"clock); with {storage_dir} export after the run with rkl-bench results export")
    target = native(location(export_to, "--export-to"))
    if isinstance(target, Location):
        raise RklBenchError(f"--export-to {target}: the archive must be a local directory; export to an object store "
                            "after the run with rkl-bench results export")
    target = target.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise RklBenchError(f"--export-to {target} is a file, not a results archive")
    check_writable_dir(target.parent, "--export-to")
    if is_archive(target):
        matching_archive(target, record, config, specs, flag="--export-to")
    elif target.exists() and any(target.iterdir()):
        raise RklBenchError(f"--export-to {target} exists and is not a results archive (no archive.json); "
                            "choose another directory")
    return target


def matching_archive(
    archive: Path | Location, record: Mapping[str, Any], config: ExperimentConfig, specs: Sequence[str],
    flag: str = "--resume",
) -> Archive:
    """The results archive of this experiment; its trials are the grid cells not run again.

    The archive must be one of this experiment, checked before anything runs:
    its record (config and dataset specs) equal to the one this config gives,
    or this config a part of the archive's grid (some of its learners and
    datasets, everything else equal: :func:`sub_grid_difference`). A part
    runs its own cells that the archive lacks, and its export merges back
    into the archive, which keeps the whole grid's record.
    """
    check_not_torn(archive)
    if not is_archive(archive):
        raise RklBenchError(
            f"{flag} {archive}: not a results archive (no archive.json); give the directory "
            "`rkl-bench results export` wrote, or --resume alone to go on from the experiment directory"
        )
    held = load_archive(archive)
    if held.record is None:
        raise RklBenchError(f"{flag} {archive}: the archive has no experiment record, so it cannot be matched to this config")
    cells = grid_cells(config, specs)
    if all(held.record.get(key) == record[key] for key in IDENTITY_KEYS):
        strangers = sorted(set(held.trials) - cells)
        if strangers:
            raise RklBenchError(f"{flag} {archive}: it holds {display_name(strangers[0])}, which is not a trial of this grid")
        return held
    differ = sub_grid_difference(held.record, record)
    if differ is not None:
        raise RklBenchError(
            f"{flag} {archive}: the archive is of another experiment ({differ} differ); "
            "use the config it was made with, or one that runs a part of its grid (fewer learners or datasets)"
        )
    return held


def check_datasets(specs: Sequence[str], config: ExperimentConfig) -> None:
    """Load every dataset once before Ray starts: bad files, and data that does not fit its
    evaluation env, are one error line here instead of a failed trial (one dataset in memory at a time)."""
    for spec in specs:
        try:
            dataset = load_dataset(spec, config.d4rl_dir)
            env_id = gym_env_id(dataset)
            if env_id is None:
                raise RklBenchError(
                    f"env {dataset.env!r}, version {dataset.version}: no gymnasium environment to evaluate in, "
                    "and a grid evaluates every trial"
                )
            check_env_spaces(dataset, env_id)
        except RklBenchError as exc:
            raise RklBenchError(f"{config.path or config.name}: dataset {spec}: {exc}") from None
        del dataset


def trial_errors(grid: Any, seen: Mapping[str, str]) -> tuple[str, ...]:
    """One line per failed trial: what ``TrialErrors`` saw this session, else the last line of Tune's error."""
    if seen:
        return tuple(seen.values())
    lines = []
    for result in grid:
        if result.error is not None:
            text = [line.strip() for line in str(result.error).splitlines() if line.strip()]
            lines.append(text[-1] if text else type(result.error).__name__)
    return tuple(lines)


def finished_trials(grid: Any, steps: int) -> int:
    """Trials (seeds: a Tune trial of seeds trained together counts each) whose last row is at the step budget.

    Not ``grid.num_terminated``: after Ctrl-C Tune stops the running trials and
    marks them TERMINATED in memory (the saved experiment state still has them
    unfinished, which is what ``--resume`` reads).
    """
    return sum(
        seeds_of(result) for result in grid
        if result.error is None and (result.metrics or {}).get("step", -1) >= steps
    )


def seeds_of(result: Any) -> int:
    """How many grid cells (seeds) one Tune result trained: 1, or its ``seeds`` (``seeds_per_trial``)."""
    return len((result.config or {}).get("seeds") or [None])


def check_local_cpus(cpus: int | None, address: str | None, config: ExperimentConfig) -> None:
    """``--cpus`` sizes a local Ray, and must hold one trial; one error line otherwise, before anything runs."""
    if cpus is None:
        return
    if address is not None:
        raise RklBenchError("--cpus sets the CPUs of a local Ray; a cluster joined with --address has its own")
    if cpus < config.resources.cpus:
        raise RklBenchError(f"--cpus {cpus} is fewer than one trial needs (resources.cpus: {config.resources.cpus:g} "
                            f"in {config.path or config.name}): no trial could start")


def experiment_record(config: ExperimentConfig, specs: Sequence[str]) -> dict[str, Any]:
    """What defines an experiment: its config and the dataset specs the entries resolved to."""
    return json.loads(json.dumps({"config": config.to_dict(), "dataset_specs": list(specs)}))


def _check_experiment_dir(experiment_dir: Path | Location, record: dict[str, Any], resume: bool) -> None:
    if experiment_dir.exists() and not experiment_dir.is_dir():
        raise RklBenchError(f"{experiment_dir} is a file, not an experiment directory; change the config's name or --storage")
    exists = location(experiment_dir).is_nonempty_dir()
    if not resume:
        if exists:
            raise RklBenchError(
                f"experiment directory {experiment_dir} already exists; pass --resume to continue it, "
                "or change the config's name or --storage"
            )
        return
    if not exists:
        raise RklBenchError(f"nothing to resume: {experiment_dir} does not exist; run without --resume to start it")
    check_private(experiment_dir)
    recorded = read_record(experiment_dir)
    if recorded is None or not all(key in recorded for key in IDENTITY_KEYS):
        raise RklBenchError(f"{experiment_dir} was not started by rkl-bench run ({EXPERIMENT_RECORD_FILE} missing or unreadable)")
    if any(recorded[key] != record[key] for key in IDENTITY_KEYS):
        raise RklBenchError(
            f"{experiment_dir} was started with a different config ({_difference(recorded, record)} differ); "
            "resume with the original config, or start a new experiment under another name"
        )
    verify_tune_state(experiment_dir)


def _difference(theirs_record: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """The config keys (and "dataset specs") in which two experiment records differ."""
    theirs = theirs_record["config"] if isinstance(theirs_record.get("config"), dict) else {}
    mine = record["config"]
    differ = sorted(key for key in set(theirs) | set(mine) if theirs.get(key) != mine.get(key))
    if theirs_record.get("dataset_specs") != record["dataset_specs"]:
        differ.append("dataset specs")
    return ", ".join(differ)
