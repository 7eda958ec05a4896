"""benchmarks/precision_fidelity.py: bf16 scores against the fp32 seeds' spread, from result rows."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark_scripts import load_benchmark

fidelity = load_benchmark("precision_fidelity")


def write_run(root: Path, algo: str, dataset: str, seed: int, scores: list[float], bf16: bool = False,
              steps_per_second: float = 100.0) -> None:
    """One trial's result rows: an evaluation every 10 steps, budget 10 * len(scores)."""
    rows = []
    for i, score in enumerate(scores, start=1):
        row = {"algo": algo, "dataset": dataset, "seed": seed, "step": 10 * i, "total_steps": 10 * len(scores),
               "eval_episodes": 10, "normalized_score": score, "steps_per_second": steps_per_second}
        if bf16:
            row["matmul_precision"] = "bf16"
        rows.append(row)
    path = root / f"{algo}_{dataset.replace('/', '_')}_{seed}" / "result.json"
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def grid(root: Path, bf16_scores: dict[int, list[float]], bf16_rows: bool = True) -> None:
    fp32 = {0: [0, 10, 20, 30], 1: [0, 10, 30, 40], 2: [0, 10, 40, 50]}  # last-2 finals 25, 35, 45
    for seed, scores in fp32.items():
        write_run(root, "td3_bc", "forge-v5/hopper-medium", seed, scores, steps_per_second=300.0)
    for seed, scores in bf16_scores.items():
        write_run(root, "td3_bc@bf16", "forge-v5/hopper-medium", seed, scores, bf16=bf16_rows,
                  steps_per_second=450.0)


def test_a_bf16_mean_inside_the_fp32_spread_passes_and_counts_seeds(tmp_path, capsys):
    # bf16 finals (last 2 evaluations) 20, 40, 50: mean 36.7 inside fp32's [25, 45]; one seed (40) inside
    grid(tmp_path, {0: [0, 0, 20, 20], 1: [0, 0, 40, 40], 2: [0, 0, 50, 50]})
    code = fidelity.main([str(tmp_path), "--k", "2", "--markdown", str(tmp_path / "t.md")])
    out, _ = capsys.readouterr()
    assert code == 0, out
    line = next(l for l in out.splitlines() if l.startswith("| forge-v5/hopper-medium |"))
    assert "| 25.0, 35.0, 45.0 | 35.0 ± 8.2 | 20.0, 40.0, 50.0 | 36.7 ± 12.5 | [25.0, 45.0] | yes | 1/3 |" in line
    assert "td3_bc@bf16: rows' matmul precision bf16, median training 450 steps/s" in out
    assert "td3_bc: rows' matmul precision fp32, median training 300 steps/s" in out
    assert (tmp_path / "t.md").read_text().startswith("| dataset |")


def test_a_bf16_mean_outside_the_spread_fails(tmp_path, capsys):
    grid(tmp_path, {0: [0, 0, 60, 60], 1: [0, 0, 50, 50], 2: [0, 0, 70, 70]})
    code = fidelity.main([str(tmp_path), "--k", "2"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert "| NO | 0/3 |" in out and "verdict: FAILS" in out


def test_rows_that_fell_back_to_fp32_say_nothing(tmp_path, capsys):
    grid(tmp_path, {0: [0, 0, 35, 35]}, bf16_rows=False)
    code = fidelity.main([str(tmp_path), "--k", "2"])
    _, err = capsys.readouterr()
    assert code == 1
    assert "td3_bc@bf16 has no row trained in bf16" in err


def test_a_missing_column_is_one_error_line(tmp_path, capsys):
    grid(tmp_path, {})
    code = fidelity.main([str(tmp_path), "--variant", "td3_bc@bf16"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.strip().splitlines() == [
        "error: no dataset has complete runs of both 'td3_bc' and 'td3_bc@bf16' (columns with complete runs: td3_bc)"]
