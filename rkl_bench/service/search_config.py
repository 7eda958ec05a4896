"""Search specs: ``tune_configs/optuna_*.yaml`` -> :class:`SearchConfig`.

A search spec is an experiment spec (``config.py``: the algorithm with its
fixed hyper-parameters, datasets, seeds, steps, evaluation, resources...)
plus a ``search`` section saying which of the algorithm's hyper-parameters to
tune and how. The experiment part is parsed by ``config.parse_config``, so it
means exactly what it means in ``rkl-bench run``; the ``search`` part is
checked here, before Ray starts, with the same one-line errors (unknown keys
are errors). Schema of ``search`` (defaults in brackets)::

    search:
      space:                          # hyper-parameter -> distribution
        zeta1: {low: 1.0, high: 30.0, log: true}     # float [type: float]
        zeta2: {low: 0.0, high: 10.0, step: 0.5}      # float on a grid
        behaviour_steps: {type: int, low: 1000, high: 20000, log: true}
        q_weight: {choices: [1.0, 2.5, 5.0]}          # categorical
        regulariser: {choices: [squared, kernel]}
        kernel_sigma: {low: 0.1, high: 2.0, log: true, when: {regulariser: kernel}}   # conditional
      num_samples: 40                 # trials in the study (a resume runs the rest)
      max_concurrent: 2               # [1] trials running at once (ConcurrencyLimiter)
      initial_points:                 # [[]] evaluated first, e.g. the paper's values
        - {zeta1: 10.0, zeta2: 5.0}
      objective:
        final_evals: 3                # [1] a pair's score: mean of its last N evaluations
        aggregate: mean               # [mean] over (dataset, seed) pairs: mean | median
      early_stopping:
        kind: asha                    # [asha] asha | none
        time: pairs                   # [pairs] what ASHA's clock counts: finished (dataset, seed)
                                      #   pairs, or gradient steps per pair (steps: every pair is
                                      #   trained to each rung before the trial is compared)
        grace_period: 3               # [number of datasets | steps / 4] pairs (or steps) before a trial can be stopped
        reduction_factor: 2           # [2]
      sampler:                        # Optuna's TPE
        seed: 0                       # [0]; null for a random seed
        n_startup_trials: 10          # [10] random trials before TPE models the space
        multivariate: true            # [true]
        constant_liar: true           # [true] running trials count as bad guesses (parallel TPE)
      storage: null                   # [sqlite:///<experiment dir>/optuna.db]; any RDB URL, or journal:<file>
      study_name: null                # [the experiment name]

The algorithm to tune is the only entry of ``algorithms``; its mapping holds
the hyper-parameters kept fixed. A searched name must be a hyper-parameter
of that algorithm and must not be fixed too. Every bound and choice is
checked against the learner's own validation (so ``rkl_alpha: {low: -1}``
fails here, not in a trial).

A parameter with ``when: {other: value | [values]}`` is conditional: it is
sampled only in trials where ``other``, a categorical parameter listed
before it, took one of those values; elsewhere the learner's default (or
the fixed value) stands. The study then samples define-by-run and TPE
groups the parameters that appear together (``TPESampler(group=True)``).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import STUDY_FILE
from rkl_bench.service.config import (
    ExperimentConfig,
    _at_least,
    _check_keys,
    _choice,
    _scalar,
    parse_config,
    read_yaml_spec,
)

SEARCH_KEY = "search"
ParamKind = Literal["float", "int", "categorical"]
Aggregate = Literal["mean", "median"]
AGGREGATES: tuple[str, ...] = typing.get_args(Aggregate)
EarlyStoppingKind = Literal["asha", "none"]
EARLY_STOPPING_KINDS: tuple[str, ...] = typing.get_args(EarlyStoppingKind)
Clock = Literal["pairs", "steps"]
CLOCKS: tuple[str, ...] = typing.get_args(Clock)
JOURNAL_PREFIX = "journal:"
RESERVED_NAMES = ("search_trial", "optuna_trial")
"""Keys of a search trial's Tune config besides the searched hyper-parameters."""


# ------------------------------------------------------------------ schema
@dataclass(frozen=True)
class ParamSpace:
    """One searched hyper-parameter and its distribution."""

    name: str
    kind: ParamKind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    """Conditions ``(other parameter, values it must take)``, all of which must hold for
    this parameter to be sampled; empty for a parameter every trial samples."""

    def active(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter is sampled, given the values sampled before it."""
        return all(name in values and values[name] in allowed for name, allowed in self.when)

    def distribution(self) -> Any:
        """The Optuna distribution (what the study records and TPE samples)."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def extremes(self) -> tuple[Any, ...]:
        """Values that bound the space: checked against the learner before Ray starts."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)

    def contains(self, value: Any) -> bool:
        if self.kind == "categorical":
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind == "int" and value != int(value):
            return False
        return self.low <= value <= self.high

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "categorical":
            data: dict[str, Any] = {"choices": list(self.choices)}
        else:
            data = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
            if self.step is not None:
                data["step"] = self.step
        if self.when:
            data["when"] = {name: list(values) for name, values in self.when}
        return data


@dataclass(frozen=True)
class Objective:
    """What a trial scores: per (dataset, seed) pair the mean normalised score of
    its last ``final_evals`` evaluations, then ``aggregate`` over the pairs."""

    final_evals: int = 1
    aggregate: Aggregate = "mean"


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA: a trial's running score is compared with other trials' at the same clock.

    ``time: pairs`` (the default) counts finished (dataset, seed) pairs, run one
    after the other: after ``k`` pairs, every trial has run the same ``k`` pairs.
    ``time: steps`` counts gradient steps per pair: the trial trains every pair
    to the first rung (``grace_period`` steps), then every pair to the next
    (``grace_period * reduction_factor``), and so on to ``steps``, so ASHA
    compares trials on all their datasets at 25k, 50k, ... steps."""

    kind: EarlyStoppingKind = "asha"
    time: Clock = "pairs"
    grace_period: int | None = None
    """Pairs (or steps) a trial always runs; default: one seed over every dataset
    (or a quarter of ``steps``)."""
    reduction_factor: float = 2.0


@dataclass(frozen=True)
class Sampler:
    """Optuna's TPE sampler."""

    seed: int | None = 0
    n_startup_trials: int = 10
    multivariate: bool = True
    constant_liar: bool = True


@dataclass(frozen=True)
class SearchSettings:
    space: tuple[ParamSpace, ...]
    num_samples: int
    max_concurrent: int = 1
    initial_points: tuple[Mapping[str, Any], ...] = ()
    objective: Objective = Objective()
    early_stopping: EarlyStopping = EarlyStopping()
    sampler: Sampler = Sampler()
    storage: str | None = None
    study_name: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.space)

    @property
    def conditional(self) -> bool:
        """Whether some parameter is sampled only under a condition (define-by-run sampling)."""
        return any(p.when for p in self.space)

    def param(self, name: str) -> ParamSpace:
        return next(p for p in self.space if p.name == name)

    def identity(self) -> dict[str, Any]:
        """What defines the study's trials; ``num_samples`` and ``max_concurrent``
        may change between a search and its resumption (to extend a search)."""
        return {
            "space": {p.name: p.as_dict() for p in self.space},
            "initial_points": [dict(point) for point in self.initial_points],
            "objective": {"final_evals": self.objective.final_evals, "aggregate": self.objective.aggregate},
            "early_stopping": {
                "kind": self.early_stopping.kind,
                **({"time": "steps"} if self.early_stopping.time == "steps" else {}),
                "grace_period": self.early_stopping.grace_period,
                "reduction_factor": self.early_stopping.reduction_factor,
            },
            "sampler": {
                "seed": self.sampler.seed,
                "n_startup_trials": self.sampler.n_startup_trials,
                "multivariate": self.sampler.multivariate,
                "constant_liar": self.sampler.constant_liar,
            },
        }


@dataclass(frozen=True)
class SearchConfig:
    """One parsed and checked search spec; ``path`` is the file it came from."""

    experiment: ExperimentConfig
    search: SearchSettings
    path: Path | None = None

    @property
    def name(self) -> str:
        return self.experiment.name

    @property
    def algo(self) -> str:
        return next(iter(self.experiment.algorithms))

    @property
    def fixed(self) -> dict[str, Any]:
        """The algorithm's hyper-parameters that are not searched."""
        return dict(self.experiment.algorithms[self.algo])

    @property
    def study_name(self) -> str:
        return self.search.study_name or self.experiment.name

    @property
    def num_pairs(self) -> int:
        return len(self.experiment.datasets) * len(self.experiment.seeds)

    @property
    def staged(self) -> bool:
        """Whether trials train every pair rung by rung (``early_stopping.time: steps``)."""
        return self.search.early_stopping.time == "steps"

    @property
    def grace_period(self) -> int:
        if self.search.early_stopping.grace_period:
            return self.search.early_stopping.grace_period
        return self.experiment.steps // 4 if self.staged else len(self.experiment.datasets)

    @property
    def stages(self) -> tuple[int, ...]:
        """Steps per pair at which a staged trial has trained every pair: ASHA's
        rungs (``grace_period * reduction_factor^k`` below ``steps``), then ``steps``.
        ``(steps,)`` for a trial that runs its pairs one after the other."""
        steps = self.experiment.steps
        if not self.staged:
            return (steps,)
        rungs: list[int] = []
        if self.search.early_stopping.kind == "asha":
            rung = float(self.grace_period)
            while round(rung) < steps:
                rungs.append(int(round(rung)))
                rung *= self.search.early_stopping.reduction_factor
        return (*rungs, steps)

    @property
    def evaluations_per_pair(self) -> int:
        return -(-self.experiment.steps // self.experiment.evaluation.interval)

    def hyperparams(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The algorithm's full hyper-parameter mapping for sampled ``params``."""
        return {**self.fixed, **params}


# ----------------------------------------------------------------- loading
def load_search_config(path: str | Path) -> SearchConfig:
    """Read, parse and check ``path``; every problem is one :class:`RklBenchError` line naming the file."""
    path, raw = read_yaml_spec(path, "search config", "tune_configs/optuna_lambda.yaml")
    try:
        return parse_search_config(raw, default_name=path.stem, path=path)
    except RklBenchError as exc:
        raise RklBenchError(f"{path}: {exc}") from None


def parse_search_config(raw: Any, default_name: str, path: Path | None = None) -> SearchConfig:
    """Build a :class:`SearchConfig` from parsed YAML and check it (no file access)."""
    if not isinstance(raw, Mapping):
        raise RklBenchError("the top level must be a mapping of experiment keys plus a 'search' section")
    if SEARCH_KEY not in raw:
        raise RklBenchError(
            "missing key 'search' at the top level; a search spec is an experiment spec plus "
            "search: {space: ..., num_samples: ...} (see tune_configs/optuna_lambda.yaml)"
        )
    experiment = parse_config({k: v for k, v in raw.items() if k != SEARCH_KEY}, default_name, path)
    if len(experiment.algorithms) != 1:
        raise RklBenchError(
            f"a search tunes one algorithm, but algorithms lists {len(experiment.algorithms)} "
            f"({', '.join(experiment.algorithms)}); keep only the one to tune, with its fixed hyper-parameters"
        )
    search = _search(raw[SEARCH_KEY])
    config = SearchConfig(experiment, search, path)
    check_search_config(config)
    return config


def check_search_config(config: SearchConfig) -> None:
    """Checks across the search and the experiment: names, bounds against the learner, pairs."""
    from rkl_bench.algos.registry import default_hyperparams, make_config

    search, algo, fixed = config.search, config.algo, config.fixed
    if config.experiment.seeds_per_trial != 1:
        raise RklBenchError(
            f"seeds_per_trial is {config.experiment.seeds_per_trial}, but a search trial trains its (dataset, seed) "
            "pairs one after the other; seeds_per_trial applies to rkl-bench run (leave it out here)"
        )
    defaults = default_hyperparams(algo)
    for param in search.space:
        where = f"search.space.{param.name}"
        if param.name in RESERVED_NAMES:
            raise RklBenchError(f"{where}: {param.name!r} is reserved; it is not a hyper-parameter")
        if param.name not in defaults:
            raise RklBenchError(
                f"{where}: {param.name!r} is not a hyper-parameter of {algo}; "
                f"valid names are: {', '.join(sorted(defaults))}"
            )
        if param.name in fixed:
            raise RklBenchError(
                f"{where}: {param.name!r} is both searched and fixed in algorithms.{algo}; remove one of them"
            )
        default = defaults[param.name]
        if isinstance(default, int) and not isinstance(default, bool) and param.kind == "float":
            raise RklBenchError(f"{where}: {param.name} is a whole number; add type: int")
        for value in param.extremes():
            make_config(algo, {**fixed, param.name: value})
        seen = search.names[: search.names.index(param.name)]
        for other, allowed in param.when:
            if other not in seen or search.param(other).kind != "categorical":
                raise RklBenchError(
                    f"{where}.when: {other!r} must be a categorical parameter listed before {param.name!r} in search.space"
                )
            unknown = [v for v in allowed if not search.param(other).contains(v)]
            if unknown:
                raise RklBenchError(f"{where}.when.{other}: {unknown[0]!r} is not one of its choices {list(search.param(other).choices)}")
    for i, point in enumerate(search.initial_points):
        for name, value in point.items():
            if name not in search.names:
                raise RklBenchError(
                    f"search.initial_points[{i}]: {name!r} is not searched; "
                    f"searched names are: {', '.join(search.names)}"
                )
            if not search.param(name).contains(value):
                raise RklBenchError(f"search.initial_points[{i}].{name} = {value!r} is outside its search space")
            if not search.param(name).active(point):
                raise RklBenchError(
                    f"search.initial_points[{i}].{name}: the point does not meet its condition "
                    f"{search.param(name).as_dict()['when']}; drop it from the point"
                )
    evaluations = config.evaluations_per_pair
    if search.objective.final_evals > evaluations:
        raise RklBenchError(
            f"search.objective.final_evals ({search.objective.final_evals}) is more than the evaluations "
            f"a pair makes ({evaluations} = steps / evaluation.interval); lower it"
        )
    if config.staged:
        _check_stages(config)
    elif search.early_stopping.kind == "asha":
        pairs = config.num_pairs
        if pairs < 2:
            raise RklBenchError(
                "search.early_stopping: ASHA stops trials between (dataset, seed) pairs, and this search has one pair; "
                "add seeds or datasets, or set early_stopping: {kind: none}"
            )
        grace = config.grace_period
        if not 1 <= grace < pairs:
            raise RklBenchError(
                f"search.early_stopping.grace_period must be between 1 and {pairs - 1} (the search has {pairs} pairs), "
                f"got {grace}"
            )
    if search.storage is not None:
        storage_url(search.storage, Path("."))  # the form is checked; the place is made at run time


def _check_stages(config: SearchConfig) -> None:
    """A staged search: rungs on evaluation steps, and a rung below ``steps``."""
    stopping, steps = config.search.early_stopping, config.experiment.steps
    interval = config.experiment.evaluation.interval
    if stopping.kind == "asha" and not 1 <= config.grace_period < steps:
        raise RklBenchError(
            f"search.early_stopping.grace_period must be between 1 and {steps - 1} steps (time: steps; "
            f"steps is {steps}), got {config.grace_period}"
        )
    for rung in config.stages:
        if rung % interval and rung != steps:
            raise RklBenchError(
                f"search.early_stopping: rung {rung} (grace_period x reduction_factor^k) is not a multiple of "
                f"evaluation.interval ({interval}); a rung's score needs an evaluation at that step"
            )


def storage_url(storage: str | None, experiment_dir: Path) -> str:
    """The study storage as a URL Optuna's RDB storage takes, or ``journal:<absolute path>``."""
    if storage is None:
        return f"sqlite:///{(experiment_dir / STUDY_FILE).resolve()}"
    if storage.startswith(JOURNAL_PREFIX):
        file = storage[len(JOURNAL_PREFIX):]
        if not file:
            raise RklBenchError("search.storage: journal: needs a file, e.g. journal:/shared/study.log")
        return JOURNAL_PREFIX + str(Path(file).expanduser().resolve())
    if "://" not in storage:
        raise RklBenchError(
            f"search.storage {storage!r} is neither a database URL (sqlite:///study.db, postgresql://host/db) "
            "nor journal:<file>"
        )
    return storage


# ---------------------------------------------------------------- parsing
SEARCH_KEYS = (
    "space", "num_samples", "max_concurrent", "initial_points", "objective",
    "early_stopping", "sampler", "storage", "study_name",
)


def _search(raw: Any) -> SearchSettings:
    if not isinstance(raw, Mapping):
        raise RklBenchError(f"search must be a mapping with space and num_samples, got {raw!r}")
    _check_keys(raw, SEARCH_KEYS, "search")
    for key in ("space", "num_samples"):
        if key not in raw:
            raise RklBenchError(f"missing key {key!r} in search")
    space = _space(raw["space"])
    names = tuple(p.name for p in space)
    settings = SearchSettings(
        space=space,
        num_samples=_scalar(raw["num_samples"], int, "search.num_samples"),
        max_concurrent=_scalar(raw.get("max_concurrent", 1), int, "search.max_concurrent"),
        initial_points=_initial_points(raw.get("initial_points"), names),
        objective=_objective(raw.get("objective")),
        early_stopping=_early_stopping(raw.get("early_stopping")),
        sampler=_sampler(raw.get("sampler")),
        storage=None if raw.get("storage") is None else _scalar(raw["storage"], str, "search.storage"),
        study_name=None if raw.get("study_name") is None else _scalar(raw["study_name"], str, "search.study_name"),
    )
    _at_least(settings.num_samples, 1, "search.num_samples")
    _at_least(settings.max_concurrent, 1, "search.max_concurrent")
    return settings


def _space(raw: Any) -> tuple[ParamSpace, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise RklBenchError(
            "search.space must be a non-empty mapping of hyper-parameter -> distribution, "
            "e.g. {rkl_alpha: {low: 0.1, high: 2.0}, q_weight: {choices: [1.0, 2.5]}}"
        )
    return tuple(_param(str(name), spec) for name, spec in raw.items())


def _param(name: str, raw: Any) -> ParamSpace:
    where = f"search.space.{name}"
    if not isinstance(raw, Mapping):
        raise RklBenchError(f"{where} must be a mapping such as {{low: 0.1, high: 2.0}} or {{choices: [1, 2]}}, got {raw!r}")
    if "choices" in raw:
        _check_keys(raw, ("choices", "when"), where)
        choices = raw["choices"]
        if not isinstance(choices, list) or not choices:
            raise RklBenchError(f"{where}.choices must be a non-empty list, got {choices!r}")
        for choice in choices:
            if not isinstance(choice, (bool, int, float, str)) or (isinstance(choice, float) and not math.isfinite(choice)):
                raise RklBenchError(f"{where}.choices: {choice!r} is not a number, string or true/false")
        if len({(type(c), c) for c in choices}) != len(choices):
            raise RklBenchError(f"{where}.choices lists a value twice")
        return ParamSpace(name, "categorical", choices=tuple(choices), when=_when(raw.get("when"), where))
    _check_keys(raw, ("type", "low", "high", "log", "step", "when"), where)
    for key in ("low", "high"):
        if key not in raw:
            raise RklBenchError(f"missing key {key!r} in {where} (or give choices: [...])")
    kind = _choice(raw.get("type", "float"), ("float", "int"), f"{where}.type")
    number = int if kind == "int" else float
    low = _scalar(raw["low"], number, f"{where}.low")
    high = _scalar(raw["high"], number, f"{where}.high")
    log = _bool(raw.get("log", False), f"{where}.log")
    step = None if raw.get("step") is None else _scalar(raw["step"], number, f"{where}.step")
    if not low < high:
        raise RklBenchError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise RklBenchError(f"{where}: a log scale needs low > 0, got {low}")
    if step is not None:
        if log:
            raise RklBenchError(f"{where}: step and log cannot be combined")
        if not step > 0:
            raise RklBenchError(f"{where}.step must be > 0, got {step}")
    return ParamSpace(name, kind, low=low, high=high, log=log, step=step, when=_when(raw.get("when"), where))


def _when(raw: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when: {other: value | [values]}`` -> ``((other, (values...)), ...)``."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise RklBenchError(f"{where}.when must be a mapping such as {{regulariser: [squared, kernel]}}, got {raw!r}")
    conditions = []
    for name, values in raw.items():
        values = values if isinstance(values, list) else [values]
        if not values:
            raise RklBenchError(f"{where}.when.{name} must name at least one value")
        conditions.append((str(name), tuple(values)))
    return tuple(conditions)


def _initial_points(raw: Any, names: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RklBenchError("search.initial_points must be a list of mappings such as [{zeta1: 10.0, zeta2: 5.0}]")
    points = []
    for i, point in enumerate(raw):
        if not isinstance(point, Mapping) or not point:
            raise RklBenchError(f"search.initial_points[{i}] must be a non-empty mapping of searched names to values")
        points.append({str(k): v for k, v in point.items()})
    return tuple(points)


def _objective(raw: Any) -> Objective:
    raw = _mapping(raw, "search.objective", ("final_evals", "aggregate"))
    objective = Objective(
        final_evals=_scalar(raw.get("final_evals", 1), int, "search.objective.final_evals"),
        aggregate=_choice(raw.get("aggregate", "mean"), AGGREGATES, "search.objective.aggregate"),  # type: ignore[arg-type]
    )
    _at_least(objective.final_evals, 1, "search.objective.final_evals")
    return objective


def _early_stopping(raw: Any) -> EarlyStopping:
    raw = _mapping(raw, "search.early_stopping", ("kind", "time", "grace_period", "reduction_factor"))
    grace = raw.get("grace_period")
    stopping = EarlyStopping(
        kind=_choice(raw.get("kind", "asha"), EARLY_STOPPING_KINDS, "search.early_stopping.kind"),  # type: ignore[arg-type]
        time=_choice(raw.get("time", "pairs"), CLOCKS, "search.early_stopping.time"),  # type: ignore[arg-type]
        grace_period=None if grace is None else _scalar(grace, int, "search.early_stopping.grace_period"),
        reduction_factor=_scalar(raw.get("reduction_factor", 2.0), float, "search.early_stopping.reduction_factor"),
    )
    if not stopping.reduction_factor > 1:
        raise RklBenchError(f"search.early_stopping.reduction_factor must be > 1, got {stopping.reduction_factor}")
    return stopping


def _sampler(raw: Any) -> Sampler:
    raw = _mapping(raw, "search.sampler", ("seed", "n_startup_trials", "multivariate", "constant_liar"))
    seed = raw.get("seed", 0)
    sampler = Sampler(
        seed=None if seed is None else _scalar(seed, int, "search.sampler.seed"),
        n_startup_trials=_scalar(raw.get("n_startup_trials", 10), int, "search.sampler.n_startup_trials"),
        multivariate=_bool(raw.get("multivariate", True), "search.sampler.multivariate"),
        constant_liar=_bool(raw.get("constant_liar", True), "search.sampler.constant_liar"),
    )
    if sampler.seed is not None:
        _at_least(sampler.seed, 0, "search.sampler.seed")
    _at_least(sampler.n_startup_trials, 0, "search.sampler.n_startup_trials")
    return sampler


def _mapping(raw: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RklBenchError(f"{where} must be a mapping, got {raw!r}")
    _check_keys(raw, keys, where)
    return raw


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RklBenchError(f"{where} must be true or false, got {value!r}")
    return value


__all__ = [
    "EarlyStopping",
    "Objective",
    "ParamSpace",
    "Sampler",
    "SearchConfig",
    "SearchSettings",
    "check_search_config",
    "load_search_config",
    "parse_search_config",
    "storage_url",
]
