"""Write a run's per-state BC weights lambda(s) for the report's Fig. 4.

TD3+RKL fixes ``lambda(s)`` for every dataset row once its behaviour model is
fitted (the ``learner.dataset_lambdas`` property). A run saves them once, split by the
dataset's components (``random`` and ``expert`` for a random-expert mix), as
``lambdas.npz`` beside its result rows; ``rkl_bench.report.lambdas`` reads it.
Learners without per-state weights save nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.data.registry import parse_dataset_name
from rkl_bench.errors import RklBenchError
from rkl_bench.layout import LAMBDAS_FILE
from rkl_bench.training.files import write_atomic


def component_name(name: str) -> str:
    """``random`` for ``halfcheetah-random-v2`` or ``forge-v5/halfcheetah-random``; the name itself otherwise."""
    try:
        kinds = parse_dataset_name(name).kinds
    except RklBenchError:
        return name
    return kinds[0] if len(kinds) == 1 else name


def split_by_component(dataset: OfflineDataset, per_row: np.ndarray) -> dict[str, np.ndarray]:
    """``per_row`` (one value per dataset row) cut along the dataset's provenance."""
    sizes = [p.size for p in dataset.provenance]
    if not sizes or sum(sizes) != len(per_row):
        return {dataset.name: per_row}
    parts: dict[str, np.ndarray] = {}
    for part, chunk in zip(dataset.provenance, np.split(per_row, np.cumsum(sizes)[:-1])):
        key = component_name(part.name)
        parts[key if key not in parts else part.name] = chunk
    return parts


def save_lambdas(learner: object, dataset: OfflineDataset, directory: Path) -> Path | None:
    """Write ``<directory>/lambdas.npz`` if ``learner`` has per-row weights; return its path."""
    per_row = getattr(learner, "dataset_lambdas", None)
    if per_row is None:
        return None
    arrays = split_by_component(dataset, np.asarray(per_row, dtype=np.float32))
    path = Path(directory) / LAMBDAS_FILE

    def write(f) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        f.write(buffer.getvalue())

    write_atomic(path, write)
    return path
