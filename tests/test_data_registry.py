"""Dataset names -> files: D4RL lookup, forge files, mixing with provenance, Minari round trip."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from rkl_bench.data import (
    concat_datasets,
    forge_dir,
    forge_path,
    gym_env_id,
    load_dataset,
    parse_dataset_name,
    read_minari,
    write_d4rl_hdf5,
)
from rkl_bench.errors import RklBenchError


def d4rl_style_file(path: Path, n_episodes: int, length: int = 5, obs_dim: int = 3, reward: float = 1.0) -> Path:
    """A file like D4RL's downloads: no metadata, every episode ends in a timeout."""
    n = n_episodes * length
    timeouts = np.zeros(n, bool)
    timeouts[length - 1 :: length] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["observations"] = np.arange(n * obs_dim, dtype=np.float32).reshape(n, obs_dim)
        f["actions"] = np.zeros((n, 2), np.float32)
        f["rewards"] = np.full(n, reward, np.float32)
        f["terminals"] = np.zeros(n, bool)
        f["timeouts"] = timeouts
    return path


def forge_file(
    env: str, kind: str, n_episodes: int, version: str = "forge-v5:abc", length: int = 4, profile: str = "full"
) -> Path:
    n = n_episodes * length
    timeouts = np.zeros(n, bool)
    timeouts[length - 1 :: length] = True
    return write_d4rl_hdf5(
        forge_path(env, kind, profile),
        observations=np.ones((n, 3), np.float32),
        actions=np.zeros((n, 2), np.float32),
        rewards=np.ones(n, np.float32),
        terminals=np.zeros(n, bool),
        timeouts=timeouts,
        metadata={"env": env, "version": version, "name": f"forge-v5/{env}-{kind}"},
    )


# -------------------------------------------------------------- D4RL names
def test_d4rl_name_found_under_d4rls_own_file_name_in_env_dir():
    folder = Path(os.environ["D4RL_DATASET_DIR"])
    d4rl_style_file(folder / "hopper_medium_replay-v2.hdf5", n_episodes=3)
    ds = load_dataset("hopper-medium-replay-v2")
    assert (ds.name, ds.env, ds.version) == ("hopper-medium-replay-v2", "hopper", "d4rl-v2")
    assert len(ds) == 3 * 4  # each 5-step episode loses its timeout row
    assert ds.provenance[0].source == str(folder / "hopper_medium_replay-v2.hdf5")
    assert gym_env_id(ds) == "Hopper-v4"


def test_d4rl_name_found_under_plain_name_in_explicit_dir(tmp_path):
    d4rl_style_file(tmp_path / "walker2d-medium-expert-v2.hdf5", n_episodes=2)
    ds = load_dataset("walker2d-medium-expert-v2", d4rl_dir=tmp_path)
    assert (ds.name, ds.env, len(ds)) == ("walker2d-medium-expert-v2", "walker2d", 8)


def test_missing_d4rl_file_names_dir_and_file_names(tmp_path):
    with pytest.raises(RklBenchError) as exc:
        load_dataset("halfcheetah-medium-v2", d4rl_dir=tmp_path)
    message = str(exc.value)
    assert str(tmp_path) in message
    assert "halfcheetah_medium-v2.hdf5" in message and "halfcheetah-medium-v2.hdf5" in message
    assert "never downloaded" in message and "\n" not in message


def test_path_spec_reads_the_file(tmp_path):
    path = d4rl_style_file(tmp_path / "some" / "hopper-data.hdf5", n_episodes=1)
    ds = load_dataset(str(path))
    assert (ds.name, ds.env, ds.version, len(ds)) == ("hopper-data", "hopper", "d4rl-v2", 4)


# ------------------------------------------------------------------ parsing
def test_parse_dataset_names():
    mixed = parse_dataset_name("halfcheetah-random-medium-replay-v2")
    assert (mixed.source, mixed.env, mixed.kinds) == ("d4rl", "halfcheetah", ("random", "medium-replay"))
    assert mixed.parts == ("halfcheetah-random-v2", "halfcheetah-medium-replay-v2")
    assert mixed.gym_env_id == "HalfCheetah-v4"
    assert parse_dataset_name("walker2d-random-medium-expert-v2").parts == (
        "walker2d-random-v2", "walker2d-medium-expert-v2")
    assert parse_dataset_name("hopper-medium-expert-v2").kinds == ("medium-expert",)  # D4RL's own file
    forge = parse_dataset_name("forge-v5/hopper-random-expert")
    assert forge.parts == ("forge-v5/hopper-random", "forge-v5/hopper-expert")
    assert (forge.source, forge.gym_env_id) == ("forge", "Hopper-v5")
    minari = parse_dataset_name("minari:mujoco/hopper/expert-v0")
    assert (minari.source, minari.location, minari.env) == ("minari", "mujoco/hopper/expert-v0", "hopper")
    assert parse_dataset_name("data/x.hdf5").source == "file"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("ant-medium-v2", "unknown env 'ant'"),
        ("hopper-mediocre-v2", "unknown kind 'mediocre'"),
        ("forge-v5/hopper-random-random", "unknown kind 'random-random'"),
        ("hopper-medium-v0", "only D4RL's -v2"),
        ("hello", "expected a path to an .hdf5 file"),
    ],
)
def test_bad_names(spec, expected):
    with pytest.raises(RklBenchError, match=expected):
        parse_dataset_name(spec)


# -------------------------------------------------------------------- forge
def test_forge_locations_follow_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "f"))
    assert forge_dir() == tmp_path / "f"
    assert forge_path("Hopper-v5", "random") == tmp_path / "f" / "hopper-random.hdf5"


def test_forge_profiles_have_their_own_prefix_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path))
    quick = parse_dataset_name("forge-v5-quick/walker2d-random-medium")
    assert (quick.profile, quick.parts) == ("quick", ("forge-v5-quick/walker2d-random", "forge-v5-quick/walker2d-medium"))
    assert parse_dataset_name("forge-v5/walker2d-random").profile == "full"
    assert forge_path("walker2d", "random", "quick") == tmp_path / "quick" / "walker2d-random.hdf5"
    forge_file("walker2d", "random", n_episodes=1, profile="quick")
    assert len(load_dataset("forge-v5-quick/walker2d-random")) == 3
    with pytest.raises(RklBenchError, match="datasets make forge-v5/walker2d-random --profile full`"):
        load_dataset("forge-v5/walker2d-random")


def test_forge_mixed_name_concatenates_parts_with_provenance():
    forge_file("hopper", "random", n_episodes=2, version="forge-v5:aaa")
    forge_file("hopper", "expert", n_episodes=3, version="forge-v5:bbb")
    ds = load_dataset("forge-v5/hopper-random-expert")
    assert (ds.name, ds.env, len(ds)) == ("forge-v5/hopper-random-expert", "hopper", 6 + 9)
    assert ds.version == "forge-v5:aaa+forge-v5:bbb"
    assert gym_env_id(ds) == "Hopper-v5"
    assert [(p.name, p.version, p.size) for p in ds.provenance] == [
        ("forge-v5/hopper-random", "forge-v5:aaa", 6),
        ("forge-v5/hopper-expert", "forge-v5:bbb", 9),
    ]
    assert ds.provenance[1].source == str(forge_path("hopper", "expert"))
    assert ds.episode_returns.tolist() == [4.0] * 5


def test_missing_forge_file_says_how_to_make_it():
    forge_file("hopper", "random", n_episodes=1)
    with pytest.raises(RklBenchError, match=r"run `rkl-bench datasets make forge-v5/hopper-expert --profile full`"):
        load_dataset("forge-v5/hopper-random-expert")


def test_forge_file_with_wrong_version_is_refused():
    forge_file("walker2d", "medium", n_episodes=1, version="d4rl-v2")
    with pytest.raises(RklBenchError, match="not a forge-v5 walker2d dataset.*--force"):
        load_dataset("forge-v5/walker2d-medium")


# ------------------------------------------------------------------- mixing
def test_d4rl_mixed_name_records_provenance(tmp_path):
    d4rl_style_file(tmp_path / "halfcheetah_random-v2.hdf5", n_episodes=2, reward=-1.0)
    d4rl_style_file(tmp_path / "halfcheetah-medium-replay-v2.hdf5", n_episodes=3, reward=2.0)
    ds = load_dataset("halfcheetah-random-medium-replay-v2", d4rl_dir=tmp_path)
    assert (ds.name, ds.version, len(ds)) == ("halfcheetah-random-medium-replay-v2", "d4rl-v2", 8 + 12)
    assert [(p.name, p.size, p.source) for p in ds.provenance] == [
        ("halfcheetah-random-v2", 8, str(tmp_path / "halfcheetah_random-v2.hdf5")),
        ("halfcheetah-medium-replay-v2", 12, str(tmp_path / "halfcheetah-medium-replay-v2.hdf5")),
    ]
    assert ds.episode_returns.tolist() == [-5.0] * 2 + [10.0] * 3
    assert np.all(ds.rewards[:8] == -1.0) and np.all(ds.rewards[8:] == 2.0)


def test_concat_refuses_different_envs_and_dims(tmp_path):
    hopper = load_dataset(str(d4rl_style_file(tmp_path / "hopper.hdf5", n_episodes=1)))
    walker = load_dataset(str(d4rl_style_file(tmp_path / "walker2d.hdf5", n_episodes=1)))
    wide = load_dataset(str(d4rl_style_file(tmp_path / "wide" / "hopper.hdf5", n_episodes=1, obs_dim=5)))
    with pytest.raises(RklBenchError, match=r"cannot mix 'hopper' \(env hopper\) with 'walker2d' \(env walker2d\)"):
        concat_datasets("m", [hopper, walker])
    with pytest.raises(RklBenchError, match=r"obs_dim 3\) with 'hopper' \(obs_dim 5"):
        concat_datasets("m", [hopper, wide])


def test_concat_refuses_d4rl_with_forge_data(tmp_path):
    d4rl = load_dataset(str(d4rl_style_file(tmp_path / "hopper.hdf5", n_episodes=1)))
    forge = load_dataset(str(forge_file("hopper", "random", n_episodes=1)))
    with pytest.raises(RklBenchError, match="gymnasium env Hopper-v4.*Hopper-v5"):
        concat_datasets("m", [d4rl, forge])


# ------------------------------------------------------------------- minari
def make_tiny_minari(dataset_id: str) -> list[dict[str, np.ndarray]]:
    """Two short Pendulum episodes written with Minari: one ends in a termination,
    one in a truncation. Actions stay in [-1, 1] (inside Pendulum's [-2, 2])."""
    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    rng = np.random.default_rng(0)
    episodes = []
    for length, terminated in [(4, True), (3, False)]:
        last, none = np.arange(length) == length - 1, np.zeros(length, bool)
        episodes.append({
            "observations": rng.normal(size=(length + 1, 3)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (length, 1)).astype(np.float32),
            "rewards": rng.normal(size=length),
            "terminations": last if terminated else none,
            "truncations": none if terminated else last,
        })
    buffers = [EpisodeBuffer(id=i, **ep) for i, ep in enumerate(episodes)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            dataset_id, buffers, env="Pendulum-v1",
            action_space=gym.spaces.Box(-1.0, 1.0, (1,), np.float32), algorithm_name="random",
        )
    return episodes


def test_minari_round_trip():
    episodes = make_tiny_minari("test/pendulum/tiny-v0")
    ds = load_dataset("minari:test/pendulum/tiny-v0")
    assert len(ds) == 4 + 3
    assert (ds.name, ds.version, ds.env) == ("minari:test/pendulum/tiny-v0",) * 2 + ("pendulum",)
    assert gym_env_id(ds) == "Pendulum-v1"
    np.testing.assert_allclose(ds.observations, np.concatenate([ep["observations"][:-1] for ep in episodes]))
    np.testing.assert_allclose(ds.next_observations, np.concatenate([ep["observations"][1:] for ep in episodes]))
    # the termination is a terminal; the truncation (last row) is not
    assert ds.terminals.tolist() == [0, 0, 0, 1, 0, 0, 0]
    np.testing.assert_allclose(ds.episode_returns, [ep["rewards"].sum() for ep in episodes], rtol=1e-6)


def test_missing_minari_dataset_names_the_directory():
    with pytest.raises(RklBenchError) as exc:
        read_minari("test/none-v0")
    assert os.environ["MINARI_DATASETS_PATH"] in str(exc.value)
    assert "never downloaded" in str(exc.value)
