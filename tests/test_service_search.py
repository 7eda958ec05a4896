"""``rkl-bench tune``: search specs, the study's bookkeeping, and searches end to end.

The planted objective: a tiny Hopper-v4 dataset recorded with the constant
action (0, 0, 0.8) plus a little noise, and TD3+RKL with its Q term off
(``q_weight: 0``). The actor then minimises only Eq. 7,
``lambda * [(mu - a)^2 - rkl_alpha (mu - (a1 + a2)/2)^2]``; with every action
near the same c this is about ``(1 - rkl_alpha)(mu - c)^2``: below 1 the
actor learns c (a policy that keeps the hopper up: a normalised score of ~3
to 7), at 1 it has no pull at all, and above 1 it is pushed to the action
bounds (the hopper falls at once: < 1). So the region ``rkl_alpha < 1``
is known to beat the paper's default (1.0) clearly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rkl_bench import cli
from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import load_config
from rkl_bench.service.dataset_specs import resolve_datasets
from rkl_bench.service.search_config import load_search_config
from rkl_bench.service.search_trial import aggregate_scores, pair_final, search_pairs
from test_service_support import local_ray, write_smoke_datasets  # noqa: F401 - fixture

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"
SMOKE = CONFIGS / "optuna_smoke.yaml"
PLANTED_ACTION = np.array([0.0, 0.0, 0.8], np.float32)


def write_yaml(tmp_path: Path, data: dict, name: str = "search") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def smoke_data(**changes) -> dict:
    data = yaml.safe_load(SMOKE.read_text())
    for key, value in changes.items():
        if key.startswith("search."):
            data["search"][key[len("search."):]] = value
        else:
            data[key] = value
    return data


def error_of(path: Path) -> str:
    with pytest.raises(RklBenchError) as info:
        load_search_config(path)
    return str(info.value)


# ------------------------------------------------------------ shipped files
def test_shipped_search_configs_parse():
    real = load_search_config(CONFIGS / "optuna_lambda.yaml")
    assert real.algo == "td3_rkl" and set(real.search.names) == {"zeta1", "zeta2", "rkl_alpha"}
    assert real.search.param("zeta1").log and real.search.initial_points[0] == {"zeta1": 10.0, "zeta2": 5.0, "rkl_alpha": 1.0}
    assert real.experiment.dataset_source == "forge" and len(real.experiment.datasets) >= 3
    specs = resolve_datasets(real.experiment)
    assert all(s.startswith("forge-v5/") and "-random-" in s for s in specs), specs
    assert real.search.early_stopping.kind == "asha" and real.grace_period == len(specs)
    assert real.search.num_samples >= 30 and real.search.objective.final_evals > 1

    smoke = load_search_config(SMOKE)
    assert smoke.num_pairs == 2 and smoke.experiment.steps <= 100 and smoke.search.num_samples <= 4
    assert set(smoke.search.names) == {"zeta1", "zeta2", "rkl_alpha", "q_weight"}


# ------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"search.colour": 1}, "unknown key 'colour' in search"),
        ({"search.space": {"zeta3": {"low": 0, "high": 1}}}, "'zeta3' is not a hyper-parameter of td3_rkl"),
        ({"search.space": {"hidden_dim": {"low": 16, "high": 64}}}, "'hidden_dim' is both searched and fixed"),
        ({"search.space": {"rkl_alpha": {"low": -1.0, "high": 1.0}}}, "'rkl_alpha' must be >= 0"),
        ({"search.space": {"zeta1": {"low": 0.0, "high": 10.0, "log": True}}}, "a log scale needs low > 0"),
        ({"search.space": {"zeta1": {"low": 3.0, "high": 1.0}}}, "low (3.0) must be below high (1.0)"),
        ({"search.space": {"policy_freq": {"low": 1, "high": 4}}}, "policy_freq is a whole number; add type: int"),
        ({"search.space": {"zeta1": {"lo": 1, "high": 2}}}, "unknown key 'lo' in search.space.zeta1"),
        ({"search.initial_points": [{"zeta1": 100.0}]}, "initial_points[0].zeta1 = 100.0 is outside its search space"),
        ({"search.initial_points": [{"tau": 0.1}]}, "'tau' is not searched"),
        ({"search.objective": {"final_evals": 3}}, "final_evals (3) is more than the evaluations a pair makes (2"),
        ({"seeds": [0]}, "this search has one pair"),
        ({"search.early_stopping": {"grace_period": 2}}, "grace_period must be between 1 and 1"),
        ({"search.storage": "optuna.db"}, "neither a database URL"),
        ({"search.sampler": {"multivariate": "yes"}}, "multivariate must be true or false"),
        ({"algorithms": {"td3_rkl": {}, "td3_bc": {}}}, "a search tunes one algorithm"),
        ({"search.num_samples": 0}, "search.num_samples must be >= 1"),
    ],
)
def test_bad_search_configs_name_the_problem_and_the_file(tmp_path, changes, fragment):
    path = write_yaml(tmp_path, smoke_data(**changes))
    message = error_of(path)
    assert message.startswith(f"{path}: ") and fragment in message, message


def test_a_run_config_is_not_a_search(tmp_path):
    data = smoke_data()
    del data["search"]
    assert "missing key 'search'" in error_of(write_yaml(tmp_path, data))


def test_cli_tune_bad_config_exits_2_before_ray(tmp_path, capsys):
    path = write_yaml(tmp_path, smoke_data(**{"search.space": {"zeta3": {"low": 0, "high": 1}}}))
    status = cli.main(["tune", str(path), "--storage", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("error: ") and "zeta3" in err[0]
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()
    assert not (tmp_path / "runs").exists()


def test_cli_tune_resume_of_nothing_and_existing_directory(tmp_path, capsys):
    write_smoke_datasets()
    path = write_yaml(tmp_path, smoke_data(name="s"))
    runs = tmp_path / "runs"
    assert cli.main(["tune", str(path), "--storage", str(runs), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    (runs / "s").mkdir(parents=True)
    (runs / "s" / "something").write_text("x")
    assert cli.main(["tune", str(path), "--storage", str(runs)]) == 2
    assert "already exists; pass --resume" in capsys.readouterr().err


def test_nothing_is_written_when_the_data_cannot_be_made(tmp_path, monkeypatch):
    import rkl_bench.forge.make as make
    from rkl_bench.service.search import run_search

    def fail(names, profile, seed, jobs):
        raise RklBenchError("no behaviour policies")

    monkeypatch.setattr(make, "make_datasets", fail)
    path = write_yaml(tmp_path, smoke_data(dataset_source="forge"))
    with pytest.raises(RklBenchError, match="no behaviour policies"):
        run_search(path, storage=tmp_path / "runs", verbose=0)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_storages_create_reopen_and_check_the_record(tmp_path, kind):
    from rkl_bench.service.search import search_record
    from rkl_bench.service.study_store import create_study, open_storage, open_study
    from rkl_bench.service.search_config import storage_url

    write_smoke_datasets()
    config = load_search_config(write_yaml(tmp_path, smoke_data()))
    specs = resolve_datasets(config.experiment)
    record = search_record(config, specs)
    url = storage_url(None if kind == "sqlite" else f"journal:{tmp_path}/shared/study.log", tmp_path / "exp")
    assert url == (f"sqlite:///{tmp_path}/exp/optuna.db" if kind == "sqlite" else f"journal:{tmp_path}/shared/study.log")
    with pytest.raises(RklBenchError, match="nothing to resume"):
        open_storage(url, must_exist=True)
    study = create_study(open_storage(url), config, record)
    assert [t.params for t in study.get_trials()] == [{}] and study.trials[0].state.name == "WAITING"  # the initial point

    again = open_study(open_storage(url, must_exist=True), config.study_name, url, record, resume=True)
    assert again.user_attrs["rkl_bench_search"] == record and len(again.trials) == 1
    with pytest.raises(RklBenchError, match="already exists in .*pass --resume"):
        open_study(open_storage(url), config.study_name, url, record, resume=False)
    other = search_record(load_search_config(write_yaml(tmp_path, smoke_data(seeds=[0, 2]), "other")), specs)
    with pytest.raises(RklBenchError, match=r"different search \(seeds differ\)"):
        open_study(open_storage(url), config.study_name, url, other, resume=True)
    with pytest.raises(RklBenchError, match="no study 'elsewhere'"):
        open_study(open_storage(url), "elsewhere", url, record, resume=True)


# ------------------------------------------------------ objective pieces
def test_pairs_are_seed_major_and_scores_aggregate():
    assert search_pairs(["a", "b"], [0, 1]) == [["a", 0], ["b", 0], ["a", 1], ["b", 1]]
    assert pair_final([1.0, 2.0, 6.0], 2) == 4.0 and pair_final([5.0], 3) == 5.0
    assert aggregate_scores([1.0, 2.0, 9.0], "mean") == 4.0
    assert aggregate_scores([1.0, 2.0, 9.0], "median") == 2.0
    assert math.isnan(aggregate_scores([], "mean"))


def test_study_records_pairs_pruned_and_failed_trials():
    """StudySearch: one intermediate value per finished pair; stopped early -> PRUNED at its
    running score; all pairs -> COMPLETE; an objective that is not a number -> FAIL."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState

    from rkl_bench.service.study_search import StudySearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    search = StudySearch(space={"x": FloatDistribution(0, 1)}, metric="objective", mode="max", study_name="s", storage=storage)

    def row(done: int, objective: float) -> dict:
        return {"pairs_done": done, "pairs_total": 3, "objective": objective, "training_iteration": 1}

    configs = {tid: search.suggest(tid) for tid in ("a", "b", "c")}
    assert [configs[t]["optuna_trial"] for t in "abc"] == [0, 1, 2] and 0 <= configs["a"]["x"] <= 1
    for tid in "abc":
        search.on_trial_result(tid, row(0, math.nan))
    search.on_trial_result("a", row(1, 5.0))
    search.on_trial_result("a", row(1, 5.0))  # later rows of the same pair: no new value
    search.on_trial_result("a", row(2, 4.0))
    search.on_trial_complete("a", row(3, 4.5))
    search.on_trial_result("b", row(1, 2.0))
    search.on_trial_complete("b", row(1, 2.0))  # ASHA stopped it after one pair
    search.on_trial_complete("c", row(3, math.nan))

    study = optuna.load_study(study_name="s", storage=storage)
    a, b, c = study.trials
    assert (a.state, a.value, a.intermediate_values) == (TrialState.COMPLETE, 4.5, {1: 5.0, 2: 4.0, 3: 4.5})
    assert (b.state, b.value, b.intermediate_values) == (TrialState.PRUNED, 2.0, {1: 2.0})
    assert b.user_attrs["stopped_after_pairs"] == 1 and a.user_attrs["tune_trial_id"] == "a"
    assert c.state == TrialState.FAIL and "nan" in c.user_attrs["fail_reason"]


def test_importances_need_ten_complete_trials_and_find_what_matters():
    import optuna

    from rkl_bench.service.search_outputs import _importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: -abs(t.suggest_float("matters", 0, 1) - 0.2) + 0.001 * t.suggest_float("noise", 0, 1), n_trials=9)
    assert _importances(study, study.trials) is None
    study.optimize(lambda t: -abs(t.suggest_float("matters", 0, 1) - 0.2) + 0.001 * t.suggest_float("noise", 0, 1), n_trials=21)
    values = _importances(study, study.trials)
    assert set(values) == {"matters", "noise"} and values["matters"] > 0.8 and sum(values.values()) == pytest.approx(1)


def test_search_figures_from_plain_trials(tmp_path):
    from rkl_bench.report.search_figures import SearchTrial, write_search_figures

    trials = [
        SearchTrial(0, "COMPLETE", 2.0, {"a": 1.0, "q": 2.5}, {1: 3.0, 2: 2.0}, initial_point=True),
        SearchTrial(1, "PRUNED", 0.5, {"a": 2.0, "q": 1.0}, {1: 0.5}),
        SearchTrial(2, "COMPLETE", 4.0, {"a": 0.1, "q": 5.0}, {1: 4.5, 2: 4.0}),
        SearchTrial(3, "FAIL", None, {"a": 0.3, "q": 1.0}),
    ]
    files = write_search_figures(trials, {"a": 0.8, "q": 0.2}, {"a": True, "q": False}, tmp_path, importance_trials=12)
    stems = [Path(f.png).stem for f in files]
    assert stems == ["search_history", "search_importances", "search_slices", "search_intermediate"]
    for f in files:
        assert (tmp_path / f.png).stat().st_size > 1000 and (tmp_path / f.pdf).stat().st_size > 1000
    assert write_search_figures(trials[3:], None, {"a": True}, tmp_path / "none") == []


# ------------------------------------------------------ end to end (Ray)
def write_planted_dataset(rows: int = 600, noise: float = 0.03) -> Path:
    """``hopper_medium-v2.hdf5`` in ``$D4RL_DATASET_DIR``: Hopper-v4 rolled out with
    the constant action PLANTED_ACTION plus Gaussian noise (episodes of at most 200 steps)."""
    import gymnasium as gym

    from rkl_bench.data.d4rl import write_d4rl_hdf5

    env = gym.make("Hopper-v4")
    rng = np.random.default_rng(0)
    obs, acts, rews, terms, timeouts = [], [], [], [], []
    episode = 0
    while len(obs) < rows:
        o, _ = env.reset(seed=episode)
        episode += 1
        for t in range(200):
            a = np.clip(PLANTED_ACTION + noise * rng.normal(size=3), -1, 1).astype(np.float32)
            o2, r, term, trunc, _ = env.step(a)
            obs.append(o), acts.append(a), rews.append(r), terms.append(term)
            timeouts.append(bool(trunc or (not term and t == 199)))
            o = o2
            if term or timeouts[-1]:
                break
    env.close()
    timeouts[-1] = True
    directory = Path(os.environ["D4RL_DATASET_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    return write_d4rl_hdf5(
        directory / "hopper_medium-v2.hdf5",
        np.asarray(obs, np.float32), np.asarray(acts, np.float32), np.asarray(rews, np.float32),
        np.asarray(terms), np.asarray(timeouts),
        {"env": "hopper", "version": "d4rl-v2", "name": "hopper-medium-v2"},
    )


PLANTED = {
    "name": "planted",
    "algorithms": {
        "td3_rkl": {
            "q_weight": 0.0,  # Eq. 7 alone decides where the actor goes
            "actor_lr": 6e-3,
            "hidden_dim": 32,
            "batch_size": 64,
            "behaviour_steps": 50,
            "behaviour_batch_size": 64,
            "behaviour_hidden_dim": 32,
        }
    },
    "datasets": ["hopper-medium"],
    "dataset_source": "d4rl",
    "seeds": [0, 1],
    "steps": 400,
    "evaluation": {"interval": 200, "episodes": 3},
    "eval_actors": {"count": 1, "envs_per_actor": 3, "cpus": 0},
    "checkpoints": {"keep": 1},
    "max_failures": 0,
    "search": {
        "space": {"rkl_alpha": {"low": 0.0, "high": 2.5}, "zeta2": {"low": 2.0, "high": 8.0}},
        "num_samples": 8,
        "max_concurrent": 2,
        "initial_points": [{"rkl_alpha": 1.0, "zeta2": 5.0}],  # the paper's values
        "objective": {"final_evals": 1, "aggregate": "mean"},
        "early_stopping": {"kind": "asha", "grace_period": 1, "reduction_factor": 2},
        "sampler": {"seed": 0, "n_startup_trials": 4},
    },
}


def tune_rows(experiment_dir: Path) -> dict[int, list[dict]]:
    """Result rows of every Tune trial in the experiment (of every session), by Optuna trial number."""
    rows: dict[int, list[dict]] = {}
    for folder in sorted(experiment_dir.glob("trial_*")):
        number = json.loads((folder / "params.json").read_text())["optuna_trial"]
        text = (folder / "result.json").read_text() if (folder / "result.json").exists() else ""
        rows.setdefault(number, []).extend(json.loads(line) for line in text.splitlines() if line.strip())
    return rows


def test_planted_search_finds_the_better_region_and_its_config_runs(local_ray, tmp_path, capsys):
    from rkl_bench.service.run import run_experiment

    write_planted_dataset()
    config = write_yaml(tmp_path, PLANTED, "planted")
    storage = tmp_path / "runs"
    assert cli.main(["tune", str(config), "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    experiment = storage / "planted"
    summary = json.loads((experiment / "search_summary.json").read_text())
    trials = {t["number"]: t for t in summary["trials"]}
    assert len(trials) == 8 and {t["state"] for t in trials.values()} <= {"COMPLETE", "PRUNED"}

    # The paper's default was tried first; the best trial is in the planted region and clearly better.
    default = trials[0]
    assert default["params"] == {"rkl_alpha": 1.0, "zeta2": 5.0} and default["initial_point"]
    best = summary["best"]
    assert best["params"]["rkl_alpha"] < 0.8, summary
    assert best["value"] > 2.0 and best["value"] > default["value"] + 1.5, (best, default)
    # ... and the planted region really is the better one: every trial above rkl_alpha 1 scores low.
    bad = [t["value"] for t in trials.values() if t["params"]["rkl_alpha"] > 1.0]
    assert bad and max(bad) < best["value"] - 1.5, trials
    # TPE found it: the seeded random start-up trials all fell in the bad region.
    assert all(trials[n]["params"]["rkl_alpha"] > 1.0 for n in (1, 2, 3)), trials

    # Early stopping by ASHA after the first pair; the study and Tune's trials agree.
    rows = tune_rows(experiment)
    assert set(rows) == set(trials)
    for number, trial in trials.items():
        scored = [r for r in rows[number] if r.get("pair_final") is not None]
        assert [(r["dataset"], r["seed"]) for r in scored] == [("hopper-medium-v2", s) for s in (0, 1)][: len(scored)]
        if trial["state"] == "COMPLETE":
            assert len(scored) == 2 and trial["value"] == pytest.approx(np.mean([r["pair_final"] for r in scored]))
        else:
            assert len(scored) == 1 and trial["value"] == pytest.approx(scored[0]["pair_final"])
    assert sum(t["state"] == "PRUNED" for t in trials.values()) >= 1

    # What the verb wrote and printed.
    best_config = experiment / "best_config.yaml"
    assert f"best config: {best_config}" in out and "optuna-dashboard sqlite:///" in out
    for stem in ("search_history", "search_slices", "search_intermediate"):
        assert (experiment / "figures" / f"{stem}.png").exists() and (experiment / "figures" / f"{stem}.pdf").exists()
    # Importances need 10 COMPLETE trials (PED-ANOVA on fewer is noise): none from this tiny search.
    assert summary["importances"] is None and not (experiment / "figures" / "search_importances.png").exists()
    assert (experiment / "trials.csv").read_text().count("\n") == 9

    # The best configuration is an experiment spec: it loads, and rkl-bench run reproduces the best trial.
    loaded = load_config(best_config)
    assert loaded.algorithms["td3_rkl"] == {**PLANTED["algorithms"]["td3_rkl"], **best["params"]}
    assert (loaded.datasets, loaded.seeds, loaded.steps) == (("hopper-medium",), (0, 1), 400)
    run = run_experiment(best_config, storage=tmp_path / "grid", verbose=0)
    assert (run.trials, run.finished, run.errored) == (2, 2, 0)
    finals = []
    for folder in (tmp_path / "grid" / loaded.name).iterdir():
        if (folder / "result.json").exists():
            grid_rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
            assert [r["step"] for r in grid_rows] == [200, 400]
            finals.append(grid_rows[-1]["normalized_score"])
    assert np.mean(finals) == pytest.approx(best["value"], rel=1e-6, abs=1e-6)


INTERRUPT_FLAG = "RKL_BENCH_TEST_INTERRUPT"


def interrupt_after_first_trial():
    """A Tune callback that presses Ctrl-C once a trial has finished (while the flag is set)."""
    from ray.tune import Callback

    class Interrupt(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if os.environ.get(INTERRUPT_FLAG):
                os.environ.pop(INTERRUPT_FLAG)
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def test_interrupted_search_resumes_from_its_storage(local_ray, tmp_path, capsys, monkeypatch):
    """Ctrl-C after the first finished trial; ``--resume`` continues the same study: earlier
    trials kept and counted, the unfinished one re-run first with its parameters, and (with
    num_samples raised from 4 to 5, which a resume allows) exactly the missing trials run."""
    import optuna
    from optuna.trial import TrialState

    from rkl_bench.service.search import run_search

    write_smoke_datasets()
    config = write_yaml(tmp_path, smoke_data(name="resumed"))
    storage = tmp_path / "runs"
    monkeypatch.setenv(INTERRUPT_FLAG, "1")
    first = run_search(config, storage=storage, verbose=0, callbacks=[interrupt_after_first_trial()])
    assert first.interrupted >= 1 and 1 <= first.finished < 4, first
    url = first.storage
    assert url == f"sqlite:///{storage / 'resumed' / 'optuna.db'}"
    before = optuna.load_study(study_name="resumed", storage=url).trials
    finished_before = {t.number: (t.state, t.value, t.params) for t in before if t.state.is_finished()}
    unfinished = {t.number: t.params for t in before if t.state == TrialState.RUNNING}
    assert len(finished_before) == first.finished and len(unfinished) == first.interrupted
    assert before[0].params == {"zeta1": 10.0, "zeta2": 5.0, "rkl_alpha": 1.0, "q_weight": 2.5}

    # A resume with another search is refused before anything runs.
    changed = smoke_data(name="resumed", **{"search.objective": {"final_evals": 1}})
    with pytest.raises(RklBenchError, match="different search .*search.objective"):
        run_search(write_yaml(tmp_path, changed, "changed"), storage=storage, resume=True, verbose=0)

    write_yaml(tmp_path, smoke_data(name="resumed", **{"search.num_samples": 5}))
    assert cli.main(["tune", str(config), "--storage", str(storage), "--resume"]) == 0
    assert "trials: 5 of 5 finished" in capsys.readouterr().out
    after = optuna.load_study(study_name="resumed", storage=url).trials
    for number, (state, value, params) in finished_before.items():
        assert (after[number].state, after[number].value, after[number].params) == (state, value, params)
    reruns = {t.user_attrs["rerun_of"]: t for t in after if "rerun_of" in t.user_attrs}
    assert set(reruns) == set(unfinished)
    for number, params in unfinished.items():
        assert after[number].state == TrialState.FAIL and after[number].user_attrs["interrupted"]
        assert reruns[number].params == params and reruns[number].state.is_finished()
        assert reruns[number].number == min(t.number for t in after if t.number > max(finished_before | unfinished))
    counted = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == 5 and all(t.state != TrialState.RUNNING for t in after)
    assert len(after) == len(finished_before) + len(unfinished) + (5 - len(finished_before))
    # Both sessions' Tune trials are in the one experiment directory, the interrupted one too.
    rows = tune_rows(storage / "resumed")
    assert set(rows) == {t.number for t in after}
    for trial in counted:
        assert {r["optuna_trial"] for r in rows[trial.number]} == {trial.number} and rows[trial.number][-1]["pairs_done"] >= 1


class _Crash(Exception):
    """A worker dying while it reports a row."""


class _FakeSession:
    """Tune's session functions for a search trial run in this process: rows kept,
    each row's checkpoint copied; ``crash_at`` makes the report of that row (0-based) fail."""

    def __init__(self, root: Path, start: Path | None = None, crash_at: int | None = None) -> None:
        self.root, self.start, self.crash_at = root, start, crash_at
        self.rows: list[dict] = []
        self.last: Path | None = None

    def get_checkpoint(self):
        from ray import tune

        return None if self.start is None else tune.Checkpoint.from_directory(str(self.start))

    def report(self, row, checkpoint=None):
        import shutil

        if len(self.rows) == self.crash_at:
            raise _Crash()
        self.rows.append(row)
        if checkpoint is not None:
            self.last = self.root / f"checkpoint_{len(self.rows)}"
            shutil.copytree(checkpoint.path, self.last)


def _plain_rows(rows: list[dict], keys: tuple[str, ...]) -> list[tuple]:
    """Rows as comparable tuples (NaN as None)."""
    return [tuple(None if isinstance(r[k], float) and math.isnan(r[k]) else r[k] for k in keys) for r in rows]


def _assert_restarts_match(run, tmp_path: Path, whole: "_FakeSession", crash_points, keys: tuple[str, ...]) -> None:
    """For each crash point: a trial dying while reporting that row, restarted from its last
    checkpoint, reports the rows of the uninterrupted trial ``whole``."""
    for crash_at in crash_points:
        first = _FakeSession(tmp_path / f"first{crash_at}", crash_at=crash_at)
        with pytest.raises(_Crash):
            run(first)
        second = _FakeSession(tmp_path / f"second{crash_at}", start=first.last)
        run(second)
        assert _plain_rows(first.rows + second.rows, keys) == _plain_rows(whole.rows, keys), crash_at


def _assert_restart_after_last_row(run, tmp_path: Path, whole: "_FakeSession", keys: tuple[str, ...]) -> None:
    """A trial stopped after its last row (before Tune recorded its end) and run again from that
    row's checkpoint trains nothing and reports that row's search fields once, marked replayed."""
    again = _FakeSession(tmp_path / "again", start=whole.last)
    run(again)
    assert len(again.rows) == 1 and again.rows[0]["replayed"] is True, again.rows
    assert {k: again.rows[0][k] for k in keys} == {k: whole.rows[-1][k] for k in keys}
    assert "normalized_score" not in again.rows[0]


def test_search_trial_restarts_from_its_checkpoint_as_if_uninterrupted(local_ray, tmp_path, monkeypatch):
    """A trial whose worker dies goes on from its last row's checkpoint (at a pair's end, or
    in the middle of one): the rows after the restart are those of an uninterrupted trial."""
    from types import SimpleNamespace

    from ray import tune

    import rkl_bench.service.eval_actors as eval_actors
    import rkl_bench.service.search_trial as search_trial
    import rkl_bench.service.trainable as trainable
    from rkl_bench.service.datasets_store import put_datasets
    from rkl_bench.service.search_trial import TRIAL_KEY, SearchJob, run_search_trial
    from rkl_bench.service.trainable import TrialSettings

    write_smoke_datasets()
    config = load_search_config(write_yaml(tmp_path, smoke_data()))
    specs = resolve_datasets(config.experiment)
    job = SearchJob(config.algo, config.fixed, ["rkl_alpha"], search_pairs(specs, config.experiment.seeds),
                    TrialSettings.of(config.experiment).as_dict(), final_evals=2, aggregate="mean")
    trial_config = {TRIAL_KEY: job.as_dict(), "rkl_alpha": 0.5, "optuna_trial": 7}
    refs = put_datasets(specs)
    monkeypatch.setattr(trainable, "trial_artifact_dir", lambda: tmp_path / "artifacts")
    (tmp_path / "artifacts").mkdir()
    monkeypatch.setattr(eval_actors, "_KEPT_POOL", None)

    def run(session: _FakeSession) -> None:
        fake = SimpleNamespace(get_checkpoint=session.get_checkpoint, report=session.report, Checkpoint=tune.Checkpoint)
        monkeypatch.setattr(search_trial, "tune", fake)
        run_search_trial(trial_config, refs)

    keys = ("dataset", "seed", "step", "normalized_score", "return_mean", "critic_loss", "pairs_done", "pair_final", "objective", "optuna_trial")

    try:
        whole = _FakeSession(tmp_path / "whole")
        run(whole)
        assert [(r["seed"], r["step"], r["pairs_done"]) for r in whole.rows] == [(0, 30, 0), (0, 60, 1), (1, 30, 1), (1, 60, 2)]
        assert whole.rows[-1]["objective"] == pytest.approx(np.mean([whole.rows[1]["pair_final"], whole.rows[3]["pair_final"]]))
        # after the first pair ended; in the middle of the second pair
        _assert_restarts_match(run, tmp_path, whole, (2, 3), keys)
        _assert_restart_after_last_row(run, tmp_path, whole, ("objective", "pairs_done", "pairs_total", "pair_final", "optuna_trial"))
    finally:
        kept = eval_actors._KEPT_POOL
        if kept is not None:
            kept.close()


# ------------------------------------------------- staged, conditional searches
def staged_data(**changes) -> dict:
    """The smoke search, staged (ASHA on steps: both pairs to 30 steps, then to 60) over a conditional space."""
    data = smoke_data(name="staged", **{
        "search.space": {
            "regulariser": {"choices": ["squared", "kernel", "mse"]},
            "rkl_alpha": {"low": 0.0, "high": 1.0, "when": {"regulariser": ["squared", "kernel"]}},
            "kernel_sigma": {"low": 0.1, "high": 2.0, "log": True, "when": {"regulariser": "kernel"}},
            "zeta2": {"low": -5.0, "high": 10.0},
        },
        "search.initial_points": [{"regulariser": "squared", "rkl_alpha": 1.0, "zeta2": 5.0}],
        "search.early_stopping": {"kind": "asha", "time": "steps", "grace_period": 30, "reduction_factor": 2},
        "search.num_samples": 5,
        "search.sampler": {"seed": 0, "n_startup_trials": 3},
    })
    for key, value in changes.items():
        data[key] = value
    return data


def test_shipped_mixture_study_and_its_references():
    study = load_search_config(CONFIGS / "optuna_rkl_mixtures.yaml")
    specs = resolve_datasets(study.experiment)
    # The tuning set is the random + medium-replay mixtures; the held-out test mixtures stay out.
    assert sorted(specs) == [f"forge-v5/{env}-random-medium-replay" for env in ("halfcheetah", "hopper", "walker2d")]
    assert study.fixed == {"q_weight": 2.5} and study.experiment.steps == 100_000
    assert study.staged and study.stages == (25_000, 50_000, 100_000)
    assert study.search.num_samples >= 24 and study.search.max_concurrent == 2 and study.search.objective.final_evals > 1
    assert set(study.search.names) == {"regulariser", "rkl_alpha", "kernel_sigma", "zeta1", "zeta2", "beta_normalization"}
    assert study.search.param("kernel_sigma").when == (("regulariser", ("kernel",)),)
    refs = load_config(CONFIGS / "optuna_rkl_mixtures_refs.yaml")
    assert refs.algorithms == {"td3_rkl": {}, "td3_bc": {}}
    same = ("datasets", "seeds", "steps", "evaluation", "dataset_source", "forge")
    assert all(getattr(refs, key) == getattr(study.experiment, key) for key in same)


def test_budget_estimate_counts_asha_rungs():
    from rkl_bench.service.search_budget import budget_estimate

    text = budget_estimate(load_search_config(CONFIGS / "optuna_rkl_mixtures.yaml"), cores=2)
    # 24 trials x 3 datasets x (25k + 25k / 2 + 50k / 4) steps with ASHA, 100k without.
    assert "24 trials x 3 (dataset, seed) pair(s) x 100,000 steps = 7.2M gradient steps at most" in text
    assert "about 3.6M with early stopping" in text and "On 2 core(s)" in text
    assert "1.3 h to 2.9 h" in text, text


def test_a_resumed_study_estimates_the_rest_from_its_own_trials():
    """The measured rate counts only trials that ran start to end in one session; the rest is the
    expected steps of the trials left at that rate, max_concurrent at a time."""
    import datetime

    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import FrozenTrial, TrialState

    from rkl_bench.service.search_budget import measured_estimate

    config = load_search_config(CONFIGS / "optuna_rkl_mixtures.yaml")  # 24 trials, 3 pairs, rungs 25k/50k/100k, 2 at once
    study = optuna.create_study(direction="maximize")
    assert measured_estimate(config, study) is None
    start = datetime.datetime(2026, 12, 1, 12, 0, 0)

    def add(state, steps, seconds, **attrs):
        study.add_trial(FrozenTrial(
            number=len(study.trials), trial_id=len(study.trials), state=state,
            value=None if state == TrialState.FAIL else 1.0, values=None,
            datetime_start=start, datetime_complete=start + datetime.timedelta(seconds=seconds),
            params={"zeta1": 1.0}, distributions={"zeta1": FloatDistribution(0.0, 20.0)},
            user_attrs=attrs, system_attrs={}, intermediate_values={s: 1.0 for s in steps},
        ))

    add(TrialState.COMPLETE, [25_000, 50_000, 100_000], 3000)  # 300k steps in 3000 s
    add(TrialState.PRUNED, [25_000], 750)  # 75k steps in 750 s
    add(TrialState.COMPLETE, [25_000, 50_000, 100_000], 100, resume_from="/x/checkpoint_000003")  # went on: not a rate
    add(TrialState.PRUNED, [25_000, 50_000], 60, resume_from="/x/checkpoint_000001")
    add(TrialState.FAIL, [25_000], 10, interrupted=True)
    text = measured_estimate(config, study)
    # 375k steps in 3750 s = 100 steps/s per trial; 20 trials left x 150k expected steps = 3.0M at 2 x 100/s.
    assert "2 trial(s) ran 0.38M steps at 100 steps/s each" in text, text
    assert "the 20 trial(s) left, about 3.0M steps with early stopping: 4.2 h" in text, text


@pytest.mark.parametrize(
    "space_changes, stopping, fragment",
    [
        ({"kernel_sigma": {"low": 0.1, "high": 2.0, "when": {"zeta2": 1.0}}}, None,
         "search.space.kernel_sigma.when: 'zeta2' must be a categorical parameter listed before 'kernel_sigma'"),
        ({"kernel_sigma": {"low": 0.1, "high": 2.0, "when": {"regulariser": "gaussian"}}}, None,
         "search.space.kernel_sigma.when.regulariser: 'gaussian' is not one of its choices"),
        ({}, {"kind": "asha", "time": "steps", "grace_period": 25, "reduction_factor": 2},
         "rung 25 (grace_period x reduction_factor^k) is not a multiple of evaluation.interval (30)"),
        ({}, {"kind": "asha", "time": "steps", "grace_period": 60}, "grace_period must be between 1 and 59 steps"),
        ({}, {"kind": "asha", "time": "hours"}, "search.early_stopping.time"),
    ],
)
def test_bad_staged_and_conditional_specs(tmp_path, space_changes, stopping, fragment):
    data = staged_data()
    data["search"]["space"].update(space_changes)
    if stopping is not None:
        data["search"]["early_stopping"] = stopping
    message = error_of(write_yaml(tmp_path, data))
    assert fragment in message, message


def test_an_initial_point_must_meet_its_conditions(tmp_path):
    data = staged_data()
    data["search"]["initial_points"] = [{"regulariser": "mse", "rkl_alpha": 0.5}]
    assert "initial_points[0].rkl_alpha: the point does not meet its condition" in error_of(write_yaml(tmp_path, data))


def test_staged_conditional_search_end_to_end(local_ray, tmp_path, capsys):
    """ASHA compares trials after the same steps on every pair; conditional parameters are
    sampled only where they apply; each pair's rows equal a grid trial's to the last digit."""
    import csv

    from rkl_bench.service.run import run_experiment

    write_smoke_datasets()
    config = write_yaml(tmp_path, staged_data())
    storage = tmp_path / "runs"
    assert cli.main(["tune", str(config), "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("budget: 5 trials x 2 (dataset, seed) pair(s) x 60 steps")
    experiment = storage / "staged"
    summary = json.loads((experiment / "search_summary.json").read_text())
    trials = {t["number"]: t for t in summary["trials"]}
    assert len(trials) == 5 and summary["clock"] == "steps"
    states = {t["state"] for t in trials.values()}
    assert states == {"COMPLETE", "PRUNED"}, trials

    for trial in trials.values():
        params = trial["params"]
        # Conditional parameters: present exactly where their condition holds.
        assert ("rkl_alpha" in params) == (params["regulariser"] in ("squared", "kernel")), params
        assert ("kernel_sigma" in params) == (params["regulariser"] == "kernel"), params
        # PRUNED trials stopped at the first rung (30 steps on both pairs), COMPLETE ones ran to 60.
        assert trial["steps_reached"] == (60 if trial["state"] == "COMPLETE" else 30), trial
        assert sorted(int(k) for k in trial["intermediate"]) == ([30, 60] if trial["state"] == "COMPLETE" else [30])

    rows = tune_rows(experiment)
    for number, trial in trials.items():
        mine = rows[number]
        # Rung by rung: both pairs to 30 steps, then (if not stopped) both to 60.
        order = [(r["seed"], r["step"]) for r in mine]
        assert order == [(0, 30), (1, 30), (0, 60), (1, 60)][: len(order)] and len(order) in (2, 4), order
        by_pair = [[r["normalized_score"] for r in mine if r["seed"] == s] for s in (0, 1)]
        expected = np.mean([np.mean(scores[-2:]) for scores in by_pair])
        assert trial["value"] == pytest.approx(expected, rel=1e-9), (trial, by_pair)
        assert trial["pair_scores"] == pytest.approx([np.mean(scores[-2:]) for scores in by_pair])

    # trials.csv: per-pair scores, steps reached, empty cells for parameters a trial did not sample.
    with open(experiment / "trials.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 5
    labels = [c for c in table[0] if c.startswith("score:")]
    assert labels == [f"score:hopper-random-expert@{s}" for s in (0, 1)], list(table[0])
    for line in table:
        trial = trials[int(line["number"])]
        assert int(line["steps_reached"]) == trial["steps_reached"]
        assert (line["kernel_sigma"] == "") == ("kernel_sigma" not in trial["params"])
        assert [float(line[label]) for label in labels] == pytest.approx(trial["pair_scores"])

    # The best trial's config is a grid whose rows equal the staged trial's, pair by pair.
    best = summary["best"]
    run = run_experiment(experiment / "best_config.yaml", storage=tmp_path / "grid", verbose=0)
    assert (run.trials, run.finished, run.errored) == (2, 2, 0)
    keys = ("step", "normalized_score", "return_mean", "critic_loss", "q_mean")
    for folder in (tmp_path / "grid" / "staged-best").iterdir():
        if (folder / "result.json").exists():
            grid_rows = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
            seed = grid_rows[0]["seed"]
            staged_rows = [r for r in rows[best["number"]] if r["seed"] == seed]
            assert [tuple(r[k] for k in keys) for r in grid_rows] == [tuple(r[k] for k in keys) for r in staged_rows]


def test_staged_search_trial_restarts_from_its_checkpoint_as_if_uninterrupted(local_ray, tmp_path, monkeypatch):
    """A staged trial's checkpoint holds every pair's state: a worker dying mid-rung, or
    just after a rung, goes on and its rows are those of an uninterrupted trial."""
    from types import SimpleNamespace

    from ray import tune

    import rkl_bench.service.eval_actors as eval_actors
    import rkl_bench.service.search_trial as search_trial
    import rkl_bench.service.trainable as trainable
    from rkl_bench.service.datasets_store import put_datasets
    from rkl_bench.service.search_trial import TRIAL_KEY, SearchJob, run_search_trial
    from rkl_bench.service.trainable import TrialSettings

    write_smoke_datasets()
    config = load_search_config(write_yaml(tmp_path, staged_data()))
    specs = resolve_datasets(config.experiment)
    job = SearchJob(config.algo, config.fixed, list(config.search.names), search_pairs(specs, config.experiment.seeds),
                    TrialSettings.of(config.experiment).as_dict(), final_evals=2, aggregate="mean",
                    stages=list(config.stages))
    assert job.stages == [30, 60]
    trial_config = {TRIAL_KEY: job.as_dict(), "regulariser": "mse", "zeta2": 3.0, "optuna_trial": 3}
    refs = put_datasets(specs)
    monkeypatch.setattr(trainable, "trial_artifact_dir", lambda: tmp_path / "artifacts")
    (tmp_path / "artifacts").mkdir()
    monkeypatch.setattr(eval_actors, "_KEPT_POOL", None)

    def run(session: _FakeSession) -> None:
        fake = SimpleNamespace(get_checkpoint=session.get_checkpoint, report=session.report, Checkpoint=tune.Checkpoint)
        monkeypatch.setattr(search_trial, "tune", fake)
        run_search_trial(trial_config, refs)

    keys = ("seed", "step", "normalized_score", "critic_loss", "stage_steps", "objective", "pairs_done", "pair_final")

    try:
        whole = _FakeSession(tmp_path / "whole")
        run(whole)
        assert [(r["seed"], r["step"], r["stage_steps"]) for r in whole.rows] == [(0, 30, 0), (1, 30, 30), (0, 60, 30), (1, 60, 60)]
        assert whole.rows[-1]["pairs_done"] == 2 and whole.rows[-1]["objective"] == pytest.approx(
            np.mean([np.mean([whole.rows[i]["normalized_score"] for i in pair]) for pair in ((0, 2), (1, 3))]))
        # mid first rung; just after it; mid second rung
        _assert_restarts_match(run, tmp_path, whole, (1, 2, 3), keys)
        _assert_restart_after_last_row(run, tmp_path, whole,
                                       ("objective", "stage_steps", "pairs_done", "pair_scores", "optuna_trial"))
    finally:
        kept = eval_actors._KEPT_POOL
        if kept is not None:
            kept.close()


def interrupt_after_first_rung():
    """A Tune callback pressing Ctrl-C once a staged trial has every pair past the first rung
    but is not finished (while the flag is set)."""
    from ray.tune import Callback

    class Interrupt(Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if os.environ.get(INTERRUPT_FLAG) and result.get("stage_steps", 0) >= 30 and result.get("pairs_done") == 0:
                os.environ.pop(INTERRUPT_FLAG)
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def test_interrupted_staged_search_goes_on_from_the_checkpoints_it_left(local_ray, tmp_path, monkeypatch):
    """A session stopped mid-trial: the next one asks for that trial again and it goes on from its
    last checkpoint (what it trained is not trained again), carrying its reported rungs, and the
    rows of both sessions together are one trial's rows: each (pair, step) once, as in an uninterrupted run."""
    import optuna
    from optuna.trial import TrialState

    from rkl_bench.service.search import run_search

    write_smoke_datasets()
    data = staged_data(name="staged_resume")
    data["search"]["num_samples"] = 2
    config = write_yaml(tmp_path, data)
    storage = tmp_path / "runs"
    monkeypatch.setenv(INTERRUPT_FLAG, "1")
    first = run_search(config, storage=storage, verbose=0, callbacks=[interrupt_after_first_rung()])
    assert first.interrupted >= 1, first
    url = first.storage
    before = optuna.load_study(study_name="staged_resume", storage=url).trials
    left = {t.number: t for t in before if t.state == TrialState.RUNNING}
    assert any(t.intermediate_values.get(30) is not None for t in left.values()), "one was past the first rung"
    old_rows = tune_rows(storage / "staged_resume")

    second = run_search(config, storage=storage, resume=True, verbose=0)
    assert second.interrupted == 0
    after = optuna.load_study(study_name="staged_resume", storage=url).trials
    reruns = {t.user_attrs["rerun_of"]: t for t in after if "rerun_of" in t.user_attrs}
    assert set(reruns) == set(left)
    rows = tune_rows(storage / "staged_resume")
    whole = [(0, 30), (1, 30), (0, 60), (1, 60)]  # (seed, step) of a staged trial: both pairs to each rung
    resumed = 0
    for number, old in left.items():
        rerun = reruns[number]
        assert rerun.state.is_finished() and rerun.params == old.params
        if not old_rows.get(number):
            assert "resume_from" not in rerun.user_attrs  # nothing reported, no checkpoint: from scratch
            continue
        resumed += 1
        checkpoint = Path(rerun.user_attrs["resume_from"])
        assert checkpoint.parent.parent == (storage / "staged_resume").resolve() and checkpoint.is_dir()
        # Its history in the study starts with what it had reported before the interruption.
        for step, value in old.intermediate_values.items():
            assert rerun.intermediate_values[step] == value
        progress = json.loads((checkpoint / "search_progress.json").read_text())
        covered = sum(len(scores) for scores in progress["scores"])
        earlier, later = old_rows[number][:covered], rows[rerun.number]
        assert covered >= 1 and [(r["seed"], r["step"]) for r in earlier + later] == whole[:len(earlier) + len(later)]
        if rerun.state == TrialState.COMPLETE:
            assert len(earlier) + len(later) == len(whole)
            scores = {seed: [r["normalized_score"] for r in earlier + later if r["seed"] == seed] for seed in (0, 1)}
            assert rerun.value == pytest.approx(np.mean([np.mean(s[-2:]) for s in scores.values()]))
    assert resumed >= 1


def test_a_new_sessions_asha_compares_with_the_earlier_sessions_rungs():
    """Seeded rungs: a trial below the earlier sessions' cutoff at a rung is stopped, one above goes on."""
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    from rkl_bench.service.private_apis import seed_asha_rungs

    scheduler = ASHAScheduler(time_attr="stage_steps", metric="objective", mode="max", max_t=100, grace_period=25,
                              reduction_factor=2)
    assert seed_asha_rungs(scheduler, {25: [10.0, 20.0, 30.0, 40.0], 50: [35.0], 7: [99.0]}) == 5
    bracket = scheduler._brackets[0]
    low, high = SimpleNamespace(trial_id="low"), SimpleNamespace(trial_id="high")
    assert bracket.on_result(low, 25, 12.0) == TrialScheduler.STOP  # under the median of 10..40
    assert bracket.on_result(high, 25, 33.0) == TrialScheduler.CONTINUE


def test_a_twice_interrupted_trial_goes_on_from_the_furthest_checkpoint_of_its_chain(tmp_path):
    """Trial 9 re-runs 7, which went on from 3's checkpoint: 7's result.json holds only its own session's
    rows (fewer than 3's), yet its checkpoint is further, and that is the one to go on from; a checkpoint
    newer than the last logged row is not used."""
    from types import SimpleNamespace

    from rkl_bench.service.search_resume import furthest_checkpoint

    def trial_dir(number: int, tune_id: str, checkpoints: dict[int, int], logged: int) -> None:
        folder = tmp_path / f"trial_{number:04d}_{tune_id}"
        folder.mkdir()
        for index, evaluations in checkpoints.items():
            checkpoint = folder / f"checkpoint_{index:06d}"
            checkpoint.mkdir(parents=True)
            (checkpoint / "checkpoint.pt").write_bytes(b"state")
            (checkpoint / "search_progress.json").write_text(json.dumps(
                {"stage": 1, "pair": 0, "checkpoint_pair": 0, "scores": [[0.0] * evaluations], "stage_scores": []}))
        rows = [{"step": i, "checkpoint_dir_name": f"checkpoint_{i:06d}"} for i in range(logged)]
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))

    trial_dir(3, "aaa", {19: 20}, logged=20)
    trial_dir(7, "bbb", {5: 26, 6: 27}, logged=6)  # checkpoint_000006 was written, its row never logged
    trial_dir(9, "ccc", {}, logged=0)
    trials = [SimpleNamespace(number=3, user_attrs={"tune_trial_id": "aaa"}),
              SimpleNamespace(number=7, user_attrs={"tune_trial_id": "bbb", "rerun_of": 3}),
              SimpleNamespace(number=9, user_attrs={"tune_trial_id": "ccc", "rerun_of": 7})]
    source, checkpoint = furthest_checkpoint(trials[2], trials, tmp_path)
    assert source.number == 7 and checkpoint == (tmp_path / "trial_0007_bbb" / "checkpoint_000005").resolve()
    trials[1].user_attrs["tune_trial_id"] = "gone"  # 7's directory is not on this machine
    source, checkpoint = furthest_checkpoint(trials[2], trials, tmp_path)
    assert source.number == 3 and checkpoint.name == "checkpoint_000019"


def test_a_staged_search_with_few_complete_trials_takes_importances_at_its_first_rung():
    """ASHA completes about a quarter of a three-rung study: the importances then come from every
    trial's score at the first rung (pruned ones included), and say so."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    from rkl_bench.service.search_outputs import importances_of

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    rng = np.random.default_rng(0)
    dists = {"matters": FloatDistribution(0, 1), "noise": FloatDistribution(0, 1),
             "form": CategoricalDistribution(["a", "b"])}
    for i in range(20):
        params = {"matters": float(rng.random()), "noise": float(rng.random()), "form": "ab"[i % 2]}
        early = -abs(params["matters"] - 0.2) + 0.001 * params["noise"]
        complete = i < 4
        study.add_trial(create_trial(
            params=params, distributions=dists, intermediate_values={25_000: early, 50_000: early + 0.1},
            value=early + 0.2 if complete else early, state=TrialState.COMPLETE if complete else TrialState.PRUNED))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    values, used, step = importances_of(study, complete, 25_000)
    assert (used, step) == (20, 25_000)
    assert set(values) == {"matters", "noise", "form"} and values["matters"] > 0.6
    assert importances_of(study, complete, None) == (None, 0, None)  # not staged: complete trials only
    assert importances_of(study, complete, 10_000) == (None, 0, None)  # nobody reported at that step


def test_the_best_configs_run_line_names_where_it_is_published(tmp_path):
    from rkl_bench.service.search_config import load_search_config
    from rkl_bench.service.search_outputs import BestTrial, write_best_config

    config = load_search_config(CONFIGS / "optuna_smoke.yaml")
    params = {p.name: (p.choices[0] if p.kind == "categorical" else p.low) for p in config.search.space}
    best = BestTrial(3, 12.5, params)
    local = write_best_config(config, best, "sqlite:///x.db", tmp_path / "best_config.yaml")
    assert f"rkl-bench run {tmp_path / 'best_config.yaml'}\n" in local.read_text()
    shown = "s3://bucket/results/study/best_config.yaml"
    assert f"rkl-bench run {shown}\n" in write_best_config(config, best, "sqlite:///x.db", local, shown).read_text()
