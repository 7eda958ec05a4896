"""The report of a search beside its references (``rkl_bench.report.search_report``), from plain files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rkl_bench import cli
from rkl_bench.errors import RklBenchError
from rkl_bench.report.search_report import build_search_report, pair_score

LABELS = ["score:hopper-random-medium-replay", "score:walker2d-random-medium-replay"]


def write_search(root: Path) -> Path:
    """A finished staged search of 100 steps per pair (last 2 evaluations count), three trials."""
    search = root / "runs" / "study"
    (search / "figures").mkdir(parents=True)
    trials = [
        {"number": 0, "state": "COMPLETE", "value": 30.0, "steps_reached": 100, "pairs_done": 2,
         "params": {"regulariser": "mse", "zeta2": 5.0}, "pair_scores": [40.0, 20.0], "intermediate": {"50": 10.0, "100": 30.0},
         "initial_point": False},
        {"number": 1, "state": "PRUNED", "value": 5.0, "steps_reached": 50, "pairs_done": 0,
         "params": {"regulariser": "kernel", "kernel_sigma": 0.3, "zeta2": 1.0}, "pair_scores": [6.0, 4.0],
         "intermediate": {"50": 5.0}, "initial_point": False},
        {"number": 2, "state": "COMPLETE", "value": 12.5, "steps_reached": 100, "pairs_done": 2,
         "params": {"regulariser": "squared", "zeta2": 2.0}, "pair_scores": [15.0, 10.0], "intermediate": {"50": 9.0, "100": 12.5},
         "initial_point": True},
    ]
    summary = {
        "study_name": "study", "objective": "mean over 2 dataset(s) ...", "aggregate": "mean", "clock": "steps",
        "pair_labels": LABELS, "best": {"number": 0, "value": 30.0, "params": trials[0]["params"]}, "trials": trials,
        "space": {"regulariser": {"choices": ["squared", "kernel", "mse"]},
                  "kernel_sigma": {"type": "float", "low": 0.1, "high": 2.0, "log": True, "when": {"regulariser": ["kernel"]}},
                  "zeta2": {"type": "float", "low": -5.0, "high": 10.0, "log": False}},
    }
    (search / "search_summary.json").write_text(json.dumps(summary))
    record = {"config": {"steps": 100}, "search": {"objective": {"final_evals": 2, "aggregate": "mean"}}}
    (search / "rkl_bench_search.json").write_text(json.dumps(record))
    (search / "trials.csv").write_text("number,state\n0,COMPLETE\n1,PRUNED\n2,COMPLETE\n")
    (search / "best_config.yaml").write_text("name: study-best\n")
    (search / "figures" / "search_history.png").write_bytes(b"\x89PNG fake")
    return search


def write_reference(root: Path, runs: dict[tuple[str, str], list[tuple[int, float]]], total: int = 100) -> Path:
    """A grid's trial directories: one result.json per (algo, dataset) at seed 0."""
    refs = root / "runs" / "refs"
    for i, ((algo, dataset), evals) in enumerate(runs.items()):
        trial = refs / f"trial_{i}"
        trial.mkdir(parents=True)
        rows = [{"algo": algo, "dataset": f"forge-v5/{dataset}", "seed": 0, "step": step, "normalized_score": score,
                 "total_steps": total, "eval_episodes": 10} for step, score in evals]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return refs


def test_references_are_scored_by_the_searchs_rule(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    search = write_search(tmp_path)
    refs = write_reference(tmp_path, {
        ("td3_bc", "hopper-random-medium-replay"): [(50, 1.0), (100, 33.0)],
        ("td3_bc", "walker2d-random-medium-replay"): [(50, 20.0), (100, 40.0)],
        ("td3_rkl", "hopper-random-medium-replay"): [(50, 3.0), (100, 5.0)],
        ("td3_rkl", "walker2d-random-medium-replay"): [(50, 2.0)],  # stopped halfway
    })
    index = build_search_report(search, tmp_path / "reports" / "study", [refs])
    out = index.parent
    assert index.name == "index.html" and sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "best_config.yaml", "comparison.md", "figures", "index.html", "rkl_bench_search.json", "search_summary.json",
        "trials.csv", "trials.md"]
    table = (out / "comparison.md").read_text()
    # TD3+BC: (1 + 33) / 2 = 17 on hopper, (20 + 40) / 2 = 30 on walker2d -> 23.5; the best trial's 30 is bold.
    assert "| best trial 0 | 40.0 | 20.0 | **30.0** |" in table, table
    assert "best trial 0: regulariser=mse, zeta2=5." in table  # the setting, as a footnote (the table stays narrow)
    assert "| setting | hopper | walker2d |" in table and "(columns: each env's random-medium-replay)" in table
    assert "| TD3+BC [refs] | 17.0 | 30.0 | 23.5 |" in table, table
    # A reference that did not reach the budget gets no objective, and the page says why.
    assert "| TD3+RKL [refs] | 4.0 | — | — |" in table, table
    page = index.read_text()
    assert "TD3+RKL: walker2d-random-medium-replay reached 50 of 100 steps (no objective)." in page
    # Paths on the page are relative to the working directory, never the machine's absolute ones.
    assert "runs/study" in page and str(tmp_path) not in page
    trials = (out / "trials.md").read_text()
    assert "| 1 | pruned | 50 | 5.0 | kernel | 0.3 | 1 | 6.0 | 4.0 |" in trials, trials
    assert "| 0 | complete | 100 | 30.0 | mse | — | 5 | 40.0 | 20.0 |" in trials, trials
    assert (out / "figures" / "search_history.png").read_bytes() == b"\x89PNG fake"


def test_pair_score_is_the_mean_of_the_last_evaluations():
    assert pair_score([0.0, 10.0, 20.0, 40.0], 2) == 30.0 and pair_score([5.0], 4) == 5.0


def test_cli_report_of_a_search_and_its_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    search = write_search(tmp_path)
    refs = write_reference(tmp_path, {("td3_bc", "hopper-random-medium-replay"): [(100, 10.0)]})
    assert cli.main(["report", str(search), "--references", str(refs), "--out", "reports/s"]) == 0
    assert capsys.readouterr().out.strip().endswith("reports/s/index.html")
    # --references on a grid is a mistake, named in one line.
    assert cli.main(["report", str(refs), "--references", str(refs), "--out", "reports/g"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--references is for the report of a search" in err[0]
    assert not (tmp_path / "reports" / "g").exists()


def test_a_search_dir_without_its_record_is_one_clear_error(tmp_path):
    search = write_search(tmp_path)
    (search / "rkl_bench_search.json").unlink()
    with pytest.raises(RklBenchError, match="holds no rkl_bench_search.json"):
        build_search_report(search, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_shipped_best_config_names_the_reports_copy_not_the_machine(tmp_path):
    from rkl_bench.report.search_report import relocated_header

    text = ("# Best trial of study 'study' (sqlite:////work/runs/study/optuna.db): trial 0, objective 20.9\n"
            "# = mean over 3 dataset(s).\n"
            "# Run it (and change datasets/seeds/steps for a bigger grid): rkl-bench run /work/runs/study/best_config.yaml\n"
            "name: study-best\nalgorithms:\n  td3_rkl: {q_weight: 2.5}\n")
    repo = tmp_path / "repo"
    out = relocated_header(text, repo / "reports" / "study" / "best_config.yaml", repo)
    lines = out.splitlines()
    assert lines[0] == "# Best trial of study 'study' (sqlite:///study/optuna.db): trial 0, objective 20.9"
    assert lines[2] == "# Run it (and change datasets/seeds/steps for a bigger grid): rkl-bench run reports/study/best_config.yaml"
    assert "/work/" not in out and out.endswith("name: study-best\nalgorithms:\n  td3_rkl: {q_weight: 2.5}\n")


def test_interrupted_trials_that_were_re_run_leave_the_trial_table_with_a_note():
    from rkl_bench.report.search_report import _counts, rerun_trials, trials_table

    trials = [
        {"number": 0, "state": "COMPLETE", "value": 2.0, "params": {"a": 1}, "steps_reached": 100, "pair_scores": [2.0]},
        {"number": 1, "state": "FAIL", "value": None, "params": {"a": 2}, "steps_reached": 0},
        {"number": 2, "state": "FAIL", "value": None, "params": {"a": 2}, "steps_reached": 0, "rerun_of": 1},
        {"number": 3, "state": "PRUNED", "value": 1.0, "params": {"a": 2}, "steps_reached": 50, "rerun_of": 2},
        {"number": 4, "state": "FAIL", "value": None, "params": {"a": 3}, "steps_reached": 0},  # failed, not re-run
    ]
    assert rerun_trials(trials) == {1: 2, 2: 3}
    assert _counts(trials) == {"COMPLETE": 1, "interrupted (re-run)": 2, "PRUNED": 1, "FAIL": 1}
    table = trials_table({"space": {"a": {}}, "clock": "steps", "trials": trials}, ["score:hopper-random-expert"])
    numbers = [row[0].text for section in table.sections for row in section]
    assert numbers == ["0", "3", "4"]
    assert any("Left out: 2 trial(s) interrupted" in n and "1 as 2, 2 as 3" in n for n in table.footnotes)
