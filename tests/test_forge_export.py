"""Exporting a SAC run: snapshot choice follows D4RL's recipe; the card holds measured scores."""

import json

import pytest

from rkl_bench.errors import RklBenchError
from rkl_bench.forge.export import choose_snapshots, export_policies
from rkl_bench.forge.sac import SACConfig
from rkl_bench.forge.train_policy import SACTrainConfig, train_behaviour_policy


def _row(step, normalised):
    # hopper: return = normalised/100 * (3234.3 + 20.272305) - 20.272305
    return {"step": step, "return_mean": normalised / 100 * (3234.3 + 20.272305) - 20.272305}


def test_choice_takes_best_as_expert_and_first_third_as_medium():
    rows = [_row(s, v) for s, v in [(10, 1), (20, 10), (30, 25), (40, 34), (50, 60), (60, 90), (70, 80)]]
    choice = choose_snapshots("hopper", rows, [10, 20, 30, 40, 50, 60, 70], ladder_size=3)
    assert choice["expert"] == 60
    assert choice["medium"] == 40, "first snapshot at or above 90/3 = 30"
    assert choice["ladder"] == [10, 30, 40], "evenly spread from the first snapshot to medium"


def test_choice_needs_two_snapshots():
    with pytest.raises(RklBenchError, match="at least two"):
        choose_snapshots("hopper", [_row(10, 5)], [10])


def test_export_writes_card_with_measured_scores(tmp_path):
    cfg = SACTrainConfig(start_steps=100, eval_every=100, eval_episodes=1, checkpoint_every=100,
                         snapshot_every=100, max_episode_steps=50, sac=SACConfig(hidden=(256, 256), batch_size=32))
    work = train_behaviour_policy("hopper", 300, seed=0, work_dir=tmp_path / "sac", config=cfg,
                                  fast=False, progress=False, init_agent=None)
    out = export_policies("hopper", work_dir=work, root=tmp_path / "policies", episodes=3)
    card = json.loads((out / "card.json").read_text())
    assert card["status"] == "provisional" and card["trained_steps"] == 300
    for role in ("medium", "expert"):
        assert (out / f"actor_{card[role]['step']:07d}.pt").is_file()
        for mode in ("deterministic", "sampled"):
            assert card[role][mode]["episodes"] == 3
            assert isinstance(card[role][mode]["normalized_mean"], float)
    random = card["random"]["sampled"]
    assert random["episodes"] == 3 and random["return_std"] > 0, "three real random episodes, not one repeated"
    assert abs(random["normalized_mean"]) < 5, "uniform actions score near D4RL's random reference (0)"
    assert (out / "agent_latest.pt").is_file()
    assert all((out / f"actor_{s:07d}.pt").is_file() for s in card["ladder"])


def test_new_machine_continues_from_the_shipped_agent(tmp_path, monkeypatch):
    from rkl_bench.forge import train_policy

    cfg = SACTrainConfig(start_steps=100, eval_every=100, eval_episodes=1, checkpoint_every=100,
                         snapshot_every=100, max_episode_steps=50, sac=SACConfig(batch_size=32))
    work = train_behaviour_policy("hopper", 200, seed=3, work_dir=tmp_path / "sac", config=cfg,
                                  fast=False, progress=False, init_agent=None)
    export_policies("hopper", work_dir=work, root=tmp_path / "policies", episodes=1)
    monkeypatch.setattr(train_policy, "POLICY_ROOT", tmp_path / "policies")
    fresh = train_behaviour_policy("hopper", 400, seed=3, work_dir=tmp_path / "new", config=cfg,
                                   fast=False, progress=False)
    import torch

    state = torch.load(fresh / "checkpoint" / "state.pt", weights_only=False)
    assert state["steps"] == 400 and state["warmup_until"] == 300, "continued at 200, refilled 100 steps"
    # an update follows every env step from the end of the warm-up on (step 100 of 200: 101 updates)
    assert state["agent"]["updates"] == 101 + 101, "101 shipped updates + 101 after the refill"
    # another seed does not pick up seed 3's agent
    other = train_behaviour_policy("hopper", 150, seed=4, work_dir=tmp_path / "other", config=cfg,
                                   fast=False, progress=False)
    assert torch.load(other / "checkpoint" / "state.pt", weights_only=False)["agent"]["updates"] == 51
