"""``rkl-bench run CONFIG --resume ARCHIVE``: a grid goes on from a results archive alone.

The case it serves: a grid half run on one machine (or cluster) whose
experiment directory is gone, and only its committed archive is left. The
resume runs exactly the trials the archive lacks, in a new experiment
directory with no Tune state, and the archive they are exported into then
equals the archive of one uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from rkl_bench import cli
from rkl_bench.training.archive import comparable_rows, export_results, load_archive, write_archive
from test_service_run import config_copy, trial_dirs
from test_service_support import write_smoke_datasets

HOPPER = "hopper-random-expert-v2"


def comparable(archive_dir: Path) -> dict:
    """Each trial's rows without the fields that differ between two honest runs (the archive's own rule)."""
    return {key: comparable_rows(trial.rows) for key, trial in load_archive(archive_dir).trials.items()}


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    """The smoke grid (bc, td3_bc, td3_rkl; one dataset; one seed) run once, uninterrupted, and its archive."""
    root = tmp_path_factory.mktemp("complete")
    with pytest.MonkeyPatch.context() as patch:  # the per-test cache isolation is not set up yet at module scope
        for name in ("RKL_BENCH_FORGE_DIR", "D4RL_DATASET_DIR"):
            patch.setenv(name, str(root / name.lower()))
        write_smoke_datasets()
        config = config_copy(root, name="from_archive")
        assert cli.main(["run", str(config), "--storage", str(root / "machine_a"), "--no-report"]) == 0
    export_results(root / "machine_a" / "from_archive", root / "complete")
    return config, root / "complete"


def partial_archive(complete: Path, out: Path, keep: set[str]) -> Path:
    """A copy of ``complete`` holding only the trials of the learners in ``keep``."""
    archive = load_archive(complete)
    archive.trials = {key: trial for key, trial in archive.trials.items() if key[0] in keep}
    write_archive(archive, out)
    return out


def test_resume_from_an_archive_runs_only_the_missing_trials_on_a_machine_without_tune_state(
    complete_run, tmp_path, capsys, monkeypatch
):
    config, complete = complete_run
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    archive = partial_archive(complete, tmp_path / "results" / "from_archive", keep={"bc", "td3_rkl"})
    storage = tmp_path / "machine_b"  # a new machine: no experiment directory, no Tune state

    code = cli.main(["run", str(config), "--storage", str(storage), "--resume", str(archive),
                     "--report-dir", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 of 3 seed runs held there at the start, 1 started here" in out
    assert "grid: 1 of 3 seed runs to run (3 learners x 1 dataset x 1 seed), 60 seed-steps of training" in out
    assert "time: the archive has not timed td3_bc (nor its learner under another label), so no estimate" in out
    ran = trial_dirs(storage / "from_archive")
    assert set(ran) == {"td3_bc"}, "only the trial the archive lacks runs"
    record = json.loads((storage / "from_archive" / "rkl_bench_experiment.json").read_text())
    assert sorted(tuple(cell) for cell in record["archived_trials"]) == [("bc", HOPPER, 0), ("td3_rkl", HOPPER, 0)]
    params = json.loads((ran["td3_bc"] / "params.json").read_text())
    assert (params["algo"], params["dataset"], params["seed"]) == ("td3_bc", HOPPER, 0)

    # The report of the resume covers the archive's trials and the new one.
    table = (tmp_path / "report" / "table2.csv").read_text()
    for label in ("BC", "TD3+BC", "TD3+RKL"):
        assert label in table

    # Exported into the archive, the new trial completes it: equal to the uninterrupted run's archive.
    summary = export_results(storage / "from_archive", archive)
    assert (summary.added, summary.kept) == (1, 2)
    assert comparable(archive) == comparable(complete)
    assert load_archive(archive).trials[("td3_bc", HOPPER, 0)].config == load_archive(complete).trials[("td3_bc", HOPPER, 0)].config


def test_a_part_of_the_grid_resumed_from_its_archive_runs_its_missing_cells_and_merges_back(
    complete_run, tmp_path, capsys, monkeypatch
):
    # A grid split by learner or dataset (sessions too short for the whole, or clusters each taking a
    # part): the part's config names some of the grid's learners, the archive is the whole grid's.
    config, complete = complete_run
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    archive = partial_archive(complete, tmp_path / "results" / "from_archive", keep={"bc"})
    storage = tmp_path / "machine_e"

    code = cli.main(["run", str(config), "--learners", "bc,td3_bc", "--storage", str(storage), "--resume", str(archive),
                     "--no-report"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "grid: 1 of 2 seed runs to run (2 learners x 1 dataset x 1 seed)" in out
    assert set(trial_dirs(storage / "from_archive")) == {"td3_bc"}, "the part's cell the archive lacks, nothing else"

    summary = export_results(storage / "from_archive", archive)
    assert (summary.added, summary.kept) == (1, 1)
    merged = load_archive(archive)
    assert merged.record == load_archive(complete).record, "the archive keeps the whole grid's record"
    assert comparable(archive) == {key: rows for key, rows in comparable(complete).items() if key[0] != "td3_rkl"}

    # The rest of the grid then runs from the merged archive with the whole config: td3_rkl alone.
    code = cli.main(["run", str(config), "--storage", str(tmp_path / "machine_f"), "--resume", str(archive), "--no-report"])
    assert code == 0
    assert "grid: 1 of 3 seed runs to run" in capsys.readouterr().out
    assert set(trial_dirs(tmp_path / "machine_f" / "from_archive")) == {"td3_rkl"}

    # A config file can be a part too; one that changes a learner's hyper-parameters is not.
    data = yaml.safe_load(config.read_text())
    data["algorithms"] = {"td3_bc": {**data["algorithms"]["td3_bc"], "batch_size": 64}}
    part = tmp_path / "part" / "from_archive.yaml"
    part.parent.mkdir()
    part.write_text(yaml.safe_dump(data))
    assert cli.main(["run", str(part), "--storage", str(tmp_path / "machine_g"), "--resume", str(archive)]) == 2
    assert "the archive is of another experiment (learner td3_bc differ)" in capsys.readouterr().err
    assert not (tmp_path / "machine_g").exists() or not any((tmp_path / "machine_g").iterdir())

    # Names the config lacks are one error naming what it has.
    assert cli.main(["run", str(config), "--learners", "td3_bc,sac", "--storage", str(tmp_path / "machine_g")]) == 2
    err = capsys.readouterr().err
    assert "--learners: sac not in" in err and "(it has bc, td3_bc, td3_rkl)" in err and err.count("\n") == 1
    assert cli.main(["run", str(config), "--datasets", "walker2d-medium", "--storage", str(tmp_path / "machine_g")]) == 2
    assert "--datasets: walker2d-medium not in" in capsys.readouterr().err
    assert not (tmp_path / "machine_g").exists() or not any((tmp_path / "machine_g").iterdir())


def test_a_time_limit_starts_only_the_trials_the_archive_rates_say_will_end_in_it(
    complete_run, tmp_path, capsys, monkeypatch
):
    # The grid gains a column, bc@again (BC's hyper-parameters under another label); the archive holds the
    # three trials of the complete run, so bc@again is left, its length borrowed from bc's archived rate.
    from rkl_bench.service.config import load_config
    from rkl_bench.service.dataset_specs import resolve_datasets
    from rkl_bench.service.run import experiment_record

    config, complete = complete_run
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["algorithms"]["bc@again"] = data["algorithms"]["bc"]
    grid = tmp_path / "grid" / "from_archive.yaml"
    grid.parent.mkdir()
    grid.write_text(yaml.safe_dump(data))
    loaded = load_config(grid)
    archive = load_archive(complete)
    archive.record = experiment_record(loaded, resolve_datasets(loaded))
    bc = archive.trials[("bc", HOPPER, 0)]
    bc.rows = [dict(row, wall_time=float(row["step"])) for row in bc.rows]  # 1 seed-step/s: a 60 s trial
    write_archive(archive, tmp_path / "archive")

    def run(limit: str, storage: str) -> tuple[int, str]:
        code = cli.main(["run", str(grid), "--storage", str(tmp_path / storage), "--resume", str(tmp_path / "archive"),
                         "--time-limit", limit, "--no-report"])
        return code, capsys.readouterr().out

    code, out = run("30s", "short")  # 60 s does not fit in 30 s
    assert code == 0, out
    assert "time limit: 0.01 h left; 0 trial(s) planned to end in it" in out and "bc@again on hopper-random-expert-v2" in out
    assert "3 of 4 seed runs held there at the start, 0 started here, 1 deferred by --time-limit" in out
    assert "deferred: 1 seed run(s) would have ended after --time-limit" in out
    assert not (tmp_path / "short").exists() or not any((tmp_path / "short").iterdir()), "nothing started, nothing written"

    code, out = run("1h", "long")
    assert code == 0, out
    assert "1 trial(s) planned to end in it (the last about 0.02 h from now), 0 deferred" in out
    assert set(trial_dirs(tmp_path / "long" / "from_archive")) == {"bc@again"}
    assert "deferred:" not in out

    # Bad uses are one error before anything runs.
    assert cli.main(["run", str(grid), "--storage", str(tmp_path / "x"), "--time-limit", "1h"]) == 2
    assert "--time-limit needs --resume ARCHIVE" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", str(grid), "--time-limit", "soon"])
    assert "expected a duration such as 2.5h" in capsys.readouterr().err


def test_resume_from_a_complete_archive_runs_nothing_and_reports_it(complete_run, tmp_path, capsys, monkeypatch):
    config, complete = complete_run
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    storage = tmp_path / "machine_c"
    code = cli.main(["run", str(config), "--storage", str(storage), "--resume", str(complete),
                     "--report-dir", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 of 3 seed runs held there at the start, nothing left to run" in out
    assert not storage.exists() or not any(storage.iterdir()), "no experiment directory for nothing to run"
    assert "TD3+RKL" in (tmp_path / "report" / "table2.csv").read_text()


def test_an_archive_of_another_experiment_or_no_archive_is_one_error_before_anything_runs(
    complete_run, tmp_path, capsys
):
    config, complete = complete_run
    write_smoke_datasets()
    other = config_copy(tmp_path, name="from_archive", steps=90)
    storage = tmp_path / "machine_d"
    assert cli.main(["run", str(other), "--storage", str(storage), "--resume", str(complete)]) == 2
    err = capsys.readouterr().err
    assert "the archive is of another experiment (steps differ)" in err and err.count("\n") == 1

    not_archive = tmp_path / "empty"
    not_archive.mkdir()
    assert cli.main(["run", str(config), "--storage", str(storage), "--resume", str(not_archive)]) == 2
    err = capsys.readouterr().err
    assert f"--resume {not_archive}: not a results archive" in err
    assert not storage.exists() or not any(storage.iterdir()), "nothing written"

    # A trial the grid does not have (an archive edited by hand, or of a grid with more seeds).
    archive = load_archive(complete)
    stranger = dict(archive.trials)
    key = ("bc", HOPPER, 0)
    stranger[("bc", HOPPER, 7)] = type(archive.trials[key])("bc", HOPPER, 7, archive.trials[key].config,
                                                            [dict(r, seed=7) for r in archive.trials[key].rows])
    archive.trials = stranger
    write_archive(archive, tmp_path / "stranger")
    assert cli.main(["run", str(config), "--storage", str(storage), "--resume", str(tmp_path / "stranger")]) == 2
    assert "holds bc on hopper-random-expert-v2 seed 7, which is not a trial of this grid" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "stranger")


def test_export_to_puts_each_finished_trial_into_the_archive_without_an_export_command(
    complete_run, tmp_path, capsys, monkeypatch
):
    # The session-spanning loop in one command: resume from the archive, export into it as trials finish.
    config, complete = complete_run
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    archive = partial_archive(complete, tmp_path / "results" / "from_archive", keep={"bc"})
    storage = tmp_path / "machine_h"

    code = cli.main(["run", str(config), "--storage", str(storage), "--resume", str(archive),
                     "--export-to", str(archive), "--no-report"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "exported: " in out and f"into {archive}" in out
    assert comparable(archive) == comparable(complete), "the archive is whole without a results export"
    assert load_archive(archive).record == load_archive(complete).record


def test_a_bad_export_to_is_one_error_before_anything_runs(complete_run, tmp_path, capsys):
    config, complete = complete_run
    write_smoke_datasets()
    storage = tmp_path / "machine_i"
    other = config_copy(tmp_path, name="from_archive", steps=90)  # another experiment than the archive's
    assert cli.main(["run", str(other), "--storage", str(storage), "--export-to", str(complete)]) == 2
    err = capsys.readouterr().err
    assert f"--export-to {complete}: the archive is of another experiment (steps differ)" in err and err.count("\n") == 1

    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("x")
    assert cli.main(["run", str(config), "--storage", str(storage), "--export-to", str(foreign)]) == 2
    assert "exists and is not a results archive (no archive.json)" in capsys.readouterr().err
    assert not storage.exists() or not any(storage.iterdir()), "nothing written"
    assert sorted(p.name for p in foreign.iterdir()) == ["todo.txt"]
