"""Dataset specs -> files -> :class:`OfflineDataset`.

A spec is one of:

* a path to an ``.hdf5`` file in D4RL layout;
* a D4RL name ``<env>-<kind>-v2`` (``hopper-medium-replay-v2``), found in the
  D4RL directory as D4RL names its downloads (``hopper_medium_replay-v2.hdf5``)
  or as the name itself (``hopper-medium-replay-v2.hdf5``);
* ``minari:<id>``, a local Minari dataset;
* ``forge-v5/<env>-<kind>``, a file ``<forge_dir>/<env>-<kind>.hdf5`` made by
  ``rkl-bench datasets make``; smaller forge profiles are named
  ``forge-v5-<profile>/<env>-<kind>`` and live in ``<forge_dir>/<profile>/``,
  so data of different sizes never shares a file (``forge-v5/`` is the full
  profile);
* a mixed name, D4RL or forge style, whose kind is ``random-<kind>``
  (``walker2d-random-medium-expert-v2``, ``forge-v5/hopper-random-expert``):
  the random dataset followed by the ``<kind>`` dataset, concatenated.

Nothing is ever downloaded: a missing file is an error that says where it
was looked for and how to get it. :func:`parse_dataset_name` checks a spec
without touching the disk, so configs can be validated before any data loads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rkl_bench.data.d4rl import META_ENV, META_VERSION, read_d4rl_hdf5, read_metadata
from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.data.envs import (
    D4RL_VERSION,
    ENV_FAMILIES,
    FORGE_VERSION_PREFIX,
    MINARI_VERSION_PREFIX,
    env_family,
    guess_env_family,
    gym_env_id_for,
)
from rkl_bench.data.minari_io import read_minari
from rkl_bench.data.mixing import concat_datasets
from rkl_bench.errors import RklBenchError

KINDS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")
"""D4RL's single-policy dataset kinds (the forge uses the same words)."""
MIX_BASE = "random"
"""A mixed kind ``random-<kind>`` is this dataset plus ``<kind>``."""
FORGE_FULL_PROFILE = "full"
D4RL_DIR_DEFAULT = Path("~/.d4rl/datasets")
FORGE_DIR_DEFAULT = Path("~/.cache/rkl_bench/forge")
HDF5_SUFFIXES = (".hdf5", ".h5")

Source = Literal["file", "d4rl", "forge", "minari"]
_D4RL_NAME = re.compile(r"^(?P<env>[a-z0-9]+)-(?P<kind>[a-z-]+)-v(?P<version>\d+)$")
_FORGE_NAME = re.compile(rf"^{FORGE_VERSION_PREFIX}(?:-(?P<profile>[a-z0-9]+))?/(?P<rest>.*)$")


@dataclass(frozen=True)
class DatasetName:
    """What a spec refers to, known without reading any data.

    ``env`` is None when only the data can tell (files; Minari ids that do not
    name a family). ``kinds`` is ``()`` for files and Minari, one kind for a
    plain D4RL/forge dataset and ``("random", kind)`` for a mix. ``version`` is
    the data version expected (``d4rl-v2``, ``forge-v5``, ``minari:<id>``) or
    None for files. ``location`` is the file path or Minari id, if any.
    ``profile`` is the forge size profile (``full`` for ``forge-v5/``), None
    for other sources.
    """

    spec: str
    source: Source
    env: str | None
    kinds: tuple[str, ...] = ()
    version: str | None = None
    location: str | None = None
    profile: str | None = None

    @property
    def is_mixed(self) -> bool:
        return len(self.kinds) > 1

    @property
    def parts(self) -> tuple[str, ...]:
        """Specs of the single datasets a mixed name concatenates (itself otherwise)."""
        if not self.is_mixed:
            return (self.spec,)
        if self.source == "d4rl":
            return tuple(f"{self.env}-{kind}-v2" for kind in self.kinds)
        return tuple(f"{forge_prefix(self.profile)}{self.env}-{kind}" for kind in self.kinds)

    @property
    def gym_env_id(self) -> str | None:
        """The gymnasium env to evaluate on, when the name alone tells."""
        if self.env is None or self.version is None:
            return None
        return gym_env_id_for(self.env, self.version)


# ------------------------------------------------------------------ parsing
def parse_dataset_name(spec: str) -> DatasetName:
    """Check ``spec`` and say what it refers to (see the module doc); no I/O
    beyond asking whether a path is a file."""
    text = spec.strip()
    if text.startswith(MINARI_VERSION_PREFIX):
        dataset_id = text[len(MINARI_VERSION_PREFIX):]
        if not dataset_id:
            raise RklBenchError("minari: needs a dataset id, e.g. minari:mujoco/hopper/expert-v0")
        return DatasetName(text, "minari", guess_env_family(dataset_id), (), text, dataset_id)
    forge = _FORGE_NAME.match(text.lower())
    if forge is not None:
        profile = forge["profile"] or FORGE_FULL_PROFILE
        env, _, kind = forge["rest"].partition("-")
        _check_env(spec, env)
        kinds = _parse_kinds(spec, kind)
        canonical = f"{forge_prefix(profile)}{env}-{kind}"
        return DatasetName(canonical, "forge", env, kinds, FORGE_VERSION_PREFIX, profile=profile)
    if text.lower().endswith(HDF5_SUFFIXES) or "/" in text or os.sep in text or Path(text).is_file():
        return DatasetName(text, "file", None, location=str(Path(text).expanduser()))
    match = _D4RL_NAME.match(text.lower())
    if match is None:
        raise RklBenchError(
            f"unknown dataset {spec!r}; expected a path to an .hdf5 file, a D4RL name such as "
            "halfcheetah-medium-v2, minari:<id>, or forge-v5/<env>-<kind>"
        )
    env, kind, version = match["env"], match["kind"], match["version"]
    _check_env(spec, env)
    if version != "2":
        raise RklBenchError(f"dataset {spec!r}: only D4RL's -v2 MuJoCo datasets are supported (they have timeouts)")
    return DatasetName(text.lower(), "d4rl", env, _parse_kinds(spec, kind), D4RL_VERSION)


def _check_env(spec: str, env: str) -> None:
    if env not in ENV_FAMILIES:
        raise RklBenchError(f"dataset {spec!r}: unknown env {env!r}; known: {', '.join(ENV_FAMILIES)}")


def _parse_kinds(spec: str, kind: str) -> tuple[str, ...]:
    if kind in KINDS:
        return (kind,)
    base, _, other = kind.partition("-")
    if base == MIX_BASE and other in KINDS and other != MIX_BASE:
        return (MIX_BASE, other)
    raise RklBenchError(
        f"dataset {spec!r}: unknown kind {kind!r}; known: {', '.join(KINDS)}, "
        f"or a mix {MIX_BASE}-<kind> such as {MIX_BASE}-medium-replay"
    )


# --------------------------------------------------------------- locations
def d4rl_dataset_dir(override: str | Path | None = None) -> Path:
    """Where D4RL files lie: ``override`` (``--d4rl-dir``), else
    ``$D4RL_DATASET_DIR`` (D4RL's own variable), else ``~/.d4rl/datasets``."""
    chosen = override or os.environ.get("D4RL_DATASET_DIR") or D4RL_DIR_DEFAULT
    return Path(chosen).expanduser()


def d4rl_file_names(env: str, kind: str) -> tuple[str, str]:
    """File names tried for ``<env>-<kind>-v2``: D4RL's download name
    (underscores, as in ``d4rl/infos.py``) first, then the dataset name."""
    return f"{env}_{kind.replace('-', '_')}-v2.hdf5", f"{env}-{kind}-v2.hdf5"


def find_d4rl_file(spec: str, directory: str | Path | None = None) -> Path:
    """The local file holding the single D4RL dataset ``spec``, or an error
    naming the directory and the file names tried."""
    name = parse_dataset_name(spec)
    if name.source != "d4rl" or name.is_mixed:
        raise RklBenchError(f"{spec!r} is not a single D4RL dataset name such as hopper-medium-v2")
    folder = d4rl_dataset_dir(directory)
    candidates = d4rl_file_names(name.env or "", name.kinds[0])
    for file_name in candidates:
        if (folder / file_name).is_file():
            return folder / file_name
    raise RklBenchError(
        f"D4RL dataset {name.spec!r} not found in {folder} (tried {' and '.join(candidates)}); "
        "datasets are never downloaded: put the file there or pass --d4rl-dir / set D4RL_DATASET_DIR"
    )


def forge_dir() -> Path:
    """Where the forge keeps its datasets: ``$RKL_BENCH_FORGE_DIR`` or ``~/.cache/rkl_bench/forge``."""
    return Path(os.environ.get("RKL_BENCH_FORGE_DIR") or FORGE_DIR_DEFAULT).expanduser()


def forge_prefix(profile: str | None = FORGE_FULL_PROFILE) -> str:
    """Name prefix of a forge profile: ``forge-v5/`` (full) or ``forge-v5-<profile>/``."""
    if profile in (None, FORGE_FULL_PROFILE):
        return f"{FORGE_VERSION_PREFIX}/"
    return f"{FORGE_VERSION_PREFIX}-{profile}/"


def forge_path(env: str, kind: str, profile: str = FORGE_FULL_PROFILE) -> Path:
    """The file of forge dataset ``<forge_prefix(profile)><env>-<kind>``:
    ``<forge_dir>/<env>-<kind>.hdf5`` for the full profile,
    ``<forge_dir>/<profile>/<env>-<kind>.hdf5`` for the others."""
    folder = forge_dir() if profile == FORGE_FULL_PROFILE else forge_dir() / profile
    return folder / f"{env_family(env)}-{kind}.hdf5"


# ------------------------------------------------------------------ loading
def load_dataset(spec: str, d4rl_dir: str | Path | None = None) -> OfflineDataset:
    """Load the dataset ``spec`` names (see the module doc); never downloads."""
    name = parse_dataset_name(spec)
    if name.source == "file":
        return read_d4rl_hdf5(name.location or spec)
    if name.source == "minari":
        return read_minari(name.location or "")
    if name.is_mixed:
        return concat_datasets(name.spec, [load_dataset(part, d4rl_dir) for part in name.parts])
    if name.source == "d4rl":
        path = find_d4rl_file(name.spec, d4rl_dir)
        return read_d4rl_hdf5(path, name=name.spec, env=name.env, version=D4RL_VERSION)
    return _load_forge(name)


def _load_forge(name: DatasetName) -> OfflineDataset:
    profile = name.profile or FORGE_FULL_PROFILE
    path = forge_path(name.env or "", name.kinds[0], profile)
    if not path.is_file():
        raise RklBenchError(
            f"forge dataset {name.spec!r} not made yet ({path} missing); "
            f"run `rkl-bench datasets make {name.spec} --profile {profile}`"
        )
    metadata = read_metadata(path)
    version, env = str(metadata.get(META_VERSION, "")), metadata.get(META_ENV)
    if not version.startswith(FORGE_VERSION_PREFIX) or env != name.env:
        raise RklBenchError(
            f"{path}: not a {FORGE_VERSION_PREFIX} {name.env} dataset (metadata says version {version or 'none'}, "
            f"env {env or 'none'}); remake it with `rkl-bench datasets make {name.spec} --profile {profile} --force`"
        )
    return read_d4rl_hdf5(path, name=name.spec)
