"""Learner hyper-parameters: shared config sections, parsing, and the checks with their one error type.

A learner's config is a frozen dataclass built from the sections it has:

* :class:`LearnerConfig` (every learner): ``batch_size`` (read by the
  training loop's sampler) and ``fused_adam``;
* :class:`Execution`: ``update_path``, ``fast_after``, ``compile_mode`` and
  ``precision``, how the update is executed (the first three are not compared
  when a checkpoint resumes; docs/speed.md);
* :class:`Network`: ``hidden_dim`` x ``hidden_layers`` ReLU MLPs;
* :class:`ActorCritic`: ``discount``, ``tau``, ``actor_lr``, ``critic_lr``;
* :class:`TanhPolicy`: a tanh-Gaussian policy's log-std range and the clip
  of dataset actions before their log-density.

A section may also be a nested field (the behaviour model's fit,
``behaviour.steps``), built from a nested mapping or dotted names; its old
flat names (``behaviour_steps``) stay valid as ``aliases``. Each section
checks its own fields in a ``check`` method; :class:`Checked` runs every
class's ``check`` once, base classes first, when the config is built. The checks use the helpers below, which raise
:class:`ConfigError` naming the key. :func:`config_from_dict` builds a
config from a plain mapping (YAML, CLI) and rejects unknown keys with a
message listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TypeVar

from rkl_bench.algos.tanh_gaussian import CLIP_EPS
from rkl_bench.errors import RklBenchError

C = TypeVar("C")

UPDATE_PATHS = ("fast", "plain")
"""Values of a learner config's ``update_path``."""
COMPILE_MODES = ("default", "reduce-overhead")
"""Values of a learner config's ``compile_mode``."""
PRECISIONS = ("fp32", "bf16")
"""Values of a learner config's ``precision`` (:mod:`rkl_bench.algos.precision`)."""


class ConfigError(RklBenchError, ValueError):
    """A hyper-parameter with a bad value, in one line that names it.

    ``ConfigError.bad(key, text)`` reads ``'key' text``; a nested section's
    error is raised again under the dotted name (``'behaviour.steps' ...``).
    """

    def __init__(self, message: str, key: str | None = None, text: str | None = None) -> None:
        super().__init__(message)
        self.key, self.text = key, text

    @classmethod
    def bad(cls, key: str, text: str) -> "ConfigError":
        return cls(f"{key!r} {text}", key, text)


def config_from_dict(cls: type[C], values: Mapping[str, Any] | None, owner: str) -> C:
    """Build the config dataclass ``cls`` from ``values``; unknown keys are an error.

    ``values`` are flat (``q_weight``), dotted into a nested section
    (``behaviour.steps``), nested mappings (``behaviour: {steps: ...}``), or
    a section's old flat name kept as an alias (``behaviour_steps``; a
    config class lists them in ``aliases``). ``owner`` names where the values
    came from (e.g. ``"td3_rkl hyper-parameters"``) so the message tells the
    user what to fix.
    """
    flat, given_as = _flatten(cls, values, owner)
    try:
        return _build(cls, flat, owner, "")
    except ConfigError as err:
        given = given_as.get(err.key or "", err.key)
        if given == err.key or err.text is None:
            raise
        raise ConfigError(f"{err.key!r} (given as {given!r}) {err.text}", err.key, err.text) from None


def flatten(cls: type, values: Mapping[str, Any] | None, owner: str | None = None) -> dict[str, Any]:
    """``values`` as ``{dotted name: value}``, aliases resolved and nested sections spread out.

    With ``owner``, an unknown key or a name given twice (say as its alias
    and as itself) is an error; without, they are kept (a checkpoint's
    config, compared as it is).
    """
    return _flatten(cls, values, owner)[0]


def _flatten(cls: type, values: Mapping[str, Any] | None, owner: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    alias, subs = aliases(cls), sections(cls)
    flat: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for given, value in (values or {}).items():
        key = alias.get(given, given)
        if key in subs and dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if key in subs and isinstance(value, Mapping):
            items = [(f"{key}.{k}", f"{given}.{k}", v) for k, v in value.items()]
        else:
            items = [(key, given, value)]
        for name, as_given, item in items:
            if owner is not None and name in flat:
                raise ConfigError(f"{owner}: {given_as[name]!r} and {as_given!r} both set {name!r}; give it once")
            flat[name], given_as[name] = item, as_given
    if owner is not None:
        valid = hyperparameter_names(cls)
        unknown = sorted({given_as[name] for name in flat if name not in valid})
        if unknown:
            raise RklBenchError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in {owner}; valid keys are: {', '.join(sorted(valid))}"
            )
    return flat, given_as


def _build(cls: type[C], flat: Mapping[str, Any], owner: str, prefix: str) -> C:
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = prefix + f.name
        section = sections(cls).get(f.name)
        if section is not None:
            if any(key.startswith(name + ".") for key in flat):
                kwargs[f.name] = _build(section, flat, owner, name + ".")
        elif name in flat:
            kwargs[f.name] = _typed(getattr(cls, f.name, None), flat[name], owner, name)
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and err.key is not None and err.text is not None:
            raise ConfigError.bad(prefix + err.key, err.text) from None
        raise


def _typed(default: Any, value: Any, owner: str, name: str) -> Any:
    """``value`` checked against the type of the field's ``default`` (ints given for floats become floats)."""
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{owner}: {name!r} must be true or false, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{owner}: {name!r} must be a number, got {value!r}")
        return type(default)(value) if isinstance(default, float) else value
    return value


def sections(cls: type) -> dict[str, type]:
    """The nested sections of a config class: field name -> its dataclass (fields with a dataclass default)."""
    out: dict[str, type] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        factory = f.default_factory
        if factory is not dataclasses.MISSING and isinstance(factory, type) and dataclasses.is_dataclass(factory):
            out[f.name] = factory
    return out


def aliases(cls: type) -> dict[str, str]:
    """Old flat names of a config class's hyper-parameters -> their dotted names (``aliases`` over its bases)."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        out.update(base.__dict__.get("aliases", {}))
    return out


def hyperparameter_names(cls: type) -> list[str]:
    """Every dotted hyper-parameter name of a config class (nested sections spread out)."""
    subs = sections(cls)
    names: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in subs:
            names += [f"{f.name}.{name}" for name in hyperparameter_names(subs[f.name])]
        else:
            names.append(f.name)
    return names


def flat_defaults(cls: type) -> dict[str, Any]:
    """Every name a hyper-parameter can be given by, dotted names and old flat aliases, with its default."""
    defaults = flatten(cls, dataclasses.asdict(cls()))
    return {**defaults, **{old: defaults[new] for old, new in aliases(cls).items()}}


def flat_config(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """A config's values as ``{dotted name: value}``, what checkpoints compare.

    Names missing from ``values`` take their defaults: a checkpoint written
    before a hyper-parameter existed ran with what is now its default.
    """
    return {**flatten(cls, dataclasses.asdict(cls())), **flatten(cls, values)}


def positive(config: Any, *names: str) -> None:
    """Each named field is a number > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ConfigError.bad(name, f"must be > 0, got {value!r}")


def non_negative(config: Any, *names: str) -> None:
    """Each named field is a number >= 0."""
    for name in names:
        value = getattr(config, name)
        if not value >= 0:
            raise ConfigError.bad(name, f"must be >= 0, got {value!r}")


def positive_int(config: Any, *names: str) -> None:
    """Each named field is a whole number >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError.bad(name, f"must be a whole number >= 1, got {value!r}")


def non_negative_int(config: Any, *names: str) -> None:
    """Each named field is a whole number >= 0."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError.bad(name, f"must be a whole number >= 0, got {value!r}")


def finite(config: Any, *names: str) -> None:
    """Each named field is a finite number."""
    for name in names:
        value = getattr(config, name)
        if not math.isfinite(value):
            raise ConfigError.bad(name, f"must be a finite number, got {value!r}")


def within(config: Any, name: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    """The named field lies in the interval (``low_open``/``high_open``: that end excluded)."""
    value = getattr(config, name)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError.bad(name, f"must be in {interval}, got {value!r}")


def one_of(config: Any, name: str, allowed: Sequence[str]) -> None:
    """The named field is one of ``allowed``."""
    value = getattr(config, name)
    if value not in allowed:
        raise ConfigError.bad(name, f"must be one of {', '.join(allowed)}; got {value!r}")


def ordered(config: Any, low: str, high: str) -> None:
    """Two finite fields with ``low < high`` (a log-std range)."""
    lo, hi = getattr(config, low), getattr(config, high)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError.bad(low, f"must be < {high!r} (both finite), got {lo!r} and {hi!r}")


# ------------------------------------------------------------------ sections
class Checked:
    """Runs every class's own ``check`` once, base classes first, when a config dataclass is built."""

    def __post_init__(self) -> None:
        for cls in reversed(type(self).__mro__):
            check = cls.__dict__.get("check")
            if check is not None:
                check(self)


@dataclass(frozen=True)
class LearnerConfig(Checked):
    """The fields every learner has."""

    batch_size: int = 256
    """Minibatch size; read by the training loop's sampler, not by the learner."""
    fused_adam: bool = True
    """Use the fused Adam kernel (same maths, ~1e-6 rounding differences; much faster on CPU)."""

    def check(self) -> None:
        positive_int(self, "batch_size")


@dataclass(frozen=True)
class Execution:
    """How the update is executed: the compiled fast path after ``fast_after`` plain updates, or plain."""

    update_path: str = "fast"
    """``"fast"``: the compiled whole-step update; ``"plain"``: eager modules and ``torch.optim``
    (same numbers up to float rounding; docs/speed.md)."""
    fast_after: int = 10_000
    """With ``update_path="fast"``, the first ``fast_after`` updates run on the plain path
    (compiling pays back only after a few thousand steps; docs/speed.md)."""
    compile_mode: str = "default"
    """How the fast path is compiled: ``"default"``, or ``"reduce-overhead"``: ``torch.compile``'s mode
    that replays the step as a CUDA graph on a GPU (one launch instead of ~100; on a CPU the same as
    the default). The same numbers either way."""

    precision: str = "fp32"
    """Arithmetic of the fast path's matrix products: ``"fp32"``, or ``"bf16"`` (bf16 products with
    fp32 accumulation; weights, Adam state, targets and losses stay fp32). bf16 runs only where the
    hardware has it natively (AVX512-BF16 or AMX, a bf16-capable GPU); elsewhere the learner says so
    in one line and runs fp32 (:mod:`rkl_bench.algos.precision`). The plain path, and so the first
    ``fast_after`` updates, is always fp32. Changes the numbers beyond float rounding, so a checkpoint
    resumes only under its own precision."""

    def check(self) -> None:
        one_of(self, "update_path", UPDATE_PATHS)
        non_negative_int(self, "fast_after")
        one_of(self, "compile_mode", COMPILE_MODES)
        one_of(self, "precision", PRECISIONS)


@dataclass(frozen=True)
class Network:
    """``hidden_layers`` ReLU layers of ``hidden_dim`` units (TD3+BC's 256x256 by default)."""

    hidden_dim: int = 256
    hidden_layers: int = 2

    def check(self) -> None:
        positive_int(self, "hidden_dim", "hidden_layers")


@dataclass(frozen=True)
class ActorCritic:
    """An actor-critic's discount, target rate and learning rates."""

    discount: float = 0.99
    tau: float = 0.005
    """Polyak rate of the target networks."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4

    def check(self) -> None:
        within(self, "tau", 0, 1, low_open=True)
        within(self, "discount", 0, 1, low_open=True)
        positive(self, "actor_lr", "critic_lr")


@dataclass(frozen=True)
class TanhPolicy:
    """A tanh-Gaussian policy's log-std range, and the clip of dataset actions before ``log pi(a|s)``."""

    log_std_min: float = -5.0
    log_std_max: float = 2.0
    action_clip_eps: float = CLIP_EPS
    """Dataset actions are clipped to ``[-1 + eps, 1 - eps]`` before their log-density is taken."""

    def check(self) -> None:
        ordered(self, "log_std_min", "log_std_max")
        within(self, "action_clip_eps", 0, 0.5, low_open=True, high_open=True)
