"""What every learner is, and how its hyper-parameters are parsed.

A learner is plain PyTorch (DESIGN.md, layer 2): it knows nothing of Ray, files
or environments. The training loop (single run or Ray Tune trial) drives it
through this small protocol:

* ``update(batch) -> dict[str, float]``: one gradient step on a minibatch of
  normalised states; returns scalar losses for logging.
* ``act(obs) -> actions``: deterministic actions for a batch of *normalised*
  observations (numpy in, numpy out), for evaluation rollouts.
* ``state_dict()`` / ``load_state_dict()``: everything needed to resume
  bit-exactly (networks, targets, optimisers, step counters, RNG states).

Hyper-parameters are frozen dataclasses; :func:`config_from_dict` builds one
from a plain mapping (YAML, CLI) and rejects unknown keys with a message that
lists the valid ones.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Mapping, Protocol, TypeVar, runtime_checkable

import numpy as np

from rkl_bench.data.dataset import Batch
from rkl_bench.errors import RklBenchError

C = TypeVar("C")


@runtime_checkable
class Learner(Protocol):
    """The protocol the training loops rely on."""

    def update(self, batch: Batch) -> dict[str, float]: ...

    def act(self, observations: np.ndarray) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def load_optimizer(optimizer: Any, state: dict[str, Any]) -> None:
    """Load a *copy* of ``state`` into ``optimizer``.

    ``torch.optim.Optimizer.load_state_dict`` keeps the dict's ``step``
    tensors as they are, so two learners loaded from one state dict would
    share their Adam step counters and each would advance the other's bias
    correction (measured: loading one dict into two TD3+BC learners and
    training one moved the other's step from 4 to 7).
    """
    optimizer.load_state_dict(copy.deepcopy(state))


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
            raise RklBenchError(f"{owner}: {key!r} must be true or false, got {value!r}")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RklBenchError(f"{owner}: {key!r} must be a number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) else value
        converted[key] = value
    return cls(**converted)  # type: ignore[call-arg]
