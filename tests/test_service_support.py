"""Shared helpers for the service tests: tiny Hopper datasets and a loopback Ray.

No tests here. The datasets are random, in D4RL's layout and file naming, so
``dataset_source: d4rl``/``auto`` configs find them in ``$D4RL_DATASET_DIR``
(a per-test temporary directory, see ``conftest.py``) and trials evaluate
them in Hopper-v4 (obs 11, act 3).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rkl_bench.data.synthetic import write_synthetic_d4rl
from rkl_bench.service.ray_runtime import LOOPBACK, configure_ray_environment

OBS_DIM, ACT_DIM = 11, 3
SMOKE_CONFIG = Path(__file__).resolve().parents[1] / "tune_configs" / "smoke.yaml"


def write_tiny_hopper(directory: Path, kind: str, rows: int = 400, episode: int = 50, seed: int = 0) -> Path:
    """``<directory>/hopper_<kind>-v2.hdf5``: ``rows`` random transitions in episodes of ``episode`` steps."""
    return write_synthetic_d4rl(directory, "hopper", kind, rows, episode, seed)


def write_smoke_datasets(kinds: tuple[str, ...] = ("random", "expert")) -> Path:
    """The files ``smoke.yaml`` reads (hopper-random-expert), in ``$D4RL_DATASET_DIR``."""
    directory = Path(os.environ["D4RL_DATASET_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for i, kind in enumerate(kinds):
        write_tiny_hopper(directory, kind, seed=i)
    return directory


def start_local_ray(num_cpus: int = 2) -> None:
    """A loopback-only local Ray without dashboard or usage stats."""
    configure_ray_environment(local=True)
    # Ray workers import remote functions by module name; tests' own modules
    # (``test_service_datasets.probe``) live in tests/, which is not a package.
    tests_dir = str(Path(__file__).resolve().parent)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if tests_dir not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([tests_dir, *paths])
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOOPBACK, log_to_driver=False)


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) per test module, shut down at its end."""
    import ray

    start_local_ray()
    yield ray
    ray.shutdown()
