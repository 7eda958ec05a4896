"""Dataset entries of a config -> dataset specs whose files exist (before Ray starts).

A config lists datasets either as short names ``<env>-<kind>``
(``hopper-random-expert``), which ``dataset_source`` turns into a spec, or as
full specs that :func:`rkl_bench.data.parse_dataset_name` accepts (a forge
name, a D4RL name, a path, ``minari:<id>``), used as they are.

* ``forge``: ``<forge prefix of the profile><env>-<kind>`` (``forge-v5/...``
  for the full profile, ``forge-v5-quick/...`` for the quick one);
* ``d4rl``: ``<env>-<kind>-v2``, whose files must be in the D4RL directory;
* ``auto``: the D4RL name when every file it needs is there, else the forge one.

Missing D4RL files and data files are errors here, so a run never starts Ray
only to fail in every trial. Missing forge files are made by the forge
(``make_datasets``), again before Ray starts.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rkl_bench.data.registry import (
    DatasetName,
    find_d4rl_file,
    forge_path,
    forge_prefix,
    parse_dataset_name,
)
from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import ExperimentConfig

_FULL_SPEC = re.compile(r"(^minari:)|(/)|(\.h5$)|(\.hdf5$)|(-v\d+$)")
"""Entries that are already specs rather than ``<env>-<kind>`` short names."""


def resolve_datasets(config: ExperimentConfig) -> tuple[str, ...]:
    """The spec of every dataset entry, in order; D4RL and plain files must exist.

    Raises :class:`RklBenchError` naming the config file and the entry.
    """
    specs = []
    for entry in config.datasets:
        try:
            specs.append(_resolve(entry, config))
        except RklBenchError as exc:
            raise RklBenchError(f"{config.path or config.name}: datasets: {exc}") from None
    return tuple(specs)


def _resolve(entry: str, config: ExperimentConfig) -> str:
    if _FULL_SPEC.search(entry):
        name = parse_dataset_name(entry)
    else:
        name = _short_name(entry, config)
    if name.source == "d4rl":
        for part in name.parts:
            find_d4rl_file(part, config.d4rl_dir)
    if name.source == "file" and not Path(name.location or "").is_file():
        raise RklBenchError(f"dataset file {name.location} not found; fix the path")
    return name.spec


def _short_name(entry: str, config: ExperimentConfig) -> DatasetName:
    d4rl = parse_dataset_name(f"{entry}-v2")
    forge = parse_dataset_name(f"{forge_prefix(config.forge.profile)}{entry}")
    if config.dataset_source == "d4rl":
        return d4rl
    if config.dataset_source == "forge":
        return forge
    return d4rl if _d4rl_files_present(d4rl, config.d4rl_dir) else forge


def _d4rl_files_present(name: DatasetName, d4rl_dir: str | None) -> bool:
    try:
        for part in name.parts:
            find_d4rl_file(part, d4rl_dir)
    except RklBenchError:
        return False
    return True


def missing_forge_specs(specs: tuple[str, ...]) -> list[str]:
    """The forge specs among ``specs`` with at least one file not made yet."""
    missing = []
    for spec in specs:
        name = parse_dataset_name(spec)
        if name.source != "forge":
            continue
        if any(not forge_path(name.env or "", kind, name.profile).is_file() for kind in name.kinds):
            missing.append(spec)
    return missing


def make_missing_forge_datasets(
    specs: tuple[str, ...], config: ExperimentConfig, refresh: bool = False, jobs: int | None = None
) -> list[str]:
    """Make the forge files ``specs`` need and lack, with the config's forge seed; returns the specs it saw to.

    Existing files are kept as they are unless ``refresh``: then a file made
    from other policies than the shipped ones (or another seed) is remade too.
    A new experiment refreshes, so it runs on the current behaviour policies;
    a resumed one does not, so its trials keep the data they started on (their
    checkpoints would refuse other data). Every result row names the version.
    """
    missing = [spec for spec in specs if parse_dataset_name(spec).source == "forge"] if refresh else missing_forge_specs(specs)
    if not missing:
        return []
    try:
        from rkl_bench.forge.make import make_datasets
    except ImportError as exc:
        raise RklBenchError(
            f"forge datasets {', '.join(missing)} are not made and the forge cannot run here ({exc}); "
            "make them with `rkl-bench datasets make` or use D4RL files (dataset_source: d4rl)"
        ) from None
    by_profile: dict[str, list[str]] = {}
    for spec in missing:
        by_profile.setdefault(parse_dataset_name(spec).profile or config.forge.profile, []).append(spec)
    for profile, names in by_profile.items():
        make_datasets(names, profile=profile, seed=config.forge.seed, jobs=jobs or os.cpu_count() or 1)
    return missing

