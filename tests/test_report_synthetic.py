"""A synthetic experiment with known numbers, in both result layouts.

The other ``test_report_*`` modules import :func:`make_experiment` from here;
the tests below only check the loader sees what was written.

Every run evaluates 12 times (steps 1000..12000, budget 12000). The first two
scores are 0; the last ten alternate ``final ± 1``, so the mean of the last
10 evaluations is exactly ``final`` and the last evaluation alone is
``final - 1``. Per-seed finals are ``mean + spread * offset``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rkl_bench.report.results import load_experiment

STEPS, EVALS = 12_000, 12
TUNE_CELLS = {
    # (algo, dataset): per-seed finals (5 seeds), Tune layout
    ("bc", "halfcheetah-random-v2"): [2.0] * 5,
    ("bc", "hopper-random-v2"): [9.0] * 5,
    ("bc", "walker2d-random-v2"): [1.0] * 5,
    ("td3_bc", "halfcheetah-random-v2"): [8.0, 9.0, 10.0, 11.0, 12.0],
    ("td3_bc", "hopper-random-v2"): [11.0] * 5,
    ("td3_bc", "walker2d-random-v2"): [4.0] * 5,
    ("td3_rkl", "halfcheetah-random-v2"): [20.0, 22.0, 24.0, 26.0, 28.0],
    ("td3_rkl", "hopper-random-v2"): [11.0] * 5,
    ("td3_rkl", "walker2d-random-v2"): [2.0] * 5,
}
SINGLE_CELLS = {
    # (algo, dataset): per-seed finals, single-run layout (metrics.jsonl)
    ("td3_bc", "forge-v5/hopper-random-expert"): [60.0] * 5,
    ("td3_rkl", "forge-v5/hopper-random-expert"): [77.0, 80.0, 83.0],  # seeds 0-2; seed 3 still running
    ("td3_rkl", "hopper-medium-v2"): [49.0, 51.0],
}
RUNNING = ("td3_rkl", "forge-v5/hopper-random-expert", 3)


def scores_for(final: float, evals: int = EVALS) -> list[float]:
    tail = [final + (1.0 if i % 2 == 0 else -1.0) for i in range(10)]
    return [0.0] * (evals - 10) + tail


def _rows(algo: str, dataset: str, seed: int, scores: list[float]) -> list[dict]:
    version = "d4rl-v2" if dataset.endswith("-v2") else "forge-v5:aaaa+forge-v5:bbbb"
    return [
        {"algo": algo, "dataset": dataset, "dataset_version": version, "seed": seed, "step": 1000 * (i + 1),
         "total_steps": STEPS, "eval_episodes": 10, "return_mean": 100.0 * s, "return_std": 1.0,
         "normalized_score": s, "normalized_std": 0.5, "critic_loss": 1.0, "actor_loss": -1.0, "wall_time": 1.0 + i}
        for i, s in enumerate(scores)
    ]


def _write_lines(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_experiment(root: Path) -> Path:
    """Write the synthetic experiment under ``root / 'exp'`` and return that directory."""
    exp = root / "exp"
    trial = 0
    for (algo, dataset), finals in TUNE_CELLS.items():
        for seed, final in enumerate(finals):
            name = f"train_{trial:05d}_{trial}_algo={algo},dataset={dataset},seed={seed}_2025-01-01_00-00-00"
            tune_rows = [dict(row, training_iteration=i + 1, trial_id=f"t{trial:05d}", timestamp=1700000000 + i,
                              config={"algo": algo, "dataset": dataset, "seed": seed}, done=False)
                         for i, row in enumerate(_rows(algo, dataset, seed, scores_for(final)))]
            tune_rows.append({"training_iteration": EVALS + 1, "trial_id": f"t{trial:05d}", "done": True})  # bookkeeping only
            _write_lines(exp / name / "result.json", tune_rows)
            (exp / name / "params.json").write_text(json.dumps({"algo": algo, "dataset": dataset, "seed": seed}))
            trial += 1
    for (algo, dataset), finals in SINGLE_CELLS.items():
        for seed, final in enumerate(finals):
            run = exp / "single" / algo / dataset.replace("/", "_") / f"seed{seed}"
            _write_lines(run / "metrics.jsonl", _rows(algo, dataset, seed, scores_for(final)))
    algo, dataset, seed = RUNNING
    _write_lines(exp / "single" / algo / dataset.replace("/", "_") / f"seed{seed}" / "metrics.jsonl",
                 _rows(algo, dataset, seed, scores_for(95.0)[:6]))
    rng = np.random.default_rng(0)
    lambdas_dir = exp / "single" / "td3_rkl" / "forge-v5_hopper-random-expert" / "seed0"
    np.savez(lambdas_dir / "lambdas.npz", expert=rng.uniform(0.6, 1.0, 300), random=rng.uniform(0.0, 0.5, 300))
    return exp


def test_loader_reads_both_layouts_recursively(tmp_path):
    exp = make_experiment(tmp_path)
    experiment = load_experiment(exp)
    expected_runs = sum(len(f) for f in TUNE_CELLS.values()) + sum(len(f) for f in SINGLE_CELLS.values()) + 1
    assert len(experiment.runs) == expected_runs
    names = {p.name for p in experiment.files}
    assert names == {"result.json", "metrics.jsonl"}
    run = next(r for r in experiment.runs if r.algo == "td3_rkl" and r.dataset.name == "halfcheetah-random-v2" and r.seed == 2)
    assert [e.step for e in run.evaluations] == [1000 * (i + 1) for i in range(EVALS)]
    assert run.complete and run.dataset_versions == ("d4rl-v2",)
    running = [r for r in experiment.runs if not r.complete]
    assert [(r.algo, r.dataset.name, r.seed) for r in running] == [RUNNING]
