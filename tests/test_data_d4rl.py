"""D4RL hdf5 reading (qlearning_dataset semantics), writing, validation, scores, envs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from rkl_bench.data import (
    OfflineDataset,
    env_family,
    episode_returns,
    gym_env_id,
    normalized_score,
    qlearning_rows,
    read_d4rl_hdf5,
    read_metadata,
    write_d4rl_hdf5,
)
from rkl_bench.errors import RklBenchError

# Hand-made file, 10 rows, three episodes:
#   rows 0-3 end in a terminal (row 3), rows 4-6 end in a timeout (row 6),
#   rows 7-9 are cut off by the end of the file (no flag).
# D4RL keeps rows 0..8 except the timeout row 6; the last row 9 is dropped.
N_ROWS = 10
TERMINAL_ROWS = [3]
TIMEOUT_ROWS = [6]
KEPT_ROWS = [0, 1, 2, 3, 4, 5, 7, 8]


def hand_made_arrays() -> dict[str, np.ndarray]:
    """Row i has observation (i, 10+i, 20+i) so every row is recognisable."""
    rows = np.arange(N_ROWS, dtype=np.float32)
    terminals = np.zeros(N_ROWS, bool)
    terminals[TERMINAL_ROWS] = True
    timeouts = np.zeros(N_ROWS, bool)
    timeouts[TIMEOUT_ROWS] = True
    return {
        "observations": np.stack([rows, 10 + rows, 20 + rows], axis=1),
        "actions": np.stack([rows / 10, -rows / 10], axis=1),
        "rewards": rows + 1.0,
        "terminals": terminals,
        "timeouts": timeouts,
    }


def write_raw(path: Path, **arrays: np.ndarray) -> Path:
    """Write arrays as they are (no checks): how bad files reach the reader."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def d4rl_reference(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """D4RL's qlearning_dataset loop (timeouts present, terminate_on_end=False), restated."""
    out: dict[str, list] = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals")}
    for i in range(len(data["rewards"]) - 1):
        if data["timeouts"][i]:
            continue
        out["observations"].append(data["observations"][i])
        out["next_observations"].append(data["observations"][i + 1])
        out["actions"].append(data["actions"][i])
        out["rewards"].append(data["rewards"][i])
        out["terminals"].append(bool(data["terminals"][i]))
    return {k: np.array(v, dtype=np.float32) for k, v in out.items()}


# ------------------------------------------------------------------ reading
def test_reader_follows_qlearning_dataset_on_hand_made_file(tmp_path):
    raw = hand_made_arrays()
    ds = read_d4rl_hdf5(write_raw(tmp_path / "halfcheetah_medium-v2.hdf5", **raw))

    assert len(ds) == len(KEPT_ROWS) == 8
    assert qlearning_rows(raw["timeouts"]).tolist() == KEPT_ROWS
    # which rows survived: the timeout row 6 and the last row 9 are gone
    assert ds.observations[:, 0].tolist() == KEPT_ROWS
    # next observation is the following row, also across the terminal (row 3 -> row 4)
    np.testing.assert_array_equal(ds.next_observations, raw["observations"][np.array(KEPT_ROWS) + 1])
    assert ds.next_observations[3, 0] == 4.0
    np.testing.assert_array_equal(ds.actions, raw["actions"][KEPT_ROWS])
    np.testing.assert_array_equal(ds.rewards, raw["rewards"][KEPT_ROWS])
    assert ds.terminals.tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    for name in ("observations", "actions", "rewards", "next_observations", "terminals"):
        assert getattr(ds, name).dtype == np.float32
    # D4RL's own downloads carry no metadata: family from the file name, version d4rl-v2
    assert (ds.env, ds.name, ds.version) == ("halfcheetah", "halfcheetah_medium-v2", "d4rl-v2")
    assert gym_env_id(ds) == "HalfCheetah-v4"


def test_reader_matches_d4rl_loop_on_random_flags(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    raw = {
        "observations": rng.normal(size=(n, 4)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "terminals": rng.random(n) < 0.05,
        "timeouts": rng.random(n) < 0.05,
    }
    raw["terminals"][10] = raw["timeouts"][10] = True  # both flags: D4RL drops the row
    raw["timeouts"][-1] = True
    ds = read_d4rl_hdf5(write_raw(tmp_path / "random.hdf5", **raw))
    expected = d4rl_reference(raw)
    for key, value in expected.items():
        np.testing.assert_array_equal(getattr(ds, key), value, err_msg=key)
    assert 10 not in qlearning_rows(raw["timeouts"])


def test_reader_ignores_stored_next_observations_like_d4rl(tmp_path):
    raw = hand_made_arrays()
    path = write_raw(tmp_path / "h.hdf5", next_observations=np.full((N_ROWS, 3), -5.0, np.float32), **raw)
    ds = read_d4rl_hdf5(path)
    np.testing.assert_array_equal(ds.next_observations, raw["observations"][np.array(KEPT_ROWS) + 1])


def test_episode_returns_split_at_terminals_and_timeouts_without_trailing_partial(tmp_path):
    raw = hand_made_arrays()  # rewards are row + 1
    expected = [1 + 2 + 3 + 4, 5 + 6 + 7]  # rows 0-3 and 4-6; rows 7-9 are cut off
    assert episode_returns(raw["rewards"], raw["terminals"], raw["timeouts"]).tolist() == expected
    assert read_d4rl_hdf5(write_raw(tmp_path / "h.hdf5", **raw)).episode_returns.tolist() == expected


# ----------------------------------------------------------------- bad input
def bad_file(tmp_path: Path, **changes) -> Path:
    arrays = {**hand_made_arrays(), **changes}
    return write_raw(tmp_path / "halfcheetah.hdf5", **{k: v for k, v in arrays.items() if v is not None})


def assert_one_line_naming(exc: pytest.ExceptionInfo, path: Path, *parts: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    for part in parts:
        assert part in message, message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.hdf5"
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "no such file")


def test_not_hdf5(tmp_path):
    path = tmp_path / "fake.hdf5"
    path.write_text("observations,actions\n1,2\n")
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "not an HDF5 file")


def test_missing_key(tmp_path):
    path = bad_file(tmp_path, timeouts=None)
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'timeouts'", "missing")


def test_field_is_a_group(tmp_path):
    path = bad_file(tmp_path, rewards=None)
    with h5py.File(path, "a") as f:
        f.create_group("rewards")
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'rewards'", "group")


def test_mismatched_lengths(tmp_path):
    path = bad_file(tmp_path, actions=hand_made_arrays()["actions"][:9])
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'actions'", "9 rows", "10")


def test_nan_names_first_bad_row(tmp_path):
    obs = hand_made_arrays()["observations"]
    obs[5, 1] = np.nan
    obs[8, 0] = np.nan
    path = bad_file(tmp_path, observations=obs)
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'observations'", "NaN", "row 5")


def test_inf_reward(tmp_path):
    rewards = hand_made_arrays()["rewards"]
    rewards[2] = np.inf
    path = bad_file(tmp_path, rewards=rewards)
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'rewards'", "inf", "row 2")


def test_non_numeric_dtype(tmp_path):
    path = bad_file(tmp_path, rewards=np.array([b"abc"] * N_ROWS))
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'rewards'", "dtype", "expected numbers")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("observations", np.zeros(N_ROWS, np.float32), "(N, obs_dim)"),
        ("actions", np.zeros((N_ROWS, 2, 1), np.float32), "(N, act_dim)"),
        ("rewards", np.zeros((N_ROWS, 1), np.float32), "(N,)"),
    ],
)
def test_wrong_shape(tmp_path, field, value, expected):
    path = bad_file(tmp_path, **{field: value})
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, f"field {field!r}", str(value.shape), expected)


def test_actions_outside_bounds(tmp_path):
    actions = hand_made_arrays()["actions"]
    actions[7, 1] = 1.7
    actions[9, 0] = -3.2
    path = bad_file(tmp_path, actions=actions)
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'actions'", "outside [-1, 1]", "row 7: 1.7", "3.2", "normalised")


def test_actions_within_rounding_tolerance_are_accepted(tmp_path):
    actions = hand_made_arrays()["actions"]
    actions[0, 0] = np.float32(1.0 + 2e-6)
    ds = read_d4rl_hdf5(bad_file(tmp_path, actions=actions))
    assert ds.actions[0, 0] == np.float32(1.0 + 2e-6)  # kept as stored, not clipped


def test_flags_must_be_zero_or_one(tmp_path):
    terminals = hand_made_arrays()["terminals"].astype(np.float32)
    terminals[4] = 2.0
    path = bad_file(tmp_path, terminals=terminals)
    with pytest.raises(RklBenchError) as exc:
        read_d4rl_hdf5(path)
    assert_one_line_naming(exc, path, "field 'terminals'", "0/1", "row 4")


# ------------------------------------------------------------------ writing
def test_writer_round_trip_with_metadata(tmp_path):
    raw = hand_made_arrays()
    path = tmp_path / "forge" / "hopper-random.hdf5"
    metadata = {"env": "hopper", "version": "forge-v5:abc123", "name": "forge-v5/hopper-random",
                "seed": 3, "policy_return": 12.5, "sources": ["a", "b"]}
    returned = write_d4rl_hdf5(path, next_observations=raw["observations"], metadata=metadata, **raw)

    assert returned == path and list(path.parent.iterdir()) == [path]  # no temp file left
    with h5py.File(path) as f:
        assert f["observations"].dtype == np.float32 and f["rewards"].dtype == np.float32
        assert f["terminals"].dtype == bool and f["timeouts"].dtype == bool
        assert "next_observations" in f
    assert read_metadata(path) == metadata
    ds = read_d4rl_hdf5(path)
    assert (ds.env, ds.name, ds.version) == ("hopper", "forge-v5/hopper-random", "forge-v5:abc123")
    assert gym_env_id(ds) == "Hopper-v5"
    assert ds.observations[:, 0].tolist() == KEPT_ROWS


def test_writer_refuses_bad_data_and_leaves_old_file(tmp_path):
    raw = hand_made_arrays()
    meta = {"env": "hopper", "version": "forge-v5:1", "name": "x"}
    path = write_d4rl_hdf5(tmp_path / "x.hdf5", metadata=meta, **raw)
    before = path.read_bytes()
    with pytest.raises(RklBenchError, match="field 'actions' has values outside"):
        write_d4rl_hdf5(path, metadata=meta, **{**raw, "actions": raw["actions"] * 20})
    with pytest.raises(RklBenchError, match="metadata needs env, version, name; missing version"):
        write_d4rl_hdf5(path, metadata={"env": "hopper", "name": "x"}, **raw)
    with pytest.raises(RklBenchError, match="metadata 'policy' must be a string"):  # fails mid-write
        write_d4rl_hdf5(path, metadata={**meta, "policy": {"layers": 2}}, **raw)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no half-written temp file either


# ------------------------------------------------------------ scores, envs
def test_normalized_score_reference_points():
    assert normalized_score("halfcheetah", -280.178953) == pytest.approx(0.0)
    assert normalized_score("HalfCheetah-v5", 12135.0) == pytest.approx(100.0)
    assert normalized_score("hopper-medium-v2", 3234.3) == pytest.approx(100.0)
    scores = normalized_score("walker2d", np.array([1.629008, 4592.3, (1.629008 + 4592.3) / 2]))
    np.testing.assert_allclose(scores, [0.0, 100.0, 50.0])
    assert isinstance(normalized_score("hopper", 100.0), float)


def test_normalized_score_unknown_env_lists_known():
    with pytest.raises(RklBenchError, match="unknown environment 'ant'; known: halfcheetah, hopper, walker2d"):
        normalized_score("ant", 1.0)


def test_env_family_accepts_gymnasium_ids():
    assert [env_family(n) for n in ("HalfCheetah-v5", "Hopper-v4", "walker2d", "Walker2d-v5")] == [
        "halfcheetah", "hopper", "walker2d", "walker2d"]


def test_gym_env_id_by_version():
    def make(env: str, version: str, **metadata) -> OfflineDataset:
        z = np.zeros((2, 3), np.float32)
        return OfflineDataset(z, z[:, :2], z[:, 0], z, z[:, 0], env=env, name="x", version=version, metadata=metadata)

    assert gym_env_id(make("walker2d", "d4rl-v2")) == "Walker2d-v4"
    assert gym_env_id(make("walker2d", "forge-v5:abc")) == "Walker2d-v5"
    assert gym_env_id(make("halfcheetah", "forge-v5:a+forge-v5:b")) == "HalfCheetah-v5"
    assert gym_env_id(make("toy2d", "toy")) is None
    assert gym_env_id(make("pendulum", "minari:p", gym_env_id="Pendulum-v1")) == "Pendulum-v1"


def test_importing_data_layer_stays_light():
    # torch is stubbed so the fresh interpreter starts in a second on a busy machine;
    # the data layer only touches torch inside TensorSampler.
    code = (
        "import sys, types\n"
        "sys.modules['torch'] = types.ModuleType('torch')\n"
        "import rkl_bench.data\n"
        "heavy = [m for m in ('gymnasium', 'ray', 'minari', 'rkl_bench.algos') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
