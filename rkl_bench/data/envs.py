"""Environment families and the gymnasium env that matches a dataset's data.

A dataset knows its env *family* (``halfcheetah``, ``hopper``, ``walker2d``);
which concrete gymnasium id an evaluation should build depends on where the
data came from:

* D4RL ``-v2`` data (version ``d4rl-v2``) -> ``HalfCheetah-v4``, ``Hopper-v4``,
  ``Walker2d-v4``. D4RL's v2 datasets were recorded on gym's v3 MuJoCo envs;
  gymnasium's v4 envs load the same MJCF model files with the same
  observation layout, reward terms, termination rule and 1000-step limit,
  only through the ``mujoco`` bindings instead of ``mujoco-py``. The v5 envs
  changed the models (e.g. Walker2d-v5 gives both feet the same friction),
  so D4RL policies are scored on v4.
* forge data (version ``forge-v5:<hash>``) was generated on ``*-v5`` envs.
* Minari data records its own env: the id from the dataset's env spec is kept
  in ``metadata["gym_env_id"]`` by the Minari reader.
* toys and unknown data -> ``None`` (nothing to roll out).

No gymnasium import here: these are names only.
"""

from __future__ import annotations

import re

from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.errors import RklBenchError

GYM_NAMES = {"halfcheetah": "HalfCheetah", "hopper": "Hopper", "walker2d": "Walker2d"}
"""Env family -> the gymnasium class name (without version)."""

ENV_FAMILIES = tuple(GYM_NAMES)

D4RL_VERSION = "d4rl-v2"
FORGE_VERSION_PREFIX = "forge-v5"
MINARI_VERSION_PREFIX = "minari:"
UNKNOWN_ENV = "unknown"
"""Env of data that neither says nor is named after its env."""

_VERSION_SUFFIX = re.compile(r"-v\d+$")


def env_family(name: str) -> str:
    """The family of an env or dataset name: ``HalfCheetah-v5``, ``halfcheetah``
    and ``halfcheetah-medium-v2`` all give ``halfcheetah``.

    Raises :class:`RklBenchError` listing the known families otherwise, so a
    typo in a config fails with the choices in view.
    """
    stem = _VERSION_SUFFIX.sub("", name.strip().lower())
    for family in ENV_FAMILIES:
        if stem == family or stem.startswith(family + "-"):
            return family
    raise RklBenchError(
        f"unknown environment {name!r}; known: {', '.join(ENV_FAMILIES)} "
        "(or their gymnasium ids such as HalfCheetah-v4)"
    )


def guess_env_family(text: str) -> str | None:
    """The family named somewhere in ``text`` (a file stem, a Minari id or env
    id such as ``halfcheetah_medium-v2`` or ``mujoco/hopper/expert-v0``), or None."""
    tokens = re.split(r"[^a-z0-9]+", text.lower())
    return next((family for family in ENV_FAMILIES if family in tokens), None)


def gym_env_id_for(env: str, version: str) -> str | None:
    """The gymnasium id for data of family ``env`` and version ``version``
    (a mixed dataset's version may be several joined by ``+``)."""
    if env not in GYM_NAMES:
        return None
    versions = set(version.split("+"))
    if versions == {D4RL_VERSION}:
        return f"{GYM_NAMES[env]}-v4"
    if all(v.startswith(FORGE_VERSION_PREFIX) for v in versions):
        return f"{GYM_NAMES[env]}-v5"
    return None


def gym_env_id(dataset: OfflineDataset) -> str | None:
    """The gymnasium id to evaluate policies trained on ``dataset`` (see module doc)."""
    if dataset.version.startswith(MINARI_VERSION_PREFIX):
        recorded = dataset.metadata.get("gym_env_id")
        return str(recorded) if recorded else None
    return gym_env_id_for(dataset.env, dataset.version)
