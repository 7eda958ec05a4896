"""Experiment specs: ``tune_configs/*.yaml`` -> :class:`ExperimentConfig`.

A spec names a grid (algorithms x datasets x seeds) and how each trial runs.
Every key is typed and checked here, before Ray starts, so that a typo costs
one ``error:`` line instead of a cluster start-up and a failed trial. Unknown
keys are errors that name the key, where it sits and the file. The schema
(defaults in brackets)::

    name: table2                    # experiment directory name [file stem]
    algorithms:                     # learner name -> hyper-parameters over its defaults
      td3_rkl: {}
      td3_bc: {q_weight: 2.5}
    datasets:                       # <env>-<kind> short names, resolved by dataset_source,
      - hopper-random-expert        # or full specs: forge-v5/..., hopper-medium-v2, a path
    dataset_source: auto            # forge | d4rl | auto (D4RL files if all present, else forge)
    forge: {profile: full, seed: 0} # how missing forge datasets are made
    d4rl_dir: null                  # [$D4RL_DATASET_DIR or ~/.d4rl/datasets]
    seeds: [0, 1, 2, 3, 4]
    steps: 1000000                  # gradient steps per trial
    evaluation: {interval: 5000, episodes: 10}
    resources: {cpus: 1, gpus: 0, threads: 1}     # per trial; threads -> torch.set_num_threads;
                                    # gpus > 0 (0.25: four trials per GPU) trains on cuda
    seeds_per_trial: 1              # seeds of one (algorithm, dataset) trained together in one trial
    eval_actors: {count: 1, envs_per_actor: 10, cpus: 0}   # per trial
    checkpoints: {keep: 2}          # checkpoints kept per trial (one per result row)
    max_failures: 3                 # restarts of a trial from its last checkpoint
    smoke_of: null                  # a report folder (relative to this file) whose run this one
                                    # is a smoke budget of: the run's summary and report say so and link it

Algorithm names are checked against the learner registry (any registered
name is accepted) and their hyper-parameters against the learner's config
dataclass, so both fail here with the list of valid choices. One learner may
run with several hyper-parameter sets side by side under keys
``<learner>@<label>`` (``td3_rkl@kernel: {regulariser: kernel}``); results
and the report carry the whole key. An entry may take its hyper-parameters
from another spec with one learner, a search's ``best_config.yaml``
(``td3_rkl@tuned: {hyperparams_from: ../reports/optuna_rkl_mixtures/best_config.yaml}``,
relative to this file; keys beside it override); the values are resolved
here and recorded with the experiment.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from rkl_bench.errors import RklBenchError

DatasetSource = Literal["forge", "d4rl", "auto"]
DATASET_SOURCES: tuple[str, ...] = typing.get_args(DatasetSource)


@dataclass(frozen=True)
class Evaluation:
    """When and how long each trial evaluates its policy."""

    interval: int = 5000
    """Gradient steps between evaluations (a row is also made at the last step)."""
    episodes: int = 10


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for. ``threads`` is the trial's torch thread
    count: one thread per trial and as many trials as cores beats fewer trials
    with more threads for these small MLPs (docs/speed.md), and more threads
    than reserved CPUs is an error.

    ``gpus`` is the share of one GPU a trial reserves (Ray's fractional GPUs:
    0.25 lets four trials share a GPU; at most 1, since a trial trains on one
    device). A trial with ``gpus > 0`` trains on ``cuda``, the GPU Ray gave
    it; its evaluation actors stay on the CPU. A cluster without GPUs refuses
    such a config before any trial starts."""

    cpus: float = 1.0
    gpus: float = 0.0
    threads: int = 1

    @property
    def device(self) -> str:
        """Where a trial with these resources trains."""
        return "cuda" if self.gpus > 0 else "cpu"


@dataclass(frozen=True)
class EvalActors:
    """Each trial's pool of evaluation actors.

    The episodes of one evaluation are split into ``count`` contiguous
    blocks, one per actor; each actor runs its block on up to
    ``envs_per_actor`` sub-envs. ``cpus`` is what each actor reserves: 0 (the
    default) lets evaluation overlap training on the trial's cores, which it
    does only briefly (one evaluation per ``interval`` steps).
    """

    count: int = 1
    envs_per_actor: int = 10
    cpus: float = 0.0


@dataclass(frozen=True)
class Forge:
    """How datasets the forge must make are made (existing files are used as they are)."""

    profile: str = "full"
    seed: int = 0


@dataclass(frozen=True)
class Checkpoints:
    keep: int = 2
    """Checkpoints kept per trial; one is written with every result row."""


@dataclass(frozen=True)
class ExperimentConfig:
    """One parsed and checked ``tune_configs/*.yaml``; ``path`` is the file it came from."""

    name: str
    algorithms: Mapping[str, Mapping[str, Any]]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    evaluation: Evaluation
    dataset_source: DatasetSource = "auto"
    forge: Forge = Forge()
    d4rl_dir: str | None = None
    resources: Resources = Resources()
    eval_actors: EvalActors = EvalActors()
    checkpoints: Checkpoints = Checkpoints()
    max_failures: int = 3
    seeds_per_trial: int = 1
    """Seeds of one (algorithm, dataset) trained together in one trial process (vectorised over a leading
    seed axis, :mod:`rkl_bench.algos.seeds`); each seed still reports its own rows."""
    smoke_of: str | None = None
    """A report folder, relative to the spec's file, of the run this one is a smoke budget of (the
    README's main job: ``../reports/table2_mixtures``): the run's summary and its report link it and
    say in one line that this run's numbers only show the pipeline works."""
    path: Path | None = None

    @property
    def smoke_of_dir(self) -> Path | None:
        """``smoke_of`` as a path (against the spec's folder; as written when the spec has no file)."""
        if self.smoke_of is None:
            return None
        return Path(self.smoke_of) if self.path is None else self.path.parent / self.smoke_of

    @property
    def num_trials(self) -> int:
        return len(self.algorithms) * len(self.datasets) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what the experiment directory records).

        Keys added after experiments were first recorded (:data:`LATER_KEYS`)
        are left out at their defaults, so the record of an experiment started
        before them is still this config's and ``--resume`` (and a results
        archive) accepts it.
        """
        data = dataclasses.asdict(self)
        data.pop("path")
        data["algorithms"] = {name: dict(hp) for name, hp in self.algorithms.items()}
        data["datasets"], data["seeds"] = list(self.datasets), list(self.seeds)
        for dotted, default in LATER_KEYS.items():
            *sections, key = dotted.split(".")
            where = data
            for section in sections:
                where = where[section]
            if where.get(key) == default:
                del where[key]
        return data


LATER_KEYS: dict[str, Any] = {"resources.gpus": 0.0, "seeds_per_trial": 1, "smoke_of": None}
"""Keys recorded only when they differ from these defaults (:meth:`ExperimentConfig.to_dict`)."""


SECTIONS: dict[str, type] = {
    "evaluation": Evaluation,
    "resources": Resources,
    "eval_actors": EvalActors,
    "forge": Forge,
    "checkpoints": Checkpoints,
}
TOP_KEYS = tuple(f.name for f in dataclasses.fields(ExperimentConfig) if f.name != "path")
REQUIRED_KEYS = ("algorithms", "datasets", "seeds", "steps", "evaluation")


# ------------------------------------------------------------------ loading
def read_yaml_spec(path: str | Path, what: str, example: str) -> tuple[Path, Any]:
    """``path`` resolved and its YAML parsed; a missing file or bad syntax is one error line.

    ``what`` names the kind of spec in the message ("experiment config"),
    ``example`` a shipped file to point the user at.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise RklBenchError(f"{what} {path} not found; pass a YAML file such as {example}")
    try:
        return path, yaml.safe_load(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise RklBenchError(f"{what} {path} cannot be read ({exc.strerror or exc}); check its permissions") from None
    except UnicodeDecodeError as exc:
        raise RklBenchError(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); pass a YAML file such as {example}"
        ) from None
    except yaml.reader.ReaderError as exc:
        char = f"0x{exc.character:02x}" if isinstance(exc.character, int) else repr(exc.character)
        raise RklBenchError(
            f"{path}: not a text file (control character {char} at byte {exc.position}); "
            f"pass a YAML file such as {example}"
        ) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise RklBenchError(f"{path}: not valid YAML{line}; fix the syntax") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read, parse and check ``path``; every problem is one :class:`RklBenchError` line naming the file."""
    path, raw = read_yaml_spec(path, "experiment config", "tune_configs/quick.yaml")
    try:
        return parse_config(raw, default_name=path.stem, path=path)
    except RklBenchError as exc:
        raise RklBenchError(f"{path}: {exc}") from None


def parse_config(raw: Any, default_name: str, path: Path | None = None) -> ExperimentConfig:
    """Build an :class:`ExperimentConfig` from parsed YAML and check it (no file access)."""
    if not isinstance(raw, Mapping):
        raise RklBenchError("the top level must be a mapping of keys such as algorithms, datasets, seeds")
    _check_keys(raw, TOP_KEYS, "the top level")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise RklBenchError(f"missing key(s) {', '.join(map(repr, missing))} at the top level")
    values: dict[str, Any] = {
        "name": _name(raw.get("name", default_name)),
        "algorithms": _algorithms(raw["algorithms"], None if path is None else path.parent),
        "datasets": _datasets(raw["datasets"]),
        "seeds": _seeds(raw["seeds"]),
        "steps": _scalar(raw["steps"], int, "steps"),
        "dataset_source": _choice(raw.get("dataset_source", "auto"), DATASET_SOURCES, "dataset_source"),
        "d4rl_dir": _optional_str(raw.get("d4rl_dir"), "d4rl_dir"),
        "max_failures": _scalar(raw.get("max_failures", 3), int, "max_failures"),
        "seeds_per_trial": _scalar(raw.get("seeds_per_trial", 1), int, "seeds_per_trial"),
        "smoke_of": _optional_str(raw.get("smoke_of"), "smoke_of"),
        "path": path,
    }
    for key, cls in SECTIONS.items():
        values[key] = _section(cls, raw.get(key), key)
    config = ExperimentConfig(**values)
    check_config(config)
    return config


# --------------------------------------------------------------- checking
def check_config(config: ExperimentConfig) -> None:
    """Value checks across fields, and the algorithm names and hyper-parameters."""
    _at_least(config.steps, 1, "steps")
    ev = config.evaluation
    _at_least(ev.interval, 1, "evaluation.interval")
    _at_least(ev.episodes, 1, "evaluation.episodes")
    if ev.interval > config.steps:
        raise RklBenchError(
            f"evaluation.interval ({ev.interval}) is larger than steps ({config.steps}); "
            "no evaluation would happen before the end: lower the interval or raise steps"
        )
    if not config.resources.cpus > 0:
        raise RklBenchError(f"resources.cpus must be > 0, got {config.resources.cpus}")
    _at_least(config.resources.threads, 1, "resources.threads")
    if not 0 <= config.resources.gpus <= 1:
        raise RklBenchError(
            f"resources.gpus must be between 0 and 1 (a trial's share of one GPU, e.g. 0.25 for four "
            f"trials per GPU), got {config.resources.gpus}"
        )
    _at_least(config.seeds_per_trial, 1, "seeds_per_trial")
    if config.resources.threads > config.resources.cpus:
        raise RklBenchError(
            f"resources.threads ({config.resources.threads}) is more than resources.cpus ({config.resources.cpus}); "
            "a trial's torch threads then wait on each other for cores it did not reserve "
            "(measured: ~1 step/s instead of ~70-140, docs/speed.md): lower threads or raise cpus"
        )
    actors = config.eval_actors
    _at_least(actors.count, 1, "eval_actors.count")
    _at_least(actors.envs_per_actor, 1, "eval_actors.envs_per_actor")
    if actors.cpus < 0:
        raise RklBenchError(f"eval_actors.cpus must be >= 0, got {actors.cpus}")
    if actors.count > ev.episodes:
        raise RklBenchError(
            f"eval_actors.count ({actors.count}) is more than evaluation.episodes ({ev.episodes}); "
            "an actor would get no episode: lower the count"
        )
    _at_least(config.forge.seed, 0, "forge.seed")
    _at_least(config.checkpoints.keep, 1, "checkpoints.keep")
    _at_least(config.max_failures, 0, "max_failures")
    _check_algorithms(config.algorithms)
    _check_seeds_per_trial(config)
    _check_forge_profile(config.forge.profile)


def _check_seeds_per_trial(config: ExperimentConfig) -> None:
    """Seeds trained together: only learners the vectorised update trains (rkl_bench/algos/seeds.py)."""
    if config.seeds_per_trial == 1:
        return
    from rkl_bench.algos.registry import split_variant
    from rkl_bench.algos.seeds import check_stackable

    for key in config.algorithms:
        check_stackable(split_variant(key)[0], config.seeds_per_trial)


def _check_forge_profile(name: str) -> None:
    from rkl_bench.forge.make import profile

    try:
        profile(name)
    except RklBenchError as exc:
        raise RklBenchError(f"forge.profile: {exc}") from None


def _check_algorithms(algorithms: Mapping[str, Mapping[str, Any]]) -> None:
    from rkl_bench.algos.registry import learner_names, make_config, split_variant

    valid = learner_names()
    for key, hyperparams in algorithms.items():
        name, _ = split_variant(key)
        if name not in valid:
            where = "" if name == key else f" (key {key!r})"
            raise RklBenchError(
                f"unknown algorithm {name!r}{where} in algorithms; valid algorithms are: {', '.join(valid)}"
            )
        make_config(name, hyperparams)


# ---------------------------------------------------------------- parsing
def _check_keys(raw: Mapping[str, Any], valid: tuple[str, ...], where: str) -> None:
    unknown = [key for key in raw if key not in valid]
    if unknown:
        raise RklBenchError(
            f"unknown key {unknown[0]!r} in {where}; valid keys are: {', '.join(sorted(valid))}"
        )


def _section(cls: type, raw: Any, key: str) -> Any:
    """A flat section (``evaluation``, ``resources``...) into its dataclass, types checked."""
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise RklBenchError(f"{key} must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(raw, tuple(fields), key)
    hints = typing.get_type_hints(cls)
    return cls(**{name: _scalar(value, hints[name], f"{key}.{name}") for name, value in raw.items()})


def _scalar(value: Any, kind: type, where: str) -> Any:
    """``value`` as ``kind`` (int, float or str); bools are not numbers, floats must be whole for int."""
    if kind is str:
        if not isinstance(value, str) or not value:
            raise RklBenchError(f"{where} must be a non-empty string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RklBenchError(f"{where} must be a number, got {value!r}")
    if kind is int:
        if value != int(value):
            raise RklBenchError(f"{where} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _at_least(value: float, low: float, where: str) -> None:
    if value < low:
        raise RklBenchError(f"{where} must be >= {low}, got {value}")


def _choice(value: Any, choices: tuple[str, ...], where: str) -> str:
    if value not in choices:
        raise RklBenchError(f"{where} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _optional_str(value: Any, where: str) -> str | None:
    return None if value is None else _scalar(value, str, where)


def _name(value: Any) -> str:
    name = _scalar(value, str, "name")
    if "/" in name or name in (".", ".."):
        raise RklBenchError(f"name {name!r} must be a plain directory name (no '/')")
    return name


def _algorithms(raw: Any, base: Path | None = None) -> dict[str, dict[str, Any]]:
    if not isinstance(raw, Mapping) or not raw:
        raise RklBenchError(
            "algorithms must be a non-empty mapping of algorithm name -> hyper-parameters, "
            "e.g. {td3_bc: {}, td3_rkl: {rkl_alpha: 1.0}}"
        )
    algorithms: dict[str, dict[str, Any]] = {}
    for name, hyperparams in raw.items():
        if hyperparams is None:
            hyperparams = {}
        if not isinstance(hyperparams, Mapping):
            raise RklBenchError(f"algorithms.{name} must be a mapping of hyper-parameters (or {{}}), got {hyperparams!r}")
        hyperparams = dict(hyperparams)
        if HYPERPARAMS_FROM in hyperparams:
            source = hyperparams.pop(HYPERPARAMS_FROM)
            hyperparams = {**hyperparams_from(source, str(name), base), **hyperparams}
        algorithms[str(name)] = hyperparams
    return algorithms


HYPERPARAMS_FROM = "hyperparams_from"
"""Key of an ``algorithms`` entry: take the hyper-parameters from another spec (a search's ``best_config.yaml``)."""


def hyperparams_from(source: Any, key: str, base: Path | None) -> dict[str, Any]:
    """The hyper-parameters of the one ``algorithms`` entry of the spec at ``source`` (relative to
    ``base``, the directory of the spec that names it), for the entry ``key`` of the same learner.

    What a grid uses to run a tuning study's best setting as a column (``td3_rkl@tuned``): the
    values land in the experiment record, so a changed source makes ``--resume`` refuse the run.
    Keys written beside ``hyperparams_from`` override the source's.
    """
    where = f"algorithms.{key}.{HYPERPARAMS_FROM}"
    if not isinstance(source, str) or not source.strip():
        raise RklBenchError(f"{where} must be the path of a spec such as a search's best_config.yaml, got {source!r}")
    path = Path(source).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    if not path.is_file():
        raise RklBenchError(f"{where}: {path} does not exist; run the search that writes it first (rkl-bench tune)")
    _, raw = read_yaml_spec(path, "spec", "reports/optuna_rkl_mixtures/best_config.yaml")
    entries = raw.get("algorithms") if isinstance(raw, Mapping) else None
    if not isinstance(entries, Mapping) or len(entries) != 1:
        raise RklBenchError(f"{where}: {path} must name exactly one learner under algorithms (a best_config.yaml does)")
    from rkl_bench.algos.registry import split_variant

    (theirs, values), = entries.items()
    if split_variant(str(theirs))[0] != split_variant(key)[0]:
        raise RklBenchError(f"{where}: {path} holds hyper-parameters of {theirs}, not of {split_variant(key)[0]}")
    if not isinstance(values, Mapping) or HYPERPARAMS_FROM in values:
        raise RklBenchError(f"{where}: {path}'s algorithms.{theirs} must be a plain mapping of hyper-parameters")
    return dict(values)


def _datasets(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise RklBenchError("datasets must be a non-empty list such as [hopper-random-expert]")
    names = tuple(_scalar(item, str, "datasets[]").strip() for item in raw)
    _unique(names, "datasets")
    return names


def _seeds(raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise RklBenchError("seeds must be a non-empty list of whole numbers such as [0, 1, 2]")
    seeds = tuple(_scalar(item, int, "seeds[]") for item in raw)
    for seed in seeds:
        _at_least(seed, 0, "seeds[]")
    _unique(seeds, "seeds")
    return seeds


def _unique(items: tuple[Any, ...], where: str) -> None:
    seen: set[Any] = set()
    for item in items:
        if item in seen:
            raise RklBenchError(f"{where} lists {item!r} twice; each trial must be distinct")
        seen.add(item)
