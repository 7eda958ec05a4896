"""The Tune objects of an experiment: the grid, the trial resources, the run config.

One trial per (algorithm, dataset, seed). A trial's config holds the three
grid values, its algorithm's hyper-parameters and the shared
:class:`~rkl_bench.service.trainable.TrialSettings`: plain data, so Tune can
save it with the experiment and a resumed run sees exactly what the first
one did. Dataset references travel separately (see ``datasets_store``).

Two callbacks ride along in every grid: ``StateDigests`` (the digests that
let ``--resume`` trust Tune's state, ``tune_state.py``) and ``TrialErrors``
(one line per failed trial for the CLI).

TensorBoard logs come from Tune's own TensorBoardX callback, which Tune adds
when ``tensorboardX`` is installed (it is, with ``rkl_bench[service]``):
``tensorboard --logdir <experiment dir>``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from ray import tune

from rkl_bench.service.config import ExperimentConfig
from rkl_bench.service.datasets_store import DatasetRefs
from rkl_bench.service.grid_cells import trial_order
from rkl_bench.service.trainable import TrialSettings, run_trial
from rkl_bench.service.tune_state import record_digests, state_files
from rkl_bench.storage import Location, from_fs
from rkl_bench.training.archive import CELL_KEY, TrialKey

logger = logging.getLogger(__name__)


class HyperparamsOf:
    """``tune.sample_from`` callable: the hyper-parameters of the trial's own algorithm.

    A class rather than a lambda so that the saved experiment refers to it by
    name, and a trial's ``params.json`` lists its own hyper-parameters only.
    """

    def __init__(self, algorithms: Mapping[str, Mapping[str, Any]]) -> None:
        self.algorithms = {name: dict(hp) for name, hp in algorithms.items()}

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.algorithms[config["algo"]])


class CellValue:
    """``tune.sample_from`` callable: one field (algo, dataset or seed) of the trial's grid cell."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, config: Mapping[str, Any]) -> Any:
        return config[CELL_KEY][self.field]


def param_space(config: ExperimentConfig, specs: Sequence[str], skip: Collection[TrialKey] = (),
                ordered: bool = False) -> dict[str, Any]:
    """The grid; with ``skip``, only its other cells (one grid axis of cells, each trial's
    ``algo``, ``dataset`` and ``seed`` read from its cell, so trials look as in the full grid).

    With ``seeds_per_trial`` K > 1 a trial trains K seeds of its (algo, dataset) together: its cell
    has ``seeds`` (the seeds left to run, in groups of K) and ``seed``, the first of them.

    Cells run dataset by dataset (every learner on the first dataset, then on the next), so a
    long grid stopped part-way holds whole rows of Table II, each comparing every learner on the
    same data, rather than whole columns of one learner. (The plain grid, K = 1 and nothing
    skipped, keeps Tune's own order of its three axes, unless ``ordered``: a time-limited run
    plans on :func:`trial_order`.)"""
    shared = {
        "hyperparams": tune.sample_from(HyperparamsOf(config.algorithms)),
        "settings": TrialSettings.of(config).as_dict(),
    }
    if not skip and config.seeds_per_trial == 1 and not ordered:
        return {
            "algo": tune.grid_search(list(config.algorithms)),
            "dataset": tune.grid_search(list(specs)),
            "seed": tune.grid_search(list(config.seeds)),
            **shared,
        }
    cells = []
    for algo, spec, group in trial_order(config, specs, skip):
        cell = {"algo": algo, "dataset": spec, "seed": group[0]}
        cells.append({**cell, "seeds": group} if config.seeds_per_trial > 1 else cell)
    if not cells:
        raise ValueError("every trial of the grid is skipped: nothing to run")
    fields = ("algo", "dataset", "seed", "seeds") if config.seeds_per_trial > 1 else ("algo", "dataset", "seed")
    return {
        CELL_KEY: tune.grid_search(cells),
        **{field: tune.sample_from(CellValue(field)) for field in fields},
        **shared,
    }


def trial_resources(config: ExperimentConfig) -> tune.PlacementGroupFactory:
    """Bundle 0 for the trial (its CPUs, and its share of a GPU when ``resources.gpus > 0``: Ray's
    fractional GPUs, several trials per GPU); one CPU-only bundle per evaluation actor when actors
    reserve CPUs."""
    trial: dict[str, float] = {"CPU": config.resources.cpus}
    if config.resources.gpus > 0:
        trial["GPU"] = config.resources.gpus
    bundles = [trial]
    if config.eval_actors.cpus > 0:
        bundles += [{"CPU": config.eval_actors.cpus}] * config.eval_actors.count
    return tune.PlacementGroupFactory(bundles)


def make_trainable(config: ExperimentConfig, refs: DatasetRefs, function: Any = run_trial) -> Any:
    """``function`` (a grid's or a search's trial) with the datasets' references and the trial's resources."""
    return tune.with_resources(tune.with_parameters(function, datasets=refs), trial_resources(config))


def run_config(
    config: ExperimentConfig, storage: Path | Location, callbacks: Sequence[Any] = (), verbose: int = 1
) -> tune.RunConfig:
    """Where and how an experiment's trials run, the same for a grid and a search: ``<storage>/<config.name>``,
    restarts, checkpoints kept, and the trial's working-directory files synced with its checkpoints."""
    return tune.RunConfig(
        name=config.name,
        # An object store: the path in it and its pyarrow filesystem (rkl_bench.storage).
        storage_path=str(storage) if isinstance(storage, Path) else storage.path,
        storage_filesystem=None if isinstance(storage, Path) else storage.fs,
        failure_config=tune.FailureConfig(max_failures=config.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=config.checkpoints.keep),
        # Files a trial writes into its working directory (lambdas.npz) reach
        # its trial directory with its checkpoints.
        sync_config=tune.SyncConfig(sync_artifacts=True),
        callbacks=list(callbacks),
        verbose=verbose,
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def trial_name(trial: Any) -> str:
    """``<algo>_<dataset>_s<seed>``: what the progress table shows."""
    # In a grid of cells, Tune names a trial before it resolves the sample_from fields.
    config = trial.config.get(CELL_KEY) or trial.config
    seeds = config.get("seeds") or [config["seed"]]
    return f"{config['algo']}_{_slug(config['dataset'])}_s{'-'.join(str(seed) for seed in seeds)}"


def trial_dirname(trial: Any) -> str:
    """The trial name plus Tune's id (unique even if two datasets slug alike)."""
    return f"{trial_name(trial)}_{trial.trial_id}"


def build_tuner(
    config: ExperimentConfig,
    specs: Sequence[str],
    refs: DatasetRefs,
    storage: Path | Location,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
    skip: Collection[TrialKey] = (),
    ordered: bool = False,
) -> tune.Tuner:
    """A new experiment ``<storage>/<config.name>``: the grid, less the cells in ``skip``
    (``ordered``: in :func:`trial_order` even when nothing is skipped)."""
    return tune.Tuner(
        make_trainable(config, refs),
        param_space=param_space(config, specs, skip, ordered),
        tune_config=tune.TuneConfig(
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
            # Trials of a grid ask for the same resources: a finished trial's worker
            # process (torch, MuJoCo and the learner code imported) runs the next one.
            reuse_actors=True,
        ),
        # StateDigests keeps the record's digests of Tune's state fresh
        # (tune_state.py); both are saved in tuner.pkl and come back on resume.
        run_config=run_config(config, storage, [*callbacks, StateDigests(), TrialErrors()], verbose),
    )


def restore_tuner(config: ExperimentConfig, refs: DatasetRefs, experiment_dir: Path | Location) -> tune.Tuner:
    """The experiment in ``experiment_dir``: finished trials stay as they are, unfinished
    and errored ones go on from their last checkpoints (fresh dataset references)."""
    path, fs = _tune_path(experiment_dir)
    return tune.Tuner.restore(
        path,
        make_trainable(config, refs),
        resume_unfinished=True,
        resume_errored=True,
        storage_filesystem=fs,
    )


def can_restore(experiment_dir: Path | Location) -> bool:
    path, fs = _tune_path(experiment_dir)
    return tune.Tuner.can_restore(path, storage_filesystem=fs)


def _tune_path(where: Path | Location) -> tuple[str, Any]:
    """What Tune takes: a local path and no filesystem, or the path in an object store and its filesystem."""
    return (str(where), None) if isinstance(where, Path) else (where.path, where.fs)


class StateDigests(tune.Callback):
    """Records the digests of Tune's staged state files before Tune uploads them (see the module doc)."""

    def __init__(self) -> None:
        self._trials: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:
        return {}  # saved in tuner.pkl before any trial exists; trials are the run's own

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._trials = []

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self._trials = trials  # the controller's own list: trials added later appear in it

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._trials = trials

    def get_state(self) -> None:
        """Called by Tune between writing its state to the staging directory and uploading it."""
        if not self._trials:
            return None
        storage = self._trials[0].storage
        staging = Path(storage.experiment_driver_staging_path)
        where = from_fs(storage.storage_filesystem, storage.experiment_fs_path)
        experiment_dir = where.local if where.is_local else where
        if staging.is_dir() and experiment_dir.is_dir():
            try:
                record_digests(experiment_dir, list(state_files(staging)), staging)
            except OSError as exc:  # a full disk: Tune's own upload fails too, and says so
                logger.warning("could not record the digests of Tune's state in %s: %s", experiment_dir, exc)
        return None


class TrialErrors(tune.Callback):
    """The last line of each failed trial's error, for ``rkl-bench run``'s summary line.

    Read from the error file Tune writes in its driver staging directory: the
    copy in the trial directory may be missing (a full disk is one way to fail).
    Kept on the class, so the instance Tune restores from ``tuner.pkl`` on
    ``--resume`` reports to the same place.
    """

    seen: dict[str, str] = {}

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        TrialErrors.seen[trial.trial_id] = f"{trial}: {_last_line(trial.error_file)}"


def _last_line(path: str | None) -> str:
    try:
        lines = [line.strip() for line in Path(path or "").read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "error (no error file)"
    return lines[-1] if lines else "error (empty error file)"
