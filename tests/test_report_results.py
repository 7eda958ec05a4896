"""Reading result rows: dataset and algorithm names, and every kind of bad input."""

from __future__ import annotations

import json

import pytest

from rkl_bench.errors import RklBenchError
from rkl_bench.report.algos import canonical_algo
from rkl_bench.report.datasets import dataset_key
from rkl_bench.report.results import load_experiment

ROW = {"algo": "td3_rkl", "dataset": "hopper-random-v2", "seed": 0, "step": 1000, "total_steps": 2000,
       "eval_episodes": 10, "normalized_score": 10.0, "dataset_version": "d4rl-v2"}


def write(path, rows, tail=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)


@pytest.mark.parametrize("spec, group, env, source", [
    ("halfcheetah-random-v2", "Random", "halfcheetah", "d4rl-v2"),
    ("hopper-medium-replay-v2", "MediumReplay", "hopper", "d4rl-v2"),
    ("walker2d-medium-expert-v2", "MediumExpert", "walker2d", "d4rl-v2"),
    ("halfcheetah-expert-v2", "Expert", "halfcheetah", "d4rl-v2"),
    ("halfcheetah-random-medium-replay-v2", "Random-MediumReplay", "halfcheetah", "d4rl-v2"),
    ("Hopper-Random-Medium-Expert-v2", "Random-MediumExpert", "hopper", "d4rl-v2"),
    ("walker2d-random-expert-v2", "Random-Expert", "walker2d", "d4rl-v2"),
    ("forge-v5/halfcheetah-random", "Random", "halfcheetah", "forge-v5"),
    ("forge-v5/hopper-random-expert", "Random-Expert", "hopper", "forge-v5"),
    ("forge-v5/walker2d-random-medium-replay", "Random-MediumReplay", "walker2d", "forge-v5"),
    ("forge-v5-quick/hopper-expert", "Expert", "hopper", "forge-v5-quick"),
])
def test_dataset_names_map_to_table_groups(spec, group, env, source):
    key = dataset_key(spec)
    assert (key.group, key.env, key.source) == (group, env, source)
    assert key.is_paper_data == (source == "d4rl-v2")


@pytest.mark.parametrize("spec", ["hopper-medium-v2", "hopper-random-v1", "ant-random-v2", "minari:mujoco/hopper/expert-v0",
                                  "/data/my.hdf5", "forge-v5/hopper-medium", "forge-v4/hopper-random"])
def test_unknown_names_go_to_other(spec):
    key = dataset_key(spec)
    assert (key.group, key.label, key.in_table2) == ("Other", spec, False)


def test_algorithm_spellings_fold_together():
    assert {canonical_algo(n) for n in ("TD3+BC", "td3-bc", "td3_bc", " TD3_BC ")} == {"td3_bc"}


def test_nonexistent_and_empty_directories(tmp_path):
    with pytest.raises(RklBenchError, match="does not exist"):
        load_experiment(tmp_path / "nope")
    with pytest.raises(RklBenchError, match="no result rows .* found no metrics.jsonl or result.json"):
        load_experiment(tmp_path)
    write(tmp_path / "trial" / "result.json", [{"training_iteration": 1, "done": True}])
    with pytest.raises(RklBenchError, match="read 1 result file"):
        load_experiment(tmp_path)


def test_a_torn_last_line_is_skipped_with_a_warning_but_a_broken_line_is_an_error(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    write(path, [ROW, dict(ROW, step=2000)], tail='{"algo": "td3_rk')
    experiment = load_experiment(tmp_path)
    (run,) = experiment.runs
    assert [e.step for e in run.evaluations] == [1000, 2000]
    assert not run.complete, "a run with an unreadable line counts as missing"
    (warning,) = experiment.warnings
    assert warning.startswith(f"{path}:3: torn last line skipped")
    write(path, [ROW], tail='{"algo": "td3_rk\n' + json.dumps(dict(ROW, step=2000)) + "\n")
    with pytest.raises(RklBenchError, match=r"metrics.jsonl:2: not valid JSON"):
        load_experiment(tmp_path)


def test_rows_missing_contract_keys_or_finite_scores_are_errors(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    write(path, [{k: v for k, v in ROW.items() if k != "seed"}])
    with pytest.raises(RklBenchError, match=r"metrics.jsonl:1: result row lacks seed"):
        load_experiment(tmp_path)
    path.write_text(json.dumps(ROW).replace("10.0", "NaN") + "\n")
    with pytest.raises(RklBenchError, match="finite"):
        load_experiment(tmp_path)
    write(path, [dict(ROW, step="1000")])
    with pytest.raises(RklBenchError, match="step must be a number"):
        load_experiment(tmp_path)


def test_the_same_seed_in_two_directories_is_an_error(tmp_path):
    write(tmp_path / "a" / "metrics.jsonl", [ROW])
    write(tmp_path / "b" / "result.json", [ROW])
    with pytest.raises(RklBenchError, match="appears in both"):
        load_experiment(tmp_path)


def test_both_files_in_one_directory_are_one_run(tmp_path):
    write(tmp_path / "trial" / "metrics.jsonl", [ROW])
    write(tmp_path / "trial" / "result.json", [ROW, dict(ROW, step=2000, normalized_score=12.0)])
    (run,) = load_experiment(tmp_path).runs
    assert [(e.step, e.score) for e in run.evaluations] == [(1000, 10.0), (2000, 12.0)]


def test_a_run_short_of_its_budget_is_incomplete(tmp_path):
    write(tmp_path / "run" / "metrics.jsonl", [ROW])
    (run,) = load_experiment(tmp_path).runs
    assert not run.complete
    write(tmp_path / "run" / "metrics.jsonl", [{k: v for k, v in ROW.items() if k != "total_steps"}])
    (run,) = load_experiment(tmp_path).runs
    assert run.complete  # no budget given: nothing says it is unfinished
