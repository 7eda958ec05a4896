"""Test-wide settings: one torch thread (tests share 2 cores), quiet warnings."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Never touch the user's real caches or D4RL directory from a test."""
    root = tmp_path_factory.mktemp("caches")
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(root / "forge"))
    monkeypatch.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    monkeypatch.setenv("RKL_BENCH_STUDY_DIR", str(root / "studies"))  # working copies of searches in a bucket
    yield
