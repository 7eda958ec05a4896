"""Evaluation-time inference: bit-identical to the actors' forward, safe to reuse and copy."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from rkl_bench.algos.nets import TanhGaussianActor
from rkl_bench.algos import inference
from rkl_bench.algos.inference import MAX_BUFFERED_ROWS, actor_actions
from rkl_bench.algos.nets import DeterministicActor

OBS_DIM, ACT_DIM = 11, 3


def make_actor(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "deterministic":
        return DeterministicActor(OBS_DIM, ACT_DIM, (64, 64), max_action=0.7)
    return TanhGaussianActor(OBS_DIM, ACT_DIM, (64, 64), log_std_min=-5.0, log_std_max=2.0)


def forward(actor: nn.Module, obs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return actor(torch.from_numpy(obs)).numpy()


def observations(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, OBS_DIM)).astype(np.float32)


@pytest.mark.parametrize("kind", ["deterministic", "tanh_gaussian"])
@pytest.mark.parametrize("rows", [1, 10, 16, MAX_BUFFERED_ROWS, MAX_BUFFERED_ROWS + 1])
def test_actions_are_bit_identical_to_the_forward(kind, rows):
    actor = make_actor(kind)
    obs = observations(rows)
    out = actor_actions(actor, obs)
    assert out.shape == (rows, ACT_DIM) and out.dtype == np.float32
    np.testing.assert_array_equal(out, forward(actor, obs))
    np.testing.assert_array_equal(actor_actions(actor, obs), out)  # second call: reused buffers
    buffered = rows in inference._PLANS[actor].buffers if actor in inference._PLANS else False
    assert buffered == (rows <= MAX_BUFFERED_ROWS)  # small batches take the buffered path, large ones do not


@pytest.mark.parametrize("kind", ["deterministic", "tanh_gaussian"])
def test_results_are_not_views_of_reused_buffers(kind):
    actor = make_actor(kind)
    first_obs, second_obs = observations(10, 1), observations(10, 2)
    first = actor_actions(actor, first_obs)
    kept = first.copy()
    actor_actions(actor, second_obs)
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("kind", ["deterministic", "tanh_gaussian"])
def test_in_place_updates_and_replaced_parameters_are_followed(kind):
    actor = make_actor(kind)
    obs = observations(10)
    before = actor_actions(actor, obs)
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-2)
    loss = actor(torch.from_numpy(obs)).pow(2).sum()
    loss.backward()
    optimizer.step()  # in place: the plan's views see it
    after_step = actor_actions(actor, obs)
    assert not np.array_equal(after_step, before)
    np.testing.assert_array_equal(after_step, forward(actor, obs))
    other = make_actor(kind)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1.5)
    actor.load_state_dict(other.state_dict(), assign=True)  # new parameter objects
    np.testing.assert_array_equal(actor_actions(actor, obs), forward(other, obs))


def test_copies_and_pickles_of_a_used_actor_carry_no_buffers_and_act_alike():
    actor = make_actor("deterministic")
    obs = observations(10)
    expected = actor_actions(actor, obs)
    clone = copy.deepcopy(actor)
    restored = pickle.loads(pickle.dumps(actor))
    assert not any("plan" in key for key in vars(clone))
    np.testing.assert_array_equal(actor_actions(clone, obs), expected)
    np.testing.assert_array_equal(actor_actions(restored, obs), expected)
    with torch.no_grad():
        clone.net[0].bias.add_(1.0)  # the clone's weights are its own
    np.testing.assert_array_equal(actor_actions(actor, obs), expected)
    assert not np.array_equal(actor_actions(clone, obs), expected)


def test_other_modules_take_the_plain_forward():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(OBS_DIM, 8), nn.Tanh(), nn.Linear(8, ACT_DIM))
    obs = observations(10)
    np.testing.assert_array_equal(actor_actions(module, obs), forward(module, obs))
