"""``rkl-bench results status ARCHIVE``: a grid's standing from its archive alone (no config file, no Ray)."""

from __future__ import annotations

import json
import os
import time

import pytest
import yaml

from rkl_bench import cli
from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import load_config
from rkl_bench.service.grid_status import grid_status
from rkl_bench.service.run import experiment_record
from rkl_bench.training.archive import Archive, ArchivedTrial, write_archive

SPECS = ("forge-v5/hopper-random-expert", "forge-v5/walker2d-random-expert")


def record(tmp_path) -> dict:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "name": "mix", "algorithms": {"bc": {}, "td3_bc": {}}, "datasets": ["hopper-random-expert", "walker2d-random-expert"],
        "dataset_source": "forge", "seeds": [0, 1, 2], "seeds_per_trial": 3, "steps": 200_000,
        "evaluation": {"interval": 100_000, "episodes": 10},
    }))
    return experiment_record(load_config(path), SPECS)


def trial(algo, dataset, seed, score, wall, commit="abcdef1234", dirty=False):
    rows = [{"algo": algo, "dataset": dataset, "seed": seed, "step": step, "normalized_score": score * step / 200_000,
             "wall_time": wall * step / 200_000, "seeds_per_trial": 3, "git_commit": commit, "git_dirty": dirty}
            for step in (100_000, 200_000)]
    return ArchivedTrial(algo, dataset, seed, {}, rows)


@pytest.fixture
def archive(tmp_path):
    held = [trial("td3_bc", SPECS[0], seed, score, wall=6000.0) for seed, score in ((0, 10.0), (1, 20.0), (2, 33.0))]
    held += [trial("bc", SPECS[1], 0, 5.0, wall=2000.0, commit="1234567abc", dirty=True),
             trial("bc", SPECS[1], 2, 8.0, wall=2000.0, commit="1234567abc")]
    out = tmp_path / "results" / "mix"
    write_archive(Archive(record(tmp_path), {t.key: t for t in held}), out)
    return out


def test_status_shows_cells_scores_commits_and_what_is_left(archive):
    lines = grid_status(archive, slots=2)
    assert lines[0] == f"{archive}: grid mix (2 learners x 2 datasets x 3 seeds, 200,000 steps): 5 of 12 seed runs held"
    assert lines[1:5] == [
        "final normalised score, mean of the seeds held (how many of 3):",
        "dataset                 bc       td3_bc",
        "hopper-random-expert    -        21.0 (3)",  # the last row's score of each seed: (10 + 20 + 33) / 3
        "walker2d-random-expert  6.5 (2)  -",
    ]
    assert lines[5] == "code: 5 seed runs from 2 commit(s): abcdef1 3, 1234567 2 (1 from a dirty tree)"
    assert lines[6].startswith("grid: 7 of 12 seed runs to run (2 learners x 2 datasets x 3 seeds, 3 seeds per trial)")
    # bc: 3 x 200k / 2000 s = 300 seed-steps/s, td3_bc 100: 4 x 200k / 300 + 3 x 200k / 100 s = 8,667 s.
    assert "bc 300, td3_bc 100" in lines[7] and "about 2.4 trial-hours" in lines[7], lines[7]
    assert len(lines) == 8, "no plan without --time-limit"


def test_status_with_a_time_limit_lists_what_fits_in_the_grids_order(archive):
    # Left, in the grid's order (dataset by dataset, learner by learner): bc on hopper (seeds 0-2, 2000 s),
    # bc on walker2d (seed 1, charged a whole trial: 2000 s), td3_bc on walker2d (6000 s). One slot and
    # 8,100 s: the first two fit, the third would end at 10,000 s and is left for later.
    lines = grid_status(archive, time_limit=8100.0, slots=1)
    assert lines[-2] == "in 2.25 h on 1 run slot(s): 2 trial(s) fit (the last ends about 1.11 h from the start), 1 left for later"
    assert lines[-1] == "fits: bc on hopper-random-expert (seeds 0,1,2, 0.6 h), bc on walker2d-random-expert (seeds 1, 0.6 h)"
    # Two slots: td3_bc goes beside the two bc trials and ends at 6,000 s.
    assert grid_status(archive, time_limit=8100.0, slots=2)[-1].endswith("td3_bc on walker2d-random-expert (seeds 0,1,2, 1.7 h)")
    nothing = grid_status(archive, time_limit=600.0, slots=1)
    assert nothing[-1] == "in 0.17 h on 1 run slot(s): 0 trial(s) fit (the last ends about 0.00 h from the start), 3 left for later"


def test_the_cli_prints_the_status_and_bad_input_is_one_error(archive, tmp_path, capsys):
    assert cli.main(["results", "status", str(archive), "--time-limit", "2h15m", "--slots", "1"]) == 0
    out = capsys.readouterr().out
    assert "5 of 12 seed runs held" in out and out.rstrip().endswith("bc on walker2d-random-expert (seeds 1, 0.6 h)")
    assert cli.main(["results", "status", str(tmp_path / "none")]) != 0
    err = capsys.readouterr().err
    assert "archive.json does not exist" in err and err.count("error:") == 1
    with pytest.raises(SystemExit):
        cli.main(["results", "status", str(archive), "--time-limit", "soon"])
    assert "--time-limit" in capsys.readouterr().err


def test_an_archive_without_its_grids_record_is_refused_by_name(tmp_path):
    bare = tmp_path / "bare"
    write_archive(Archive(None, {t.key: t for t in [trial("bc", SPECS[0], 0, 1.0, 100.0)]}), bare)
    with pytest.raises(RklBenchError, match="bare: the archive has no experiment record"):
        grid_status(bare)


def test_the_markdown_table_holds_each_seeds_score_beside_the_mean(archive, capsys):
    assert cli.main(["results", "status", str(archive), "--markdown"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| dataset | bc | td3_bc |",
        "|---|---:|---:|",
        "| hopper-random-expert |  | 21.0 (10.0 / 20.0 / 33.0) |",
        "| walker2d-random-expert | 6.5 (5.0 / - / 8.0) |  |",  # seed 1 not held yet
    ]
    assert cli.main(["results", "status", str(archive), "--markdown", "--slots", "2"]) != 0
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--markdown prints the score table only" in err


def test_last_evals_scores_each_seed_by_the_mean_of_its_last_evaluations(archive, capsys):
    """Each seed's rows score 0.5 x and 1 x its final score at 100k and 200k: over the last two
    evaluations a seed scores 0.75 of its final one; a K beyond the rows held averages all of them."""
    lines = grid_status(archive, slots=2, last_evals=2)
    assert lines[1:5] == [
        "normalised score over each seed's last 2 evaluations, mean of the seeds held (how many of 3):",
        "dataset                 bc       td3_bc",
        "hopper-random-expert    -        15.8 (3)",  # 0.75 x (10 + 20 + 33) / 3 = 15.75
        "walker2d-random-expert  4.9 (2)  -",  # 0.75 x (5 + 8) / 2 = 4.875
    ]
    assert cli.main(["results", "status", str(archive), "--markdown", "--last-evals", "10"]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == [
        "| hopper-random-expert |  | 15.8 (7.5 / 15.0 / 24.8) |",
        "| walker2d-random-expert | 4.9 (3.8 / - / 6.0) |  |",
    ]
    with pytest.raises(SystemExit):
        cli.main(["results", "status", str(archive), "--last-evals", "0"])
    assert "--last-evals" in capsys.readouterr().err


# ------------------------------------------------------------ --running: trials in flight
def tune_trial_dir(storage, algo, dataset, seeds, steps, speed=40.0, torn=False, checkpoints=0, age=300.0,
                   seconds_per_row=None):
    """A Tune trial folder as a run leaves it: params.json, result.json rows up to each of ``steps``
    (with Tune's ``time_total_s`` advancing ``seconds_per_row`` a row, when given)."""
    directory = storage / "mix" / f"{algo}_{dataset.replace('/', '_')}_s{'-'.join(map(str, seeds))}_00000"
    directory.mkdir(parents=True)
    (directory / "params.json").write_text(json.dumps(
        {"algo": algo, "dataset": dataset, "seed": seeds[0], "seeds": list(seeds), "settings": {"steps": 200_000}}))
    lines = [json.dumps({"algo": algo, "dataset": dataset, "seed": seed, "step": step, "total_steps": 200_000,
                         "normalized_score": 1.0, "steps_per_second": speed, "training_iteration": 1,
                         **({} if seconds_per_row is None else {"time_total_s": (i + 1) * seconds_per_row})})
             for i, step in enumerate(steps) for seed in seeds]
    (directory / "result.json").write_text("\n".join(lines) + ("\n{\"algo\": \"td3" if torn else "\n"))
    for index in range(checkpoints):
        (directory / f"checkpoint_{index:06d}").mkdir()
    stamp = time.time() - age
    os.utime(directory / "result.json", (stamp, stamp))
    return directory


def test_running_lists_trials_in_flight_and_the_plan_keeps_their_slots(archive, tmp_path):
    storage = tmp_path / "runs1"
    where = tune_trial_dir(storage, "td3_bc", SPECS[1], (0, 1, 2), (100_000,), speed=40.0, torn=True, checkpoints=2)
    # Without --running: bc on hopper (2000 s), bc on walker2d seed 1 (2000 s) fit in 6000 s on one slot;
    # td3_bc on walker2d (6000 s more) does not.
    alone = grid_status(archive, time_limit=6000.0, slots=1)
    assert alone[-2].startswith("in 1.67 h on 1 run slot(s): 2 trial(s) fit (the last ends about 1.11 h")
    lines = grid_status(archive, time_limit=6000.0, slots=1, running=[storage])
    assert lines[-4] == "in flight (1 trial(s) in the --running folders, not finished):"
    assert where.is_relative_to(storage)
    assert lines[-3] == (f"  td3_bc on walker2d-random-expert (seeds 0,1,2, in {storage}): step 100,000 of 200,000; "
                         "last row 5 min ago; 40 steps/s lately, about 0.7 h left; newest checkpoint checkpoint_000001")
    # The in-flight trial holds the slot until 2,500 s and is not planned again: bc on hopper ends at
    # 4,500 s, bc on walker2d would end at 6,500 s.
    assert lines[-2] == "in 1.67 h on 1 run slot(s): 1 trial(s) fit (the last ends about 1.25 h from the start), 1 left for later"
    assert lines[-1] == "fits: bc on hopper-random-expert (seeds 0,1,2, 0.6 h)"


def test_running_counts_finished_trials_the_archive_lacks_and_trials_without_rows(archive, tmp_path):
    storage = tmp_path / "runs2"
    tune_trial_dir(storage, "bc", SPECS[1], (1,), (100_000, 200_000))  # finished, not exported yet
    tune_trial_dir(storage, "td3_bc", SPECS[1], (0, 1, 2), ())  # started, no row yet (behaviour fits, start-up)
    lines = grid_status(archive, time_limit=20_000.0, slots=1, running=[storage])
    assert lines[6].startswith("grid: 6 of 12 seed runs to run")  # bc seed 1 counts as done
    assert f"finished in {storage} and not in the archive: 1 seed run(s); export them " \
           f"(rkl-bench results export {storage} --out ARCHIVE)" in lines
    assert any(line.endswith("no result row of every seed yet (start-up or behaviour fits)") for line in lines)
    # The row-less td3_bc trial holds its slot for its whole length at the archive's rate (6,000 s);
    # bc on hopper is the one trial left to plan.
    assert lines[-2] == "in 5.56 h on 1 run slot(s): 1 trial(s) fit (the last ends about 2.22 h from the start), 0 left for later"


def test_running_refuses_a_folder_that_is_not_a_run(archive, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "none", "no such directory"), (tmp_path / "empty", "no Tune trial folders")):
        assert cli.main(["results", "status", str(archive), "--running", str(folder)]) != 0
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and message in err and str(folder) in err
    assert cli.main(["results", "status", str(archive), "--markdown", "--running", str(tmp_path / "empty")]) != 0
    assert "leave out --time-limit, --slots and --running" in capsys.readouterr().err


def test_the_time_left_of_a_trial_in_flight_is_by_tunes_clock_when_its_rows_have_it(archive, tmp_path):
    # The rows' steps_per_second is training alone (40); Tune's clock says 10k steps every 500 s (20
    # steps/s: evaluation and checkpoints too), so 150k steps left are about 2.1 h.
    storage = tmp_path / "runs3"
    tune_trial_dir(storage, "td3_bc", SPECS[1], (0, 1, 2), (10_000, 20_000, 30_000, 40_000, 50_000),
                   speed=40.0, seconds_per_row=500.0)
    (line,) = [line for line in grid_status(archive, running=[storage]) if "td3_bc on walker2d" in line]
    assert "step 50,000 of 200,000" in line and "20 steps/s lately, about 2.1 h left" in line, line
