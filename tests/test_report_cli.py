"""The ``rkl-bench report`` verb: exit codes, one error line, and all-or-nothing output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import rkl_bench.report as report_pkg
from rkl_bench.cli import main
from rkl_bench.report.output import MARKER


def tiny_experiment(root: Path) -> Path:
    """One run, one dataset: the cheapest report there is."""
    rows = [{"algo": "td3_rkl", "dataset": "hopper-random-v2", "seed": 0, "step": step, "total_steps": 2000,
             "eval_episodes": 10, "normalized_score": 10.0, "dataset_version": "d4rl-v2"} for step in (1000, 2000)]
    run = root / "exp" / "run0"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "exp"


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line]


@pytest.mark.parametrize("make_dir", [False, True], ids=["nonexistent", "empty"])
def test_bad_experiment_dir_is_one_error_line_exit_2_and_no_output(tmp_path, capsys, make_dir):
    experiment = tmp_path / "exp"
    if make_dir:
        experiment.mkdir()
    out = tmp_path / "reports" / "name"
    assert main(["report", str(experiment), "--out", str(out)]) == 2
    (line,) = error_lines(capsys)
    assert line.startswith("error: ") and str(experiment) in line
    assert not out.exists()
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_report_writes_then_replaces_an_older_report(tmp_path, capsys):
    experiment, out = tiny_experiment(tmp_path), tmp_path / "reports" / "name"
    assert main(["report", str(experiment), "--out", str(out), "--bootstrap", "50", "--toys", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out.strip() == str(out / "index.html")
    assert (out / MARKER).is_file() and (out / "table2.csv").is_file()
    (out / "stale.txt").write_text("from the older report")
    assert main(["report", str(experiment), "--out", str(out), "--bootstrap", "50", "--final", "final-episodes"]) == 0
    assert not (out / "stale.txt").exists()
    assert "final evaluation" in (out / "table2.md").read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["name"]  # no temporary siblings left


def test_an_unrelated_directory_is_never_replaced(tmp_path, capsys):
    experiment, out = tiny_experiment(tmp_path), tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    assert main(["report", str(experiment), "--out", str(out)]) == 2
    assert "is not a report" in error_lines(capsys)[0]
    assert (out / "thesis.tex").read_text() == "keep me"


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    experiment, out = tiny_experiment(tmp_path), tmp_path / "reports" / "name"

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_pkg, "learning_curves", broken)
    with pytest.raises(RuntimeError):
        report_pkg.build_report(experiment, out, bootstrap_reps=50)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_bad_options_are_errors(tmp_path, capsys):
    experiment = tiny_experiment(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["report", str(experiment), "--k", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["report", str(experiment), "--final", "best"])
