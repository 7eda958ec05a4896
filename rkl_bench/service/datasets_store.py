"""Datasets in the Ray object store: loaded once by the driver, shared by every trial.

The driver loads each dataset of an experiment once and ``ray.put``s the
:class:`~rkl_bench.data.OfflineDataset` (its float32 arrays travel as
out-of-band pickle buffers). A trial gets it with ``ray.get``: Ray keeps one
copy per node in that node's shared-memory store, and every worker on the node
maps the same pages, so the arrays a trial sees are read-only views, not
copies. Twenty trials on one node cost one dataset's memory, not twenty.

The references reach trials through ``tune.with_parameters`` rather than the
trial config: a config is saved with the experiment, and an ``ObjectRef`` in
it would be stale after a restart of the driver (``--resume``), while
``with_parameters`` is rebuilt with fresh references on every run.
"""

from __future__ import annotations

from pathlib import Path

import ray

from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.data.registry import load_dataset

DatasetRefs = dict[str, "ray.ObjectRef[OfflineDataset]"]


def put_datasets(specs: tuple[str, ...], d4rl_dir: str | Path | None = None) -> DatasetRefs:
    """Load each spec once and put it in the object store; one reference per spec.

    Only one dataset is in the driver's own memory at a time.
    """
    refs: DatasetRefs = {}
    for spec in specs:
        refs[spec] = ray.put(load_dataset(spec, d4rl_dir))
    return refs


def fetch_dataset(ref: "ray.ObjectRef[OfflineDataset]") -> OfflineDataset:
    """The dataset behind ``ref``; its arrays are read-only views of the node's object store."""
    return ray.get(ref)
