"""``rkl-bench run --export-to``: finished trials reach the archive while the grid runs.

The run itself is in ``tests/test_archive_resume.py`` (a resume that exports
into its own archive ends equal to one uninterrupted run's archive); these
tests pin the pieces: the clock-driven export sees a trial only once it has
finished, says what it added, survives a failing export with one warning,
and two exports into one archive at once both land.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import rkl_bench.training.archive as archive_module
from rkl_bench.service.export_as_finished import ExportAsFinished
from rkl_bench.training.archive import export_results, load_archive
from test_results_archive import rows, write_experiment


def test_a_trial_is_exported_once_it_has_finished_and_only_then(tmp_path, capsys):
    experiment = write_experiment(tmp_path / "runs" / "grid", {"bc_0": rows("bc", 0, steps=(10,))})  # 10 of 20 steps
    archive = tmp_path / "results" / "grid"
    sync = ExportAsFinished(experiment, archive, interval=3600)

    assert sync.export_new() == 0
    assert not archive.exists(), "nothing finished: no archive written"

    with open(experiment / "bc_0" / "result.json", "a") as handle:  # the trial's last row arrives
        handle.write(json.dumps(rows("bc", 0)[1]) + "\n")
    assert sync.export_new() == 1
    assert [key for key in load_archive(archive).trials] == [("bc", "forge-v5/hopper-random-expert", 0)]
    assert "exported: 1 seed run(s) (bc on hopper-random-expert) into" in capsys.readouterr().out
    assert sync.export_new() == 0, "a trial already exported is not exported again"
    assert capsys.readouterr().out == ""


def test_the_clock_exports_while_inside_and_once_more_on_leaving(tmp_path, capsys):
    experiment = write_experiment(tmp_path / "runs" / "grid", {"bc_0": rows("bc", 0)})
    archive = tmp_path / "results" / "grid"
    with ExportAsFinished(experiment, archive, interval=0.05) as sync:
        deadline = time.monotonic() + 10
        while not archive.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert archive.exists(), "the thread exported without being asked"
        trial = experiment / "td3_bc_1"
        trial.mkdir()
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows("td3_bc", 1)))
        sync.interval = 3600  # the next tick is far away: only leaving the block can export it
    assert set(load_archive(archive).trials) == {("bc", "forge-v5/hopper-random-expert", 0),
                                                 ("td3_bc", "forge-v5/hopper-random-expert", 1)}
    assert sync.added == 2


def test_a_failing_export_is_one_warning_and_the_grid_goes_on(tmp_path, capsys):
    experiment = write_experiment(tmp_path / "runs" / "grid", {"bc_0": rows("bc", 0)})
    target = tmp_path / "results" / "grid"
    target.mkdir(parents=True)
    (target / "notes.txt").write_text("someone else's")  # not an archive: the export refuses it
    sync = ExportAsFinished(experiment, target, interval=3600)

    assert sync.export_new() == 0 and sync.export_new() == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1, "one line for one problem, not one per tick"
    assert "warning: --export-to" in err and "is not a results archive" in err and "stay in" in err
    assert (target / "notes.txt").read_text() == "someone else's" and sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_two_exports_into_one_archive_at_once_both_land(tmp_path, monkeypatch):
    # Two parts of a grid on one machine, each exporting as its trials finish: without the lock both
    # read the same archive, and the later write drops the other's trial.
    first = write_experiment(tmp_path / "a" / "grid", {"bc_0": rows("bc", 0)})
    second = write_experiment(tmp_path / "b" / "grid", {"td3_bc_0": rows("td3_bc", 0)})
    archive = tmp_path / "results" / "grid"
    write = archive_module.write_archive

    def slow_write(*args, **kwargs):
        time.sleep(0.3)  # a wide window between reading the archive and writing it back
        return write(*args, **kwargs)

    monkeypatch.setattr(archive_module, "write_archive", slow_write)
    errors: list[BaseException] = []

    def export(source: Path) -> None:
        try:
            export_results(source, archive)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=export, args=(source,)) for source in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert {key[0] for key in load_archive(archive).trials} == {"bc", "td3_bc"}
    assert (archive.parent / ".grid.lock").is_file(), "the lock lives beside the archive, not in it"
