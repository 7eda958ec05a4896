"""Local Minari datasets as :class:`OfflineDataset`.

Minari stores whole episodes: ``observations`` has one more row than
``actions`` (the state after the last step). Each episode of T steps becomes
T transitions with ``next_observations = observations[1:]``. Minari's
``terminations`` become ``terminals``; ``truncations`` (time limits) do not,
so learners keep bootstrapping through them, as with D4RL's timeouts.

A dataset the forge exported (``rkl-bench datasets export NAME --minari``;
its metadata holds the forge's provenance under ``rkl_forge``) is read with
the forge's own semantics instead, so that ``minari:<id>`` trains on exactly
the transitions of the forge name it came from: D4RL's ``qlearning_dataset``
drops a timeout row and the last row of every component, so here the last
step of every truncated episode and of each component's last episode is
dropped; and it takes a terminal row's next observation from the next row
(the next episode's first state; never bootstrapped from, as the row is
terminal), so here too, where Minari (and d3rlpy) keep the true final state.
The arrays are then equal to the forge file's read by the D4RL reader (tested),
so the version and provenance (one part per mixed component, sizes counted
the same way) are the forge's; only the source says ``minari:<id>``.

Only local data is read (``minari.load_dataset(id, download=False)`` under
``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``). ``minari`` (and
with it gymnasium) is imported inside the reader so that importing the data
layer stays light.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from rkl_bench.data.dataset import OfflineDataset, Provenance
from rkl_bench.data.envs import MINARI_VERSION_PREFIX, UNKNOWN_ENV, env_family, guess_env_family
from rkl_bench.data.validate import check_arrays
from rkl_bench.errors import RklBenchError

FORGE_METADATA_KEY = "rkl_forge"
"""Key of the forge's provenance in an exported dataset's Minari metadata."""


def minari_root() -> Path:
    """Where Minari keeps local datasets (Minari's own rule)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def read_minari(dataset_id: str) -> OfflineDataset:
    """Load the local Minari dataset ``dataset_id`` (e.g. ``mujoco/hopper/expert-v0``).

    The env family comes from the dataset's env spec (``Hopper-v5`` ->
    ``hopper``) or its id; other envs keep their lower-cased gymnasium name
    (``Pendulum-v1`` -> ``pendulum``). The recorded env id is kept in
    ``metadata["gym_env_id"]`` for evaluation. Name and version are
    ``minari:<id>``, except for a forge export, whose version, env and
    provenance are the forge's (see the module doc).
    """
    try:
        import minari
    except ImportError:
        raise RklBenchError(
            "reading minari:<id> datasets needs the minari package; install it with `pip install minari`"
        ) from None
    source = f"{MINARI_VERSION_PREFIX}{dataset_id}"
    try:
        data = minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        raise RklBenchError(
            f"{source}: not found under {minari_root()} (MINARI_DATASETS_PATH); "
            f"datasets are never downloaded here, fetch it first with `minari download {dataset_id}`"
        ) from None
    except (ValueError, OSError) as exc:
        raise RklBenchError(f"{source}: cannot read the local dataset ({exc})") from None

    forge = data.storage.metadata.get(FORGE_METADATA_KEY)
    components = _forge_components(source, forge, data.total_episodes) if forge is not None else None
    last_episodes = {first + count - 1 for _, _, first, count in components or ()}
    kept = np.zeros(len(components or ()), np.int64)

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals")}
    returns = []
    ended_in_terminal: np.ndarray | None = None  # next observations whose last row D4RL takes from the next row
    for episode in data.iterate_episodes():
        if not isinstance(episode.observations, np.ndarray) or not isinstance(episode.actions, np.ndarray):
            raise RklBenchError(f"{source}: observations and actions must be flat arrays (Box spaces), not dicts or tuples")
        obs = episode.observations.reshape(len(episode.observations), -1)
        rows: slice | np.ndarray = slice(None)
        if components is not None:  # the forge's qlearning_dataset semantics, see the module doc
            if ended_in_terminal is not None:
                ended_in_terminal[-1] = obs[0]
            rows = ~np.asarray(episode.truncations, dtype=bool)
            if episode.id in last_episodes:
                rows[-1] = False
            kept[_component_of(components, episode.id)] += int(rows.sum())
        parts["observations"].append(obs[:-1][rows])
        parts["next_observations"].append(obs[1:][rows])
        if components is not None:
            ended_in_terminal = parts["next_observations"][-1] if len(episode.rewards) and rows[-1] else None
        parts["actions"].append(episode.actions.reshape(len(episode.actions), -1)[rows])
        parts["rewards"].append(episode.rewards[rows])
        parts["terminals"].append(episode.terminations[rows])
        returns.append(float(np.sum(episode.rewards, dtype=np.float64)))
    if not returns:
        raise RklBenchError(f"{source}: the dataset has no episodes")
    arrays = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    check_arrays(source, arrays)

    env_id = data.env_spec.id if data.env_spec is not None else None
    if components is not None:
        return OfflineDataset(
            **arrays,
            env=env_family(str(forge.get("env", ""))),
            name=source,
            version=str(forge.get("version", source)),
            provenance=tuple(
                Provenance(name, version, int(size), source) for (name, version, _, _), size in zip(components, kept)
            ),
            episode_returns=np.asarray(returns, np.float32),
            metadata={"forge_name": str(forge.get("name", "")), **({"gym_env_id": env_id} if env_id else {})},
        )
    env = guess_env_family(env_id or "") or guess_env_family(dataset_id)
    if env is None:
        env = re.sub(r"-v\d+$", "", env_id).rsplit("/", 1)[-1].lower() if env_id else UNKNOWN_ENV
    return OfflineDataset(
        **arrays,
        env=env,
        name=source,
        version=source,
        provenance=(Provenance(source, source, len(arrays["rewards"]), source),),
        episode_returns=np.asarray(returns, np.float32),
        metadata={"gym_env_id": env_id} if env_id else {},
    )


def _forge_components(source: str, forge: Any, total_episodes: int) -> list[tuple[str, str, int, int]]:
    """``(name, version, first_episode, episodes)`` of every component a forge
    export records, checked to tile the dataset's episodes in order."""
    try:
        components = [
            (str(c["name"]), str(c["version"]), int(c["first_episode"]), int(c["episodes"]))
            for c in forge["components"]
        ]
    except (KeyError, TypeError, ValueError):
        raise RklBenchError(
            f"{source}: its {FORGE_METADATA_KEY!r} metadata is malformed (components need name, version, "
            "first_episode, episodes); export it again with `rkl-bench datasets export NAME --minari --force`"
        ) from None
    starts = [first for _, _, first, _ in components]
    ends = [first + count for _, _, first, count in components]
    if not components or starts != [0, *ends[:-1]] or ends[-1] != total_episodes or min(c[3] for c in components) < 1:
        raise RklBenchError(
            f"{source}: its {FORGE_METADATA_KEY!r} components do not cover its {total_episodes} episodes in order; "
            "export it again with `rkl-bench datasets export NAME --minari --force`"
        )
    return components


def _component_of(components: list[tuple[str, str, int, int]], episode: int) -> int:
    return next(i for i, (_, _, first, count) in enumerate(components) if first <= episode < first + count)
