"""The forge end to end: roll out, write D4RL layout, read back with the core reader."""

import numpy as np
import pytest
import torch

from rkl_bench.algos.nets import GaussianHead
from rkl_bench.data.registry import load_dataset, parse_dataset_name
from rkl_bench.errors import RklBenchError
from rkl_bench.forge import policies
from rkl_bench.forge.generate import rollout
from rkl_bench.forge.make import make_datasets, make_file


def test_rollout_is_identical_whatever_the_number_of_envs():
    a = rollout("Hopper-v5", None, 300, seed=4, num_envs=1, progress=False)
    b = rollout("Hopper-v5", None, 300, seed=4, num_envs=3, progress=False)
    for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert len(a.rewards) == 300
    assert a.timeouts[-1], "a dataset cut mid-episode flags its last row as a timeout"
    # rows follow each other within an episode
    inside = ~(a.terminals | a.timeouts)[:-1]
    assert np.array_equal(a.next_observations[:-1][inside], a.observations[1:][inside])
    assert np.abs(a.actions).max() <= 1.0


def test_policy_rollout_is_identical_whatever_the_number_of_envs():
    """A real policy runs on fixed row blocks: 3 envs (one block) and 20 (two) give the same bytes."""
    torch.manual_seed(0)
    policy = policies.SnapshotPolicy(GaussianHead(11, 3).eval(), step=0, digest="test")
    a = rollout("Hopper-v5", policy, 400, seed=2, num_envs=3, progress=False)
    b = rollout("Hopper-v5", policy, 400, seed=2, num_envs=20, progress=False)
    for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.array_equal(a.episode_returns, b.episode_returns)
    assert len(np.unique(a.actions.round(3), axis=0)) > 300, "actions are sampled, not one repeated action"


def test_the_policy_runs_on_one_torch_thread_and_the_callers_setting_is_restored():
    """Two ``datasets make`` on 2 cores must not oversubscribe them with torch's thread per core."""
    seen = []

    class Recording(policies.SnapshotPolicy):
        def sample(self, obs, noise):
            seen.append(torch.get_num_threads())
            return super().sample(obs, noise)

    torch.manual_seed(0)
    policy = Recording(GaussianHead(11, 3).eval(), step=0, digest="test")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rollout("Hopper-v5", policy, 50, seed=0, num_envs=2, progress=False)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_tiny_random_dataset_reads_back_through_the_core_reader():
    path = make_file("hopper", "random", "tiny", seed=0, progress=False)
    data = load_dataset("forge-v5-tiny/hopper-random")
    flags = __import__("h5py").File(path)["timeouts"][()]
    assert len(data) == 2000 - 1 - int(flags[:-1].sum()), "qlearning semantics: timeouts and the last row dropped"
    assert data.obs_dim == 11 and data.act_dim == 3
    assert data.version.startswith("forge-v5:tiny:")
    assert data.terminals.sum() > 0, "random hopper falls: terminals come from the env"
    again = make_file("hopper", "random", "tiny", seed=0, progress=False, force=True)
    assert again == path
    assert load_dataset("forge-v5-tiny/hopper-random").version == data.version
    assert np.array_equal(load_dataset("forge-v5-tiny/hopper-random").observations, data.observations)


def test_a_sized_profile_makes_exactly_its_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "forge"))
    (path,) = make_datasets(["forge-v5-rows1500/hopper-random"], progress=False)
    assert path == tmp_path / "forge" / "rows1500" / "hopper-random.hdf5"
    from rkl_bench.data.d4rl import read_metadata

    with __import__("h5py").File(path) as raw:
        assert len(raw["rewards"]) == 1500
    assert str(read_metadata(path)["version"]).startswith("forge-v5:rows1500:")
    data = load_dataset("forge-v5-rows1500/hopper-random")
    assert 1400 < len(data.rewards) < 1500, "the reader drops the timeout rows, as D4RL's qlearning_dataset"


def test_policy_kinds_and_the_papers_mix(fake_policies):
    paths = make_datasets(["forge-v5-tiny/hopper-random-medium-expert", "forge-v5-tiny/hopper-medium-replay"],
                          progress=False)
    assert [p.name for p in paths] == ["hopper-random.hdf5", "hopper-medium-expert.hdf5", "hopper-medium-replay.hdf5"]
    mixed = load_dataset("forge-v5-tiny/hopper-random-medium-expert")
    names = [p.name for p in mixed.provenance]
    assert names == ["forge-v5-tiny/hopper-random", "forge-v5-tiny/hopper-medium-expert"]
    sizes = [p.size for p in mixed.provenance]
    assert sum(sizes) == len(mixed) and sizes[1] > sizes[0], "medium-expert holds two components"
    replay = load_dataset("forge-v5-tiny/hopper-medium-replay")
    assert 0.35 * 2000 < len(replay) <= 0.4 * 2000, "hopper medium-replay is 40% of a component"


def test_medium_expert_makes_its_component_files_so_expert_is_rolled_out_once(fake_policies, monkeypatch):
    from rkl_bench.data.d4rl import read_d4rl_arrays
    from rkl_bench.forge import make

    rolled = []
    real = make.rollout
    monkeypatch.setattr(make, "rollout", lambda env_id, policy, *a, **k: rolled.append(policy) or real(env_id, policy, *a, **k))
    (medium_expert,) = make_datasets(["forge-v5-tiny/hopper-medium-expert"], progress=False)
    folder = medium_expert.parent
    assert (folder / "hopper-medium.hdf5").is_file() and (folder / "hopper-expert.hdf5").is_file()
    assert len(rolled) == 2
    make_datasets(["forge-v5-tiny/hopper-random-expert"], progress=False)
    assert len(rolled) == 3 and rolled[-1] is None, "only the random file is rolled out: the expert file is current"
    both, _ = read_d4rl_arrays(medium_expert)
    parts = [read_d4rl_arrays(folder / f"hopper-{kind}.hdf5")[0] for kind in ("medium", "expert")]
    for field in ("observations", "actions", "rewards", "terminals", "timeouts"):
        assert np.array_equal(both[field], np.concatenate([p[field] for p in parts])), field


def test_files_made_side_by_side_equal_the_files_made_one_after_another(fake_policies, tmp_path, monkeypatch, capsys):
    from rkl_bench.data.d4rl import read_d4rl_arrays

    names = ["forge-v5-tiny/hopper-random-medium-expert", "forge-v5-tiny/hopper-medium-replay"]
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "one_by_one"))
    one_by_one = make_datasets(names, progress=False)
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "side_by_side"))
    side_by_side = make_datasets(names, progress=True, jobs=2)
    out = capsys.readouterr().out
    assert "making 4 forge files, 2 at a time: hopper-random, hopper-medium, hopper-expert, hopper-medium-replay" in out
    assert [p.name for p in side_by_side] == [p.name for p in one_by_one] == [
        "hopper-random.hdf5", "hopper-medium-expert.hdf5", "hopper-medium-replay.hdf5"]
    assert all(str(tmp_path / "side_by_side") in str(p) for p in side_by_side)
    for a, b in zip(one_by_one, side_by_side):
        arrays_a, meta_a = read_d4rl_arrays(a)
        arrays_b, meta_b = read_d4rl_arrays(b)
        assert meta_a["version"] == meta_b["version"], a.name
        for field in arrays_a:
            assert np.array_equal(arrays_a[field], arrays_b[field]), (a.name, field)
    assert make_datasets(names, progress=True, jobs=2) == side_by_side
    assert "making" not in capsys.readouterr().out, "current files: nothing to make, no processes started"
    with pytest.raises(RklBenchError, match="--jobs must be at least 1, got 0"):
        make_datasets(names, jobs=0)


def test_clear_errors_for_unknown_env_profile_and_missing_policies(tmp_path, monkeypatch):
    with pytest.raises(RklBenchError, match="unknown env 'ant'"):
        make_datasets(["forge-v5/ant-random"], progress=False)
    with pytest.raises(RklBenchError, match="unknown forge profile 'huge'; choose one of: full, quick, tiny, or rows<N>"):
        make_datasets(["forge-v5/hopper-random"], profile="huge", progress=False)
    with pytest.raises(RklBenchError, match="'rows5' asks for 5 rows per component; sizes run from 1,000 to 10,000,000"):
        make_datasets(["forge-v5-rows5/hopper-random"], progress=False)
    with pytest.raises(RklBenchError, match="'rows20m' asks for 20,000,000 rows"):
        make_datasets(["forge-v5-rows20m/hopper-random"], progress=False)
    monkeypatch.setattr(policies, "POLICY_ROOT", tmp_path / "none")
    with pytest.raises(RklBenchError, match="no behaviour policies shipped for walker2d"):
        make_datasets(["forge-v5-tiny/walker2d-expert"], progress=False)
    with pytest.raises(RklBenchError, match="not a forge dataset"):
        make_datasets(["hopper-medium-v2"], progress=False)
    assert parse_dataset_name("forge-v5-quick/hopper-random-expert").profile == "quick"


def test_a_file_is_remade_when_the_shipped_policy_changes(fake_policies, capsys):
    path = make_file("hopper", "expert", "tiny", seed=0, progress=False)
    made = load_dataset("forge-v5-tiny/hopper-expert").version
    stamp = path.stat().st_mtime_ns
    assert make_file("hopper", "expert", "tiny", seed=0, progress=True) == path
    assert path.stat().st_mtime_ns == stamp, "a current file is not remade"

    torch.manual_seed(99)  # a new expert snapshot at the same step
    torch.save(GaussianHead(11, 3).state_dict(), fake_policies / "hopper" / "actor_0040000.pt")
    make_file("hopper", "expert", "tiny", seed=0, progress=True)
    assert "made from other policies or settings" in capsys.readouterr().out
    remade = load_dataset("forge-v5-tiny/hopper-expert").version
    assert remade != made and remade.startswith("forge-v5:tiny:")


def test_rollout_steps_only_the_episodes_it_can_need(monkeypatch):
    """120 rows of 50-step episodes on 8 envs: 3 episodes (150 steps), not a wave of 8 (400)."""
    from rkl_bench.forge import generate

    steps = [0]
    real_make = generate.make_env

    def counting_make(env_id):
        env = real_make(env_id)
        inner, step = env.unwrapped, env.unwrapped.step

        def counted(action):
            steps[0] += 1
            return step(action)

        inner.step = counted
        return env

    monkeypatch.setattr(generate, "make_env", counting_make)
    arrays = rollout("HalfCheetah-v5", None, 120, seed=0, num_envs=8, max_episode_steps=50, progress=False)
    assert len(arrays.rewards) == 120
    assert steps[0] == 150


def test_datasets_list_names_every_dataset_in_aligned_columns(tmp_path, monkeypatch):
    from rkl_bench.forge.catalogue import format_catalogue

    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "forge"))
    make_file("hopper", "random", "tiny", seed=0, progress=False)
    lines = format_catalogue().splitlines()
    table = lines[: lines.index("")]
    assert len(table) == 1 + 3 * 8, "header + 8 kinds for each of 3 envs"
    column = table[0].index("policies")
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in table), "columns line up"
    row = next(line for line in table if line.split()[0] == "forge-v5/hopper-random")
    assert "tiny: forge-v5:tiny:" in row and "quick" not in row
