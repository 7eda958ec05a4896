"""Forge datasets as local Minari datasets: ``rkl-bench datasets export NAME --minari``.

Minari is D4RL's maintained successor (d3rlpy's ``get_minari`` reads it, and
Minari's own MuJoCo v5 datasets hold no mixtures), so an export makes the
forge's kinds and the paper's mixtures usable outside this project. One
export is one Minari dataset:

* episodes exactly as the forge file holds them: the rows of an episode (it
  ends at a terminal or a timeout row) with its final observation appended
  (the file's ``next_observations`` of its last row), actions, rewards,
  ``terminations`` = the file's terminals, ``truncations`` = its timeouts
  (a component cut mid-episode ends in a truncation, as D4RL flags it);
* the gymnasium env spec of the v5 env the data was made on (also the eval env);
* D4RL's ``ref_min_score`` / ``ref_max_score`` of the env family, so
  ``minari.get_normalized_score`` times 100 is our ``normalized_score``;
* the forge's provenance under ``metadata["rkl_forge"]``: name, env, profile,
  version, and per component its name, kind, version, seed, rows,
  ``qlearning_dataset`` transitions, episode range and behaviour policies
  (role, SAC snapshot step, weights sha256);
* a per-episode source label in each episode's Minari metadata
  (``source`` = the component's forge name, ``component`` = its index), read
  with ``dataset.storage.get_episode_metadata(dataset.episode_indices)``;
* an author and description that say it is forge v5 data, not Farama's.

A mixture (``random-<kind>``) is one dataset: the random file's episodes, then
the ``<kind>`` file's. Our reader (``minari:<id>``) gives back exactly the
transitions, version and provenance of the forge name (see
:mod:`rkl_bench.data.minari_io`).

The default id keeps exports apart from Farama's: ``rkl-forge/<env>/<kind>-v0``
for the full profile, ``rkl-forge-<profile>/<env>/<kind>-v0`` for the others.
A file is exported only if it is current (made from the shipped policies and
this gymnasium/mujoco, as ``datasets make`` would make it now), so the
recorded policies are the ones the data came from.

Nothing half-written: every check runs before anything is written; the dataset
is built in a hidden folder inside the target root and moved into place with
one rename (``--force`` renames the old one aside first, then deletes it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import h5py
import mujoco
import numpy as np
from tqdm import tqdm

import rkl_bench
from rkl_bench.data.d4rl import read_metadata
from rkl_bench.data.envs import FORGE_VERSION_PREFIX, gym_env_id_for
from rkl_bench.data.minari_io import FORGE_METADATA_KEY, minari_root
from rkl_bench.data.registry import FORGE_FULL_PROFILE, DatasetName, forge_path, load_dataset, parse_dataset_name
from rkl_bench.data.scores import REF_MAX_SCORE, REF_MIN_SCORE
from rkl_bench.data.validate import check_arrays
from rkl_bench.errors import RklBenchError
from rkl_bench.forge.make import FORMAT_VERSION, SNAPSHOT_ROLES, current_version, policy_digests
from rkl_bench.forge.make import profile as forge_profile
from rkl_bench.forge.policies import read_card

EXPORT_FORMAT = 1
"""Bump when the layout of an export (episodes, metadata keys) changes."""
ID_NAMESPACE = "rkl-forge"
AUTHOR = "rkl_bench forge"
EPISODE_SOURCE_KEY = "source"
EPISODE_COMPONENT_KEY = "component"
CHUNK_EPISODES = 500
"""Episodes written per Minari call (the progress bar's step)."""
_STAGING_PREFIX = ".rkl-export-"
_FILE_FIELDS = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")


@dataclass(frozen=True)
class MinariExport:
    """What an export wrote."""

    dataset_id: str
    root: Path
    """The Minari datasets folder it was written under (``MINARI_DATASETS_PATH`` or ``--out``)."""
    path: Path
    """``<root>/<dataset_id>``."""
    episodes: int
    steps: int
    transitions: int
    """Transitions our readers give (``qlearning_dataset`` semantics)."""
    replaced: bool


@dataclass
class _Component:
    name: DatasetName
    kind: str
    path: Path
    metadata: dict[str, Any]
    rows: dict[str, np.ndarray]
    ends: np.ndarray
    """Last row of every episode."""
    transitions: int


def default_dataset_id(spec: str) -> str:
    """The Minari id an export of forge name ``spec`` gets without ``--dataset-id``:
    ``rkl-forge/hopper/random-expert-v0`` (full profile), ``rkl-forge-tiny/hopper/random-expert-v0``."""
    name = _forge_name(spec)
    namespace = ID_NAMESPACE if name.profile in (None, FORGE_FULL_PROFILE) else f"{ID_NAMESPACE}-{name.profile}"
    return f"{namespace}/{name.env}/{'-'.join(name.kinds)}-v0"


def export_minari(
    spec: str,
    dataset_id: str | None = None,
    out: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> MinariExport:
    """Write the forge dataset ``spec`` (mixtures included) as a local Minari dataset.

    ``dataset_id`` defaults to :func:`default_dataset_id`; the dataset goes to
    ``<out>/<dataset_id>`` (default: Minari's own root, ``$MINARI_DATASETS_PATH``
    or ``~/.minari/datasets``). An existing dataset of that id is an error
    unless ``force``. The forge files must be made already (``datasets make``).
    Raises :class:`RklBenchError` with one line for every bad input, before
    anything is written.
    """
    name = _forge_name(spec)
    dataset_id = dataset_id or default_dataset_id(spec)
    namespace = _check_dataset_id(dataset_id)
    root = Path(out).expanduser() if out is not None else minari_root()
    target = root / dataset_id
    if target.exists() or target.is_symlink():
        if not force:
            raise RklBenchError(f"Minari dataset {dataset_id} already exists in {root}; pass --force to replace it")
        if not (target / "data" / "metadata.json").is_file():
            raise RklBenchError(f"{target} exists and is not a Minari dataset; not replacing it, choose another --dataset-id")

    components = [_read_component(part) for part in name.parts]
    env = name.env or ""
    provenance = _provenance(name, components)
    buffers = _episode_buffers(components)

    created = _make_root(root)
    try:
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))
    except OSError as exc:
        _remove_empty(created)
        raise RklBenchError(f"cannot write Minari datasets to {root} ({exc.strerror or exc}); "
                            "choose another --out or MINARI_DATASETS_PATH") from None
    try:
        _write(staging, dataset_id, namespace, env, name, provenance, buffers, progress)
        replaced = _publish(staging, root, dataset_id, namespace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return MinariExport(
        dataset_id=dataset_id,
        root=root,
        path=target,
        episodes=len(buffers),
        steps=sum(len(b.rewards) for b in buffers),
        transitions=sum(c.transitions for c in components),
        replaced=replaced,
    )


# ------------------------------------------------------------------ checks
def _forge_name(spec: str) -> DatasetName:
    name = parse_dataset_name(spec)
    if name.source != "forge":
        raise RklBenchError(
            f"{spec!r} is not a forge dataset name; export takes forge names such as "
            "forge-v5/hopper-random-expert (see `rkl-bench datasets list`)"
        )
    forge_profile(name.profile or FORGE_FULL_PROFILE)  # an unknown profile is named as such, not as a missing file
    return name


def _check_dataset_id(dataset_id: str) -> str | None:
    """The id's namespace, after checking the id is one Minari accepts (``namespace/name-vN``)."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        namespace, _, _ = parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise RklBenchError(
            f"--dataset-id {dataset_id!r} is not a Minari dataset id; expected namespace/name-vN, "
            "e.g. rkl-forge/hopper/random-expert-v0"
        ) from None
    return namespace


def _read_component(spec: str) -> _Component:
    """One forge file, checked: made, current (so its policies can be named) and whole episodes."""
    name = parse_dataset_name(spec)
    kind = name.kinds[0]
    transitions = len(load_dataset(name.spec))  # the registry's checks: made, forge-v5, right env
    path = forge_path(name.env or "", kind, name.profile or FORGE_FULL_PROFILE)
    metadata = read_metadata(path)
    seed = int(metadata.get("seed", 0))
    version = str(metadata.get("version", ""))
    now = current_version(name.env or "", kind, name.profile or FORGE_FULL_PROFILE, seed)
    if version != now:
        raise RklBenchError(
            f"{path}: made from other policies or settings ({version}) than the current ones ({now}); "
            f"remake it with `rkl-bench datasets make {name.spec} --seed {seed} --force` before exporting, "
            "so that its provenance can be stated"
        )
    with h5py.File(path, "r") as f:
        missing = [key for key in _FILE_FIELDS if key not in f]
        if missing:
            raise RklBenchError(f"{path}: lacks {', '.join(missing)}; remake it with `rkl-bench datasets make {name.spec} --force`")
        rows = {key: np.asarray(f[key][()]) for key in _FILE_FIELDS}
    check_arrays(str(path), rows)
    ends = np.flatnonzero(rows["terminals"] | rows["timeouts"])
    inside = ~(rows["terminals"] | rows["timeouts"])[:-1]
    if len(ends) == 0 or ends[-1] != len(rows["rewards"]) - 1 or not np.array_equal(
        rows["next_observations"][:-1][inside], rows["observations"][1:][inside]
    ):
        raise RklBenchError(
            f"{path}: its rows do not form whole episodes (each row's next observation the next row's, "
            f"the last row a terminal or timeout); remake it with `rkl-bench datasets make {name.spec} --force`"
        )
    return _Component(name, kind, path, metadata, rows, ends, transitions)


# ------------------------------------------------------------- provenance
def _policies(env: str, kind: str) -> list[dict[str, Any]]:
    """Role, SAC snapshot step and weights sha256 of every policy a file kind is rolled out from."""
    if kind == "random":
        return []
    card = read_card(env)
    if kind == "medium-replay":
        ladder = [int(step) for step in card["ladder"]]
        roles = [(f"ladder {i + 1}/{len(ladder)}", step) for i, step in enumerate(ladder)]
    else:
        roles = [(role, int(card[role]["step"])) for role in SNAPSHOT_ROLES[kind]]
    return [{"role": role, "step": step, "digest": digest}
            for (role, step), digest in zip(roles, policy_digests(env, kind))]


def _provenance(name: DatasetName, components: list[_Component]) -> dict[str, Any]:
    """The ``rkl_forge`` metadata entry (plain JSON types only)."""
    env = name.env or ""
    parts, first = [], 0
    for component in components:
        meta = component.metadata
        parts.append({
            "name": component.name.spec,
            "kind": component.kind,
            "version": str(meta["version"]),
            "seed": int(meta.get("seed", 0)),
            "rows": int(len(component.rows["rewards"])),
            "transitions": int(component.transitions),
            "first_episode": first,
            "episodes": int(len(component.ends)),
            "behaviour": ("uniform random actions in [-1, 1]" if component.kind == "random"
                          else "SAC snapshots shipped in rkl_bench/forge/policies, actions sampled"),
            "policies": _policies(env, component.kind),
        })
        first += len(component.ends)
    versions = list(dict.fromkeys(part["version"] for part in parts))
    return {
        "export_format": EXPORT_FORMAT,
        "name": name.spec,
        "env": env,
        "gym_env_id": gym_env_id_for(env, FORGE_VERSION_PREFIX),
        "profile": name.profile or FORGE_FULL_PROFILE,
        "version": "+".join(versions),
        "forge_format": FORMAT_VERSION,
        "rkl_bench": rkl_bench.__version__,
        "gymnasium": gymnasium.__version__,
        "mujoco": mujoco.__version__,
        "components": parts,
    }


def _description(name: DatasetName, provenance: dict[str, Any]) -> str:
    parts = provenance["components"]
    what = " + ".join(f"{p['kind']} ({p['episodes']} episodes, {p['rows']:,} rows)" for p in parts)
    mixed = "A mixture: the components' episodes in this order, each labelled in its episode metadata ('source'). " \
        if len(parts) > 1 else ""
    return (
        f"Forge v5 data made by rkl_bench, not Farama's or D4RL's: {name.spec} = {what} on "
        f"{provenance['gym_env_id']} (gymnasium MuJoCo v5), profile {provenance['profile']}, "
        f"version {provenance['version']}. {mixed}Episodes, terminations and truncations as the forge made them. "
        f"Reference scores are D4RL's {name.env} ones (normalised scores on D4RL's scale). "
        f"Provenance (policies, snapshot steps, seeds, sizes) in metadata['{FORGE_METADATA_KEY}']."
    )


# ----------------------------------------------------------------- writing
def _episode_buffers(components: list[_Component]) -> list[Any]:
    """One Minari ``EpisodeBuffer`` per forge episode, components in order."""
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for component in components:
        rows = component.rows
        start = 0
        for end in component.ends:
            stop = int(end) + 1
            buffers.append(EpisodeBuffer(
                observations=np.concatenate([rows["observations"][start:stop], rows["next_observations"][end : end + 1]]),
                actions=rows["actions"][start:stop],
                rewards=rows["rewards"][start:stop],
                terminations=rows["terminals"][start:stop],
                truncations=rows["timeouts"][start:stop],
            ))
            start = stop
    return buffers


@contextlib.contextmanager
def _minari_datasets_path(path: Path) -> Iterator[None]:
    """Point Minari's root (read at each call) at ``path`` for the duration."""
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _write(staging: Path, dataset_id: str, namespace: str | None, env: str, name: DatasetName,
           provenance: dict[str, Any], buffers: list[Any], progress: bool) -> None:
    """Create the whole dataset (and its namespaces) under the staging root with Minari's own writer."""
    import minari
    from minari.namespace import create_namespace, namespace_hierarchy

    spec = gymnasium.spec(str(provenance["gym_env_id"]))
    labels = [
        {EPISODE_SOURCE_KEY: part["name"], EPISODE_COMPONENT_KEY: i}
        for i, part in enumerate(provenance["components"]) for _ in range(part["episodes"])
    ]
    chunks = [buffers[i : i + CHUNK_EPISODES] for i in range(0, len(buffers), CHUNK_EPISODES)]
    with _minari_datasets_path(staging), warnings.catch_warnings():
        # Minari warns about every optional field left empty (code permalink, email)
        warnings.simplefilter("ignore", UserWarning)
        for level in namespace_hierarchy(namespace):
            create_namespace(level, description="Datasets exported by rkl_bench's forge: gymnasium MuJoCo v5 "
                                                "data, not Farama's (rkl-bench datasets export)")
        bar = tqdm(total=len(buffers), desc=f"export {name.spec}", unit="episode", disable=not progress,
                   dynamic_ncols=True, mininterval=2.0)
        dataset = minari.create_dataset_from_buffers(
            dataset_id,
            chunks[0],
            env=spec,
            eval_env=spec,
            algorithm_name=" + ".join(dict.fromkeys(
                "uniform random actions" if part["kind"] == "random" else "SAC behaviour policies"
                for part in provenance["components"]
            )),
            author=AUTHOR,
            ref_min_score=REF_MIN_SCORE[env],
            ref_max_score=REF_MAX_SCORE[env],
            description=_description(name, provenance),
            requirements=["gymnasium[mujoco]>=1.0"],
        )
        bar.update(len(chunks[0]))
        for chunk in chunks[1:]:
            dataset.update_dataset_from_buffer(chunk)
            bar.update(len(chunk))
        bar.close()
        dataset.storage.update_episode_metadata(labels)
        dataset.storage.update_metadata({FORGE_METADATA_KEY: provenance})


def _publish(staging: Path, root: Path, dataset_id: str, namespace: str | None) -> bool:
    """Move the staged dataset into ``root`` with one rename; True if it replaced one.

    The first namespace level missing from ``root`` moves whole (it holds the
    dataset and the namespace files below it); levels that exist only get
    their namespace file if they lack it.
    """
    from minari.namespace import NAMESPACE_METADATA_FILENAME, namespace_hierarchy

    for level in namespace_hierarchy(namespace):
        if not (root / level).exists():
            os.rename(staging / level, root / level)
            return False
        if not (root / level / NAMESPACE_METADATA_FILENAME).exists():
            shutil.copyfile(staging / level / NAMESPACE_METADATA_FILENAME, root / level / NAMESPACE_METADATA_FILENAME)
    target = root / dataset_id
    if not (target.exists() or target.is_symlink()):
        os.rename(staging / dataset_id, target)
        return False
    old = root / f"{_STAGING_PREFIX}replaced-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(staging / dataset_id, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return True


def _make_root(root: Path) -> list[Path]:
    """Create ``root`` and its missing parents; the folders created, deepest first.
    A root that cannot be written is one error line, with nothing left behind."""
    missing = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise RklBenchError(f"cannot write Minari datasets to {root} ({exc.strerror or exc}); "
                            "choose another --out or MINARI_DATASETS_PATH") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        with contextlib.suppress(OSError):
            folder.rmdir()
