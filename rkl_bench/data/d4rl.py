"""D4RL's hdf5 layout: read it with ``qlearning_dataset`` semantics, write it for the forge.

Layout (one row per environment step, all arrays of length N)::

    observations (N, obs_dim)   actions (N, act_dim)   rewards (N,)
    terminals (N,) bool         timeouts (N,) bool     [next_observations (N, obs_dim)]
    metadata/<key>              scalar or small array datasets

Reading follows ``d4rl.qlearning_dataset(env, dataset)`` with its defaults
(``terminate_on_end=False``; ``timeouts`` present, so ``use_timeouts=True``):

* transitions come from rows ``i = 0 .. N-2``; the next observation is
  ``observations[i + 1]``, and a stored ``next_observations`` key is ignored,
  as D4RL ignores it;
* a row flagged as a timeout is dropped (its successor row starts a new
  episode, so ``observations[i + 1]`` is not its next state), even if it is
  also a terminal;
* terminal rows are kept with ``terminal = 1``;
* the last row is dropped (it has no successor row).

D4RL v0 files without ``timeouts`` (where D4RL counts steps against the env's
time limit instead) are not supported: the field is required.

Episode returns of the behaviour data count every row's reward, episodes
ending at a terminal or a timeout. A final episode that ends with neither is
cut off by the end of the file and is left out, as D4RL's
``sequence_dataset`` leaves it out: its return would understate the policy.

Metadata: ``metadata/env`` (family), ``metadata/version`` (``forge-v5:<hash>``
for forge files) and ``metadata/name`` say what a written file is. Files
without them (D4RL's own downloads) are taken to be D4RL v2 data.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rkl_bench.data.dataset import OfflineDataset, Provenance
from rkl_bench.data.envs import D4RL_VERSION, UNKNOWN_ENV, guess_env_family
from rkl_bench.data.validate import FLAG_FIELDS, check_arrays, check_hdf5_file, require_fields
from rkl_bench.errors import RklBenchError

REQUIRED_FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts")
METADATA_GROUP = "metadata"
META_ENV = "env"
META_VERSION = "version"
META_NAME = "name"
REQUIRED_METADATA = (META_ENV, META_VERSION, META_NAME)


# --------------------------------------------------------------- semantics
def qlearning_rows(timeouts: np.ndarray) -> np.ndarray:
    """Indices of the rows ``qlearning_dataset`` turns into transitions:
    ``0 .. N-2`` without the timeout rows."""
    return np.flatnonzero(~np.asarray(timeouts[:-1], dtype=bool))


def episode_returns(rewards: np.ndarray, terminals: np.ndarray, timeouts: np.ndarray) -> np.ndarray:
    """Undiscounted return of every episode that ends at a terminal or timeout row
    (a trailing cut-off episode is left out, see the module doc); float32."""
    ends = np.flatnonzero(np.logical_or(terminals, timeouts))
    totals = np.cumsum(rewards, dtype=np.float64)[ends]
    return np.diff(totals, prepend=0.0).astype(np.float32)


# ------------------------------------------------------------------ reader
def read_d4rl_hdf5(
    path: str | Path,
    *,
    name: str | None = None,
    env: str | None = None,
    version: str | None = None,
) -> OfflineDataset:
    """Load a D4RL-layout file as an :class:`OfflineDataset`.

    ``name``, ``env`` and ``version`` override what the file's metadata says;
    without both, the name is the file stem, the env is guessed from the
    stem (``halfcheetah_medium-v2`` -> ``halfcheetah``, else ``unknown``) and
    the version is ``d4rl-v2``. Bad files raise one-line
    :class:`~rkl_bench.errors.RklBenchError` (see :mod:`.validate`).
    """
    path = Path(path).expanduser()
    source = str(path)
    check_hdf5_file(path)
    with _open(path) as f:
        require_fields(source, f.keys(), REQUIRED_FIELDS)
        raw = {key: _read_array(source, f, key) for key in REQUIRED_FIELDS}
        metadata = _read_metadata(f)
    check_arrays(source, raw)
    if len(raw["observations"]) < 2:
        raise RklBenchError(f"{source}: has only 1 row; a transition needs a row and its successor")

    rows = qlearning_rows(raw["timeouts"])
    if len(rows) == 0:
        raise RklBenchError(f"{source}: every row but the last is a timeout; no transitions left")
    name = name or str(metadata.get(META_NAME) or path.stem)
    env = env or str(metadata.get(META_ENV) or guess_env_family(path.stem) or UNKNOWN_ENV)
    version = version or str(metadata.get(META_VERSION) or D4RL_VERSION)
    return OfflineDataset(
        observations=raw["observations"][rows],
        actions=raw["actions"][rows],
        rewards=raw["rewards"][rows],
        next_observations=raw["observations"][rows + 1],
        terminals=raw["terminals"][rows],
        env=env,
        name=name,
        version=version,
        provenance=(Provenance(name, version, len(rows), source),),
        episode_returns=episode_returns(raw["rewards"], raw["terminals"], raw["timeouts"]),
        metadata=metadata,
    )


def read_d4rl_arrays(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A D4RL-layout file's arrays as stored (every row, ``next_observations`` when present, no
    transition selection) and its metadata: what the forge reuses to stitch a file from others."""
    path = Path(path).expanduser()
    source = str(path)
    check_hdf5_file(path)
    with _open(path) as f:
        require_fields(source, f.keys(), REQUIRED_FIELDS)
        keys = [*REQUIRED_FIELDS, *(["next_observations"] if "next_observations" in f else [])]
        raw = {key: _read_array(source, f, key) for key in keys}
        metadata = _read_metadata(f)
    check_arrays(source, raw)
    return raw, metadata


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata/...`` entries of a D4RL-layout file, keys relative to
    ``metadata/`` (``env``, ``version``, ``name`` for forge files); strings as
    ``str``, scalars as Python numbers, arrays as numpy arrays."""
    path = Path(path).expanduser()
    check_hdf5_file(path)
    with _open(path) as f:
        return _read_metadata(f)


def _open(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise RklBenchError(f"{path}: cannot read the HDF5 file ({exc}); it may be corrupt") from None


def _read_array(source: str, f: h5py.File, key: str) -> np.ndarray:
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise RklBenchError(f"{source}: field {key!r} is a group, expected an array")
    return np.asarray(node[()])


def _read_metadata(f: h5py.File) -> dict[str, Any]:
    group = f.get(METADATA_GROUP)
    if not isinstance(group, h5py.Group):
        return {}
    metadata: dict[str, Any] = {}

    def visit(key: str, node: h5py.HLObject) -> None:
        if isinstance(node, h5py.Dataset):
            metadata[key] = _python_value(node)

    group.visititems(visit)
    return metadata


def _python_value(node: h5py.Dataset) -> Any:
    if h5py.check_string_dtype(node.dtype) is not None:
        value = node.asstr()[()]
        return value if isinstance(value, str) else [str(v) for v in value]
    value = node[()]
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------ writer
def write_d4rl_hdf5(
    path: str | Path,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    timeouts: np.ndarray,
    metadata: Mapping[str, Any],
    next_observations: np.ndarray | None = None,
) -> Path:
    """Write D4RL's layout atomically and return the path.

    Arrays are stored as float32 (terminals and timeouts as bool) after the
    same checks the reader applies, so a file the forge writes always reads
    back. ``metadata`` must hold ``env``, ``version`` and ``name``; values are
    strings, numbers, bools or sequences of them, stored as ``metadata/<key>``
    datasets as D4RL does (a ``/`` in a key makes a sub-group). The file is
    written to a temporary name in the same directory and moved into place
    with ``os.replace``, so a crash never leaves a half-written dataset.
    """
    path = Path(path).expanduser()
    arrays = {
        "observations": np.asarray(observations),
        "actions": np.asarray(actions),
        "rewards": np.asarray(rewards),
        "terminals": np.asarray(terminals),
        "timeouts": np.asarray(timeouts),
    }
    if next_observations is not None:
        arrays["next_observations"] = np.asarray(next_observations)
    check_arrays(str(path), arrays)
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise RklBenchError(f"{path}: metadata needs {', '.join(REQUIRED_METADATA)}; missing {', '.join(missing)}")

    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name next to the target (same filesystem, so os.replace is atomic);
    # h5py creates it with the usual umask permissions, unlike tempfile.mkstemp's 0600
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp_path, "w") as f:
            for key, arr in arrays.items():
                dtype = bool if key in FLAG_FIELDS else np.float32
                f.create_dataset(key, data=arr.astype(dtype, copy=False))
            for key, value in metadata.items():
                f.create_dataset(f"{METADATA_GROUP}/{key}", data=_h5_value(path, key, value))
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def _h5_value(path: Path, key: str, value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise RklBenchError(f"{path}: metadata {key!r} must be a string, number, bool or a sequence of them")
    return arr
