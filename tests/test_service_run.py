"""``rkl-bench run`` end to end on the smoke grid: a local Ray started by the
command itself, an interrupted run resumed, and a real two-node Ray cluster.

The smoke grid is 3 learners x 1 mixed dataset x 1 seed, 60 gradient steps,
evaluated at steps 30 and 60 (tiny D4RL-layout Hopper files written per test,
see ``test_service_support``).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import torch
import pytest
import yaml

from rkl_bench import cli
from rkl_bench.service.run import run_experiment
from test_service_support import SMOKE_CONFIG, write_smoke_datasets

ALGOS = {"bc", "td3_bc", "td3_rkl"}
EVAL_STEPS = [30, 60]


def result_rows(trial_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]
    return [row for row in rows if "normalized_score" in row]


def trial_dirs(experiment_dir: Path) -> dict[str, Path]:
    """Trial directory by algorithm."""
    found = {}
    for folder in experiment_dir.iterdir():
        if (folder / "result.json").exists():
            params = json.loads((folder / "params.json").read_text())
            found[params["algo"]] = folder
    return found


def config_copy(tmp_path: Path, **changes) -> Path:
    """The smoke config with ``changes``, written next to the test's files."""
    data = yaml.safe_load(SMOKE_CONFIG.read_text())
    data.update(changes)
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_smoke_grid_end_to_end_writes_rows_and_report(tmp_path, capsys, monkeypatch):
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    decisive = tmp_path / "decisive"  # the report this run is a smoke budget of (quick.yaml: table2_mixtures)
    decisive.mkdir()
    (decisive / "index.html").write_text("<html></html>")
    code = cli.main(["run", str(config_copy(tmp_path, smoke_of="decisive")), "--storage", str(tmp_path / "results")])
    out = capsys.readouterr().out
    assert code == 0, out

    experiment = tmp_path / "results" / "smoke"
    trials = trial_dirs(experiment)
    assert set(trials) == ALGOS
    for algo, folder in trials.items():
        rows = result_rows(folder)
        assert [row["step"] for row in rows] == EVAL_STEPS
        for row in rows:
            assert row["algo"] == algo and row["seed"] == 0 and row["total_steps"] == 60
            assert row["dataset"].endswith("hopper-random-expert-v2") and row["dataset_version"] == "d4rl-v2"
            assert row["eval_episodes"] == 2 and row["normalized_score"] == row["normalized_score"]
        assert (folder / "checkpoint_000001" / "checkpoint.pt").exists()

    # TD3+RKL's lambda(s) per dataset component, for Fig. 4; other learners have none.
    with np.load(trials["td3_rkl"] / "lambdas.npz") as saved:
        lambdas = {name: saved[name] for name in saved.files}
    assert set(lambdas) == {"random", "expert"}
    # 400 rows per file, less the 8 timeout rows qlearning_dataset drops.
    assert all(v.shape == (392,) and v.min() >= 0.0 and v.max() <= 1.0 for v in lambdas.values())
    assert not (trials["bc"] / "lambdas.npz").exists()

    # The run ends with its report, and says where it is.
    report = tmp_path / "reports" / "smoke"
    assert f"report: {(report / 'index.html').resolve()}" in out
    table = (report / "table2.csv").read_text().splitlines()
    header = table[0].split(",")
    hopper = [dict(zip(header, line.split(","))) for line in table[1:] if "hopper-random-expert" in line]
    assert {row["algo"] for row in hopper if row["n_seeds"] == "1"} == ALGOS
    assert list((report / "figures").glob("lambdas_*.png")), "Fig. 4 histogram missing from the report"
    # ... and, as a smoke budget, says so in one line and links the run that decides.
    assert "Smoke budget: these numbers only show that the pipeline runs end to end" in out
    assert "The decisive run's report: decisive/index.html\n" in out
    page = (report / "index.html").read_text()
    assert '<p class="notice">Smoke budget:' in page and '<a href="../../decisive/index.html">decisive/index.html</a>' in page


INTERRUPT_FLAG = "RKL_BENCH_TEST_INTERRUPT"


def interrupt_after_first_trial():
    """A Tune callback that presses Ctrl-C once a trial has finished, while
    ``$RKL_BENCH_TEST_INTERRUPT`` is set (Tune keeps a run's callbacks in its
    saved state and brings them back on resume, so the flag switches it off)."""
    from ray.tune import Callback

    class Interrupt(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            if os.environ.get(INTERRUPT_FLAG):
                os.kill(os.getpid(), signal.SIGINT)

    return Interrupt()


def test_interrupted_run_resumes_without_rerunning_finished_trials(tmp_path, monkeypatch):
    """Ctrl-C after the first finished trial, then ``--resume``: that trial's rows are
    kept as they were, the others finish, and every trial has each evaluation once."""
    write_smoke_datasets()
    # One trial at a time, so that the interruption finds the others unfinished.
    config = config_copy(tmp_path, name="interrupted", resources={"cpus": 2, "threads": 1})
    storage = tmp_path / "results"
    monkeypatch.setenv(INTERRUPT_FLAG, "1")
    first = run_experiment(config, storage=storage, verbose=0, callbacks=[interrupt_after_first_trial()])
    monkeypatch.delenv(INTERRUPT_FLAG)
    assert first.interrupted and first.finished >= 1 and first.finished < 3

    experiment = storage / "interrupted"
    done_before = {
        algo: (folder / "result.json").read_bytes()
        for algo, folder in trial_dirs(experiment).items()
        if [row["step"] for row in result_rows(folder)] == EVAL_STEPS
    }
    assert 1 <= len(done_before) < 3

    second = run_experiment(config, storage=storage, resume=True, verbose=0)
    assert (second.finished, second.errored, second.interrupted) == (3, 0, False)
    trials = trial_dirs(experiment)
    assert set(trials) == ALGOS
    for algo, folder in trials.items():
        assert [row["step"] for row in result_rows(folder)] == EVAL_STEPS, algo
    for algo, content in done_before.items():
        assert (trials[algo] / "result.json").read_bytes() == content, f"{algo} was re-run"


@pytest.fixture
def two_node_cluster():
    """A head and a worker node, one CPU each, every process on loopback."""
    from rkl_bench.service.ray_runtime import LOOPBACK, configure_ray_environment

    configure_ray_environment(local=True)
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "include_dashboard": False, "node_ip_address": LOOPBACK}
    cluster = Cluster(initialize_head=True, head_node_args=dict(node))
    cluster.add_node(**node)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_smoke_grid_on_a_two_node_cluster(tmp_path, two_node_cluster, capsys, monkeypatch):
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    config = config_copy(tmp_path, name="cluster")
    code = cli.main(["run", str(config), "--address", two_node_cluster.address, "--storage", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err

    trials = trial_dirs(tmp_path / "results" / "cluster")
    assert set(trials) == ALGOS
    nodes = {result_rows(folder)[-1]["node_id"] for folder in trials.values()}
    cluster_nodes = {node.node_id for node in two_node_cluster.list_all_nodes()}
    assert nodes <= cluster_nodes
    assert len(nodes) == 2, "three one-CPU trials on two one-CPU nodes must use both nodes"


def test_local_run_starts_its_own_ray_beside_a_running_cluster(tmp_path, two_node_cluster, monkeypatch):
    """Without --address a run never joins a Ray that happens to run on the machine."""
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    config = config_copy(tmp_path, name="beside", algorithms={"bc": {"hidden_dim": 32, "batch_size": 32}})
    summary = run_experiment(config, storage=tmp_path / "results", verbose=0)
    assert (summary.finished, summary.errored) == (1, 0)
    (folder,) = trial_dirs(summary.experiment_dir).values()
    cluster_nodes = {node.node_id for node in two_node_cluster.list_all_nodes()}
    assert result_rows(folder)[-1]["node_id"] not in cluster_nodes


def test_variant_keys_train_their_own_settings_and_report_as_their_own_column(tmp_path, capsys, monkeypatch):
    """``bc`` and ``bc@wide`` in one grid: two trials, each with its own networks, two report columns."""
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    config = config_copy(tmp_path, name="variants", algorithms={
        "bc": {"hidden_dim": 32, "batch_size": 32},
        "bc@wide": {"hidden_dim": 48, "batch_size": 32},
    })
    code = cli.main(["run", str(config), "--storage", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err

    trials = trial_dirs(tmp_path / "results" / "variants")
    assert set(trials) == {"bc", "bc@wide"}
    for algo, folder in trials.items():
        assert [row["algo"] for row in result_rows(folder)] == [algo, algo]
        checkpoint = torch.load(folder / "checkpoint_000001" / "checkpoint.pt", weights_only=False)
        first_layer = checkpoint["learner"]["actor"]["net.0.weight"]
        assert first_layer.shape[0] == (48 if algo == "bc@wide" else 32), algo

    table = (tmp_path / "reports" / "variants" / "table2.csv").read_text().splitlines()
    header = table[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in table[1:] if "hopper-random-expert" in line]
    ran = {(row["algo"], row["algo_label"]) for row in rows if row["n_seeds"] == "1"}
    assert ran == {("bc", "BC"), ("bc@wide", "BC (wide)")}


def test_the_shipped_tuned_config_runs_as_is_and_at_a_tiny_budget(tmp_path, capsys, monkeypatch):
    """reports/optuna_rkl_mixtures/best_config.yaml, the study's result (until the study ends, the
    committed snapshot's results/optuna_rkl_mixtures/best_config.yaml), is accepted by ``rkl-bench
    run`` as it ships; with its budget shrunk (data, steps, network and behaviour-fit sizes: the smoke
    grid's) it trains, and the trial trains with every tuned hyper-parameter as shipped."""
    from rkl_bench.service.config import load_config

    repo = Path(__file__).resolve().parents[1]
    shipped = repo / "reports" / "optuna_rkl_mixtures" / "best_config.yaml"  # the finished study's report
    if not shipped.is_file():  # while the study runs: its committed snapshot (results/optuna_rkl_mixtures)
        shipped = repo / "results" / "optuna_rkl_mixtures" / "best_config.yaml"
    as_is = load_config(shipped)
    assert list(as_is.algorithms) == ["td3_rkl"] and as_is.algorithms["td3_rkl"]["q_weight"] == 2.5
    assert as_is.steps == 100_000 and len(as_is.datasets) == 3

    tuned = yaml.safe_load(shipped.read_text())["algorithms"]["td3_rkl"]
    smoke = yaml.safe_load(SMOKE_CONFIG.read_text())
    budget = smoke["algorithms"]["td3_rkl"]  # sizes only: hidden_dim, batch_size, behaviour_*
    assert not set(budget) & set(tuned)
    tiny = {**yaml.safe_load(shipped.read_text()), "name": "tuned-tiny", "datasets": smoke["datasets"],
            "algorithms": {"td3_rkl": {**tuned, **budget}},
            "dataset_source": smoke["dataset_source"], "forge": smoke["forge"], "steps": 60,
            "evaluation": smoke["evaluation"], "eval_actors": smoke["eval_actors"], "max_failures": 1}
    config = tmp_path / "tuned-tiny.yaml"
    config.write_text(yaml.safe_dump(tiny))
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    code = cli.main(["run", str(config), "--storage", str(tmp_path / "results"), "--no-report"])
    assert code == 0, capsys.readouterr().err
    (folder,) = trial_dirs(tmp_path / "results" / "tuned-tiny").values()
    assert [row["step"] for row in result_rows(folder)] == EVAL_STEPS
    params = json.loads((folder / "params.json").read_text())
    assert params["hyperparams"] == {**tuned, **budget}
