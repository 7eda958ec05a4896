"""Experiment specs: the shipped configs, the schema's errors, dataset resolution,
and bad input through ``rkl-bench run`` failing before Ray starts (no Ray here)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from rkl_bench.cli import main
from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import load_config
from rkl_bench.service.dataset_specs import make_missing_forge_datasets, missing_forge_specs, resolve_datasets
from test_service_support import write_smoke_datasets

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"

QUICK = {
    "algorithms": {"td3_bc": {}},
    "datasets": ["hopper-random-expert"],
    "seeds": [0],
    "steps": 100,
    "evaluation": {"interval": 50, "episodes": 2},
}


def write_config(tmp_path: Path, **changes) -> Path:
    data = {**QUICK, **changes}
    data = {key: value for key, value in data.items() if value is not None}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def error_of(path: Path) -> str:
    with pytest.raises(RklBenchError) as info:
        resolve_datasets(load_config(path))
    return str(info.value)


# ------------------------------------------------------------ shipped files
def test_quick_and_smoke_configs_parse():
    quick = load_config(CONFIGS / "quick.yaml")
    assert quick.smoke_of_dir.resolve() == (CONFIGS.parent / "reports" / "table2_mixtures").resolve()
    assert "smoke_of" in quick.to_dict() and "smoke_of" not in load_config(CONFIGS / "table2_mixtures.yaml").to_dict()
    assert {"td3_bc", "td3_rkl"} <= set(quick.algorithms)
    assert quick.dataset_source == "forge" and quick.forge.profile == "quick"
    assert len(quick.seeds) >= 2 and 2000 <= quick.steps <= 5000
    assert resolve_datasets(quick) == ("forge-v5-quick/hopper-random-expert",)
    smoke = load_config(CONFIGS / "smoke.yaml")
    assert smoke.num_trials == len(smoke.algorithms) and smoke.steps <= 100


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    """Grid specs for `rkl-bench run`, search specs (a `search:` section) for `rkl-bench tune`."""
    from rkl_bench.service.search_config import load_search_config

    if "search" in yaml.safe_load(path.read_text()):
        config = load_search_config(path)
        assert config.experiment.num_trials >= 1 and config.search.num_samples >= 1
    else:
        assert load_config(path).num_trials >= 1


def test_table2_is_the_papers_grid():
    """5 algorithms x 21 datasets x 5 seeds x 1M steps."""
    config = load_config(CONFIGS / "table2.yaml")
    assert list(config.algorithms) == ["td3_rkl", "td3_bc", "bc", "brac", "cdc"]
    assert len(config.datasets) == 21 and len(config.seeds) == 5 and config.num_trials == 525
    assert config.steps == 1_000_000 and config.evaluation.episodes == 10
    specs = resolve_datasets(config)  # no D4RL files in the test's D4RL dir: forge names
    assert all(spec.startswith("forge-v5/") for spec in specs)
    assert "forge-v5/walker2d-random-medium-replay" in specs


def test_table2_mixtures_is_the_decisive_grid(tmp_path):
    """Nine mixtures x (BC, TD3+BC, TD3+RKL defaults, TD3+RKL tuned) x 3 seeds x 200k steps; the tuned
    column reads the study's best_config.yaml, and the study saw only the random + medium-replay three."""
    from rkl_bench.service.search_config import load_search_config

    repo = CONFIGS.parent
    (tmp_path / "tune_configs").mkdir()
    spec = tmp_path / "tune_configs" / "table2_mixtures.yaml"
    spec.write_text((CONFIGS / "table2_mixtures.yaml").read_text())
    best = tmp_path / "reports" / "optuna_rkl_mixtures" / "best_config.yaml"
    best.parent.mkdir(parents=True)
    shipped = repo / "reports" / "optuna_rkl_mixtures" / "best_config.yaml"
    best.write_text(shipped.read_text() if shipped.is_file() else yaml.safe_dump({**QUICK, "algorithms": {
        "td3_rkl": {"q_weight": 2.5, "regulariser": "kernel", "rkl_alpha": 0.5, "zeta1": 12.0}}}))
    config = load_config(spec)
    assert list(config.algorithms) == ["bc", "td3_bc", "td3_rkl", "td3_rkl@tuned"]
    assert config.algorithms["td3_rkl"] == {}
    assert config.algorithms["td3_rkl@tuned"] == yaml.safe_load(best.read_text())["algorithms"]["td3_rkl"]
    assert len(config.datasets) == 9 and config.seeds == (0, 1, 2) and config.seeds_per_trial == 3
    assert config.num_trials == 108  # seed runs; 36 Tune trials of 3 seeds each
    assert config.steps == 200_000 and (config.evaluation.interval, config.evaluation.episodes) == (10_000, 10)
    assert config.dataset_source == "forge" and config.forge.profile == "full"
    tuned_on = set(load_search_config(CONFIGS / "optuna_rkl_mixtures.yaml").experiment.datasets)
    assert tuned_on == {d for d in config.datasets if d.endswith("random-medium-replay")}
    assert len(set(config.datasets) - tuned_on) == 6
    best.unlink()
    with pytest.raises(RklBenchError, match="does not exist; run the search that writes it first"):
        load_config(spec)


def test_grouped_grid_runs_dataset_by_dataset(tmp_path):
    """A stopped grid holds whole Table II rows: every learner on dataset 1, then dataset 2, ...;
    seeds in groups of ``seeds_per_trial``; skipped seeds leave the rest of their group."""
    from rkl_bench.service.tuner import CELL_KEY, param_space

    spec = write_config(tmp_path, algorithms={"bc": {}, "td3_bc": {}}, seeds=[0, 1, 2], seeds_per_trial=2,
                        datasets=["hopper-random-expert", "walker2d-random-expert"])
    config = load_config(spec)
    specs = ["forge-v5/hopper-random-expert", "forge-v5/walker2d-random-expert"]
    cells = param_space(config, specs, skip={("td3_bc", specs[1], 0)})[CELL_KEY]["grid_search"]
    hopper, walker = specs
    assert [(c["dataset"], c["algo"], c["seeds"]) for c in cells] == [
        (hopper, "bc", [0, 1]), (hopper, "bc", [2]), (hopper, "td3_bc", [0, 1]), (hopper, "td3_bc", [2]),
        (walker, "bc", [0, 1]), (walker, "bc", [2]), (walker, "td3_bc", [1, 2]),
    ]
    assert all(c["seed"] == c["seeds"][0] for c in cells)


# ------------------------------------------------------------------ schema
@pytest.mark.parametrize(
    "changes, message",
    [
        ({"evalutaion": {}}, r"exp\.yaml: unknown key 'evalutaion' in the top level; valid keys are: .*evaluation"),
        ({"evaluation": {"interval": 50, "episodes": 2, "every": 3}}, r"unknown key 'every' in evaluation"),
        ({"resources": {"gpu": 1}}, r"unknown key 'gpu' in resources; valid keys are: cpus, gpus, threads"),
        ({"algorithms": {"td3_bx": {}}}, r"unknown algorithm 'td3_bx'.*valid algorithms are: bc, .*td3_bc, td3_rkl"),
        ({"algorithms": {"td3_bc": {"alpha": 2}}}, r"unknown key\(s\) 'alpha' in td3_bc hyper-parameters"),
        ({"algorithms": {"td3_bx@fast": {}}}, r"unknown algorithm 'td3_bx' \(key 'td3_bx@fast'\) in algorithms"),
        ({"algorithms": {"td3_bc@Big": {}}}, r"bad variant key 'td3_bc@Big': write <learner>@<label>"),
        ({"algorithms": {"td3_bc@q1": {"alpha": 2}}}, r"unknown key\(s\) 'alpha' in td3_bc hyper-parameters"),
        ({"forge": {"profile": "rows5"}}, r"forge.profile: forge profile 'rows5' asks for 5 rows per component"),
        ({"forge": {"profile": "large"}}, r"forge.profile: unknown forge profile 'large'"),
        ({"steps": -5}, r"steps must be >= 1, got -5"),
        ({"steps": 10}, r"evaluation.interval \(50\) is larger than steps \(10\)"),
        ({"steps": "many"}, r"steps must be a number, got 'many'"),
        ({"steps": 10.5}, r"steps must be a whole number"),
        ({"seeds": [0, 0]}, r"seeds lists 0 twice"),
        ({"seeds": None}, r"missing key\(s\) 'seeds'"),
        ({"datasets": []}, r"datasets must be a non-empty list"),
        ({"dataset_source": "web"}, r"dataset_source must be one of forge, d4rl, auto; got 'web'"),
        ({"eval_actors": {"count": 3}}, r"eval_actors.count \(3\) is more than evaluation.episodes \(2\)"),
        ({"resources": {"cpus": 0}}, r"resources.cpus must be > 0"),
        ({"resources": {"cpus": 1, "threads": 2}}, r"resources.threads \(2\) is more than resources.cpus \(1"),
        ({"datasets": ["hopper-randomish"]}, r"datasets: dataset 'hopper-randomish-v2': unknown kind"),
        ({"dataset_source": "d4rl"}, r"datasets: D4RL dataset 'hopper-random-v2' not found in .*never downloaded"),
        ({"datasets": ["/nowhere/data.hdf5"]}, r"dataset file /nowhere/data.hdf5 not found"),
    ],
)
def test_bad_configs_name_the_problem_and_the_file(tmp_path, changes, message):
    text = error_of(write_config(tmp_path, **changes))
    assert "exp.yaml" in text and "\n" not in text
    assert re.search(message, text), text


def test_variant_keys_run_one_learner_with_several_settings(tmp_path):
    config = load_config(write_config(tmp_path, algorithms={"td3_rkl": {}, "td3_rkl@kernel": {"regulariser": "kernel"}}))
    assert dict(config.algorithms) == {"td3_rkl": {}, "td3_rkl@kernel": {"regulariser": "kernel"}}
    assert config.num_trials == 2


def test_a_column_takes_its_hyperparameters_from_a_search_best_config(tmp_path):
    """``hyperparams_from``: a search's best_config.yaml (path relative to the spec) becomes a grid column;
    keys beside it override; the resolved values are what the experiment records."""
    best = tmp_path / "reports" / "study" / "best_config.yaml"
    best.parent.mkdir(parents=True)
    best.write_text(yaml.safe_dump({**QUICK, "name": "study-best", "algorithms": {"td3_rkl": {
        "q_weight": 2.5, "regulariser": "kernel", "rkl_alpha": 0.5, "zeta1": 12.0, "beta_normalization": "range"}}}))
    configs = tmp_path / "tune_configs"
    configs.mkdir()
    spec = configs / "grid.yaml"
    spec.write_text(yaml.safe_dump({**QUICK, "algorithms": {
        "td3_bc": {}, "td3_rkl@tuned": {"hyperparams_from": "../reports/study/best_config.yaml", "zeta1": 11.0}}}))
    config = load_config(spec)
    assert dict(config.algorithms["td3_rkl@tuned"]) == {
        "q_weight": 2.5, "regulariser": "kernel", "rkl_alpha": 0.5, "zeta1": 11.0, "beta_normalization": "range"}
    assert config.to_dict()["algorithms"]["td3_rkl@tuned"]["regulariser"] == "kernel"

    def refused(entry: dict) -> str:
        spec.write_text(yaml.safe_dump({**QUICK, "algorithms": {"td3_bc@tuned": entry}}))
        with pytest.raises(RklBenchError) as info:
            load_config(spec)
        return str(info.value)

    assert "holds hyper-parameters of td3_rkl, not of td3_bc" in refused({"hyperparams_from": "../reports/study/best_config.yaml"})
    message = refused({"hyperparams_from": "../reports/none/best_config.yaml"})
    assert str(spec) in message and "does not exist; run the search that writes it first" in message
    assert "must be the path of a spec" in refused({"hyperparams_from": 3})
    # The source's values are checked like any others: a typo there is an error naming the key.
    best.write_text(yaml.safe_dump({**QUICK, "algorithms": {"td3_bc": {"q_wieght": 2.0}}}))
    assert "q_wieght" in refused({"hyperparams_from": "../reports/study/best_config.yaml"})


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algorithms: [\n")
    with pytest.raises(RklBenchError, match=r"bad\.yaml: not valid YAML \(line"):
        load_config(bad)
    with pytest.raises(RklBenchError, match=r"experiment config .*nope\.yaml not found"):
        load_config(tmp_path / "nope.yaml")


# ------------------------------------------------------- dataset resolution
def test_auto_prefers_d4rl_files_when_all_are_present(tmp_path):
    config = load_config(write_config(tmp_path, dataset_source="auto"))
    assert resolve_datasets(config) == ("forge-v5/hopper-random-expert",)
    write_smoke_datasets(("random",))  # half of the mix is not enough
    assert resolve_datasets(config) == ("forge-v5/hopper-random-expert",)
    write_smoke_datasets(("random", "expert"))
    assert resolve_datasets(config) == ("hopper-random-expert-v2",)


def test_full_specs_pass_through(tmp_path):
    path = write_smoke_datasets(("random",)) / "hopper_random-v2.hdf5"
    config = load_config(write_config(tmp_path, datasets=[str(path), "forge-v5-tiny/hopper-expert"]))
    assert resolve_datasets(config) == (str(path), "forge-v5-tiny/hopper-expert")


def test_missing_forge_files_are_made_before_ray(tmp_path, monkeypatch):
    calls = []
    import rkl_bench.forge.make as make

    monkeypatch.setattr(make, "make_datasets", lambda names, profile, seed, jobs: calls.append((names, profile, seed, jobs)))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    config = load_config(write_config(tmp_path, dataset_source="forge", forge={"profile": "tiny", "seed": 7}))
    specs = resolve_datasets(config)
    assert missing_forge_specs(specs) == ["forge-v5-tiny/hopper-random-expert"]
    assert make_missing_forge_datasets(specs, config) == list(specs)
    assert calls == [(["forge-v5-tiny/hopper-random-expert"], "tiny", 7, 2)], "a file per CPU at a time"


# ----------------------------------------------------------------- the CLI
def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    status = main(["run", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return status, err[0]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"extra": 1}, "unknown key 'extra'"),
        ({"algorithms": {"sac": {}}}, "unknown algorithm 'sac'"),
        ({"dataset_source": "d4rl"}, "not found"),
        ({"steps": -1}, "steps must be >= 1"),
        ({"evaluation": {"interval": 500, "episodes": 2}}, "is larger than steps"),
    ],
)
def test_cli_bad_config_exits_2_before_ray(tmp_path, capsys, changes, fragment):
    status, line = _run_cli(capsys, str(write_config(tmp_path, **changes)), "--storage", str(tmp_path / "runs"))
    assert status == 2 and line.startswith("error: ") and fragment in line
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()
    assert not (tmp_path / "runs").exists()


def test_cli_refuses_existing_experiment_and_resume_of_nothing(tmp_path, capsys):
    write_smoke_datasets()
    config = write_config(tmp_path, dataset_source="d4rl", name="exp")
    status, line = _run_cli(capsys, str(config), "--storage", str(tmp_path / "runs"), "--resume")
    assert status == 2 and "nothing to resume" in line
    (tmp_path / "runs" / "exp").mkdir(parents=True)
    (tmp_path / "runs" / "exp" / "something").write_text("x")
    status, line = _run_cli(capsys, str(config), "--storage", str(tmp_path / "runs"))
    assert status == 2 and "already exists; pass --resume" in line
    status, line = _run_cli(capsys, str(config), "--storage", str(tmp_path / "runs"), "--resume")
    assert status == 2 and "was not started by rkl-bench run" in line


def test_cli_dashboard_without_its_packages_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import rkl_bench.service.ray_runtime as runtime

    monkeypatch.setattr(runtime, "DASHBOARD_MODULES", ("no_such_module_for_rkl_bench",))
    write_smoke_datasets()
    config = write_config(tmp_path, dataset_source="d4rl")
    status, line = _run_cli(capsys, str(config), "--storage", str(tmp_path / "runs"), "--dashboard")
    assert status == 2 and "--dashboard needs Ray's dashboard packages" in line
