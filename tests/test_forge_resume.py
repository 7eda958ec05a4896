"""An interrupted forge make goes on where it stopped, and the dataset is the same bytes."""

import dataclasses

import numpy as np
import pytest

from rkl_bench.data.d4rl import read_d4rl_arrays
from rkl_bench.forge import generate
from rkl_bench.forge.generate import rollout
from rkl_bench.forge.make import make_file
from rkl_bench.forge.rollout_checkpoint import RolloutCheckpoint


def same_arrays(a, b) -> bool:
    return all(np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def interrupt_after(monkeypatch, episodes: int) -> list[int]:
    """Make the rollout stop (KeyboardInterrupt) when its ``episodes``-th episode ends; returns the
    list of episode indices started, filled as the rollout runs."""
    started: list[int] = []
    finish, start = generate._Slot.finish, generate._Slot.start
    ended = [0]

    def finishing(self, terminal):
        ended[0] += 1
        if ended[0] > episodes:
            raise KeyboardInterrupt
        return finish(self, terminal)

    def starting(self, index, seed, random_policy):
        started.append(index)
        return start(self, index, seed, random_policy)

    monkeypatch.setattr(generate._Slot, "finish", finishing)
    monkeypatch.setattr(generate._Slot, "start", starting)
    return started


def test_an_interrupted_rollout_goes_on_from_its_kept_episodes(tmp_path, monkeypatch):
    args = dict(env_id="Hopper-v5", policy=None, n_transitions=900, seed=3, num_envs=3,
                max_episode_steps=40, progress=False)
    whole = rollout(**args)
    keep = tmp_path / "kept"
    interrupt_after(monkeypatch, 7)
    with pytest.raises(KeyboardInterrupt):
        rollout(**args, checkpoint=keep, checkpoint_seconds=0.0)  # saves at every episode end
    monkeypatch.undo()
    kept = RolloutCheckpoint(keep, {}).folder
    assert len(list(kept.glob("chunk-*.npz"))) >= 2

    saved = set()
    for chunk in kept.glob("chunk-*.npz"):
        with np.load(chunk, allow_pickle=False) as data:
            saved |= set(data["indices"].tolist())
    assert len(saved) == 7

    started = interrupt_after(monkeypatch, 10**9)
    again = rollout(**args, checkpoint=keep, checkpoint_seconds=0.0)
    assert same_arrays(again, whole)
    # The episodes finished before the stop were not rolled out again; every other one was, once.
    assert started and not set(started) & saved and len(set(started)) == len(started)


def test_kept_episodes_of_another_rollout_are_not_used(tmp_path, monkeypatch, capsys):
    keep = tmp_path / "kept"
    rollout("Hopper-v5", None, 300, seed=1, num_envs=2, max_episode_steps=40, progress=False,
            checkpoint=keep, checkpoint_seconds=0.0)
    other = rollout("Hopper-v5", None, 300, seed=2, num_envs=2, max_episode_steps=40, progress=False,
                    checkpoint=keep, checkpoint_seconds=0.0)
    assert "kept episodes are of another rollout" in capsys.readouterr().out
    assert same_arrays(other, rollout("Hopper-v5", None, 300, seed=2, num_envs=2, max_episode_steps=40, progress=False))


def test_an_interrupted_make_leaves_no_file_and_the_rerun_equals_a_fresh_make(tmp_path, monkeypatch, fake_policies):
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "a"))
    fresh = make_file("hopper", "expert", "tiny", seed=0, progress=False)
    fresh_raw, _ = read_d4rl_arrays(fresh)

    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "b"))
    monkeypatch.setattr(generate, "CHECKPOINT_SECONDS", 0.0)  # keep the episodes at every episode end
    with monkeypatch.context() as m:
        interrupt_after(m, 5)
        with pytest.raises(KeyboardInterrupt):
            make_file("hopper", "expert", "tiny", seed=0, progress=False)
    target = tmp_path / "b" / "tiny" / "hopper-expert.hdf5"
    assert not target.exists() and (tmp_path / "b" / "tiny" / "hopper-expert.hdf5.partial").is_dir()
    made = make_file("hopper", "expert", "tiny", seed=0, progress=False)
    raw, _ = read_d4rl_arrays(made)
    assert all(np.array_equal(raw[k], fresh_raw[k]) for k in fresh_raw)
    assert not (tmp_path / "b" / "tiny" / "hopper-expert.hdf5.partial").exists()


def test_medium_expert_reads_a_current_expert_file_instead_of_rolling_it_out(tmp_path, monkeypatch, fake_policies):
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "a"))
    direct, _ = read_d4rl_arrays(make_file("hopper", "medium-expert", "tiny", seed=0, progress=False))

    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(tmp_path / "b"))
    make_file("hopper", "expert", "tiny", seed=0, progress=False)
    rolled: list[str] = []
    real = generate.rollout

    def counting(env_id, policy, *args, **kwargs):
        rolled.append(kwargs.get("desc", ""))
        return real(env_id, policy, *args, **kwargs)

    from rkl_bench.forge import make as make_module

    monkeypatch.setattr(make_module, "rollout", counting)
    stitched, metadata = read_d4rl_arrays(make_file("hopper", "medium-expert", "tiny", seed=0, progress=False))
    assert rolled == ["hopper-medium"]  # the expert rows came from the expert file
    assert all(np.array_equal(stitched[k], direct[k]) for k in direct)
    assert len(metadata["episode_returns"]) > 0
