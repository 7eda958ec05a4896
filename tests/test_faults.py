"""The fault suite: faults injected into a running grid, and the rows afterwards.

Every slow case runs the fault grid (BC and TD3+BC on the tiny mixed Hopper
data, seeds 0 and 1: four trials of 90 steps, evaluated at 30, 60 and 90),
injects one fault, resumes where the fault needs it, and checks the rows
against those of the same grid run without faults (:func:`reference`):
per trial, one row per evaluation step, equal in every key but timing,
placement and restart counters. A row reported twice (a trial that went
back to an older checkpoint) must equal itself.

Faults (``-m slow``):

* SIGKILL of a trial worker process, and of every evaluation actor, mid-run;
* SIGKILL of the driver (``rkl-bench run`` in a subprocess) at random points
  (``RKL_BENCH_FAULT_SEED`` replays a draw), then ``--resume``; no process of
  its Ray may outlive it;
* SIGINT of the driver, then ``--resume``;
* a full disk, as trial directories that take no new checkpoint: the trials
  fail with a clear line, and a later ``--resume`` finishes them;
* a corrupt newest checkpoint: the trial goes back to the one before.

Default (fast) cases: the checkpoint fallback itself, and ``train`` on a full
disk (one error line, the last checkpoint kept, a later run finishes with the
rows of an uninterrupted one).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from rkl_bench import cli
from rkl_bench.errors import RklBenchError
from test_service_support import SMOKE_CONFIG, write_smoke_datasets

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("RKL_BENCH_FAULT_SEED", time.time_ns() % 2**31))
STEPS = [30, 60, 90]
VOLATILE = {
    # timing and placement
    "wall_time", "steps_per_second", "setup_seconds", "eval_seconds", "node_id", "eval_actor_restarts",
    # Tune's bookkeeping
    "timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "date",
    "time_since_restore", "iterations_since_restore", "trial_id", "experiment_tag", "done", "checkpoint_dir_name",
    "should_checkpoint", "config",
    # the checkout's state: may move between the reference run and a resume (another commit), as in real use
    "git_commit", "git_dirty",
}


# ------------------------------------------------------------------ fast cases
def fake_checkpoint(folder: Path, step: int) -> None:
    folder.mkdir(parents=True)
    torch.save({"format": 1, "algo": "bc", "seed": 0, "step": step, "learner": {}, "sampler": {}, "extra": {}},
               folder / "checkpoint.pt")


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    from rkl_bench.service.trainable import readable_checkpoint

    fake_checkpoint(tmp_path / "checkpoint_000000", 30)
    fake_checkpoint(tmp_path / "checkpoint_000001", 60)
    fake_checkpoint(tmp_path / "checkpoint_000002", 90)
    newest = tmp_path / "checkpoint_000002" / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # torn
    with pytest.warns(RuntimeWarning, match="resuming from the older checkpoint_000001 instead"):
        assert readable_checkpoint(tmp_path / "checkpoint_000002")["step"] == 60
    (tmp_path / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="resuming from the older checkpoint_000000"):
        assert readable_checkpoint(tmp_path / "checkpoint_000002")["step"] == 30
    (tmp_path / "checkpoint_000000" / "checkpoint.pt").unlink()
    with pytest.warns(RuntimeWarning, match="no older checkpoint is readable, so the trial starts over"):
        assert readable_checkpoint(tmp_path / "checkpoint_000002") is None


def test_train_on_a_full_disk_keeps_its_checkpoint_and_finishes_later(tmp_path, capsys, monkeypatch):
    """A write that fails mid-run (ENOSPC) is one error line; the run then resumes to the same rows."""
    from rkl_bench.training import files
    from rkl_bench.training.single_run import TIMING_KEYS
    from test_bad_inputs import write_hdf5

    data = write_hdf5(tmp_path / "points.hdf5", 5, 2, rows=300)

    def args(out: Path) -> list[str]:
        return ["train", "--algo", "bc", "--dataset", data, "--steps", "30", "--eval-every", "10", "--no-eval",
                "--out", str(out), "--set", "hidden_dim=16", "--set", "batch_size=16"]

    def rows(out: Path) -> list[dict]:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_KEYS}
                for line in (out / "metrics.jsonl").read_text().splitlines()]

    assert cli.main(args(tmp_path / "straight")) == 0
    real_replace, saves = os.replace, []

    def full_disk(src, dst):
        saves.append(dst)
        if len(saves) > 2:  # run.json and the checkpoint of step 10 go through, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", full_disk)
    out = tmp_path / "run"
    capsys.readouterr()
    assert cli.main(args(out)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert err == [f"error: cannot write {out / 'checkpoint.pt'} (No space left on device); the previous version is kept: "
                   "free disk space or fix the permissions, then run the same command again to go on from the last checkpoint"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 10
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "a temporary file was left behind"
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert cli.main(args(out)) == 0
    assert rows(out) == rows(tmp_path / "straight")


# ------------------------------------------------------------------ the grid
def fault_config(directory: Path, name: str, **changes) -> Path:
    data = yaml.safe_load(SMOKE_CONFIG.read_text())
    small = {"hidden_dim": 32, "batch_size": 32}
    data.update(name=name, algorithms={"bc": small, "td3_bc": small}, seeds=[0, 1], steps=90,
                evaluation={"interval": 30, "episodes": 2}, checkpoints={"keep": 2}, max_failures=2)
    data.update(changes)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def grid_rows(experiment: Path) -> dict[tuple, dict[int, dict]]:
    """(algo, dataset, seed) -> step -> row (contract keys only); a step reported twice must repeat itself."""
    trials: dict[tuple, dict[int, dict]] = {}
    for result in sorted(experiment.glob("*/result.json")):
        for line in result.read_text().splitlines():
            row = json.loads(line)
            if "normalized_score" not in row:
                continue
            kept = {k: v for k, v in row.items() if k not in VOLATILE}
            by_step = trials.setdefault((row["algo"], row["dataset"], row["seed"]), {})
            if row["step"] in by_step:
                assert by_step[row["step"]] == kept, f"{result}: step {row['step']} reported twice, differently"
            by_step[row["step"]] = kept
    return trials


def assert_same_rows(experiment: Path, reference: dict, context: str) -> None:
    rows = grid_rows(experiment)
    assert sorted(rows) == sorted(reference), context
    for key, by_step in rows.items():
        assert sorted(by_step) == STEPS, f"{context}: {key} has rows at {sorted(by_step)}"
        for step in STEPS:
            assert by_step[step] == reference[key][step], f"{context}: {key} step {step} differs from the uninterrupted grid"


@pytest.fixture(scope="module")
def grid_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("D4RL_DATASET_DIR", str(root / "d4rl"))
        mp.setenv("RKL_BENCH_FORGE_DIR", str(root / "forge"))
        write_smoke_datasets()
    return {"D4RL_DATASET_DIR": str(root / "d4rl"), "RKL_BENCH_FORGE_DIR": str(root / "forge")}


@pytest.fixture
def grid(grid_env, monkeypatch):
    for key, value in grid_env.items():
        monkeypatch.setenv(key, value)
    return grid_env


@pytest.fixture(scope="module")
def reference(grid_env, tmp_path_factory):
    """The rows of the fault grid run once without faults."""
    from rkl_bench.service.run import run_experiment

    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in grid_env.items():
            mp.setenv(key, value)
        summary = run_experiment(fault_config(root, "faults"), storage=root / "results", verbose=0)
    assert (summary.finished, summary.errored) == (4, 0)
    rows = grid_rows(summary.experiment_dir)
    assert len(rows) == 4 and all(sorted(r) == STEPS for r in rows.values())
    return rows


FAULT_FLAG = "RKL_BENCH_TEST_INJECT_FAULT"


def once_callback(action):
    """A Tune callback that calls ``action(trial, result)`` on the first row (step 30) reported while
    ``$RKL_BENCH_TEST_INJECT_FAULT`` is set, and unsets it: Tune saves a run's callbacks in
    ``tuner.pkl`` and brings them back on ``--resume``, where the fault must not strike again."""
    from ray.tune import Callback

    os.environ[FAULT_FLAG] = "1"

    class Once(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if os.environ.get(FAULT_FLAG) and result.get("step") == 30:
                os.environ.pop(FAULT_FLAG, None)
                action(trial, result)

    return Once()


def ray_processes(title: str) -> list[int]:
    """PIDs of this test's local Ray whose process title starts with ``title`` (by the session's token)."""
    from rkl_bench.service.ray_reaper import TOKEN_VAR, processes_with_token

    token = os.environ.get(TOKEN_VAR)
    assert token, "no local Ray of rkl-bench is running"
    found = []
    for pid in processes_with_token(token):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.mark.slow
def test_sigkill_of_a_trial_worker(grid, reference, tmp_path):
    from rkl_bench.service.run import run_experiment

    killed = []

    def kill_worker(trial, result):
        killed.append(result["pid"])
        os.kill(result["pid"], signal.SIGKILL)

    summary = run_experiment(fault_config(tmp_path, "faults"), storage=tmp_path / "results", verbose=0,
                             callbacks=[once_callback(kill_worker)])
    assert killed and (summary.finished, summary.errored) == (4, 0)
    assert_same_rows(summary.experiment_dir, reference, f"worker {killed[0]} SIGKILLed")


@pytest.mark.slow
def test_sigkill_of_evaluation_actors(grid, reference, tmp_path):
    from rkl_bench.service.run import run_experiment

    killed = []

    def kill_actors(trial, result):
        for pid in ray_processes("ray::EvalActor"):
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)

    summary = run_experiment(fault_config(tmp_path, "faults"), storage=tmp_path / "results", verbose=0,
                             callbacks=[once_callback(kill_actors)])
    assert killed and (summary.finished, summary.errored) == (4, 0)
    assert_same_rows(summary.experiment_dir, reference, f"evaluation actors {killed} SIGKILLed")
    restarts = [json.loads(line).get("eval_actor_restarts", 0)
                for path in summary.experiment_dir.glob("*/result.json") for line in path.read_text().splitlines()]
    assert max(restarts) >= 1, "no evaluation was retried on a fresh actor"


def start_driver(config: Path, storage: Path, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rkl_bench.cli", "run", str(config), "--storage", str(storage), "--no-report", *extra],
        cwd=REPO, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the driver ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def ray_token_of(driver_pid: int) -> str | None:
    """The token the driver gave its local Ray (read from its GCS process, a child of the driver)."""
    from rkl_bench.service.ray_reaper import TOKEN_VAR

    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != driver_pid:
                continue
            for item in (entry / "environ").read_bytes().split(b"\0"):
                if item.startswith(f"{TOKEN_VAR}=".encode()):
                    return item.split(b"=", 1)[1].decode()
        except (OSError, IndexError, ValueError):
            continue
    return None


@pytest.mark.slow
@pytest.mark.parametrize("draw", [0, 1])
def test_sigkill_of_the_driver_at_a_random_point(grid, reference, tmp_path, draw):
    from rkl_bench.service.ray_reaper import processes_with_token
    from rkl_bench.service.run import run_experiment

    rng = random.Random(SEED * 10 + draw)
    delay = rng.uniform(0.0, 20.0)
    config, storage = fault_config(tmp_path, "faults"), tmp_path / "results"
    driver = start_driver(config, storage, grid)
    wait_for(storage / "faults" / "tuner.pkl", driver)
    token = ray_token_of(driver.pid)
    time.sleep(delay)
    driver.kill()
    driver.wait()
    context = f"driver SIGKILLed {delay:.1f} s after Tune started (RKL_BENCH_FAULT_SEED={SEED}, draw {draw})"
    assert token, "could not read the token of the driver's Ray"
    deadline = time.monotonic() + 30
    while processes_with_token(token) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with_token(token) == [], f"{context}: processes of its Ray outlived it"

    summary = run_experiment(config, storage=storage, resume=True, verbose=0)
    assert (summary.finished, summary.errored) == (4, 0), context
    assert_same_rows(summary.experiment_dir, reference, context)


@pytest.mark.slow
def test_sigint_of_the_driver(grid, reference, tmp_path):
    from rkl_bench.service.run import run_experiment

    config, storage = fault_config(tmp_path, "faults"), tmp_path / "results"
    driver = start_driver(config, storage, grid)
    wait_for(storage / "faults" / "tuner.pkl", driver)
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in (storage / "faults").glob("*/result.json")):
        assert driver.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    driver.send_signal(signal.SIGINT)
    code = driver.wait(timeout=120)
    err = driver.stderr.read()
    assert code in (0, 130), err  # 0 if every trial had finished by then
    assert "Traceback" not in err
    summary = run_experiment(config, storage=storage, resume=True, verbose=0)
    assert (summary.finished, summary.errored) == (4, 0)
    assert_same_rows(summary.experiment_dir, reference, "driver SIGINTed")


def lock(directory: Path) -> None:
    """Make ``directory`` take no new entries (a full disk for whoever writes there)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=True, capture_output=True)
    else:
        directory.chmod(0o555)


def unlock(directory: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(directory)], check=True, capture_output=True)
    else:
        directory.chmod(0o755)


@pytest.mark.slow
def test_a_full_disk_fails_trials_clearly_and_resume_finishes_them(grid, reference, tmp_path, capsys):
    if os.geteuid() == 0 and subprocess.run(["chattr", "-i", str(tmp_path)], capture_output=True).returncode != 0:
        pytest.skip("root without chattr: cannot make a directory unwritable")
    config, storage = fault_config(tmp_path, "faults", max_failures=1), tmp_path / "results"
    locked: list[Path] = []

    def fill_disk(trial, result):
        for folder in (storage / "faults").iterdir():
            if folder.is_dir():
                lock(folder)
                locked.append(folder)

    from rkl_bench.service import run as run_module

    real = run_module.run_experiment
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(run_module, "run_experiment",
                       lambda *a, **k: real(*a, **k, callbacks=[once_callback(fill_disk)], verbose=0))
            code = cli.main(["run", str(config), "--storage", str(storage), "--no-report"])
    finally:
        for folder in locked:
            unlock(folder)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 1 and len(err) == 1, err
    assert "trials failed (see error.txt in their trial directories; first: " in err[0]
    assert "Operation not permitted" in err[0] or "Permission denied" in err[0] or "No space" in err[0], err[0]
    assert locked

    summary = run_experiment_resume(config, storage)
    assert (summary.finished, summary.errored) == (4, 0), summary.errors
    assert_same_rows(summary.experiment_dir, reference, "trial directories full, then resumed")


def run_experiment_resume(config: Path, storage: Path):
    from rkl_bench.service.run import run_experiment

    return run_experiment(config, storage=storage, resume=True, verbose=0)


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_sends_the_trial_back_one_checkpoint(grid, reference, tmp_path, monkeypatch):
    from rkl_bench.service.run import run_experiment

    config, storage = fault_config(tmp_path, "faults", resources={"cpus": 2, "threads": 1}), tmp_path / "results"
    flag = "RKL_BENCH_TEST_STOP_AT_60"
    monkeypatch.setenv(flag, "1")
    from ray.tune import Callback

    class StopAt60(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if os.environ.get(flag) and result.get("step") == 60:
                os.environ.pop(flag)
                os.kill(os.getpid(), signal.SIGINT)

    first = run_experiment(config, storage=storage, verbose=0, callbacks=[StopAt60()])
    assert first.interrupted
    unfinished = [t for t in (storage / "faults").iterdir()
                  if (t / "result.json").exists() and len(sorted(t.glob("checkpoint_*"))) == 2
                  and max(json.loads(line)["step"] for line in (t / "result.json").read_text().splitlines()) < 90]
    assert unfinished, "no trial stopped between two checkpoints"
    trial = unfinished[0]
    newest = sorted(trial.glob("checkpoint_*"))[-1] / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    second = run_experiment(config, storage=storage, resume=True, verbose=0)
    assert (second.finished, second.errored) == (4, 0)
    assert_same_rows(second.experiment_dir, reference, f"{newest} corrupted before resume")
    steps = [json.loads(line)["step"] for line in (trial / "result.json").read_text().splitlines()]
    assert steps.count(60) == 2, f"the trial did not go back to the checkpoint before the corrupt one: {steps}"


def test_bad_trial_checkpoints_are_refused_with_one_line(tmp_path):
    """What the fallback reads: a torn file is one clear error (never torch's unsafe-load advice)."""
    from rkl_bench.training.trainer import read_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(RklBenchError, match=r"is not a readable torch file \(truncated or another format\)") as caught:
        read_checkpoint(path)
    assert "weights_only" not in str(caught.value)
