"""``datasets info``: the summary dict, its text form, and the CLI end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from rkl_bench.cli import main
from rkl_bench.data import dataset_info, format_info, normalized_score


def hopper_file(path: Path) -> Path:
    """Two 3-step episodes (returns 6 and 60) then a cut-off step; one terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["observations"] = np.arange(7 * 4, dtype=np.float32).reshape(7, 4)
        f["actions"] = np.array([[0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]] * 2 + [[0.0, 0.0]], np.float32)
        f["rewards"] = np.array([1, 2, 3, 10, 20, 30, 5], np.float32)
        f["terminals"] = np.array([0, 0, 1, 0, 0, 0, 0], bool)
        f["timeouts"] = np.array([0, 0, 0, 0, 0, 1, 0], bool)
    return path


def test_dataset_info_fields(tmp_path):
    hopper_file(tmp_path / "hopper_medium-v2.hdf5")
    info = dataset_info("hopper-medium-v2", d4rl_dir=tmp_path)
    assert info["name"] == "hopper-medium-v2"
    assert (info["env"], info["version"], info["gym_env_id"]) == ("hopper", "d4rl-v2", "Hopper-v4")
    assert info["transitions"] == 5  # the timeout row 5 and the last row 6 are dropped
    assert (info["episodes"], info["terminals"], info["obs_dim"], info["act_dim"]) == (2, 1, 4, 2)
    assert (info["return_mean"], info["return_min"], info["return_max"]) == (33.0, 6.0, 60.0)
    assert info["return_std"] == pytest.approx(27.0)
    assert info["normalized_return_mean"] == pytest.approx(normalized_score("hopper", 33.0))
    assert info["normalized_return_std"] == pytest.approx(100 * 27.0 / (3234.3 + 20.272305))
    spread = info["action_spread"]
    assert spread["per_dim_std"] == pytest.approx([0.4, 0.4898979])
    assert spread["mean_abs"] == pytest.approx(0.5)
    assert info["provenance"] == [
        {"name": "hopper-medium-v2", "version": "d4rl-v2", "size": 5, "source": str(tmp_path / "hopper_medium-v2.hdf5")}
    ]
    json.dumps(info)  # JSON-ready as is


def test_unknown_env_has_no_normalised_returns(tmp_path):
    info = dataset_info(str(hopper_file(tmp_path / "mystery.hdf5")))
    assert (info["env"], info["gym_env_id"], info["normalized_return_mean"]) == ("unknown", None, None)
    assert re.search(r"^normalized return +n/a$", format_info(info), re.MULTILINE)


def test_format_info_is_aligned(tmp_path):
    text = format_info(dataset_info("hopper-medium-v2", d4rl_dir=hopper_file(tmp_path / "hopper-medium-v2.hdf5").parent))
    lines = text.splitlines()
    assert lines[0].split() == ["name", "hopper-medium-v2"]
    assert "transitions         5" in text and "Hopper-v4" in text
    # labels are padded to the longest ("action std per dim"), so every value starts in column 20
    assert all(line[18:20] == "  " and line[20] != " " for line in lines)


def test_cli_datasets_info_json(tmp_path, capsys):
    path = hopper_file(tmp_path / "hopper.hdf5")
    assert main(["datasets", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["transitions"], info["episodes"], info["env"]) == (5, 2, "hopper")


def test_cli_datasets_info_text_with_d4rl_dir(tmp_path, capsys):
    hopper_file(tmp_path / "hopper_medium-v2.hdf5")
    assert main(["datasets", "info", "hopper-medium-v2", "--d4rl-dir", str(tmp_path)]) == 0
    assert "transitions" in capsys.readouterr().out


def test_cli_bad_file_exits_2_with_one_error_line(tmp_path, capsys):
    path = hopper_file(tmp_path / "hopper.hdf5")
    with h5py.File(path, "a") as f:
        del f["rewards"]
    assert main(["datasets", "info", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(path) in lines[0] and "field 'rewards'" in lines[0]


def test_cli_missing_d4rl_name_exits_2(tmp_path, capsys):
    assert main(["datasets", "info", "walker2d-expert-v2", "--d4rl-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err and "walker2d_expert-v2.hdf5" in err
