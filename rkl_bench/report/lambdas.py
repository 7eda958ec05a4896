"""The input of Fig. 4: per-state BC weights lambda(s) a TD3+RKL run saved.

File contract (the report only reads it; ``rkl_bench.training.lambdas`` writes
it once the behaviour model is fitted)::

    <run dir>/lambdas.npz     # beside metrics.jsonl or Tune's result.json

One 1-D float array per dataset component, keyed by the component's name
(``random`` and ``expert`` for ``halfcheetah-random-expert-v2``; a plain
dataset has one array): ``lambda(s)`` in [0, 1] for the states of that
component, as TD3+RKL's ``dataset_lambdas`` (split by provenance) or
``lambdas(states)`` gives them. The paper's Fig. 4 is this for
HalfCheetah random + expert, with one model fitted on both.

A run directory without the file is fine (the page says Fig. 4 is absent); a
file that is there but unreadable is an error, like any other bad input.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from rkl_bench.errors import RklBenchError
from rkl_bench.report.datasets import DatasetKey
from rkl_bench.report.results import Run
from rkl_bench.training.lambdas import LAMBDAS_FILE

FIRST_COMPONENT = "random"
"""Drawn first, so it takes the first colour (blue, as in the paper)."""


@dataclass(frozen=True)
class LambdaSet:
    """lambda(s) per component, from the lowest-seed run of a dataset that saved them."""

    dataset: DatasetKey
    algo: str
    seed: int
    path: Path
    components: dict[str, np.ndarray]


def find_lambdas(runs: Iterable[Run]) -> list[LambdaSet]:
    """One :class:`LambdaSet` per (dataset, algorithm) that has a ``lambdas.npz``, in table order."""
    chosen: dict[tuple[DatasetKey, str], Run] = {}
    for run in sorted(runs, key=lambda r: (r.dataset, r.algo, r.seed)):
        if (run.directory / LAMBDAS_FILE).is_file():
            chosen.setdefault((run.dataset, run.algo), run)
    return [LambdaSet(r.dataset, r.algo, r.seed, r.directory / LAMBDAS_FILE, read_lambdas(r.directory / LAMBDAS_FILE))
            for r in chosen.values()]


def read_lambdas(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name], dtype=np.float64) for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RklBenchError(f"{path}: not a readable .npz of lambda arrays ({exc}); rewrite it or delete it") from None
    if not arrays:
        raise RklBenchError(f"{path}: holds no arrays; expected one array of lambda(s) per dataset component")
    for name, values in arrays.items():
        if values.ndim != 1 or not np.all(np.isfinite(values)) or values.size == 0:
            raise RklBenchError(f"{path}: array {name!r} must be a non-empty 1-D array of finite lambda(s) values")
    order = sorted(arrays, key=lambda name: FIRST_COMPONENT not in name)  # stable: file order otherwise
    return {name: arrays[name] for name in order}
