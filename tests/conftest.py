"""Test-wide settings: one torch thread (tests share 2 cores), quiet warnings."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def _point_caches_at(patch: pytest.MonkeyPatch, root) -> None:
    patch.setenv("RKL_BENCH_FORGE_DIR", str(root / "forge"))
    patch.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
    patch.setenv("MINARI_DATASETS_PATH", str(root / "minari"))
    patch.setenv("RKL_BENCH_BEHAVIOUR_CACHE", str(root / "behaviour"))
    patch.setenv("RKL_BENCH_STUDY_DIR", str(root / "studies"))  # working copies of searches in a bucket


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches_of_the_session(tmp_path_factory):
    """The same isolation for fixtures of a module or of the session, which are made before a test's
    own: a module's fixture that trains td3_rkl wrote its behaviour fits into the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        _point_caches_at(patch, tmp_path_factory.mktemp("session_caches"))
        yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory, monkeypatch):
    """Never touch the user's real caches or D4RL directory from a test."""
    _point_caches_at(monkeypatch, tmp_path_factory.mktemp("caches"))
    yield


@pytest.fixture
def fake_policies(tmp_path, monkeypatch):
    """A policy card for hopper whose snapshots are untrained actors (distinct seeds)."""
    import json

    from rkl_bench.algos.nets import GaussianHead
    from rkl_bench.forge import policies

    root = tmp_path / "policies"
    folder = root / "hopper"
    folder.mkdir(parents=True)
    for step in (10_000, 20_000, 30_000, 40_000):
        torch.manual_seed(step)
        torch.save(GaussianHead(11, 3).state_dict(), folder / f"actor_{step:07d}.pt")
    card = {"medium": {"step": 30_000}, "expert": {"step": 40_000}, "ladder": [10_000, 20_000, 30_000]}
    (folder / "card.json").write_text(json.dumps(card))
    monkeypatch.setattr(policies, "POLICY_ROOT", root)
    return root
