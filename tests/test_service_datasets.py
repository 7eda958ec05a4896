"""Datasets go into the object store once and reach trials as shared read-only
views: a consumer's private memory does not grow by the dataset's size."""

from __future__ import annotations

import os

import numpy as np
import ray as ray_module

from rkl_bench.data.dataset import ARRAY_FIELDS
from rkl_bench.data.registry import load_dataset
from rkl_bench.service.datasets_store import fetch_dataset, put_datasets
from test_service_support import local_ray, write_smoke_datasets, write_tiny_hopper  # noqa: F401 - fixture

ROWS = 200_000
"""~21 MB of float32 arrays: large against a worker's allocation noise."""


def private_bytes() -> int:
    """This process's memory no other process shares (``Private_*`` of smaps_rollup)."""
    total = 0
    with open(f"/proc/{os.getpid()}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


@ray_module.remote(num_cpus=0)
def probe(refs: dict, spec: str) -> dict:
    """What a trial sees: fetch the dataset, read every byte, report flags and private growth."""
    before = private_bytes()
    dataset = fetch_dataset(refs[spec])
    checksum = float(sum(getattr(dataset, name).sum(dtype=np.float64) for name in ARRAY_FIELDS))
    return {
        "writeable": [getattr(dataset, name).flags.writeable for name in ARRAY_FIELDS],
        "owndata": [getattr(dataset, name).flags.owndata for name in ARRAY_FIELDS],
        "grew": private_bytes() - before,
        "checksum": checksum,
        "version": dataset.version,
        "len": len(dataset),
    }


def test_one_shared_copy_reaches_every_consumer(local_ray):
    path = write_tiny_hopper(write_smoke_datasets(()), "medium", rows=ROWS, episode=1000)
    spec = str(path)
    local = load_dataset(spec)
    nbytes = sum(getattr(local, name).nbytes for name in ARRAY_FIELDS)
    expected = float(sum(getattr(local, name).sum(dtype=np.float64) for name in ARRAY_FIELDS))

    refs = put_datasets((spec,))
    assert list(refs) == [spec]
    seen = local_ray.get([probe.remote(refs, spec) for _ in range(3)])
    for result in seen:
        assert result["len"] == len(local) and result["version"] == local.version
        assert result["checksum"] == expected
        assert not any(result["writeable"]) and not any(result["owndata"]), "arrays must be object-store views"
        assert result["grew"] < nbytes / 4, f"consumer copied the data: +{result['grew']} B for {nbytes} B"
