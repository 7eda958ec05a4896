"""Checks that turn a bad dataset into one clear line instead of a NaN loss later.

Every check raises :class:`~rkl_bench.errors.RklBenchError` whose message starts
with the source (file path or ``minari:<id>``), names the field, and, for
value problems, the first bad row, e.g.::

    /data/halfcheetah.hdf5: field 'actions' has values outside [-1, 1] (first at row 12: 1.7); ...

The checks are keyed by field name, so the D4RL reader, the Minari reader and
the hdf5 writer share them.

Against the env (:func:`check_env_spaces`): observation and action widths
must be the env's, so data recorded elsewhere fails when it is loaded for a
run, not in gymnasium at the first evaluation after training. Actions must
be floating point: every env here has a continuous ``Box`` action space, and
integer actions mean the data is from another kind of task.

Action range: learners squash their policies with tanh into [-1, 1] and the
TD3+BC/RKL regularisers compare policy actions with dataset actions, so data
outside that box means the actions were not normalised to the env's bounds
(all gymnasium MuJoCo envs here have bounds [-1, 1]). A tolerance of
:data:`ACTION_TOLERANCE` absorbs float rounding of values saved at exactly
+-1 by other tools; anything beyond it is an error. Values are never clipped
silently.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from rkl_bench.errors import RklBenchError

if TYPE_CHECKING:
    from rkl_bench.data.dataset import OfflineDataset

ACTION_TOLERANCE = 1e-5
"""How far past +-1 an action may lie before it counts as unnormalised."""

MATRIX_FIELDS = ("observations", "next_observations", "actions")
"""Fields shaped ``(N, dim)``."""
FLAG_FIELDS = ("terminals", "timeouts")
"""Fields shaped ``(N,)`` holding only 0/1 (bool on disk)."""
VECTOR_FIELDS = ("rewards", *FLAG_FIELDS)
"""Fields shaped ``(N,)``."""


def check_hdf5_file(path: Path) -> None:
    """The file exists and really is HDF5 (not a truncated download or a renamed npz)."""
    if not path.exists():
        raise RklBenchError(f"{path}: no such file")
    if path.is_dir():
        raise RklBenchError(f"{path}: is a directory, expected an .hdf5 file in D4RL layout")
    if not h5py.is_hdf5(path):
        raise RklBenchError(
            f"{path}: not an HDF5 file (truncated or a different format); "
            "expected an .hdf5 file in D4RL layout"
        )


def require_fields(source: str, present: Iterable[str], required: Iterable[str]) -> None:
    """All ``required`` fields are in ``present``; name the first missing one."""
    have = set(present)
    for name in required:
        if name not in have:
            raise RklBenchError(
                f"{source}: field {name!r} is missing (found: {', '.join(sorted(have)) or 'nothing'}); "
                "D4RL layout needs observations, actions, rewards, terminals, timeouts"
            )


def check_arrays(source: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Dtype, shape, equal lengths, finite values, 0/1 flags and the action range.

    ``arrays`` must contain ``observations``; the other known fields are
    checked when present. Cheap structural checks run before value checks, so
    the message names the most basic problem.
    """
    for name, arr in arrays.items():
        _check_dtype_and_shape(source, name, arr)
    n = len(arrays["observations"])
    if n == 0:
        raise RklBenchError(f"{source}: field 'observations' is empty; the dataset has no rows")
    for name, arr in arrays.items():
        if len(arr) != n:
            raise RklBenchError(
                f"{source}: field {name!r} has {len(arr)} rows but 'observations' has {n}; "
                "all fields must have one row per step"
            )
    if "next_observations" in arrays and arrays["next_observations"].shape[1:] != arrays["observations"].shape[1:]:
        raise RklBenchError(
            f"{source}: field 'next_observations' has shape {arrays['next_observations'].shape} "
            f"but 'observations' has {arrays['observations'].shape}"
        )
    for name, arr in arrays.items():
        if name in FLAG_FIELDS:
            _check_flags(source, name, arr)
        else:
            _check_finite(source, name, arr)
    if "actions" in arrays:
        _check_action_range(source, arrays["actions"])


def _check_dtype_and_shape(source: str, name: str, arr: np.ndarray) -> None:
    if arr.dtype.kind not in "biuf":
        raise RklBenchError(f"{source}: field {name!r} has dtype {arr.dtype}; expected numbers")
    if name == "actions" and arr.dtype.kind != "f":
        raise RklBenchError(
            f"{source}: field 'actions' has dtype {arr.dtype}; expected floating-point actions in [-1, 1] "
            "(the envs here have continuous action spaces; integer actions come from another kind of task)"
        )
    if name in MATRIX_FIELDS and (arr.ndim != 2 or arr.shape[1] == 0):
        dim = "act_dim" if name == "actions" else "obs_dim"
        raise RklBenchError(f"{source}: field {name!r} has shape {arr.shape}; expected (N, {dim})")
    if name in VECTOR_FIELDS and arr.ndim != 1:
        raise RklBenchError(f"{source}: field {name!r} has shape {arr.shape}; expected (N,)")


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])


def _check_finite(source: str, name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = _first_bad_row(bad)
        raise RklBenchError(
            f"{source}: field {name!r} has NaN or inf values (first at row {row}: {arr[row].flat[np.argmax(bad[row])]})"
        )


def _check_flags(source: str, name: str, arr: np.ndarray) -> None:
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        row = _first_bad_row(bad)
        raise RklBenchError(f"{source}: field {name!r} must hold only 0/1 (first bad at row {row}: {arr[row]})")


def _check_action_range(source: str, actions: np.ndarray) -> None:
    bad = np.abs(actions) > 1.0 + ACTION_TOLERANCE
    if bad.any():
        row = _first_bad_row(bad)
        first = actions[row].flat[np.argmax(bad[row])]
        raise RklBenchError(
            f"{source}: field 'actions' has values outside [-1, 1] "
            f"(first at row {row}: {first:g}, largest |a| {np.abs(actions).max():g}); "
            "actions must be normalised to the env's bounds"
        )


@functools.lru_cache(maxsize=None)
def env_space_shapes(env_id: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Observation and action shapes of the gymnasium env ``env_id`` (made once per process)."""
    from rkl_bench.data.gym_make import make_env  # gymnasium only when an env is checked

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gymnasium's "v4 is out of date": D4RL data is scored on v4 on purpose
            env = make_env(env_id)
    except RklBenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - gymnasium and MuJoCo raise many kinds
        raise RklBenchError(f"cannot make the evaluation env {env_id} ({exc}); check the gymnasium/MuJoCo install") from None
    try:
        return tuple(env.observation_space.shape or ()), tuple(env.action_space.shape or ())
    finally:
        env.close()


def check_env_spaces(dataset: "OfflineDataset", env_id: str) -> None:
    """The dataset's observation and action widths are those of ``env_id``; one error line otherwise,
    naming the file(s), the field and both shapes."""
    obs_shape, act_shape = env_space_shapes(env_id)
    source = " + ".join(dict.fromkeys(p.source for p in dataset.provenance if p.source)) or dataset.name
    for name, arr, want in (
        ("observations", dataset.observations, obs_shape),
        ("next_observations", dataset.next_observations, obs_shape),
        ("actions", dataset.actions, act_shape),
    ):
        if tuple(arr.shape[1:]) != want:
            raise RklBenchError(
                f"{source}: field {name!r} has shape {tuple(arr.shape)}, but {env_id} has "
                f"{'observation' if name != 'actions' else 'action'} shape {want}, i.e. (N, {', '.join(map(str, want))}); "
                f"this data was not recorded in {env_id}"
            )
