"""Which datasets a tuned column was tuned on: its cells there are in-sample, and Table II says so.

A grid may run a tuning study's best setting as a column (``td3_rkl@tuned:
{hyperparams_from: .../best_config.yaml}``). On the datasets the study tuned
on, that column's scores are optimistic: the setting was chosen on them. The
report takes ``--tuned-on LABEL=BEST_CONFIG`` (the column's label and the
study's ``best_config.yaml``, whose ``datasets`` are the tuning set), marks
the column's cells on the tuning set with :data:`IN_SAMPLE`, and adds an
average over the mixtures outside every tuning set: the held-out average.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import yaml

from rkl_bench.errors import RklBenchError

IN_SAMPLE = "‡"
"""Mark of a tuned column's cell on a dataset it was tuned on."""

TuningSets = Mapping[str, frozenset[str]]
"""Column label -> the dataset names (without a ``forge-v5/`` prefix) its setting was tuned on."""


def parse_tuned_on(items: Iterable[str]) -> dict[str, frozenset[str]]:
    """``LABEL=PATH`` items (``td3_rkl@tuned=reports/optuna_rkl_mixtures/best_config.yaml``) as tuning sets."""
    sets: dict[str, frozenset[str]] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label.strip() or not path.strip():
            raise RklBenchError(f"--tuned-on {item!r}: give LABEL=BEST_CONFIG, e.g. "
                                "td3_rkl@tuned=reports/optuna_rkl_mixtures/best_config.yaml")
        sets[label.strip()] = tuning_set(Path(path.strip()).expanduser(), f"--tuned-on {label.strip()}")
    return sets


def tuning_set(path: Path, what: str) -> frozenset[str]:
    """The ``datasets`` of a study's ``best_config.yaml`` (or any experiment spec)."""
    if not path.is_file():
        raise RklBenchError(f"{what}: {path} does not exist (the tuning study's best_config.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RklBenchError(f"{what}: {path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    datasets = data.get("datasets") if isinstance(data, Mapping) else None
    if not isinstance(datasets, list) or not datasets or not all(isinstance(d, str) for d in datasets):
        raise RklBenchError(f"{what}: {path} has no list of datasets (a best_config.yaml names the tuning set)")
    return frozenset(bare(d) for d in datasets)


def bare(name: str) -> str:
    """A dataset name without its source prefix: ``forge-v5/hopper-random-expert`` -> ``hopper-random-expert``."""
    return name.rsplit("/", 1)[-1]


def in_sample(sets: TuningSets, label: str, dataset_name: str) -> bool:
    return bare(dataset_name) in sets.get(label, frozenset())


def tuned_anywhere(sets: TuningSets, dataset_name: str) -> bool:
    return any(bare(dataset_name) in names for names in sets.values())
