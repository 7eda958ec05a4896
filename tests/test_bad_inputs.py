"""Bad input ends in one ``error:`` line and exit 2, before any dataset loads or Ray starts;
nothing is lost silently.

* ``train --out`` / ``run --storage`` that cannot hold a run, binary configs, bad data
  named in a config: checked before any dataset loads or Ray starts;
* ``run --address`` to nothing: a bounded wait (``--connect-timeout``), then one line;
* datasets against their env: observation/action widths and action dtype, when loaded;
* ``report``: torn result lines are named in warnings and their runs count as missing;
  ``--strict`` makes that exit 2; a torn middle line is an error;
* result rows carry the code they came from.

The table of these inputs and how each ends is in ``docs/security.md``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from rkl_bench import cli
from test_service_support import SMOKE_CONFIG, write_smoke_datasets

REPO = Path(__file__).resolve().parents[1]


def only_error(capsys) -> str:
    """The one line on stderr, an ``error:`` line, with no traceback."""
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def write_hdf5(path: Path, obs_dim: int, act_dim: int, rows: int = 200, act_dtype=np.float32, nan_at: int | None = None) -> str:
    """A D4RL-layout file without metadata (the env comes from the file name)."""
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    if nan_at is not None:
        observations[nan_at, 0] = np.nan
    actions = rng.uniform(-1, 1, size=(rows, act_dim))
    timeouts = np.zeros(rows, bool)
    timeouts[49::50] = True
    with h5py.File(path, "w") as f:
        f["observations"] = observations
        f["actions"] = np.round(actions).astype(act_dtype) if act_dtype != np.float32 else actions.astype(np.float32)
        f["rewards"] = rng.normal(size=rows).astype(np.float32)
        f["terminals"] = np.zeros(rows, bool)
        f["timeouts"] = timeouts
    return str(path)


@pytest.fixture
def nothing_loads(monkeypatch):
    """Fail the test if a dataset is loaded or Ray starts."""
    import rkl_bench.service.run as run_module
    import rkl_bench.training.single_run as single_run

    def no_load(*args, **kwargs):
        raise AssertionError("a dataset was loaded before the input was checked")

    @contextmanager
    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started before the input was checked")
        yield

    monkeypatch.setattr(single_run, "load_dataset", no_load)
    monkeypatch.setattr(run_module, "load_dataset", no_load)
    monkeypatch.setattr(run_module, "ray_session", no_ray)


@contextmanager
def unwritable(directory: Path):
    """``directory`` cannot take new files, for root too (an immutable directory), else mode 0555."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr: cannot make a directory unwritable")
        try:
            yield directory
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield directory
        finally:
            directory.chmod(0o755)


def train_args(dataset: str, out: Path, *extra: str) -> list[str]:
    return ["train", "--algo", "bc", "--dataset", dataset, "--steps", "10", "--eval-every", "5",
            "--eval-episodes", "1", "--out", str(out), "--set", "hidden_dim=16", "--set", "batch_size=16", *extra]


# ------------------------------------------------------ before anything loads
def test_train_out_that_is_a_file_or_under_a_file(tmp_path, capsys, nothing_loads):
    target = tmp_path / "taken"
    target.write_text("not a run directory")
    assert cli.main(train_args("hopper-medium-v2", target)) == 2
    assert only_error(capsys) == f"error: --out {target} is a file, not a directory; pass a directory (it is made if missing)"
    assert cli.main(train_args("hopper-medium-v2", target / "run")) == 2
    assert only_error(capsys) == (
        f"error: --out {target / 'run'} cannot be made: {target} is a file, not a directory; pass another path"
    )
    assert target.read_text() == "not a run directory"


def test_train_out_that_cannot_be_written(tmp_path, capsys, nothing_loads):
    with unwritable(tmp_path / "locked") as locked:
        assert cli.main(train_args("hopper-medium-v2", locked / "run")) == 2
        line = only_error(capsys)
    assert line.startswith(f"error: --out {locked / 'run'} cannot be written (") and line.endswith(
        f"in {locked}); pass a directory you can write")
    assert list(locked.iterdir()) == []


def test_run_storage_that_is_a_file(tmp_path, capsys, nothing_loads):
    storage = tmp_path / "results.txt"
    storage.write_text("x")
    assert cli.main(["run", str(SMOKE_CONFIG), "--storage", str(storage)]) == 2
    assert only_error(capsys) == f"error: --storage {storage} is a file, not a directory; pass a directory (it is made if missing)"


@pytest.mark.parametrize("content, expected", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "not a text file (byte 0 is not UTF-8)"),
    ("name: caf\u00e9\n".encode("latin-1"), "not a text file (byte 9 is not UTF-8)"),
    (b"name: smoke\x00\n", "not a text file (control character 0x00 at byte 11)"),
], ids=["binary", "latin-1", "nul"])
def test_configs_that_are_not_text(tmp_path, capsys, nothing_loads, content, expected):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    assert cli.main(["run", str(config), "--storage", str(tmp_path / "results")]) == 2
    assert only_error(capsys) == f"error: {config}: {expected}; pass a YAML file such as tune_configs/quick.yaml"
    assert not (tmp_path / "results").exists()


def grid_config(tmp_path: Path, dataset: str) -> Path:
    data = yaml.safe_load(SMOKE_CONFIG.read_text())
    data.update(name="bad-data", datasets=[dataset], algorithms={"bc": {"hidden_dim": 16, "batch_size": 16}})
    path = tmp_path / "bad-data.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def no_ray(monkeypatch):
    import rkl_bench.service.run as run_module

    @contextmanager
    def refuse(*args, **kwargs):
        raise AssertionError("Ray started before the data was checked")
        yield

    monkeypatch.setattr(run_module, "ray_session", refuse)


def test_bad_data_in_a_run_config_is_caught_before_ray(tmp_path, capsys, no_ray):
    nan = write_hdf5(tmp_path / "hopper_nan.hdf5", 11, 3, nan_at=7)
    config = grid_config(tmp_path, nan)
    assert cli.main(["run", str(config), "--storage", str(tmp_path / "results")]) == 2
    assert only_error(capsys) == (
        f"error: {config}: dataset {nan}: {nan}: field 'observations' has NaN or inf values (first at row 7: nan)"
    )
    narrow = write_hdf5(tmp_path / "hopper_narrow.hdf5", 5, 3)
    config = grid_config(tmp_path, narrow)
    assert cli.main(["run", str(config), "--storage", str(tmp_path / "results")]) == 2
    assert only_error(capsys) == (
        f"error: {config}: dataset {narrow}: {narrow}: field 'observations' has shape (196, 5), but Hopper-v4 has "
        "observation shape (11,), i.e. (N, 11); this data was not recorded in Hopper-v4"
    )
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------- datasets vs their env
@pytest.mark.parametrize("obs_dim, act_dim, dtype, expected", [
    (5, 3, np.float32, "field 'observations' has shape (196, 5), but Hopper-v4 has observation shape (11,), i.e. (N, 11); "
                       "this data was not recorded in Hopper-v4"),
    (11, 4, np.float32, "field 'actions' has shape (196, 4), but Hopper-v4 has action shape (3,), i.e. (N, 3); "
                        "this data was not recorded in Hopper-v4"),
    (11, 3, np.int64, "field 'actions' has dtype int64; expected floating-point actions in [-1, 1] (the envs here "
                      "have continuous action spaces; integer actions come from another kind of task)"),
], ids=["obs-width", "action-columns", "integer-actions"])
def test_datasets_that_do_not_fit_their_env_fail_before_training(tmp_path, capsys, monkeypatch, obs_dim, act_dim, dtype, expected):
    import rkl_bench.training.single_run as single_run

    def no_training(*args, **kwargs):
        raise AssertionError("training started on data that does not fit its env")

    monkeypatch.setattr(single_run, "Trainer", no_training)
    data = write_hdf5(tmp_path / "hopper_bad-v2.hdf5", obs_dim, act_dim, act_dtype=dtype)
    assert cli.main(train_args(data, tmp_path / "run")) == 2
    assert only_error(capsys) == f"error: {data}: {expected}"


def test_no_eval_runs_on_data_without_an_env_still_work(tmp_path, capsys):
    data = write_hdf5(tmp_path / "points.hdf5", 5, 2)
    assert cli.main(train_args(data, tmp_path / "run", "--no-eval")) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [5, 10]


# -------------------------------------------------------------- connect timeout
def run_cli(args: list[str], timeout: float) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "rkl_bench.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=dict(os.environ))
    return proc.returncode, proc.stderr, time.monotonic() - started


def test_an_address_that_refuses_is_one_error_line_at_once(tmp_path):
    write_smoke_datasets()
    code, err, took = run_cli(["run", str(SMOKE_CONFIG), "--address", "127.0.0.1:1", "--storage", str(tmp_path)], 120)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1, err
    assert errors[0].startswith("error: cannot join the Ray cluster at 127.0.0.1:1 (Connection refused); check --address")
    assert "Traceback" not in err and took < 60


def test_an_address_that_never_answers_is_given_up_after_the_timeout(tmp_path):
    """A port that accepts TCP but speaks no Ray: Ray itself would retry for many minutes."""
    write_smoke_datasets()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        code, err, took = run_cli(["run", str(SMOKE_CONFIG), "--address", address, "--connect-timeout", "4",
                                   "--storage", str(tmp_path)], 120)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and errors == [
        f"error: no Ray cluster answered at {address} within 4 s; check --address "
        "(the head's GCS address, e.g. 10.0.0.5:6379) or raise --connect-timeout"
    ], err
    assert "Traceback" not in err and took < 60


# ------------------------------------------------------------ report, no loss
ROW = {"algo": "td3_bc", "dataset": "hopper-random-v2", "total_steps": 2000, "eval_episodes": 10,
       "normalized_score": 10.0, "dataset_version": "d4rl-v2"}


def write_trial(root: Path, seed: int, tail: bytes = b"", steps=(1000, 2000)) -> Path:
    trial = root / f"td3_bc_s{seed}"
    trial.mkdir(parents=True)
    rows = b"".join(json.dumps(dict(ROW, seed=seed, step=s, normalized_score=10.0 + seed)).encode() + b"\n" for s in steps)
    (trial / "result.json").write_bytes(rows + tail)
    return trial / "result.json"


def cell(out: Path) -> dict:
    header, *rows = (out / "table2.csv").read_text().splitlines()
    (row,) = [dict(zip(header.split(","), line.split(","))) for line in rows if "hopper" in line and "td3_bc" in line]
    return row


def report(experiment: Path, out: Path, *extra: str) -> int:
    return cli.main(["report", str(experiment), "--out", str(out), "--seeds", "2", "--bootstrap", "20",
                     "--toys", str(out.parent / "none"), *extra])


def test_a_torn_last_line_is_named_and_its_run_counts_as_missing(tmp_path, capsys):
    experiment = tmp_path / "exp"
    write_trial(experiment, 0)
    torn = write_trial(experiment, 1, tail=b'{"algo": "td3_bc", "dataset": "hopp')
    out = tmp_path / "reports" / "exp"
    assert report(experiment, out) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"warning: {torn}:3: torn last line skipped (not valid JSON (Unterminated string starting at)); "
                   "that run counts as missing until it is rerun or resumed"]
    assert cell(out)["n_seeds"] == "1", "the damaged seed is missing, as in a partial experiment"
    assert "torn last line skipped" in (out / "index.html").read_text()

    assert report(experiment, tmp_path / "reports" / "strict", "--strict") == 2
    line = only_error(capsys)
    assert line.startswith("error: --strict: 1 unreadable result line(s), no report written: ") and f"{torn}:3" in line
    assert not (tmp_path / "reports" / "strict").exists()


def test_a_trial_whose_only_line_is_torn_is_named(tmp_path, capsys):
    experiment = tmp_path / "exp"
    write_trial(experiment, 0)
    lost = write_trial(experiment, 1, tail=b'{"algo": "td3', steps=())
    assert report(experiment, tmp_path / "reports" / "exp") == 0
    err = capsys.readouterr().err
    assert f"warning: {lost}:1: torn last line skipped" in err
    assert f"warning: {lost.parent}: no readable result row left; that run is missing from every table" in err


def test_a_torn_middle_line_is_an_error(tmp_path, capsys):
    experiment = tmp_path / "exp"
    path = write_trial(experiment, 0)
    path.write_bytes(path.read_bytes().replace(b'"step": 1000', b'"st\xffep": 10', 1))
    assert report(experiment, tmp_path / "reports" / "exp") == 2
    assert only_error(capsys) == f"error: {path}:1: not UTF-8; fix or delete that line"


def test_a_torn_middle_line_of_a_training_log_is_an_error_not_a_silent_cut(tmp_path, capsys):
    data = write_hdf5(tmp_path / "points.hdf5", 5, 2)
    args = train_args(data, tmp_path / "run", "--no-eval", "--checkpoint-every", "5")
    assert cli.main(args) == 0
    capsys.readouterr()
    log = tmp_path / "run" / "metrics.jsonl"
    first, second = log.read_text().splitlines()
    log.write_text(first[:20] + "\n" + second + "\n")
    (tmp_path / "run" / "checkpoint.pt").unlink()  # force a resume that reads the log
    assert cli.main(args) == 2
    assert only_error(capsys).startswith(f"error: {log}:1: not a result row (torn or edited)")
    assert log.read_text() == first[:20] + "\n" + second + "\n", "the log was rewritten"


def test_rows_carry_the_code_they_came_from(tmp_path):
    from rkl_bench import __version__
    from rkl_bench.evaluation.rollouts import EVAL_LOOP_VERSION
    from rkl_bench.training.provenance import code_fields

    code_fields.cache_clear()  # HEAD as of now, not as of an earlier test
    data = write_hdf5(tmp_path / "points.hdf5", 5, 2)
    assert cli.main(train_args(data, tmp_path / "run", "--no-eval")) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    if (REPO / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    else:
        head = None
    for row in rows:
        assert row["package_version"] == __version__
        assert row["eval_loop_version"] == EVAL_LOOP_VERSION == 2
        assert row["git_commit"] == head
        assert isinstance(row["git_dirty"], bool) or head is None
