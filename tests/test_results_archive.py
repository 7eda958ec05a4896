"""Results archives (``rkl-bench results export``): finished trials' rows, merged, no checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rkl_bench import cli
from rkl_bench.errors import RklBenchError
from rkl_bench.training.archive import ARCHIVE_FILE, ROWS_FILE, export_results, load_archive, merge_archives

RECORD = {"config": {"name": "grid", "steps": 20}, "dataset_specs": ["forge-v5/hopper-random-expert"]}


def rows(algo: str, seed: int, steps=(10, 20), total: int = 20, offset: float = 0.0) -> list[dict]:
    return [{"algo": algo, "dataset": "forge-v5/hopper-random-expert", "seed": seed, "step": s, "total_steps": total,
             "normalized_score": 10.0 * seed + s + offset, "critic_loss": 1.0 / s, "wall_time": 3.0 * s,
             "training_iteration": i + 1, "pid": 1234, "config": {"algo": algo, "seed": seed, "hyperparams": {"q_weight": 2.5}}}
            for i, s in enumerate(steps)]


def write_experiment(root: Path, trials: dict[str, list[dict]], record: dict = RECORD, lambdas: bool = False) -> Path:
    root.mkdir(parents=True)
    (root / "rkl_bench_experiment.json").write_text(json.dumps(record))
    (root / "tuner.pkl").write_bytes(b"not archived")
    for name, lines in trials.items():
        trial = root / name
        (trial / "checkpoint_000001").mkdir(parents=True)
        (trial / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"x" * 1000)
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in lines))
        if lambdas:
            np.savez(trial / "lambdas.npz", random=np.full(100, 0.05, np.float32), expert=np.full(300, 0.95, np.float32))
    return root


def test_export_keeps_finished_trials_rows_without_tune_keys_or_checkpoints(tmp_path, capsys):
    # The record's Tune-state digests are the machine's, not the experiment's: not archived.
    exp = write_experiment(tmp_path / "grid", {
        "a": rows("td3_bc", 0), "b": rows("td3_rkl", 0), "c": rows("td3_bc", 1, steps=(10,)),  # c is still running
    }, record={**RECORD, "tune_state_sha256": {"tuner.pkl": ["ab" * 32]}}, lambdas=True)
    assert cli.main(["results", "export", str(exp), "--out", str(tmp_path / "results" / "grid")]) == 0
    assert "2 trial(s) added, 0 already there, 1 unfinished left out" in capsys.readouterr().out
    out = tmp_path / "results" / "grid"
    assert sorted(p.name for p in out.iterdir()) == [ARCHIVE_FILE, ROWS_FILE]
    archive = load_archive(out)
    assert archive.record == RECORD and set(archive.trials) == {
        ("td3_bc", "forge-v5/hopper-random-expert", 0), ("td3_rkl", "forge-v5/hopper-random-expert", 0)}
    trial = archive.trials[("td3_bc", "forge-v5/hopper-random-expert", 0)]
    assert [r["step"] for r in trial.rows] == [10, 20] and trial.rows[1]["normalized_score"] == 20.0
    assert not {"training_iteration", "pid", "config"} & set(trial.rows[0])
    assert trial.config["hyperparams"] == {"q_weight": 2.5}
    # lambda(s) as a histogram per component, not one float per row.
    hist = trial.lambdas["expert"]
    assert hist["rows"] == 300 and sum(hist["counts"]) == 300 and hist["counts"][47] == 300 and hist["mean"] == pytest.approx(0.95)
    assert trial.lambdas["random"]["counts"][2] == 100


def test_two_partial_archives_merge_into_the_complete_one(tmp_path):
    whole = write_experiment(tmp_path / "whole", {"a": rows("td3_bc", 0), "b": rows("td3_bc", 1), "c": rows("bc", 0)})
    part1 = write_experiment(tmp_path / "part1", {"a": rows("td3_bc", 0), "b": rows("td3_bc", 1, steps=(10,))})
    part2 = write_experiment(tmp_path / "part2", {"b": rows("td3_bc", 1), "c": rows("bc", 0)})
    export_results(whole, tmp_path / "complete")
    export_results(part1, tmp_path / "merged")
    summary = export_results(part2, tmp_path / "merged")  # into the same archive: adds what it lacks
    assert (summary.added, summary.kept, summary.unfinished) == (2, 1, 0)
    a, b = load_archive(tmp_path / "complete"), load_archive(tmp_path / "merged")
    assert a.trials.keys() == b.trials.keys() and all(a.trials[k].rows == b.trials[k].rows for k in a.trials)
    assert (tmp_path / "complete" / ROWS_FILE).read_text() == (tmp_path / "merged" / ROWS_FILE).read_text()
    merged, added = merge_archives([load_archive(tmp_path / "complete"), b])
    assert added == 0 and merged.trials.keys() == a.trials.keys()


def test_conflicting_rows_and_other_experiments_are_refused_and_nothing_changes(tmp_path):
    export_results(write_experiment(tmp_path / "one", {"a": rows("td3_bc", 0)}), tmp_path / "arch")
    before = (tmp_path / "arch" / ROWS_FILE).read_text()
    other = write_experiment(tmp_path / "two", {"a": rows("td3_bc", 0, offset=0.5)})
    with pytest.raises(RklBenchError, match="td3_bc on forge-v5/hopper-random-expert seed 0 is in both with different rows"):
        export_results(other, tmp_path / "arch")
    changed = write_experiment(tmp_path / "three", {"a": rows("td3_bc", 1)}, record={**RECORD, "config": {"name": "grid", "steps": 40}})
    with pytest.raises(RklBenchError, match="the experiments differ \\(steps\\)"):
        export_results(changed, tmp_path / "arch")
    assert (tmp_path / "arch" / ROWS_FILE).read_text() == before
    # No temporary left; the lock file beside the archive stays (removing it could let two exports hold two locks).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".arch.lock", "arch", "one", "three", "two"]


def test_torn_last_line_is_an_unfinished_trial_and_a_damaged_archive_is_named(tmp_path):
    exp = write_experiment(tmp_path / "grid", {"a": rows("td3_bc", 0), "b": rows("td3_bc", 1)})
    with open(exp / "b" / "result.json", "a") as handle:
        handle.write('{"algo": "td3_bc", "dataset": "forge-v5/hop')
    summary = export_results(exp, tmp_path / "arch")
    assert (summary.added, summary.unfinished) == (1, 1)
    (tmp_path / "arch" / ROWS_FILE).write_text((tmp_path / "arch" / ROWS_FILE).read_text() + "{torn\n")
    with pytest.raises(RklBenchError, match=f"{ROWS_FILE}:3: not a result row"):
        load_archive(tmp_path / "arch")
    with pytest.raises(RklBenchError, match="no finished trial to archive"):
        export_results(write_experiment(tmp_path / "empty", {"a": rows("bc", 0, steps=(10,))}), tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_report_of_two_partial_archives_equals_the_report_of_the_complete_run(tmp_path):
    from rkl_bench.report import build_report

    trials = {f"{algo}_{seed}": rows(algo, seed) for algo in ("td3_bc", "td3_rkl") for seed in (0, 1, 2)}
    whole = write_experiment(tmp_path / "whole", trials, lambdas=True)
    names = sorted(trials)
    write_experiment(tmp_path / "p1", {n: trials[n] for n in names[:4]}, lambdas=True)
    write_experiment(tmp_path / "p2", {n: trials[n] for n in names[3:]}, lambdas=True)
    export_results(tmp_path / "p1", tmp_path / "a1")
    export_results(tmp_path / "p2", tmp_path / "a2")
    kw = dict(expected_seeds=3, k=2, bootstrap_reps=200)
    one = build_report(whole, tmp_path / "r_whole", **kw)
    two = build_report([tmp_path / "a1", tmp_path / "a2"], tmp_path / "r_merged", **kw)
    mixed = build_report([whole, tmp_path / "a1"], tmp_path / "r_mixed", **kw)  # a dir and an archive of part of it
    for name in ("table2.csv", "table2.md", "aggregate.csv"):
        text = (one.out_dir / name).read_text()
        assert (two.out_dir / name).read_text() == text and (mixed.out_dir / name).read_text() == text, name
    # Fig. 4 from the archives' lambda(s) histograms, as from the run directories' lambdas.npz.
    assert sorted(p.name for p in (two.out_dir / "figures").glob("lambdas_*.png")) == sorted(
        p.name for p in (one.out_dir / "figures").glob("lambdas_*.png")) != []
    page = (two.out_dir / "index.html").read_text()
    assert str(tmp_path) not in page and "a1" in page and "a2" in page
    # The same run with other numbers in two inputs is refused.
    write_experiment(tmp_path / "p3", {"td3_bc_0": rows("td3_bc", 0, offset=1.0)})
    with pytest.raises(RklBenchError, match="td3_bc on forge-v5/hopper-random-expert with seed 0 is in both"):
        build_report([tmp_path / "a1", tmp_path / "p3"], tmp_path / "r_bad", **kw)
    assert not (tmp_path / "r_bad").exists()


def test_an_archive_checks_its_rows_file_against_the_digest_it_was_written_with(tmp_path):
    """archive.json keeps the SHA-256 of its rows.jsonl: rows from another export beside it (what a torn
    upload over an older archive leaves) are one error; rows.jsonl without archive.json is named as torn;
    an archive written before the digest existed still reads."""
    from rkl_bench.report import build_report
    from rkl_bench.training.archive import ROWS_DIGEST_KEY

    export_results(write_experiment(tmp_path / "one", {"a": rows("td3_bc", 0)}), tmp_path / "arch")
    export_results(write_experiment(tmp_path / "two", {"a": rows("td3_bc", 0), "b": rows("td3_bc", 1)}), tmp_path / "big")
    meta = json.loads((tmp_path / "arch" / ARCHIVE_FILE).read_text())
    assert len(meta[ROWS_DIGEST_KEY]) == 64
    (tmp_path / "arch" / ROWS_FILE).write_bytes((tmp_path / "big" / ROWS_FILE).read_bytes())
    with pytest.raises(RklBenchError, match=f"{tmp_path / 'arch'}: {ROWS_FILE} is not the one {ARCHIVE_FILE} was "
                                            "written with \\(its SHA-256 differs\\)"):
        load_archive(tmp_path / "arch")
    with pytest.raises(RklBenchError, match="SHA-256 differs"):
        build_report(tmp_path / "arch", tmp_path / "report")
    assert not (tmp_path / "report").exists()

    # Without the digest (an older archive), the rows are read as before: here they disagree with the entries.
    del meta[ROWS_DIGEST_KEY]
    (tmp_path / "arch" / ARCHIVE_FILE).write_text(json.dumps(meta))
    with pytest.raises(RklBenchError, match="have no trial entry"):
        load_archive(tmp_path / "arch")
    (tmp_path / "arch" / ROWS_FILE).write_text("".join(
        line + "\n" for line in (tmp_path / "big" / ROWS_FILE).read_text().splitlines() if '"seed": 0' in line))
    assert len(load_archive(tmp_path / "arch").trials) == 1

    (tmp_path / "big" / ARCHIVE_FILE).unlink()
    with pytest.raises(RklBenchError, match=f"{ROWS_FILE} without {ARCHIVE_FILE}: an archive upload that stopped"):
        build_report(tmp_path / "big", tmp_path / "report")


WHOLE = {"config": {"name": "grid", "steps": 20, "algorithms": {"bc": {}, "td3_bc": {"q_weight": 2.5}},
                    "datasets": ["hopper-random-expert", "walker2d-random-expert"]},
         "dataset_specs": ["forge-v5/hopper-random-expert", "forge-v5/walker2d-random-expert"]}
PART = {"config": {**WHOLE["config"], "algorithms": {"td3_bc": {"q_weight": 2.5}}, "datasets": ["hopper-random-expert"]},
        "dataset_specs": ["forge-v5/hopper-random-expert"]}


def test_a_part_of_a_grid_merges_into_the_whole_grids_archive_in_either_order(tmp_path):
    # A grid split over sessions or machines: one part runs td3_bc on one dataset; its archive
    # and the whole grid's merge, and the merged archive keeps the whole grid's record.
    whole = write_experiment(tmp_path / "whole", {"c": rows("bc", 0)}, record=WHOLE)
    part = write_experiment(tmp_path / "part", {"a": rows("td3_bc", 0), "b": rows("td3_bc", 1)}, record=PART)
    export_results(whole, tmp_path / "whole_first")
    assert export_results(part, tmp_path / "whole_first").added == 2
    export_results(part, tmp_path / "part_first")
    assert load_archive(tmp_path / "part_first").record == PART
    assert export_results(whole, tmp_path / "part_first").added == 1
    for name in ("whole_first", "part_first"):
        archive = load_archive(tmp_path / name)
        assert archive.record == WHOLE, name
        assert sorted(archive.trials) == [("bc", "forge-v5/hopper-random-expert", 0),
                                          ("td3_bc", "forge-v5/hopper-random-expert", 0),
                                          ("td3_bc", "forge-v5/hopper-random-expert", 1)]
    assert (tmp_path / "whole_first" / ROWS_FILE).read_text() == (tmp_path / "part_first" / ROWS_FILE).read_text()


@pytest.mark.parametrize("change, named", [
    ({"algorithms": {"td3_bc": {"q_weight": 1.0}}}, "learner td3_bc"),  # same learner, other hyper-parameters
    ({"algorithms": {"td3_rkl": {}}}, "learner td3_rkl"),  # a learner the grid does not have
    ({"datasets": ["halfcheetah-random-expert"]}, "datasets"),
    ({"seeds": [0, 1, 2]}, "seeds"),  # only learners and datasets may be narrowed
])
def test_a_part_that_is_not_of_the_grid_is_refused_naming_what_differs(tmp_path, change, named):
    export_results(write_experiment(tmp_path / "whole", {"c": rows("bc", 0)}, record=WHOLE), tmp_path / "arch")
    before = (tmp_path / "arch" / ROWS_FILE).read_text()
    record = {**PART, "config": {**PART["config"], **change}}
    with pytest.raises(RklBenchError, match=f"the experiments differ \\({named}\\)"):
        export_results(write_experiment(tmp_path / "part", {"a": rows("td3_bc", 0)}, record=record), tmp_path / "arch")
    assert (tmp_path / "arch" / ROWS_FILE).read_text() == before
