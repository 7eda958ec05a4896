"""``rkl-bench run --time-limit``: the plan of which trials fit before a machine goes (``service/time_limit.py``)."""

from __future__ import annotations

import pytest

from rkl_bench.service.time_limit import PlannedTrial, parse_duration, plan_within, trial_lengths

H = 3600.0


def trial(algo: str, dataset: str, hours: float | None) -> PlannedTrial:
    return PlannedTrial(algo, f"forge-v5/{dataset}", (0, 1, 2), None if hours is None else hours * H)


def test_a_session_tail_goes_to_the_short_trials_further_down_the_list():
    # Two slots, 2.6 h left: two TD3 trials of 1.8 h fill both slots to 1.8 h; the third would end at
    # 3.6 h and is deferred, but the BC trials after it (0.75 h) still end at 2.55 h, one per slot.
    order = [trial("td3_bc", "hc-mr", 1.8), trial("td3_rkl", "hc-mr", 1.8), trial("td3_rkl@tuned", "hc-mr", 1.8),
             trial("bc", "hc-me", 0.75), trial("td3_bc", "hc-me", 1.8), trial("bc", "hop-mr", 0.75),
             trial("bc", "hop-me", 0.75)]
    plan = plan_within(order, slots=2, seconds_left=2.6 * H)
    assert [(t.algo, t.dataset) for t in plan.run] == [
        ("td3_bc", "forge-v5/hc-mr"), ("td3_rkl", "forge-v5/hc-mr"), ("bc", "forge-v5/hc-me"), ("bc", "forge-v5/hop-mr")]
    assert [(t.algo, t.dataset) for t in plan.deferred] == [
        ("td3_rkl@tuned", "forge-v5/hc-mr"), ("td3_bc", "forge-v5/hc-me"), ("bc", "forge-v5/hop-me")]
    assert plan.ends_after == pytest.approx(2.55 * H)
    assert ("bc", "forge-v5/hop-me", 2) in plan.deferred_keys and len(plan.deferred_keys) == 9
    line, = plan.lines()
    assert line.startswith("time limit: 2.60 h left; 4 trial(s) planned to end in it (the last about 2.55 h from now), "
                           "3 deferred: td3_rkl@tuned on hc-mr (1.8 h), td3_bc on hc-me (1.8 h), bc on hop-me (0.8 h)")


def test_one_slot_runs_in_order_and_an_unknown_length_is_deferred():
    order = [trial("bc", "a", 1.0), trial("td3_bc", "a", None), trial("bc", "b", 1.0), trial("bc", "c", 1.0)]
    plan = plan_within(order, slots=1, seconds_left=2.5 * H)
    assert [t.dataset for t in plan.run] == ["forge-v5/a", "forge-v5/b"]
    assert [(t.algo, t.dataset) for t in plan.deferred] == [("td3_bc", "forge-v5/a"), ("bc", "forge-v5/c")]
    assert "td3_bc on a (no rate)" in plan.lines()[0]
    nothing = plan_within(order, slots=2, seconds_left=0.5 * H)
    assert nothing.run == () and nothing.ends_after == 0.0 and len(nothing.deferred) == 4


def test_lengths_come_from_the_archived_rates_and_a_short_last_group_is_charged_a_whole_group():
    # Rates are seed-steps/s of one trial of K seeds; td3_rkl@tuned borrows td3_rkl's; sac has none.
    order = [("td3_rkl@tuned", "d", [0, 1, 2]), ("bc", "d", [3]), ("sac", "d", [0, 1, 2])]
    lengths = trial_lengths(order, steps=200_000, seeds_per_trial=3, rates={"td3_rkl": 100.0, "bc": 300.0})
    assert [t.seconds for t in lengths] == [6000.0, 2000.0, None]
    assert lengths[1].keys == [("bc", "d", 3)]


@pytest.mark.parametrize("text, seconds", [("2.5h", 9000.0), ("150m", 9000.0), ("90min", 5400.0), ("600s", 600.0),
                                           ("600", 600.0), (" 1h ", 3600.0), ("1h55m", 6900.0), ("2h 30min", 9000.0),
                                           ("1m30s", 90.0)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-1h", "0", "2 days", "30m1h", "1h1h", "h"])
def test_bad_durations_are_refused_with_the_forms_that_work(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def _grid(tmp_path, trial_cpus: float = 1.0):
    import yaml

    from rkl_bench.service.config import load_config

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({
        "algorithms": {"bc": {}, "td3_bc": {}}, "datasets": ["hopper-random-expert"], "dataset_source": "forge",
        "seeds": [0, 1, 2], "seeds_per_trial": 3, "steps": 200_000, "resources": {"cpus": trial_cpus},
        "evaluation": {"interval": 10_000, "episodes": 10},
    }))
    return path, load_config(path)


def test_cpus_sizes_the_local_ray_the_plan_schedules_on(tmp_path, monkeypatch):
    # Two 1.5 h trials and 2 h left: a Ray of the machine's 2 CPUs runs both side by side; one of 1 CPU
    # (--cpus 1: a second part beside a running one) runs the first and defers the second.
    from rkl_bench.service.grid_budget import concurrent_trials
    from rkl_bench.service.time_limit import plan_grid

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    _, config = _grid(tmp_path)
    specs, rates = ["forge-v5/hopper-random-expert"], {"bc": 600_000 / 5400, "td3_bc": 600_000 / 5400}
    assert [t.algo for t in plan_grid(config, specs, set(), rates, 2 * H).run] == ["bc", "td3_bc"]
    one = plan_grid(config, specs, set(), rates, 2 * H, slots=concurrent_trials(config, None, 1))
    assert [t.algo for t in one.run] == ["bc"] and [t.algo for t in one.deferred] == ["td3_bc"]
    assert concurrent_trials(config, None, 5) == 5 and concurrent_trials(config, None) == 2
    assert concurrent_trials(config, "10.0.0.1:6379", 5) is None, "a cluster's slots are its own"
    _, two_cpu_trials = _grid(tmp_path, trial_cpus=2.0)
    assert concurrent_trials(two_cpu_trials, None, 5) == 2


def test_bad_cpus_are_one_error_before_anything_runs(tmp_path, capsys):
    from rkl_bench import cli

    path, _ = _grid(tmp_path, trial_cpus=2.0)
    storage = tmp_path / "runs"
    assert cli.main(["run", str(path), "--storage", str(storage), "--cpus", "1"]) == 2
    err = capsys.readouterr().err
    assert "--cpus 1 is fewer than one trial needs (resources.cpus: 2 in" in err and err.count("error:") == 1
    assert cli.main(["run", str(path), "--storage", str(storage), "--cpus", "2", "--address", "127.0.0.1:1"]) == 2
    assert "--cpus sets the CPUs of a local Ray" in capsys.readouterr().err
    assert not storage.exists(), "nothing written"
    with pytest.raises(SystemExit):
        cli.main(["run", str(path), "--cpus", "0"])
    assert "--cpus" in capsys.readouterr().err


def test_cpus_reaches_the_forge_the_plan_and_the_local_ray(tmp_path, monkeypatch, capsys):
    # run_experiment up to Ray's start, with the data steps stubbed: --cpus 1 on a "2-CPU machine" makes the
    # forge files one at a time, plans on one slot and starts a Ray of one CPU.
    import contextlib

    from rkl_bench import cli
    from rkl_bench.service import run
    from rkl_bench.training.archive import Archive, ArchivedTrial, write_archive

    monkeypatch.setattr("os.cpu_count", lambda: 2)
    path, config = _grid(tmp_path)
    archive = tmp_path / "archive"
    spec = "forge-v5/hopper-random-expert"
    done = [ArchivedTrial(algo, spec, 0, {}, [{"algo": algo, "dataset": spec, "seed": 0, "step": 200_000,
                                               "wall_time": 5400.0, "seeds_per_trial": 3}]) for algo in ("bc", "td3_bc")]
    write_archive(Archive(run.experiment_record(config, (spec,)), {t.key: t for t in done}), archive)  # 1.5 h a trial
    seen = {}
    monkeypatch.setattr(run, "make_missing_forge_datasets", lambda specs, config, refresh, jobs: seen.update(jobs=jobs))
    monkeypatch.setattr(run, "check_datasets", lambda specs, config: None)

    @contextlib.contextmanager
    def no_ray(address, dashboard, num_cpus=None, connect_timeout=None):
        seen["num_cpus"] = num_cpus
        raise run.RklBenchError("stopped before Ray")
        yield

    monkeypatch.setattr(run, "ray_session", no_ray)
    code = cli.main(["run", str(path), "--storage", str(tmp_path / "runs"), "--resume", str(archive),
                     "--cpus", "1", "--time-limit", "2h"])
    out = capsys.readouterr().out
    assert code == 2 and seen == {"jobs": 1, "num_cpus": 1}
    # bc and td3_bc (seeds 1-2 each, 1.5 h) left: two slots would run both; one runs bc and defers td3_bc.
    assert "time limit: 2.00 h left; 1 trial(s) planned to end in it (the last about 1.50 h from now), 1 deferred" in out
