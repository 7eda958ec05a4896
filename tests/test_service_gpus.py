"""GPUs in run and tune configs: ``resources.gpus`` (fractional, Ray's way) and ``seeds_per_trial``.

The config loader accepts a share of a GPU and refuses bad values naming the
key; a trial's resources carry it as Ray's standard placement (bundle 0
``{"CPU": cpus, "GPU": gpus}``, evaluation actors' bundles CPU only); its
settings say ``cuda``. The records of configs that leave the new keys at
their defaults are what they were before the keys existed, so experiments
and results archives recorded before still resume. On this machine the
Ray cluster has no GPUs: ``rkl-bench run`` and ``rkl-bench tune`` refuse a
GPU config there in one error line, before any trial starts or anything is
written (each of those two tests starts a local Ray: ~10 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rkl_bench.cli import main
from rkl_bench.errors import RklBenchError
from rkl_bench.service.config import load_config, parse_config
from rkl_bench.service.run import experiment_record
from rkl_bench.service.search_config import load_search_config
from test_service_config import QUICK, write_config
from test_service_search import smoke_data, write_yaml
from test_service_support import SMOKE_CONFIG, write_smoke_datasets


def test_a_share_of_a_gpu_is_accepted(tmp_path):
    config = load_config(write_config(tmp_path, resources={"cpus": 1, "gpus": 0.25, "threads": 1}))
    assert config.resources.gpus == 0.25 and config.resources.device == "cuda"
    assert load_config(write_config(tmp_path, resources={"gpus": 1})).resources.gpus == 1.0
    assert load_config(write_config(tmp_path)).resources.device == "cpu"


@pytest.mark.parametrize("gpus, fragment", [
    (-0.5, "resources.gpus must be between 0 and 1 (a trial's share of one GPU"),
    (2, "resources.gpus must be between 0 and 1"),
    ("a quarter", "resources.gpus must be a number, got 'a quarter'"),
    (True, "resources.gpus must be a number, got True"),
])
def test_bad_gpus_are_refused_naming_the_key(tmp_path, gpus, fragment):
    path = write_config(tmp_path, resources={"cpus": 1, "gpus": gpus})
    with pytest.raises(RklBenchError) as info:
        load_config(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_seeds_per_trial_is_checked(tmp_path):
    assert load_config(write_config(tmp_path, seeds_per_trial=4)).seeds_per_trial == 4
    with pytest.raises(RklBenchError, match="seeds_per_trial must be >= 1, got 0"):
        load_config(write_config(tmp_path, seeds_per_trial=0))
    with pytest.raises(RklBenchError, match="seeds_per_trial 2 is not available for brac"):
        load_config(write_config(tmp_path, algorithms={"brac": {}}, seeds_per_trial=2))
    with pytest.raises(RklBenchError, match="a search trial trains its .dataset, seed. pairs one after the other"):
        load_search_config(write_yaml(tmp_path, smoke_data(seeds_per_trial=2)))


def test_records_without_the_new_keys_are_unchanged(tmp_path):
    """An experiment recorded before ``gpus`` and ``seeds_per_trial`` existed has this record still."""
    before = parse_config({**QUICK, "resources": {"cpus": 1, "threads": 1}}, "exp")
    data = before.to_dict()
    assert data["resources"] == {"cpus": 1.0, "threads": 1} and "seeds_per_trial" not in data
    gpu = parse_config({**QUICK, "resources": {"gpus": 0.5}, "seeds_per_trial": 8}, "exp").to_dict()
    assert gpu["resources"]["gpus"] == 0.5 and gpu["seeds_per_trial"] == 8
    # The committed results archives were recorded before these keys: their records still match.
    for archive in sorted((Path(__file__).resolve().parents[1] / "results").glob("*/archive.json")):
        record = json.loads(archive.read_text())["record"]
        config = parse_config(record["config"], "archived")
        assert experiment_record(config, record["dataset_specs"])["config"] == record["config"], archive


def test_trial_resources_take_a_share_of_a_gpu_and_actors_stay_on_cpus(tmp_path):
    from rkl_bench.service.trainable import TrialSettings
    from rkl_bench.service.tuner import trial_resources

    config = load_config(write_config(tmp_path, resources={"cpus": 2, "gpus": 0.25, "threads": 2},
                                      eval_actors={"count": 2, "cpus": 1, "envs_per_actor": 2}))
    assert trial_resources(config).bundles == [{"CPU": 2.0, "GPU": 0.25}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert TrialSettings.of(config).device == "cuda"
    cpu = load_config(write_config(tmp_path))
    assert trial_resources(cpu).bundles == [{"CPU": 1.0}]
    assert "device" not in TrialSettings.of(cpu).as_dict()  # trial configs of CPU experiments as before
    assert TrialSettings(**TrialSettings.of(config).as_dict()).device == "cuda"


def gpu_smoke_config(tmp_path: Path) -> Path:
    data = yaml.safe_load(SMOKE_CONFIG.read_text())
    data.update(name="gpus", algorithms={"bc": {"hidden_dim": 16, "batch_size": 16}},
                resources={"cpus": 1, "gpus": 0.25, "threads": 1})
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_run_refuses_gpus_on_a_cluster_without_any(tmp_path, capsys, monkeypatch):
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    config = gpu_smoke_config(tmp_path)
    code = main(["run", str(config), "--storage", str(tmp_path / "results"), "--no-report"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(err) == 1 and "resources.gpus is 0.25, but the Ray cluster has no GPUs" in err[0], err
    assert str(config) in err[0] and "set resources.gpus: 0" in err[0]
    assert not (tmp_path / "results" / "gpus").exists(), "nothing of the experiment may be written"


def test_tune_refuses_gpus_on_a_cluster_without_any_before_the_study_exists(tmp_path, capsys, monkeypatch):
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    path = write_yaml(tmp_path, smoke_data(name="gpu_search", resources={"cpus": 1, "gpus": 0.5, "threads": 1}))
    code = main(["tune", str(path), "--storage", str(tmp_path / "results")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(err) == 1 and "resources.gpus is 0.5, but the Ray cluster has no GPUs" in err[0], err
    assert not (tmp_path / "results" / "gpu_search").exists()
