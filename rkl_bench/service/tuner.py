"""The Tune objects of an experiment: the grid, the trial resources, the run config.

One trial per (algorithm, dataset, seed). A trial's config holds the three
grid values, its algorithm's hyper-parameters and the shared
:class:`~rkl_bench.service.trainable.TrialSettings`: plain data, so Tune can
save it with the experiment and a resumed run sees exactly what the first
one did. Dataset references travel separately (see ``datasets_store``).

TensorBoard logs come from Tune's own TensorBoardX callback, which Tune adds
when ``tensorboardX`` is installed (it is, with ``rkl_bench[service]``):
``tensorboard --logdir <experiment dir>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray import tune

from rkl_bench.service.config import ExperimentConfig
from rkl_bench.service.datasets_store import DatasetRefs
from rkl_bench.service.trainable import TrialSettings, run_trial


class HyperparamsOf:
    """``tune.sample_from`` callable: the hyper-parameters of the trial's own algorithm.

    A class rather than a lambda so that the saved experiment refers to it by
    name, and a trial's ``params.json`` lists its own hyper-parameters only.
    """

    def __init__(self, algorithms: Mapping[str, Mapping[str, Any]]) -> None:
        self.algorithms = {name: dict(hp) for name, hp in algorithms.items()}

    def __call__(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self.algorithms[config["algo"]])


def param_space(config: ExperimentConfig, specs: Sequence[str]) -> dict[str, Any]:
    return {
        "algo": tune.grid_search(list(config.algorithms)),
        "dataset": tune.grid_search(list(specs)),
        "seed": tune.grid_search(list(config.seeds)),
        "hyperparams": tune.sample_from(HyperparamsOf(config.algorithms)),
        "settings": TrialSettings.of(config).as_dict(),
    }


def trial_resources(config: ExperimentConfig) -> tune.PlacementGroupFactory:
    """Bundle 0 for the trial; one bundle per evaluation actor when actors reserve CPUs."""
    bundles = [{"CPU": config.resources.cpus}]
    if config.eval_actors.cpus > 0:
        bundles += [{"CPU": config.eval_actors.cpus}] * config.eval_actors.count
    return tune.PlacementGroupFactory(bundles)


def make_trainable(config: ExperimentConfig, refs: DatasetRefs) -> Any:
    return tune.with_resources(tune.with_parameters(run_trial, datasets=refs), trial_resources(config))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")


def trial_name(trial: Any) -> str:
    """``<algo>_<dataset>_s<seed>``: what the progress table shows."""
    config = trial.config
    return f"{config['algo']}_{_slug(config['dataset'])}_s{config['seed']}"


def trial_dirname(trial: Any) -> str:
    """The trial name plus Tune's id (unique even if two datasets slug alike)."""
    return f"{trial_name(trial)}_{trial.trial_id}"


def build_tuner(
    config: ExperimentConfig,
    specs: Sequence[str],
    refs: DatasetRefs,
    storage: Path,
    callbacks: Sequence[Any] = (),
    verbose: int = 1,
) -> tune.Tuner:
    """A new experiment ``<storage>/<config.name>``."""
    return tune.Tuner(
        make_trainable(config, refs),
        param_space=param_space(config, specs),
        tune_config=tune.TuneConfig(
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_dirname,
            # Trials of a grid ask for the same resources: a finished trial's worker
            # process (torch, MuJoCo and the learner code imported) runs the next one.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=config.name,
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=config.checkpoints.keep),
            # Files a trial writes into its working directory (lambdas.npz) reach
            # its trial directory with its checkpoints.
            sync_config=tune.SyncConfig(sync_artifacts=True),
            callbacks=list(callbacks),
            verbose=verbose,
        ),
    )


def restore_tuner(config: ExperimentConfig, refs: DatasetRefs, experiment_dir: Path) -> tune.Tuner:
    """The experiment in ``experiment_dir``: finished trials stay as they are, unfinished
    and errored ones go on from their last checkpoints (fresh dataset references)."""
    return tune.Tuner.restore(
        str(experiment_dir),
        make_trainable(config, refs),
        resume_unfinished=True,
        resume_errored=True,
    )


def can_restore(experiment_dir: Path) -> bool:
    return tune.Tuner.can_restore(str(experiment_dir))
