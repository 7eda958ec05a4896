"""benchmarks/peer_agreement.py: our side at a tiny size, input errors, the neutral actor format.

The d3rlpy side needs benchmarks/.venv-d3rlpy (benchmarks/make_peer_venv.sh);
only the slow test uses it, and skips, saying so, where it is missing.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
DATASET = "forge-v5-tiny/hopper-expert"
TINY = ["--steps", "200", "--eval-every", "100", "--eval-episodes", "2", "--seeds", "0"]

driver = load_benchmark("peer_agreement")
worker = load_benchmark("peer_d3rlpy_worker")


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = driver.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


# ----------------------------------------------------------- our side
def test_our_side_prints_its_row_with_the_scores_of_rkl_bench_train(capsys, tmp_path):
    out_json = tmp_path / "peer.json"
    code, out, err = _run(capsys, DATASET, *TINY, "--sides", "ours", "--json", str(out_json))
    assert code == 0, err
    assert "CPU: " in out and "torch threads: 1 on both sides" in out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    ours_score, d3rlpy_score, ours_wall, d3rlpy_wall, ours_cpu, d3rlpy_cpu = cells[1:]
    assert float(ours_wall) > 0 and float(ours_cpu) > 0
    assert d3rlpy_score == d3rlpy_wall == d3rlpy_cpu == "n/a"
    runs = json.loads(out_json.read_text())["runs"]["ours"]["0"]["evaluations"]
    assert [e["step"] for e in runs] == [100, 200]
    assert float(ours_score) == pytest.approx(np.mean([e["normalized_score"] for e in runs]), abs=0.05)

    # the same spec through `rkl-bench train`'s loop: the same batches and evaluation episodes
    from rkl_bench.training.single_run import TrainSpec, read_rows, train

    spec = TrainSpec(algo="td3_bc", dataset=DATASET, seed=0, steps=200, eval_every=100, eval_episodes=2,
                     out_dir=tmp_path / "run")
    train(spec)
    rows = read_rows(tmp_path / "run" / "metrics.jsonl")
    assert [r["normalized_score"] for r in rows] == [e["normalized_score"] for e in runs]


# ------------------------------------------------------------ errors
def test_missing_d3rlpy_venv_is_one_clear_error_naming_the_script(capsys, tmp_path):
    code, out, err = _run(capsys, DATASET, *TINY, "--peer-python", str(tmp_path / "nowhere" / "bin" / "python"))
    assert code == 2
    line = _error_line(err)
    assert "d3rlpy virtualenv is missing" in line and "make_peer_venv.sh" in line and "--sides ours" in line
    assert out == ""  # refused before any training


@pytest.mark.parametrize(
    "argv, words",
    [
        ([DATASET, "--steps", "250", "--eval-every", "100"], "multiple of --eval-every"),
        ([DATASET, "--steps", "0"], "--steps must be a positive"),
        ([DATASET, "--seeds", "a,b"], "--seeds"),
        ([DATASET, "--seeds", "1,1"], "distinct"),
        ([DATASET, "--sides", "theirs"], "--sides"),
        ([DATASET, "--update-path", "slow"], "--update-path"),
        (["/nonexistent/data.hdf5", "--sides", "ours"], "data.hdf5"),
    ],
)
def test_bad_input_is_one_error_line_and_status_2(capsys, argv, words):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert words in _error_line(err)


# ------------------------------------------------------ neutral format
class FakeD3rlpyPolicy(nn.Module):
    """d3rlpy 2.8's DeterministicPolicy with its default vector encoder, attribute for attribute."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self._encoder = nn.Module()
        self._encoder._layers = nn.Sequential(nn.Linear(obs_dim, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self._fc = nn.Linear(256, act_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self._fc(self._encoder._layers(x)))


def test_neutral_actor_round_trips_to_the_same_actions_and_scores(tmp_path):
    from rkl_bench.evaluation import evaluate_policy

    assert worker.FORMAT == driver.NEUTRAL_FORMAT
    torch.manual_seed(3)
    policy = FakeD3rlpyPolicy(11, 3)
    rng = np.random.default_rng(0)
    mean = rng.normal(size=11).astype(np.float32)
    divisor = rng.uniform(0.5, 2.0, size=11).astype(np.float32)
    path = worker.export_actor(policy, mean, divisor, tmp_path / "actor.npz")

    actor, got_mean, got_divisor = driver.load_neutral_actor(path)
    assert np.array_equal(got_mean, mean) and np.array_equal(got_divisor, divisor)
    act = driver.actor_policy(actor)
    for rows in (1, 10, 300):  # the buffered inference path and the plain one
        obs = rng.normal(size=(rows, 11)).astype(np.float32)
        with torch.no_grad():
            want = policy(torch.from_numpy(obs)).numpy()
        np.testing.assert_allclose(act(obs), want, rtol=0, atol=1e-6)
        raw = obs * divisor + mean
        np.testing.assert_allclose(worker.neutral_forward(path, raw), want, rtol=0, atol=1e-5)

    def original(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy(torch.from_numpy(np.asarray(obs, np.float32))).numpy()

    a = evaluate_policy(original, "Hopper-v5", 2, 7, mean, divisor, max_episode_steps=50)
    b = evaluate_policy(act, "Hopper-v5", 2, 7, got_mean, got_divisor, max_episode_steps=50)
    np.testing.assert_allclose(a.returns, b.returns, rtol=1e-6)
    np.testing.assert_array_equal(a.lengths, b.lengths)


def test_neutral_loader_refuses_other_files(tmp_path):
    other = tmp_path / "other.npz"
    np.savez(other, w0=np.zeros((2, 2), np.float32))
    with pytest.raises(driver.RklBenchError, match="not a rkl-peer-actor-v1 actor file"):
        driver.load_neutral_actor(other)
    with pytest.raises(ValueError, match="not a d3rlpy DeterministicPolicy"):
        worker.export_actor(nn.Linear(2, 2), np.zeros(2), np.ones(2), tmp_path / "x.npz")


def test_worker_imports_neither_rkl_bench_nor_d3rlpy_at_module_level():
    tree = ast.parse((ROOT / "benchmarks" / "peer_d3rlpy_worker.py").read_text())
    everywhere = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    everywhere |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "rkl_bench" not in everywhere
    top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
    top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"__future__", "argparse", "json", "os", "sys", "time", "pathlib", "numpy", "torch"}


def test_worker_episodes_give_back_every_row():
    """Rows 0-2 one run, row 3 terminal, rows 4-5 a run cut by a jump in the states, row 6 alone."""
    obs = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    nxt = np.roll(obs, -1, axis=0)
    nxt[5] = 99.0  # the next state of row 5 is not row 6's state
    nxt[6] = 50.0
    terminals = np.zeros(7, np.float32)
    terminals[3] = 1.0
    data = {"observations": obs, "next_observations": nxt, "terminals": terminals}
    assert worker.episode_bounds(data) == [(0, 4, True), (4, 6, False), (6, 7, False)]


# ------------------------------------------------------------ both sides
@pytest.mark.slow
def test_both_sides_at_a_tiny_budget(capsys, tmp_path):
    if not driver.PEER_PYTHON.exists():
        pytest.skip(f"no d3rlpy virtualenv at {driver.PEER_PYTHON}; make it with bash benchmarks/make_peer_venv.sh")
    out_json = tmp_path / "peer.json"
    code, out, err = _run(capsys, DATASET, *TINY, "--json", str(out_json))
    assert code == 0, err
    assert "d3rlpy: d3rlpy 2.8.1" in out
    assert "transitions equal ours" in out and "difference of means" in out
    row = next(line for line in out.splitlines() if line.startswith("| 0 |"))
    assert "n/a" not in row
    runs = json.loads(out_json.read_text())["runs"]
    assert [e["step"] for e in runs["d3rlpy"]["0"]["evaluations"]] == [100, 200]
    assert runs["d3rlpy"]["0"]["extra"]["export_max_abs_diff"] < 1e-5
    assert runs["d3rlpy"]["0"]["extra"]["normaliser_max_abs_diff"] < 1e-4
