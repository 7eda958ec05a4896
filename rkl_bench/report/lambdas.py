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
from rkl_bench.layout import LAMBDAS_FILE
from rkl_bench.report.datasets import DatasetKey
from rkl_bench.report.results import Run
from rkl_bench.training.archive import LAMBDA_BINS

FIRST_COMPONENT = "random"
"""Drawn first, so it takes the first colour (blue, as in the paper)."""


HISTOGRAM_BINS = LAMBDA_BINS
"""Bins of Fig. 4 on [0, 1]: those of a results archive's lambda(s) histograms, so both draw alike."""


@dataclass(frozen=True)
class LambdaSet:
    """lambda(s) per component, from the lowest-seed run of a dataset that saved them:
    ``components`` maps each to ``(bin edges, counts)`` on [0, 1]."""

    dataset: DatasetKey
    algo: str
    seed: int
    path: Path
    components: dict[str, tuple[np.ndarray, np.ndarray]]


def find_lambdas(runs: Iterable[Run]) -> list[LambdaSet]:
    """One :class:`LambdaSet` per (dataset, algorithm) that has a ``lambdas.npz`` (or, from a
    results archive, lambda(s) histograms), in table order."""
    chosen: dict[tuple[DatasetKey, str], Run] = {}
    for run in sorted(runs, key=lambda r: (r.dataset, r.algo, r.seed)):
        if run.lambda_histograms or (run.directory / LAMBDAS_FILE).is_file():
            chosen.setdefault((run.dataset, run.algo), run)
    return [LambdaSet(r.dataset, r.algo, r.seed, r.directory / LAMBDAS_FILE, _components(r)) for r in chosen.values()]


def _components(run: Run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    if run.lambda_histograms:
        out = {}
        for name, hist in run.lambda_histograms.items():
            counts = np.asarray(hist.get("counts", []), dtype=np.int64)
            if counts.size != HISTOGRAM_BINS or list(hist.get("range", [])) != [0.0, 1.0]:
                raise RklBenchError(f"{run.directory}: lambda(s) histogram {name!r} of {run.algo} seed {run.seed} "
                                    f"is not {HISTOGRAM_BINS} bins on [0, 1]; export the archive again")
            out[name] = (edges, counts)
        return dict(sorted(out.items(), key=lambda item: FIRST_COMPONENT not in item[0]))
    arrays = read_lambdas(run.directory / LAMBDAS_FILE)
    return {name: (edges, np.histogram(np.clip(values, 0.0, 1.0), bins=edges)[0]) for name, values in arrays.items()}


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
