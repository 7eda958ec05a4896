"""The Ray Tune trial: one learner on one dataset and seed, through the shared :class:`Trainer`.

The loop is the single-run loop's (same Trainer, same sampler and learner
seeds, same evaluation seeds ``eval_seed(seed, step)``), with evaluation moved
off the training thread::

    train to step k ── snapshot policy, save checkpoint(k), submit eval(k) ──┐
    train to step k+I ── snapshot, save checkpoint(k+I), submit eval(k+I)    │
                      └─ collect eval(k), report row(k) + checkpoint(k) ◄────┘

so the row of step ``k`` carries the score of the weights at step ``k`` and
checkpoint ``k``, the state at that very step. A restarted trial (worker
died, ``--resume``) loads the checkpoint of its last reported row and goes
on from there: no row is reported twice and none is skipped, and since the
trainer resumes bit-exactly, the rows are those of an uninterrupted trial.

Threads: the trial sets ``torch.set_num_threads(threads)`` from its
resources (default 1: one thread per trial and one trial per core);
evaluation actors use one thread each.

Devices: a trial with ``resources.gpus > 0`` trains on ``cuda`` (the GPU
share Ray reserved for it); its policy snapshots are CPU copies and its
evaluation actors reserve no GPU, so rollouts stay on the CPU.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from rkl_bench.algos.registry import split_variant
from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.data.envs import gym_env_id
from rkl_bench.data.validate import check_env_spaces
from rkl_bench.errors import RklBenchError
from rkl_bench.layout import GROUP_CHECKPOINT_FILE, GROUP_LAMBDAS_FILE, LAMBDAS_FILE, TRIAL_CHECKPOINT_FILE
from rkl_bench.scratch import scratch_dir
from rkl_bench.service.config import ExperimentConfig
from rkl_bench.service.datasets_store import DatasetRefs, fetch_dataset
from rkl_bench.service.eval_actors import EvalPool, PendingEvaluation, PolicySnapshot, release_pool, trial_pool
from rkl_bench.training.lambdas import save_lambdas
from rkl_bench.training.metrics import LossMeter
from rkl_bench.training.result_row import finish_row, precision_fields, progress_fields, score_fields
from rkl_bench.training.seed_trainer import SeedTrainer
from rkl_bench.training.trainer import Trainer, eval_seed, read_checkpoint


@dataclass(frozen=True)
class TrialSettings:
    """The part of a trial's config shared by every trial of an experiment (plain data, saved by Tune)."""

    steps: int
    eval_interval: int
    eval_episodes: int
    threads: int
    eval_actors: int
    envs_per_actor: int
    eval_actor_cpus: float
    device: str = "cpu"
    """``cuda`` for a trial that reserves GPUs (``resources.gpus > 0``): Ray shows it only its own."""

    @classmethod
    def of(cls, config: ExperimentConfig) -> "TrialSettings":
        return cls(
            steps=config.steps,
            eval_interval=config.evaluation.interval,
            eval_episodes=config.evaluation.episodes,
            threads=config.resources.threads,
            eval_actors=config.eval_actors.count,
            envs_per_actor=config.eval_actors.envs_per_actor,
            eval_actor_cpus=config.eval_actors.cpus,
            device=config.resources.device,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the trial's config; ``device`` only when not the CPU, so a trial config of an
        experiment started before devices existed is what this gives for it (Tune compares them on resume)."""
        data = dataclasses.asdict(self)
        if data["device"] == "cpu":
            del data["device"]
        return data


@dataclass
class _Row:
    """A result row waiting for its evaluation, and the checkpoint of its step."""

    fields: dict[str, Any]
    evaluation: PendingEvaluation
    checkpoint_dir: Path


def run_trial(config: dict[str, Any], datasets: DatasetRefs) -> None:
    """Tune function trainable; ``config`` holds ``algo``, ``dataset``, ``seed``, ``hyperparams``, ``settings``,
    and for seeds trained together (``seeds_per_trial``) ``seeds``, the trial's seeds (``seed`` is the first)."""
    entered = time.perf_counter()
    settings = TrialSettings(**config["settings"])
    torch.set_num_threads(settings.threads)
    spec = config["dataset"]
    seeds = [int(seed) for seed in config.get("seeds") or [config["seed"]]]
    if len(seeds) > 1:
        run_group(config["algo"], spec, seeds, config["hyperparams"], settings, fetch_dataset(datasets[spec]),
                  _restored_group_states(seeds), entered)
        return
    run_pair(
        config["algo"], spec, int(config["seed"]), config["hyperparams"], settings,
        fetch_dataset(datasets[spec]), _restored_state(), entered,
    )


RowReporter = Callable[[dict[str, Any], Path], None]
"""Receives each finished result row and the directory of its step's checkpoint
(deleted after the call: a reporter that keeps it must copy it or hand it to Tune)."""


def report_row(fields: dict[str, Any], checkpoint_dir: Path) -> None:
    """The grid's reporter: the row and its checkpoint to Tune."""
    tune.report(fields, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)))


def run_pair(
    algo: str,
    spec: str,
    seed: int,
    hyperparams: dict[str, Any],
    settings: TrialSettings,
    dataset: OfflineDataset,
    state: dict[str, Any] | None,
    entered: float,
    report: RowReporter = report_row,
    pool: EvalPool | None = None,
) -> None:
    """Train and evaluate one (algo, dataset, seed) to ``settings.steps``, from
    ``state`` (a checkpoint of this very pair) or from scratch; every row goes
    to ``report``. ``pool`` is an evaluation pool to use (it must roll out in
    the dataset's env) instead of the worker's own (:func:`trial_pool`, kept
    for the worker's next trial)."""
    env_id = gym_env_id(dataset)
    if env_id is None:
        raise RklBenchError(f"dataset {spec!r} (version {dataset.version}) has no gymnasium environment to evaluate in")
    check_env_spaces(dataset, env_id)
    if state is not None and state["extra"]["dataset_version"] != dataset.version:
        raise RklBenchError(
            f"trial checkpoint was trained on {spec} version {state['extra']['dataset_version']}, "
            f"but the data is now {dataset.version}; start a new experiment"
        )
    with warnings.catch_warnings():
        # The sampler wraps the dataset's arrays with torch.as_tensor; they are
        # read-only object-store views, which torch warns about, and never written.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        trainer = Trainer(split_variant(algo)[0], dataset, hyperparams, seed, device=settings.device, checkpoint=state)
    if trainer.step >= settings.steps:
        return
    artifacts = trial_artifact_dir()
    if not (artifacts / LAMBDAS_FILE).exists():
        save_lambdas(trainer.learner, dataset, artifacts)
    own_pool = pool is None
    if pool is None:
        pool = trial_pool(settings.eval_actors, settings.envs_per_actor, settings.eval_actor_cpus, env_id, dataset.env)
    elif pool.env_id != env_id:
        raise RklBenchError(f"internal: evaluation pool rolls out in {pool.env_id}, dataset {spec!r} needs {env_id}")
    loop = _TrialLoop(algo, settings, trainer, pool, dataset, spec, entered, state, report)
    try:
        loop.run()
    finally:
        loop.discard()
        if own_pool:
            release_pool(pool)


def run_group(
    algo: str,
    spec: str,
    seeds: list[int],
    hyperparams: dict[str, Any],
    settings: TrialSettings,
    dataset: OfflineDataset,
    states: list[dict[str, Any]] | None,
    entered: float,
) -> None:
    """:func:`run_pair` for ``seeds`` trained together (one :class:`SeedTrainer`): each seed's rows are
    those of its own pair (its ``seed``, its evaluation episodes, its checkpoint in the step's checkpoint
    folder as ``checkpoint_seed<seed>.pt``), reported one after the other at every evaluation step."""
    env_id = gym_env_id(dataset)
    if env_id is None:
        raise RklBenchError(f"dataset {spec!r} (version {dataset.version}) has no gymnasium environment to evaluate in")
    check_env_spaces(dataset, env_id)
    if states is not None and any(s["extra"]["dataset_version"] != dataset.version for s in states):
        raise RklBenchError(f"trial checkpoint was trained on another version of {spec} than {dataset.version}; "
                            "start a new experiment")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        trainer = SeedTrainer(split_variant(algo)[0], dataset, hyperparams, seeds, device=settings.device,
                              checkpoints=states)
    if trainer.step >= settings.steps:
        return
    artifacts = trial_artifact_dir()
    for k, seed in enumerate(seeds):
        target = artifacts / group_lambdas_file(seed)
        if not target.exists():
            path = save_lambdas(trainer.learner(k), dataset, artifacts)
            if path is not None:
                os.replace(path, target)
    first = artifacts / group_lambdas_file(seeds[0])
    if first.exists() and not (artifacts / LAMBDAS_FILE).exists():
        shutil.copyfile(first, artifacts / LAMBDAS_FILE)  # the report's Fig. 4 shows a cell's lowest seed
    pool = trial_pool(settings.eval_actors, settings.envs_per_actor, settings.eval_actor_cpus, env_id, dataset.env)
    loop = _GroupLoop(algo, settings, trainer, pool, dataset, spec, entered, states)
    try:
        loop.run()
    finally:
        loop.discard()
        release_pool(pool)


def group_checkpoint_file(seed: int) -> str:
    """A seed's checkpoint in the checkpoint folder of a trial of seeds trained together."""
    return GROUP_CHECKPOINT_FILE.format(seed=seed)


def group_lambdas_file(seed: int) -> str:
    """A seed's lambda(s) in the directory of a trial of seeds trained together (the archive reads them)."""
    return GROUP_LAMBDAS_FILE.format(seed=seed)


def trial_artifact_dir() -> Path:
    """The trial's working directory, which Tune copies into the trial directory
    with every checkpoint (``SyncConfig(sync_artifacts=True)``, see ``tuner.py``).

    Not ``tune.get_context().get_trial_dir()``: in Ray 2.60 that names the
    driver's staging directory for a new worker but the working directory for
    a reused one (``reuse_actors``), and only the latter is synced.
    """
    from rkl_bench.service.private_apis import trial_working_directory

    return trial_working_directory()


def _restored_state() -> dict[str, Any] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return readable_checkpoint(Path(folder))


def _restored_group_states(seeds: list[int]) -> list[dict[str, Any]] | None:
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        return [read_checkpoint(Path(folder) / group_checkpoint_file(seed)) for seed in seeds]


def readable_checkpoint(folder: Path) -> dict[str, Any] | None:
    """The state in checkpoint ``folder``; if it cannot be read (torn, corrupted), the newest
    readable older checkpoint beside it (``checkpoint_<n>`` of the same trial), else None
    (start over). The trial then reports again the rows after that checkpoint's step, with
    the same numbers (training resumes bit-exactly); the report keeps one row per step."""
    try:
        return read_checkpoint(folder / TRIAL_CHECKPOINT_FILE)
    except RklBenchError as first:
        problem = str(first)
    older = sorted(
        (p for p in folder.parent.glob("checkpoint_*") if p.is_dir() and p.name < folder.name),
        key=lambda p: p.name, reverse=True,
    )
    for candidate in older:
        try:
            state = read_checkpoint(candidate / TRIAL_CHECKPOINT_FILE)
        except RklBenchError:
            continue
        warnings.warn(f"{problem}; resuming from the older {candidate.name} instead", RuntimeWarning, stacklevel=2)
        return state
    warnings.warn(f"{problem}; no older checkpoint is readable, so the trial starts over", RuntimeWarning, stacklevel=2)
    return None


class _TrialLoop:
    """Train, snapshot, evaluate asynchronously, report (see the module docstring)."""

    def __init__(
        self,
        algo: str,
        settings: TrialSettings,
        trainer: Trainer,
        pool: EvalPool,
        dataset: OfflineDataset,
        spec: str,
        entered: float,
        state: dict[str, Any] | None,
        report: RowReporter = report_row,
    ) -> None:
        self.settings, self.trainer, self.pool = settings, trainer, pool
        self.report = report
        self.base = {
            "algo": algo,  # the config's key: a variant (td3_rkl@kernel) keeps its label
            "dataset": spec,
            "dataset_version": dataset.version,
            "seed": trainer.seed,
            # Which Ray node trained this trial (Tune's own node_ip is the same
            # for every node of a loopback cluster).
            "node_id": ray.get_runtime_context().get_node_id(),
            **precision_fields(trainer.learners[0] if hasattr(trainer, "learners") else trainer.learner),
        }
        self.wall_offset = 0.0 if state is None else float(state["extra"]["wall_time"])
        self.session_start = entered
        self.setup_seconds = time.perf_counter() - entered
        self.pending: _Row | None = None

    def wall_time(self) -> float:
        """Seconds of trial time so far, summed over restarts."""
        return self.wall_offset + time.perf_counter() - self.session_start

    def run(self) -> None:
        trainer, settings = self.trainer, self.settings
        while trainer.step < settings.steps:
            interval = settings.eval_interval
            target = min((trainer.step // interval + 1) * interval, settings.steps)
            steps = target - trainer.step
            meters = self.new_meters()
            started = time.perf_counter()
            trainer.train_steps(steps, meters)
            train_seconds = time.perf_counter() - started
            rows = self.start_interval_rows(meters, steps / train_seconds if train_seconds > 0 else None)
            self.finish_pending()
            self.hold(rows)
        self.finish_pending()

    # The hooks :class:`_GroupLoop` overrides: one meter, row and pending row per trained seed.
    def new_meters(self) -> Any:
        return LossMeter()

    def start_interval_rows(self, meters: Any, steps_per_second: float | None) -> Any:
        return self.start_row(meters, steps_per_second)

    def hold(self, rows: Any) -> None:
        self.pending = rows

    def start_row(self, meter: LossMeter, steps_per_second: float | None) -> _Row:
        """At an evaluation step: save the checkpoint and send the policy to the pool."""
        trainer = self.trainer
        wall_time = self.wall_time()
        folder = scratch_dir("checkpoint_")
        trainer.save(folder / TRIAL_CHECKPOINT_FILE, {"wall_time": wall_time, "dataset_version": self.base["dataset_version"]})
        policy = PolicySnapshot.of(trainer.learner.actor, trainer.state_mean, trainer.state_std)
        evaluation = self.pool.submit(
            policy, trainer.step, self.settings.eval_episodes, eval_seed(trainer.seed, trainer.step)
        )
        fields = progress_fields(
            self.base,
            step=trainer.step,
            total_steps=self.settings.steps,
            losses=meter.means(),
            wall_time=wall_time,
            steps_per_second=steps_per_second,
        )
        return _Row({**fields, "setup_seconds": self.setup_seconds}, evaluation, folder)

    def finish_pending(self) -> None:
        """Collect the pending row's evaluation and report it with its checkpoint."""
        row, self.pending = self.pending, None
        if row is None:
            return
        try:
            result = self.pool.collect(row.evaluation)
            fields = finish_row(row.fields, score_fields(result), eval_actor_restarts=self.pool.replaced)
            self.report(fields, row.checkpoint_dir)
        finally:
            shutil.rmtree(row.checkpoint_dir, ignore_errors=True)

    def discard(self) -> None:
        """Drop a row that will not be reported (the trial is failing or stopping)."""
        if self.pending is not None:
            shutil.rmtree(self.pending.checkpoint_dir, ignore_errors=True)
            self.pending = None


class _GroupLoop(_TrialLoop):
    """:class:`_TrialLoop` for seeds trained together: at every evaluation step, one checkpoint folder
    (every seed's checkpoint) and one evaluation per seed; the rows are reported seed by seed, the
    folder with the last of them (a restart goes on from the step all seeds reached)."""

    trainer: SeedTrainer  # type: ignore[assignment]

    def __init__(self, algo: str, settings: TrialSettings, trainer: SeedTrainer, pool: EvalPool,
                 dataset: OfflineDataset, spec: str, entered: float, states: list[dict[str, Any]] | None) -> None:
        super().__init__(algo, settings, trainer, pool, dataset, spec, entered,  # type: ignore[arg-type]
                         None if states is None else states[0])
        self.base["seeds_per_trial"] = len(trainer.seeds)
        self.pending_group: list[_Row] | None = None

    def new_meters(self) -> list[LossMeter]:
        return [LossMeter() for _ in self.trainer.seeds]

    def start_interval_rows(self, meters: list[LossMeter], steps_per_second: float | None) -> list[_Row]:
        return self.start_rows(meters, steps_per_second)

    def hold(self, rows: list[_Row]) -> None:
        self.pending_group = rows

    def start_rows(self, meters: list[LossMeter], steps_per_second: float | None) -> list[_Row]:
        trainer = self.trainer
        wall_time = self.wall_time()
        folder = scratch_dir("checkpoint_")
        rows = []
        for k, seed in enumerate(trainer.seeds):
            trainer.save(k, folder / group_checkpoint_file(seed),
                         {"wall_time": wall_time, "dataset_version": self.base["dataset_version"]})
            policy = PolicySnapshot.of(trainer.learner(k).actor, trainer.state_mean, trainer.state_std)
            evaluation = self.pool.submit(policy, trainer.step, self.settings.eval_episodes, eval_seed(seed, trainer.step))
            fields = progress_fields(
                {**self.base, "seed": seed}, step=trainer.step, total_steps=self.settings.steps,
                losses=meters[k].means(), wall_time=wall_time, steps_per_second=steps_per_second,
            )
            rows.append(_Row({**fields, "setup_seconds": self.setup_seconds}, evaluation, folder))
        return rows

    def finish_pending(self) -> None:
        rows, self.pending_group = self.pending_group, None
        if not rows:
            return
        folder = rows[0].checkpoint_dir
        try:
            results = [self.pool.collect(row.evaluation) for row in rows]
            for index, (row, result) in enumerate(zip(rows, results)):
                fields = finish_row(row.fields, score_fields(result), eval_actor_restarts=self.pool.replaced)
                if index < len(rows) - 1:
                    tune.report(fields)
                else:
                    self.report(fields, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def discard(self) -> None:
        if self.pending_group:
            shutil.rmtree(self.pending_group[0].checkpoint_dir, ignore_errors=True)
            self.pending_group = None
