"""The lines ``rkl-bench run`` prints before a grid starts: the work left, and with a results archive,
the time it takes at the archive's own measured rates (pure functions: no Ray)."""

from __future__ import annotations

import yaml

from rkl_bench.service.config import load_config
from rkl_bench.service.grid_budget import archived_rates, budget_lines
from rkl_bench.training.archive import Archive, ArchivedTrial

SPECS = ["forge-v5/hopper-random-expert", "forge-v5/walker2d-random-expert"]


def grid(tmp_path, algorithms):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "algorithms": {a: {} for a in algorithms}, "datasets": ["hopper-random-expert", "walker2d-random-expert"],
        "dataset_source": "forge", "seeds": [0, 1, 2], "seeds_per_trial": 3, "steps": 200_000,
        "evaluation": {"interval": 10_000, "episodes": 10},
    }))
    return load_config(path)


def trial(algo, dataset, seed, wall, stacked=None):
    rows = [{"step": step, "wall_time": wall * step / 200_000, **({"seeds_per_trial": stacked} if stacked else {})}
            for step in (100_000, 200_000)]
    return ArchivedTrial(algo, dataset, seed, {}, rows)


def test_a_fresh_grid_says_its_work_and_no_time(tmp_path):
    config = grid(tmp_path, ["bc", "td3_bc"])
    assert budget_lines(config, SPECS, set(), None, 2) == [
        "grid: 12 of 12 seed runs to run (2 learners x 2 datasets x 3 seeds, 3 seeds per trial), 2.4M seed-steps of training"]


def test_a_resumed_grid_times_what_is_left_at_the_archives_rates(tmp_path):
    config = grid(tmp_path, ["bc", "td3_bc", "td3_bc@q5", "td3_rkl"])
    held = [trial("td3_bc", SPECS[0], s, wall=4000.0, stacked=3) for s in (0, 1, 2)] + [
        trial("bc", SPECS[0], s, wall=1200.0 if s else 1500.0, stacked=3) for s in (0, 1, 2)]
    archive = Archive(None, {t.key: t for t in held})
    rates = archived_rates(archive)
    assert rates == {"td3_bc": 150.0, "bc": 500.0}, "3 stacked seeds x 200k steps over the trial's wall clock; median"
    lines = budget_lines(config, SPECS, set(archive.trials), rates, 2)
    assert lines[0] == ("grid: 18 of 24 seed runs to run (4 learners x 2 datasets x 3 seeds, 3 seeds per trial), "
                        "3.6M seed-steps of training")
    # bc 3 x 200k / 500 + td3_bc 3 x 200k / 150 + td3_bc@q5 6 x 200k / 150 (td3_bc's rate) = 13,200 s;
    # td3_rkl has no rate of its own learner: left out, and the time is a lower bound.
    assert lines[1] == ("time at the archive's rates (seed-steps/s per trial: bc 500, td3_bc 150, td3_bc@q5 150 (td3_bc's)): "
                        "at least 3.7 trial-hours, "
                        "1.8 h with 2 trial(s) at a time (not counted: td3_rkl, which the archive has not timed yet); "
                        "rates are the archive machines', a guide elsewhere")
    assert budget_lines(config, SPECS, set(archive.trials), rates, None)[1].count(" h with ") == 0, "a cluster: trial-hours only"
    # One trial left (a part of the grid: one learner, one dataset): one trial at a time, whatever the slots.
    one = budget_lines(grid(tmp_path, ["bc"]), SPECS[1:], set(), rates, 2)[1]
    assert "about 0.3 trial-hours, 0.3 h with 1 trial(s) at a time;" in one


def test_a_part_of_columns_the_archive_has_never_timed_says_so_instead_of_zero_hours(tmp_path):
    # The first td3_rkl@tuned trial of a grid whose archive holds only BC: no rate of its own or of its learner.
    rates = {"bc": 500.0}
    lines = budget_lines(grid(tmp_path, ["td3_rkl@tuned"]), SPECS[:1], set(), rates, 2)
    assert lines[1] == "time: the archive has not timed td3_rkl@tuned (nor its learner under another label), so no estimate"
