"""Single runs: metrics rows, evaluation, determinism, checkpoints and resume, the CLI verb."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from rkl_bench.cli import main
from rkl_bench.data.scores import normalized_score
from rkl_bench.errors import RklBenchError
from rkl_bench.training import single_run, trainer
from rkl_bench.training.metrics import read_rows, truncate_rows
from rkl_bench.training.single_run import TIMING_KEYS, TrainSpec, train

SMALL = {"hidden_dim": 32, "batch_size": 32}
HYPERPARAMS = {
    "td3_bc": SMALL,
    "td3_rkl": SMALL | {"behaviour_steps": 50, "behaviour_hidden_dim": 32, "behaviour_batch_size": 64},
}
ROW_KEYS = {
    "algo", "dataset", "dataset_version", "seed", "step", "total_steps", "eval_episodes",
    "return_mean", "return_std", "normalized_score", "normalized_std",
} | set(TIMING_KEYS)


def write_dataset(path: Path, obs_dim: int, act_dim: int, rows: int = 600, seed: int = 0) -> str:
    """A D4RL-layout file without metadata: env family from the file name, version d4rl-v2."""
    rng = np.random.default_rng(seed)
    timeouts = np.zeros(rows, bool)
    timeouts[99::100] = True
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(rows, obs_dim)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, size=(rows, act_dim)).astype(np.float32)
        f["rewards"] = rng.normal(size=rows).astype(np.float32)
        f["terminals"] = rng.random(rows) < 0.01
        f["timeouts"] = timeouts
    return str(path)


@pytest.fixture
def hopper(tmp_path) -> str:
    """Hopper-shaped data (obs 11, act 3) named so the registry maps it to hopper / Hopper-v4."""
    return write_dataset(tmp_path / "hopper_synthetic-v2.hdf5", 11, 3)


@pytest.fixture
def toy(tmp_path) -> str:
    """Data of no known env: can only be trained with evaluation off."""
    return write_dataset(tmp_path / "points.hdf5", 4, 2)


def spec(out: Path, dataset: str, **kw) -> TrainSpec:
    args = dict(
        algo="td3_bc", dataset=dataset, seed=0, steps=60, eval_every=20, eval_episodes=2,
        out_dir=out, evaluate=True, hyperparams=dict(SMALL),
    )
    return TrainSpec(**(args | kw))


def untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def learner_state(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)["learner"]


def assert_same_state(a, b, path: str = "learner") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


# ------------------------------------------------------------------ rows
def test_no_eval_run_logs_losses_only(tmp_path, toy):
    out = tmp_path / "run"
    summary = train(spec(out, toy, evaluate=False, steps=50))
    rows = read_rows(out / "metrics.jsonl")
    assert [row["step"] for row in rows] == [20, 40, 50]  # every eval_every, and at the end
    for row in rows:
        assert ROW_KEYS <= row.keys() and {"critic_loss", "actor_loss", "bc_loss"} <= row.keys()
        assert row["eval_episodes"] == 0 and row["return_mean"] is None and row["normalized_score"] is None
        assert (row["algo"], row["seed"], row["total_steps"], row["dataset_version"]) == ("td3_bc", 0, 50, "d4rl-v2")
    assert rows[0]["wall_time"] < rows[-1]["wall_time"]
    assert summary.step == 50 and summary.last_row == rows[-1] and not summary.already_finished
    record = json.loads((out / "run.json").read_text())
    assert record["spec"]["steps"] == 50 and record["env_id"] is None
    assert record["learner_config"]["hidden_dim"] == 32


def test_eval_run_scores_in_hopper_v4(tmp_path, hopper):
    out = tmp_path / "run"
    train(spec(out, hopper, steps=40))
    rows = read_rows(out / "metrics.jsonl")
    assert [row["step"] for row in rows] == [20, 40]
    for row in rows:
        assert row["eval_episodes"] == 2 and row["return_mean"] is not None
        # the normalised mean is the D4RL normalisation of the raw mean (it is affine)
        assert row["normalized_score"] == pytest.approx(normalized_score("hopper", row["return_mean"]))
    assert json.loads((out / "run.json").read_text())["env_id"] == "Hopper-v4"


def test_dataset_without_env_needs_no_eval(tmp_path, toy):
    out = tmp_path / "run"
    with pytest.raises(RklBenchError, match="no gymnasium environment.*--no-eval"):
        train(spec(out, toy))
    assert not out.exists()  # nothing half-written


def test_same_seed_same_metrics(tmp_path, hopper):
    rows = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        train(spec(tmp_path / name, hopper, seed=seed, steps=40))
        rows.append(untimed(read_rows(tmp_path / name / "metrics.jsonl")))
    assert rows[0] == rows[1]
    assert rows[0] != rows[2]
    assert_same_state(learner_state(tmp_path / "a"), learner_state(tmp_path / "b"))


# ---------------------------------------------------------------- resume
def interrupt_after(monkeypatch, updates: int) -> None:
    """Make the learner raise KeyboardInterrupt on gradient step ``updates + 1``."""
    real = trainer.make_learner

    def make(*args, **kwargs):
        learner = real(*args, **kwargs)
        update, calls = learner.update, [0]

        def interrupted(batch):
            calls[0] += 1
            if calls[0] > updates:
                raise KeyboardInterrupt
            return update(batch)

        learner.update = interrupted
        return learner

    monkeypatch.setattr(trainer, "make_learner", make)


@pytest.mark.parametrize("algo", ["td3_bc", "td3_rkl"])
def test_resume_after_interruption_equals_straight_run(tmp_path, hopper, monkeypatch, algo):
    # rows at 30, 60, 90, 100; checkpoints at 40, 80, 100
    kw = dict(steps=100, eval_every=30, checkpoint_every=40, algo=algo, hyperparams=HYPERPARAMS[algo])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(spec(straight, hopper, **kw))

    with monkeypatch.context() as m:
        interrupt_after(m, 75)
        with pytest.raises(KeyboardInterrupt):
            train(spec(resumed, hopper, **kw))
    assert [row["step"] for row in read_rows(resumed / "metrics.jsonl")] == [30, 60]
    assert torch.load(resumed / "checkpoint.pt", weights_only=True)["step"] == 40  # last checkpoint intact

    summary = train(spec(resumed, hopper, **kw))
    assert summary.resumed_from == 40 and summary.step == 100
    rows = read_rows(resumed / "metrics.jsonl")
    assert [row["step"] for row in rows] == [30, 60, 90, 100]  # the row at 60 was cut and redone once
    assert untimed(rows) == untimed(read_rows(straight / "metrics.jsonl"))
    assert_same_state(learner_state(resumed), learner_state(straight))


def test_finished_run_is_not_retrained(tmp_path, toy, monkeypatch, capsys):
    out = tmp_path / "run"
    train(spec(out, toy, evaluate=False, steps=20))
    before = (out / "metrics.jsonl").read_text()
    monkeypatch.setattr(trainer, "make_learner", lambda *a, **k: pytest.fail("retrained a finished run"))
    summary = train(spec(out, toy, evaluate=False, steps=20))
    assert summary.already_finished and summary.step == 20
    assert "already finished" in capsys.readouterr().out
    assert (out / "metrics.jsonl").read_text() == before


def test_other_spec_in_same_dir_is_refused(tmp_path, toy):
    out = tmp_path / "run"
    train(spec(out, toy, evaluate=False, steps=20))
    for change in ({"seed": 1}, {"steps": 40}, {"algo": "bc"}, {"hyperparams": {"hidden_dim": 64}}):
        with pytest.raises(RklBenchError, match="holds a different run.*use another --out"):
            train(spec(out, toy, evaluate=False, **({"steps": 20} | change)))


def test_run_files_without_record_are_refused(tmp_path, toy):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("")
    with pytest.raises(RklBenchError, match="no run.json"):
        train(spec(out, toy, evaluate=False))


def test_truncate_drops_later_and_torn_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10}\n{"step": 20}\n{"step": 30}\n{"step": 4')
    assert truncate_rows(path, 20) == [{"step": 10}, {"step": 20}]
    assert path.read_text() == '{"step": 10}\n{"step": 20}\n'


@pytest.mark.parametrize("field, value", [("steps", 0), ("eval_every", -1), ("eval_episodes", 0), ("seed", -2)])
def test_spec_validation(tmp_path, field, value):
    with pytest.raises(RklBenchError, match=field):
        spec(tmp_path, "x.hdf5", **{field: value})


# ------------------------------------------------------------------- CLI
def cli(out: Path, dataset: str, *extra: str) -> int:
    return main([
        "train", "--algo", "bc", "--dataset", dataset, "--steps", "20", "--eval-every", "10",
        "--out", str(out), "--no-eval", "--set", "hidden_dim=32", "--set", "lr=3e-4", *extra,
    ])


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


def test_cli_end_to_end(tmp_path, toy, capsys):
    out = tmp_path / "run"
    assert cli(out, toy) == 0
    assert "done: 20 steps" in capsys.readouterr().out
    assert [row["step"] for row in read_rows(out / "metrics.jsonl")] == [10, 20]
    assert cli(out, toy) == 0
    assert "already finished" in capsys.readouterr().out
    # same directory, other seed: one error line, exit 2
    assert cli(out, toy, "--seed", "5") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "use another --out" in err[0]


def test_cli_bad_input(tmp_path, toy, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(tmp_path / "a", toy, "--steps", "0")
    assert exc.value.code == 2 and len(error_lines(capsys)) == 1
    out = tmp_path / "b"
    assert cli(out, toy, "--set", "no_such_key=1") == 2
    [line] = error_lines(capsys)
    assert "no_such_key" in line
    assert not out.exists()


def test_cli_threads_flag_sets_torch_threads(tmp_path, toy, capsys):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cli(tmp_path / "run", toy, "--threads", "1") == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(SystemExit) as exc:
        cli(tmp_path / "other", toy, "--threads", "0")
    assert exc.value.code == 2 and "--threads" in error_lines(capsys)[0]


def test_cli_interrupt_keeps_checkpoint(tmp_path, toy, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupt_after(monkeypatch, 15)
    assert cli(out, toy) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 10
