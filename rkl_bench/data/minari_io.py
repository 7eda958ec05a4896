"""Local Minari datasets as :class:`OfflineDataset`.

Minari stores whole episodes: ``observations`` has one more row than
``actions`` (the state after the last step). Each episode of T steps becomes
T transitions with ``next_observations = observations[1:]``. Minari's
``terminations`` become ``terminals``; ``truncations`` (time limits) do not,
so learners keep bootstrapping through them, as with D4RL's timeouts.

Only local data is read (``minari.load_dataset(id, download=False)`` under
``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``). ``minari`` (and
with it gymnasium) is imported inside the reader so that importing the data
layer stays light.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from rkl_bench.data.dataset import OfflineDataset, Provenance
from rkl_bench.data.envs import MINARI_VERSION_PREFIX, UNKNOWN_ENV, guess_env_family
from rkl_bench.data.validate import check_arrays
from rkl_bench.errors import RklBenchError


def minari_root() -> Path:
    """Where Minari keeps local datasets (Minari's own rule)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")


def read_minari(dataset_id: str) -> OfflineDataset:
    """Load the local Minari dataset ``dataset_id`` (e.g. ``mujoco/hopper/expert-v0``).

    The env family comes from the dataset's env spec (``Hopper-v5`` ->
    ``hopper``) or its id; other envs keep their lower-cased gymnasium name
    (``Pendulum-v1`` -> ``pendulum``). The recorded env id is kept in
    ``metadata["gym_env_id"]`` for evaluation. Name and version are
    ``minari:<id>``.
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

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals")}
    returns = []
    for episode in data.iterate_episodes():
        if not isinstance(episode.observations, np.ndarray) or not isinstance(episode.actions, np.ndarray):
            raise RklBenchError(f"{source}: observations and actions must be flat arrays (Box spaces), not dicts or tuples")
        obs = episode.observations.reshape(len(episode.observations), -1)
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(episode.actions.reshape(len(episode.actions), -1))
        parts["rewards"].append(episode.rewards)
        parts["terminals"].append(episode.terminations)
        returns.append(float(np.sum(episode.rewards, dtype=np.float64)))
    if not returns:
        raise RklBenchError(f"{source}: the dataset has no episodes")
    arrays = {key: np.concatenate(chunks) for key, chunks in parts.items()}
    check_arrays(source, arrays)

    env_id = data.env_spec.id if data.env_spec is not None else None
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
