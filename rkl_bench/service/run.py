"""``rkl-bench run CONFIG``: check, make data, start Ray, run (or resume) the grid.

Order matters: everything that can be wrong with the request (config keys
and values, algorithm names, dataset names and files, the experiment
directory versus ``--resume``) is checked before Ray starts, and missing
forge datasets are made before Ray starts too, so Ray's start-up is only paid
for a run that can go through.

The experiment directory ``<storage>/<name>/`` is Tune's, plus
``rkl_bench_experiment.json``: the config it was started with. ``--resume``
refuses a directory started with another config, and a run without
``--resume`` refuses a directory that exists, so results of two different
configs never mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import ExperimentConfig, load_config
from rkl_bench.service.dataset_specs import make_missing_forge_datasets, resolve_datasets
from rkl_bench.service.ray_runtime import check_dashboard_available, ray_session

DEFAULT_STORAGE = Path("ray_results")
RECORD_FILE = "rkl_bench_experiment.json"


@dataclass(frozen=True)
class RunSummary:
    experiment_dir: Path
    trials: int
    finished: int
    errored: int
    seeds: int
    """Seeds per (algorithm, dataset) cell: what a complete cell of the report has."""

    @property
    def interrupted(self) -> bool:
        """Trials neither finished nor failed: the run was stopped (Ctrl-C); ``--resume`` goes on."""
        return self.finished + self.errored < self.trials


def run_experiment(
    config_path: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    storage: str | Path | None = None,
    dashboard: bool = False,
    verbose: int = 1,
    callbacks: Sequence[Any] = (),
) -> RunSummary:
    """Run the experiment ``config_path`` describes; see the module docstring.

    ``callbacks`` are extra Tune callbacks; ``verbose`` is Tune's verbosity
    (0 silent, 1 the progress table, 2 every result).
    """
    if dashboard:
        if address is not None:
            raise RklBenchError("--dashboard starts the dashboard of a local Ray; a cluster joined with --address has its own")
        check_dashboard_available()
    config = load_config(config_path)
    specs = resolve_datasets(config)
    experiment_dir = Path(storage or DEFAULT_STORAGE).expanduser().resolve() / config.name
    record = experiment_record(config, specs)
    _check_experiment_dir(experiment_dir, record, resume)
    make_missing_forge_datasets(specs, config, refresh=not resume)

    with ray_session(address, dashboard):
        from rkl_bench.service.datasets_store import put_datasets
        from rkl_bench.service.tuner import build_tuner, can_restore, restore_tuner

        refs = put_datasets(specs, config.d4rl_dir)
        if resume and can_restore(experiment_dir):
            tuner = restore_tuner(config, refs, experiment_dir)
        else:
            experiment_dir.mkdir(parents=True, exist_ok=True)
            (experiment_dir / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            tuner = build_tuner(config, specs, refs, experiment_dir.parent, callbacks, verbose)
        grid = tuner.fit()
        return RunSummary(experiment_dir, len(grid), finished_trials(grid, config.steps), grid.num_errors, len(config.seeds))


def finished_trials(grid: Any, steps: int) -> int:
    """Trials whose last row is at the step budget.

    Not ``grid.num_terminated``: after Ctrl-C Tune stops the running trials and
    marks them TERMINATED in memory (the saved experiment state still has them
    unfinished, which is what ``--resume`` reads).
    """
    return sum(
        1 for result in grid if result.error is None and (result.metrics or {}).get("step", -1) >= steps
    )


def experiment_record(config: ExperimentConfig, specs: Sequence[str]) -> dict[str, Any]:
    """What defines an experiment: its config and the dataset specs the entries resolved to."""
    return json.loads(json.dumps({"config": config.to_dict(), "dataset_specs": list(specs)}))


def _check_experiment_dir(experiment_dir: Path, record: dict[str, Any], resume: bool) -> None:
    exists = experiment_dir.is_dir() and any(experiment_dir.iterdir())
    if not resume:
        if exists:
            raise RklBenchError(
                f"experiment directory {experiment_dir} already exists; pass --resume to continue it, "
                "or change the config's name or --storage"
            )
        return
    if not exists:
        raise RklBenchError(f"nothing to resume: {experiment_dir} does not exist; run without --resume to start it")
    record_file = experiment_dir / RECORD_FILE
    try:
        recorded = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise RklBenchError(f"{experiment_dir} was not started by rkl-bench run ({RECORD_FILE} missing or unreadable)") from None
    if recorded != record:
        differ = sorted(
            key for key in set(recorded["config"]) | set(record["config"])
            if recorded["config"].get(key) != record["config"].get(key)
        )
        if recorded.get("dataset_specs") != record["dataset_specs"]:
            differ.append("dataset specs")
        raise RklBenchError(
            f"{experiment_dir} was started with a different config ({', '.join(differ)} differ); "
            "resume with the original config, or start a new experiment under another name"
        )
