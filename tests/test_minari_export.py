"""Forge datasets exported to local Minari datasets: the round trip, provenance, and bad input.

The forge files are made once per module at the tiny profile from the shipped
policies (seconds); every test exports into its own ``MINARI_DATASETS_PATH``
(a fresh tmp dir, set by conftest).
"""

import hashlib
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from rkl_bench.cli import main
from rkl_bench.data.d4rl import read_metadata
from rkl_bench.data.envs import gym_env_id
from rkl_bench.data.registry import forge_path, load_dataset
from rkl_bench.data.scores import REF_MAX_SCORE, REF_MIN_SCORE, normalized_score
from rkl_bench.errors import RklBenchError
from rkl_bench.forge import minari_export
from rkl_bench.forge.make import make_datasets
from rkl_bench.forge.minari_export import default_dataset_id, export_minari
from rkl_bench.forge.policies import POLICY_ROOT, read_card

minari = pytest.importorskip("minari")

MIX = "forge-v5-tiny/hopper-random-expert"
MIX_ID = "rkl-forge-tiny/hopper/random-expert-v0"
ARRAYS = ("observations", "actions", "rewards", "next_observations", "terminals", "episode_returns")


@pytest.fixture(scope="module")
def made_forge(tmp_path_factory):
    """hopper random, expert and medium-replay at the tiny profile, made once."""
    folder = tmp_path_factory.mktemp("forge")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RKL_BENCH_FORGE_DIR", str(folder))
        make_datasets([MIX, "forge-v5-tiny/hopper-medium-replay"], progress=False)
    return folder


@pytest.fixture
def forge(made_forge, monkeypatch):
    monkeypatch.setenv("RKL_BENCH_FORGE_DIR", str(made_forge))
    return made_forge


@pytest.fixture
def minari_dir() -> Path:
    return Path(os.environ["MINARI_DATASETS_PATH"])


def raw_rows(spec: str) -> dict[str, np.ndarray]:
    """A forge file's rows as stored (D4RL layout, before qlearning semantics)."""
    env_kind = spec.split("/", 1)[1]
    env, kind = env_kind.split("-", 1)
    with h5py.File(forge_path(env, kind, "tiny")) as f:
        return {key: f[key][()] for key in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")}


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".rkl-export-*")] if root.exists() else []


# ------------------------------------------------------------- round trip
@pytest.mark.parametrize("spec, parts", [
    (MIX, ["forge-v5-tiny/hopper-random", "forge-v5-tiny/hopper-expert"]),
    ("forge-v5-tiny/hopper-random-medium-replay", ["forge-v5-tiny/hopper-random", "forge-v5-tiny/hopper-medium-replay"]),
    ("forge-v5-tiny/hopper-random", ["forge-v5-tiny/hopper-random"]),
])
def test_round_trip_gives_the_forge_arrays_counts_and_scores(forge, minari_dir, spec, parts):
    done = export_minari(spec, progress=False)
    assert done.dataset_id == default_dataset_id(spec) and done.path == minari_dir / done.dataset_id

    # 1. Minari itself sees the episodes exactly as the forge made them
    exported = minari.load_dataset(done.dataset_id)
    rows = [raw_rows(part) for part in parts]
    cat = {key: np.concatenate([r[key] for r in rows]) for key in rows[0]}
    episodes = list(exported.iterate_episodes())
    assert exported.total_steps == len(cat["rewards"]) == done.steps
    assert len(episodes) == exported.total_episodes == done.episodes
    assert np.array_equal(np.concatenate([ep.observations[:-1] for ep in episodes]), cat["observations"])
    assert np.array_equal(np.concatenate([ep.actions for ep in episodes]), cat["actions"])
    assert np.array_equal(np.concatenate([ep.rewards for ep in episodes]), cat["rewards"])
    assert np.array_equal(np.concatenate([ep.terminations for ep in episodes]), cat["terminals"])
    assert np.array_equal(np.concatenate([ep.truncations for ep in episodes]), cat["timeouts"])
    ends = np.flatnonzero(cat["terminals"] | cat["timeouts"])
    assert np.array_equal(np.stack([ep.observations[-1] for ep in episodes]), cat["next_observations"][ends]), \
        "each episode keeps its final observation"
    assert exported.env_spec.id == "Hopper-v5" and exported.env_spec.max_episode_steps == 1000

    # 2. our minari:<id> reader gives what our D4RL reader gives for the forge name
    ours = load_dataset(f"minari:{done.dataset_id}")
    forged = load_dataset(spec)
    for key in ARRAYS:
        assert np.array_equal(getattr(ours, key), getattr(forged, key)), key
    assert (ours.env, ours.version, gym_env_id(ours)) == (forged.env, forged.version, "Hopper-v5")
    assert [(p.name, p.version, p.size) for p in ours.provenance] == [(p.name, p.version, p.size) for p in forged.provenance]
    assert {p.source for p in ours.provenance} == {f"minari:{done.dataset_id}"}

    # 3. the same transition count under qlearning_dataset semantics, counted from the raw files
    qlearning = sum(len(r["rewards"]) - 1 - int(r["timeouts"][:-1].sum()) for r in rows)
    assert len(ours) == len(forged) == qlearning == done.transitions

    # 4. normalised scores: Minari's (0-1) times 100 is ours
    metadata = exported.storage.metadata
    assert (metadata["ref_min_score"], metadata["ref_max_score"]) == (REF_MIN_SCORE["hopper"], REF_MAX_SCORE["hopper"])
    returns = ours.episode_returns.astype(np.float64)
    np.testing.assert_allclose(100 * minari.get_normalized_score(exported, returns),
                               normalized_score("hopper", returns), rtol=1e-12)
    assert leftovers(minari_dir) == []


def test_mixture_provenance_survives_in_minari_metadata_and_episode_labels(forge, minari_dir):
    export_minari(MIX, progress=False)
    exported = minari.load_dataset(MIX_ID)
    metadata = exported.storage.metadata
    forge_meta = metadata["rkl_forge"]
    random_meta = read_metadata(forge_path("hopper", "random", "tiny"))
    expert_meta = read_metadata(forge_path("hopper", "expert", "tiny"))
    assert forge_meta["name"] == MIX and forge_meta["profile"] == "tiny" and forge_meta["gym_env_id"] == "Hopper-v5"
    assert forge_meta["version"] == f"{random_meta['version']}+{expert_meta['version']}"
    random_part, expert_part = forge_meta["components"]
    assert (random_part["name"], random_part["kind"], random_part["version"]) == (
        "forge-v5-tiny/hopper-random", "random", random_meta["version"])
    assert (expert_part["name"], expert_part["kind"], expert_part["version"]) == (
        "forge-v5-tiny/hopper-expert", "expert", expert_meta["version"])
    assert random_part["rows"] == expert_part["rows"] == 2000
    assert random_part["seed"] == expert_part["seed"] == 0
    assert random_part["policies"] == []
    step = int(read_card("hopper")["expert"]["step"])
    digest = hashlib.sha256((POLICY_ROOT / "hopper" / f"actor_{step:07d}.pt").read_bytes()).hexdigest()
    assert expert_part["policies"] == [{"role": "expert", "step": step, "digest": digest}]
    assert expert_meta["version"].startswith("forge-v5:tiny:")

    # a source label per episode, in order: the random file's episodes, then the expert's
    labels = [m["source"] for m in exported.storage.get_episode_metadata(exported.episode_indices)]
    counts = [random_part["episodes"], expert_part["episodes"]]
    assert labels == ["forge-v5-tiny/hopper-random"] * counts[0] + ["forge-v5-tiny/hopper-expert"] * counts[1]
    assert [random_part["first_episode"], expert_part["first_episode"]] == [0, counts[0]]
    assert sum(len(ep) for ep in exported.iterate_episodes(range(counts[0]))) == 2000, \
        "the episodes labelled random hold the random file's rows"

    # says what it is: forge v5 data, not Farama's
    assert metadata["author"] == {"rkl_bench forge"}
    assert "Forge v5 data" in metadata["description"] and "not Farama's" in metadata["description"]
    assert json.loads((minari_dir / "rkl-forge-tiny" / "namespace_metadata.json").read_text())["description"]


def test_ladder_policies_and_minari_listing(forge, minari_dir):
    export_minari("forge-v5-tiny/hopper-medium-replay", progress=False)
    dataset_id = "rkl-forge-tiny/hopper/medium-replay-v0"
    (part,) = minari.load_dataset(dataset_id).storage.metadata["rkl_forge"]["components"]
    ladder = [int(s) for s in read_card("hopper")["ladder"]]
    assert [p["step"] for p in part["policies"]] == ladder
    assert part["policies"][0]["role"] == f"ladder 1/{len(ladder)}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Minari warns about misconfigured local datasets
        assert list(minari.list_local_datasets()) == [dataset_id]
    # what d3rlpy's get_minari does first: load (download=True fetches nothing when local), recover the env
    env = minari.load_dataset(dataset_id, download=True).recover_environment(eval_env=True)
    assert (env.spec.id, env.spec.max_episode_steps) == ("Hopper-v5", 1000)
    env.close()


def test_default_ids_never_look_like_farama_ones():
    assert default_dataset_id("forge-v5/hopper-random-expert") == "rkl-forge/hopper/random-expert-v0"
    assert default_dataset_id("forge-v5-tiny/walker2d-medium-replay") == "rkl-forge-tiny/walker2d/medium-replay-v0"
    assert default_dataset_id("forge-v5-rows250k/halfcheetah-random-medium-expert") == (
        "rkl-forge-rows250k/halfcheetah/random-medium-expert-v0")


# --------------------------------------------------------------------- CLI
def cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    code = main(["datasets", "export", *args])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.startswith("error:")]


def test_cli_export_exists_force_and_out(forge, minari_dir, capsys, tmp_path):
    code, out, errors = cli(capsys, MIX, "--minari")
    assert (code, errors) == (0, [])
    assert f"wrote Minari dataset {MIX_ID}" in out and f"minari:{MIX_ID}" in out
    data_file = minari_dir / MIX_ID / "data" / "main_data.hdf5"
    stamp = data_file.stat().st_mtime_ns

    code, _, errors = cli(capsys, MIX, "--minari")
    assert code == 2 and errors == [f"error: Minari dataset {MIX_ID} already exists in {minari_dir}; pass --force to replace it"]
    assert data_file.stat().st_mtime_ns == stamp, "the existing dataset is left alone"

    code, out, errors = cli(capsys, MIX, "--minari", "--force")
    assert (code, errors) == (0, []) and out.startswith(f"replaced Minari dataset {MIX_ID}")
    assert len(list(exported_ids(minari_dir))) == 1 and leftovers(minari_dir) == []
    assert len(load_dataset(f"minari:{MIX_ID}")) == len(load_dataset(MIX))

    other = tmp_path / "elsewhere"
    code, out, errors = cli(capsys, "forge-v5-tiny/hopper-random", "--minari", "--out", str(other), "--dataset-id", "mine/hop-v3")
    assert (code, errors) == (0, []) and f"MINARI_DATASETS_PATH={other}" in out
    assert (other / "mine" / "hop-v3" / "data" / "metadata.json").is_file()
    assert not (minari_dir / "mine").exists()


def exported_ids(root: Path):
    return (p.parent.relative_to(root) for p in root.rglob("data") if (p / "metadata.json").is_file())


@pytest.mark.parametrize("args, message", [
    ((MIX,), "error: datasets export needs a target format: pass --minari (the only one so far)"),
    (("forge-v5-tiny/ant-random", "--minari"), "error: dataset 'forge-v5-tiny/ant-random': unknown env 'ant'"),
    (("forge-v5-tiny/hopper-ultra", "--minari"), "error: dataset 'forge-v5-tiny/hopper-ultra': unknown kind 'ultra'"),
    (("forge-v5-huge/hopper-random", "--minari"), "error: unknown forge profile 'huge'"),
    (("hopper-medium-v2", "--minari"), "error: 'hopper-medium-v2' is not a forge dataset name"),
    (("forge-v5-tiny/hopper-random-medium", "--minari"),
     "error: forge dataset 'forge-v5-tiny/hopper-medium' not made yet"),
    ((MIX, "--minari", "--dataset-id", "no version"), "error: --dataset-id 'no version' is not a Minari dataset id"),
])
def test_cli_bad_input_is_one_error_line_and_writes_nothing(forge, minari_dir, capsys, args, message):
    code, out, errors = cli(capsys, *args)
    assert code == 2 and len(errors) == 1 and errors[0].startswith(message), errors
    assert out == ""
    assert not minari_dir.exists() or list(minari_dir.iterdir()) == []


def test_unwritable_directory_is_an_error_and_leaves_nothing(forge, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, errors = cli(capsys, MIX, "--minari", "--out", str(blocker / "sub" / "dir"))
    assert code == 2 and len(errors) == 1
    assert errors[0].startswith(f"error: cannot write Minari datasets to {blocker / 'sub' / 'dir'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_failure_midway_leaves_no_trace_and_keeps_the_old_dataset(forge, minari_dir, monkeypatch):
    export_minari(MIX, progress=False)
    before = sorted(str(p.relative_to(minari_dir)) for p in minari_dir.rglob("*"))
    real_write = minari_export._write

    def write_then_fail(*args, **kwargs):
        real_write(*args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(minari_export, "_write", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_minari(MIX, force=True, progress=False)
    with pytest.raises(OSError, match="disk full"):
        export_minari("forge-v5-tiny/hopper-random", out=minari_dir / "fresh", progress=False)
    assert sorted(str(p.relative_to(minari_dir)) for p in minari_dir.rglob("*")) == before
    assert len(load_dataset(f"minari:{MIX_ID}")) == len(load_dataset(MIX)), "the old export still reads"


def test_a_stale_forge_file_is_not_exported(forge, minari_dir, monkeypatch):
    monkeypatch.setattr(minari_export, "current_version", lambda *a, **k: "forge-v5:tiny:other")
    with pytest.raises(RklBenchError, match="made from other policies or settings .* remake it with "
                                            "`rkl-bench datasets make forge-v5-tiny/hopper-random --seed 0 --force`"):
        export_minari(MIX, progress=False)
    assert not minari_dir.exists() or list(minari_dir.iterdir()) == []


def test_reader_refuses_forge_metadata_that_does_not_cover_the_episodes(forge):
    export_minari(MIX, progress=False)
    storage = minari.load_dataset(MIX_ID).storage
    broken = storage.metadata["rkl_forge"]
    broken["components"][1]["episodes"] += 1
    storage.update_metadata({"rkl_forge": broken})
    with pytest.raises(RklBenchError, match=f"minari:{MIX_ID}: its 'rkl_forge' components do not cover its"):
        load_dataset(f"minari:{MIX_ID}")
