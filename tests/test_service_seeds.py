"""``seeds_per_trial`` end to end: seeds trained together in one Tune trial still report, export and
show in the report as ordinary trials (one local Ray, the smoke data; ~1 min, so ``slow``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from rkl_bench import cli
from rkl_bench.training.archive import load_archive
from test_service_run import config_copy, result_rows
from test_service_support import SMOKE_CONFIG, write_smoke_datasets


@pytest.mark.slow
def test_seeds_trained_together_are_ordinary_trials_to_reports_and_archives(tmp_path, capsys, monkeypatch):
    write_smoke_datasets()
    monkeypatch.chdir(tmp_path)
    td3_rkl = yaml.safe_load(SMOKE_CONFIG.read_text())["algorithms"]["td3_rkl"]
    config = config_copy(tmp_path, name="grouped", algorithms={"td3_rkl": td3_rkl}, seeds=[0, 1, 2],
                         seeds_per_trial=2, resources={"cpus": 2, "threads": 1})
    code = cli.main(["run", str(config), "--storage", str(tmp_path / "results")])
    assert code == 0, capsys.readouterr().err

    experiment = tmp_path / "results" / "grouped"
    trial_dirs = sorted(folder for folder in experiment.iterdir() if (folder / "result.json").exists())
    assert len(trial_dirs) == 2, "seeds [0, 1] train in one trial, seed 2 in another"
    seeds_by_dir = {}
    for folder in trial_dirs:
        rows = result_rows(folder)
        seeds = sorted({row["seed"] for row in rows})
        seeds_by_dir[tuple(seeds)] = folder
        for seed in seeds:
            assert [row["step"] for row in rows if row["seed"] == seed] == [30, 60], (folder, seed)
        params = json.loads((folder / "params.json").read_text())
        assert params["seed"] == seeds[0] and params.get("seeds", [seeds[0]]) == seeds
    assert set(seeds_by_dir) == {(0, 1), (2,)}
    together = seeds_by_dir[(0, 1)]
    assert all(row["seeds_per_trial"] == 2 for row in result_rows(together))
    (last,) = sorted(together.glob("checkpoint_0*"))  # checkpoints.keep: 1
    assert {p.name for p in last.glob("*.pt")} == {"checkpoint_seed0.pt", "checkpoint_seed1.pt"}
    with np.load(together / "lambdas_seed0.npz") as a, np.load(together / "lambdas_seed1.npz") as b:
        assert set(a.files) == {"random", "expert"} and not np.array_equal(a["random"], b["random"])

    # The report sees three seeds of td3_rkl.
    table = (tmp_path / "reports" / "grouped" / "table2.csv").read_text().splitlines()
    header = table[0].split(",")
    cells = [dict(zip(header, line.split(","))) for line in table[1:] if "hopper-random-expert" in line]
    assert [row["n_seeds"] for row in cells if row["algo"] == "td3_rkl"] == ["3"]

    # The archive holds three trials, each with its own rows and lambda(s).
    assert cli.main(["results", "export", str(experiment), "--out", str(tmp_path / "archive")]) == 0
    archive = load_archive(tmp_path / "archive")
    assert sorted(key[2] for key in archive.trials) == [0, 1, 2]
    for (algo, dataset, seed), trial in archive.trials.items():
        assert {row["seed"] for row in trial.rows} == {seed} and [row["step"] for row in trial.rows] == [30, 60]
    means = {key[2]: trial.lambdas["random"]["mean"] for key, trial in archive.trials.items()}
    assert means[0] != means[1], "seed 1's lambda(s) must be its own, not seed 0's"
