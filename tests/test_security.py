"""No code runs from a file the service reads back.

* torch files (training checkpoints, SAC state, exported agents) load with
  ``weights_only=True``: a tampered file is one error line and its payload
  never runs;
* ``rkl-bench run --resume`` resumes only Tune state whose SHA-256 the
  service recorded, and refuses directories other users can write.

Every tampered file carries a real payload (:class:`Payload`: unpickling it
runs ``touch <marker>``; :func:`test_the_payload_is_live` shows it does), and
every test checks that the marker was not made.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rkl_bench import cli
from rkl_bench.errors import RklBenchError
from test_service_support import SMOKE_CONFIG, write_smoke_datasets


class Payload:
    """What an attacker puts in a pickle: unpickling calls ``os.system("touch <marker>")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def assert_refused(capsys, code: int, *needles: str) -> str:
    """Exit 2 and one ``error:`` line holding ``needles``, never torch's advice to load unsafely."""
    lines = error_lines(capsys)
    assert code == 2, lines
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, lines
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert "weights_only=False" not in "\n".join(lines) and "Traceback" not in "\n".join(lines)
    return errors[0]


def test_the_payload_is_live(tmp_path):
    """The payload used below really runs on an unrestricted load (so "marker absent" means something)."""
    marker = tmp_path / "ran"
    torch.save({"evil": Payload(marker)}, tmp_path / "f.pt")
    torch.load(tmp_path / "f.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


# ------------------------------------------------------------- torch files
def write_toy_dataset(path: Path, rows: int = 300) -> str:
    import h5py

    rng = np.random.default_rng(0)
    timeouts = np.zeros(rows, bool)
    timeouts[99::100] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(rows, 4)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(rows, 2)).astype(np.float32)
        f["rewards"] = rng.normal(size=rows).astype(np.float32)
        f["terminals"] = np.zeros(rows, bool)
        f["timeouts"] = timeouts
    return str(path)


def test_tampered_training_checkpoint_is_refused_and_never_run(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "points.hdf5")
    args = ["train", "--algo", "bc", "--dataset", data, "--steps", "20", "--eval-every", "10", "--no-eval",
            "--out", str(tmp_path / "run"), "--set", "hidden_dim=16", "--set", "batch_size=16"]
    assert cli.main(args) == 0
    capsys.readouterr()
    marker = tmp_path / "ran"
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    torch.save({"format": 1, "step": 20, "learner": Payload(marker)}, checkpoint)
    assert_refused(capsys, cli.main(args), f"{checkpoint} was not written by rkl_bench", "system", "use another --out")
    assert not marker.exists()


def test_tampered_sac_state_is_refused_and_never_run(tmp_path, capsys):
    work = tmp_path / "sac"
    (work / "checkpoint").mkdir(parents=True)
    marker = tmp_path / "ran"
    torch.save({"agent": {}, "env": "hopper", "seed": 0, "evil": Payload(marker)}, work / "checkpoint" / "state.pt")
    code = cli.main(["forge", "train-policy", "hopper", "--steps", "2000", "--work-dir", str(work), "--plain"])
    assert_refused(capsys, code, str(work / "checkpoint" / "state.pt"), "was not written by rkl_bench")
    assert not marker.exists()


def test_export_refuses_a_tampered_state_before_writing_anything(tmp_path):
    from rkl_bench.forge.export import export_policies

    work = tmp_path / "sac"
    (work / "snapshots").mkdir(parents=True)
    (work / "checkpoint").mkdir()
    (work / "eval_log.jsonl").write_text("".join(json.dumps({"step": s, "return_mean": r}) + "\n"
                                                 for s, r in ((1000, 100.0), (2000, 900.0))))
    for step in (1000, 2000):
        (work / "snapshots" / f"actor_{step:07d}.pt").write_bytes(b"")
    marker = tmp_path / "ran"
    torch.save({"agent": Payload(marker), "steps": 2000, "seed": 0}, work / "checkpoint" / "state.pt")
    with pytest.raises(RklBenchError, match="state.pt was not written by rkl_bench") as caught:
        export_policies("hopper", work_dir=work, root=tmp_path / "policies", episodes=1)
    assert "weights_only=False" not in str(caught.value)
    assert not marker.exists()
    assert not (tmp_path / "policies").exists() or not any((tmp_path / "policies").iterdir()), "half-written export"


def test_sac_state_holds_only_tensors_and_old_numpy_states_still_load(tmp_path):
    """What ``SACRun.save`` writes loads weights-only with no extra globals; files of the older
    format (numpy obs and MuJoCo state) load through the numpy allow-list."""
    from rkl_bench.forge.train_policy import SACRun, SACTrainConfig, read_state_file
    from rkl_bench.forge.sac import SACConfig

    run = SACRun("hopper", 0, SACTrainConfig(total_steps=50, start_steps=10, sac=SACConfig(hidden=(16, 16), batch_size=8)),
                 tmp_path, fast=False)
    for _ in range(20):
        run.step()
    run.save()
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)  # no allow-list needed
    assert isinstance(state["obs"], torch.Tensor) and isinstance(state["mj_state"], torch.Tensor)
    resumed = SACRun("hopper", 0, run.config, tmp_path, fast=False)
    resumed.restore(tmp_path / "checkpoint")
    assert resumed.steps == 20 and np.array_equal(resumed.obs, run.obs) and resumed.obs.dtype == np.float64

    legacy = dict(state, obs=state["obs"].numpy(), mj_state=state["mj_state"].numpy())
    torch.save(legacy, tmp_path / "legacy.pt")
    loaded = read_state_file(tmp_path / "legacy.pt", "fix")
    assert np.array_equal(loaded["obs"], run.obs) and loaded["rng"] == state["rng"]


# --------------------------------------------------------------- Tune state
@pytest.fixture(scope="module")
def finished_grid(tmp_path_factory):
    """One finished one-trial grid (BC, 60 steps) and the environment it was run in."""
    root = tmp_path_factory.mktemp("grid")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
        mp.setenv("RKL_BENCH_FORGE_DIR", str(root / "forge"))
        write_smoke_datasets()
        data = yaml.safe_load(SMOKE_CONFIG.read_text())
        data.update(name="guarded", algorithms={"bc": {"hidden_dim": 32, "batch_size": 32}})
        config = root / "guarded.yaml"
        config.write_text(yaml.safe_dump(data))
        from rkl_bench.service.run import run_experiment

        summary = run_experiment(config, storage=root / "results", verbose=0)
    assert (summary.finished, summary.errored) == (1, 0)
    return {"config": config, "experiment": summary.experiment_dir, "d4rl": root / "d4rl", "forge": root / "forge"}


@pytest.fixture
def grid_copy(finished_grid, tmp_path, monkeypatch):
    """A private copy of the finished grid, resumable from this test (same datasets)."""
    monkeypatch.setenv("D4RL_DATASET_DIR", str(finished_grid["d4rl"]))
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(finished_grid["forge"]))
    storage = tmp_path / "results"
    storage.mkdir()
    experiment = storage / finished_grid["experiment"].name
    shutil.copytree(finished_grid["experiment"], experiment, symlinks=True)
    return {"config": str(finished_grid["config"]), "storage": storage, "experiment": experiment}


class ReachedRay(Exception):
    """Raised instead of starting Ray: every check before it passed."""


@pytest.fixture
def no_ray(monkeypatch):
    """``run`` stops where Ray would start (and fails the test if Ray started anyway)."""
    import rkl_bench.service.run as run_module

    @contextmanager
    def refuse(*args, **kwargs):
        raise ReachedRay()
        yield

    monkeypatch.setattr(run_module, "ray_session", refuse)


def resume_args(grid: dict) -> list[str]:
    return ["run", grid["config"], "--storage", str(grid["storage"]), "--resume", "--no-report"]


def test_rows_and_record_of_a_grid(finished_grid):
    """The record holds a digest of every state file Tune wrote; rows carry the code they came from."""
    from rkl_bench import __version__
    from rkl_bench.evaluation.rollouts import EVAL_LOOP_VERSION
    from rkl_bench.service.tune_state import digest, read_record, state_files

    experiment = finished_grid["experiment"]
    record = read_record(experiment)
    files = list(state_files(experiment))
    assert {f.name for f in files} >= {"tuner.pkl"} and any(f.name.startswith("experiment_state-") for f in files)
    for path in files:
        assert digest(path) in record["tune_state"][path.name], path.name
    (trial,) = [d for d in experiment.iterdir() if (d / "result.json").exists()]
    rows = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["step"] for r in rows] == [30, 60]
    for row in rows:
        assert row["package_version"] == __version__ and row["eval_loop_version"] == EVAL_LOOP_VERSION
        if (Path(__file__).resolve().parents[1] / ".git").exists():
            assert isinstance(row["git_commit"], str) and len(row["git_commit"]) == 40


def test_tampered_tuner_pkl_is_refused_and_never_run(grid_copy, tmp_path, capsys, no_ray):
    marker = tmp_path / "ran"
    (grid_copy["experiment"] / "tuner.pkl").write_bytes(pickle.dumps(Payload(marker)))
    line = assert_refused(capsys, cli.main(resume_args(grid_copy)), "tuner.pkl is not Tune state this service wrote")
    assert "SHA-256" in line
    assert not marker.exists()


def test_an_added_newer_experiment_state_is_refused(grid_copy, tmp_path, capsys, no_ray):
    """Tune restores from the newest experiment_state-*.json, a JSON file whose trials are cloudpickle blobs."""
    marker = tmp_path / "ran"
    blob = pickle.dumps(Payload(marker)).hex()
    forged = {"trial_data": [[json.dumps({"_type": "CLOUDPICKLE_FALLBACK", "value": blob}), "{}"]],
              "runner_data": {}, "stats": {}}
    (grid_copy["experiment"] / "experiment_state-2999-01-01_00-00-00.json").write_text(json.dumps(forged))
    assert_refused(capsys, cli.main(resume_args(grid_copy)), "experiment_state-2999-01-01_00-00-00.json is not Tune state")
    assert not marker.exists()


def test_a_record_without_digests_is_refused(grid_copy, capsys, no_ray):
    """An experiment started before digests existed (or by hand) cannot be vouched for."""
    from rkl_bench.service.tune_state import read_record, write_record

    record = read_record(grid_copy["experiment"])
    del record["tune_state"]
    write_record(grid_copy["experiment"], record)
    assert_refused(capsys, cli.main(resume_args(grid_copy)), "holds no digests of Tune's state files")


def test_directories_other_users_can_write_are_refused(grid_copy, capsys, no_ray):
    experiment, storage = grid_copy["experiment"], grid_copy["storage"]
    experiment.chmod(0o777)
    assert_refused(capsys, cli.main(resume_args(grid_copy)), f"{experiment} can be written by other users")
    experiment.chmod(0o755)
    (experiment / "tuner.pkl").chmod(0o666)
    assert_refused(capsys, cli.main(resume_args(grid_copy)), "tuner.pkl can be written by other users")
    (experiment / "tuner.pkl").chmod(0o644)
    storage.chmod(0o775)
    assert_refused(capsys, cli.main(resume_args(grid_copy)), f"{storage} (above the experiment directory)")
    # A sticky shared directory (like /tmp) is fine: others cannot swap what is not theirs.
    storage.chmod(0o1777)
    with pytest.raises(ReachedRay):
        cli.main(resume_args(grid_copy))
    storage.chmod(0o755)


def test_an_untouched_copy_resumes_and_stays_verifiable(grid_copy):
    """The checks pass on what the service wrote, and a resumed run records its own state files."""
    from rkl_bench.service.run import run_experiment
    from rkl_bench.service.tune_state import verify_tune_state

    summary = run_experiment(grid_copy["config"], storage=grid_copy["storage"], resume=True, verbose=0)
    assert (summary.finished, summary.errored) == (1, 0)
    states = sorted(p.name for p in grid_copy["experiment"].glob("experiment_state-*.json"))
    assert len(states) == 2, states  # the first session's and the resumed one's
    verify_tune_state(grid_copy["experiment"])
