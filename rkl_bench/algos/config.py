"""Learner hyper-parameters: shared config sections, parsing, and the checks with their one error type.

A learner's config is a frozen dataclass built from the sections it has:

* :class:`LearnerConfig` (every learner): ``batch_size`` (read by the
  training loop's sampler) and ``fused_adam``;
* :class:`Execution`: ``update_path`` and ``fast_after``, how the update is
  executed (not compared when a checkpoint resumes; docs/speed.md);
* :class:`Network`: ``hidden_dim`` x ``hidden_layers`` ReLU MLPs;
* :class:`ActorCritic`: ``discount``, ``tau``, ``actor_lr``, ``critic_lr``;
* :class:`TanhPolicy`: a tanh-Gaussian policy's log-std range and the clip
  of dataset actions before their log-density.

Each section checks its own fields in a ``check`` method;
:class:`LearnerConfig` runs every class's ``check`` once, base classes first,
when the config is built. The checks use the helpers below, which raise
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


class ConfigError(RklBenchError, ValueError):
    """A hyper-parameter with a bad value, in one line that names it."""


def config_from_dict(cls: type[C], values: Mapping[str, Any] | None, owner: str) -> C:
    """Build the dataclass ``cls`` from ``values``; unknown keys are an error.

    ``owner`` names where the values came from (e.g. ``"td3_rkl hyper-parameters"``)
    so the message tells the user what to fix.
    """
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RklBenchError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {owner}; "
            f"valid keys are: {', '.join(sorted(fields))}"
        )
    converted: dict[str, Any] = {}
    for key, value in values.items():
        default = getattr(cls, key, None)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{owner}: {key!r} must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{owner}: {key!r} must be a number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) else value
        converted[key] = value
    return cls(**converted)  # type: ignore[call-arg]


def flat_config(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """A config's values as one flat mapping (what checkpoints compare)."""
    return dict(values)


def positive(config: Any, *names: str) -> None:
    """Each named field is a number > 0."""
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ConfigError(f"{name!r} must be > 0, got {value!r}")


def non_negative(config: Any, *names: str) -> None:
    """Each named field is a number >= 0."""
    for name in names:
        value = getattr(config, name)
        if not value >= 0:
            raise ConfigError(f"{name!r} must be >= 0, got {value!r}")


def positive_int(config: Any, *names: str) -> None:
    """Each named field is a whole number >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name!r} must be a whole number >= 1, got {value!r}")


def non_negative_int(config: Any, *names: str) -> None:
    """Each named field is a whole number >= 0."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name!r} must be a whole number >= 0, got {value!r}")


def finite(config: Any, *names: str) -> None:
    """Each named field is a finite number."""
    for name in names:
        value = getattr(config, name)
        if not math.isfinite(value):
            raise ConfigError(f"{name!r} must be a finite number, got {value!r}")


def within(config: Any, name: str, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
    """The named field lies in the interval (``low_open``/``high_open``: that end excluded)."""
    value = getattr(config, name)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ConfigError(f"{name!r} must be in {interval}, got {value!r}")


def one_of(config: Any, name: str, allowed: Sequence[str]) -> None:
    """The named field is one of ``allowed``."""
    value = getattr(config, name)
    if value not in allowed:
        raise ConfigError(f"{name!r} must be one of {', '.join(allowed)}; got {value!r}")


def ordered(config: Any, low: str, high: str) -> None:
    """Two finite fields with ``low < high`` (a log-std range)."""
    lo, hi = getattr(config, low), getattr(config, high)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{low!r} must be < {high!r} (both finite), got {lo!r} and {hi!r}")


# ------------------------------------------------------------------ sections
@dataclass(frozen=True)
class LearnerConfig:
    """The fields every learner has, and the check-runner of all sections."""

    batch_size: int = 256
    """Minibatch size; read by the training loop's sampler, not by the learner."""
    fused_adam: bool = True
    """Use the fused Adam kernel (same maths, ~1e-6 rounding differences; much faster on CPU)."""

    def __post_init__(self) -> None:
        for cls in reversed(type(self).__mro__):
            check = cls.__dict__.get("check")
            if check is not None:
                check(self)

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

    def check(self) -> None:
        one_of(self, "update_path", UPDATE_PATHS)
        non_negative_int(self, "fast_after")


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
