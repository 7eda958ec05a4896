"""Numbers pinned across refactors: every learner's plain path and SAC's, bit for bit.

``tests/data/numbers_before.json`` holds, for each case below, the sha256 of
every tensor of the learner's ``state_dict()`` (networks, targets, Adam
state, generators, behaviour model, lambdas) and every metric after a few
plain-path updates on fixed batches, as the code produced them before the
learner core was rewritten (issue 18). ``tests/data/checkpoints_before.pt``
holds the checkpoints that code wrote half way. Three checks per case:

* a fresh learner trained on the same batches gives the same tensors and
  metrics, to the bit;
* the old checkpoint loads and, trained on the rest of the batches, gives
  the same tensors and metrics (checkpoints written before still resume);
* the recorded checkpoint's own tensors are what a fresh run holds half way.

Re-record only on purpose, with the code whose numbers are the reference::

    OMP_NUM_THREADS=1 python tests/test_numbers_unchanged.py --record
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
NUMBERS = DATA / "numbers_before.json"
CHECKPOINTS = DATA / "checkpoints_before.pt"

FIRST, REST = 3, 4
"""Updates before the checkpoint and after it (odd FIRST: TD3 resumes between actor steps)."""

TINY = {"hidden_dim": 16, "update_path": "plain"}
FIT = {"behaviour_steps": 30, "behaviour_hidden_dim": 16, "behaviour_batch_size": 64}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "td3_bc": ("td3_bc", TINY),
    "td3_rkl": ("td3_rkl", {**TINY, **FIT}),
    "td3_rkl_kernel": ("td3_rkl", {**TINY, **FIT, "regulariser": "kernel", "rkl_alpha": 0.7}),
    "td3_rkl_mse": ("td3_rkl", {**TINY, **FIT, "regulariser": "mse", "beta_normalization": "range"}),
    "bc": ("bc", TINY),
    "bc_mse": ("bc_mse", TINY),
    "brac": ("brac", {"actor_hidden_dim": 16, "critic_hidden_dim": 16, "warm_start": 2, "update_path": "plain", **FIT}),
    "brac_value_penalty": ("brac", {"actor_hidden_dim": 16, "critic_hidden_dim": 16, "warm_start": 2,
                                    "value_penalty": True, "nu": 0.7, "update_path": "plain", **FIT}),
    "cdc": ("cdc", {**TINY, "num_samples": 3}),
    "cdc_no_penalty": ("cdc", {**TINY, "num_samples": 3, "eta": 0.0}),
    "bc_weighted_rkl": ("bc_weighted_rkl", {"hidden_dim": 16, **FIT, "regulariser": "kernel"}),
    "bc_forward_kl": ("bc_forward_kl", {"hidden_dim": 16}),
    "bc_reverse_kl": ("bc_reverse_kl", {"hidden_dim": 16, **FIT}),
    "sac": ("sac", {}),
}


def synthetic_dataset(n: int = 400, obs_dim: int = 5, act_dim: int = 2, seed: int = 0):
    """A frozen copy of ``test_fast_paths.synthetic_dataset`` (other size and terminal rate): the pinned
    numbers depend on every draw here, so this copy must not follow changes to the other."""
    from rkl_bench.data.dataset import OfflineDataset

    rng = np.random.default_rng(seed)
    obs = rng.normal(3.0, 2.0, size=(n, obs_dim)).astype(np.float32)
    w = rng.normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    actions = np.clip(np.tanh(((obs - 3.0) / 2.0) @ w) + 0.2 * rng.normal(size=(n, act_dim)), -1, 1)
    next_obs = obs + 0.1 * rng.normal(size=obs.shape)
    rewards = -(actions**2).sum(1) + 0.1 * obs[:, 0]
    terminals = (rng.random(n) < 0.05).astype(np.float32)
    return OfflineDataset(obs, actions.astype(np.float32), rewards.astype(np.float32), next_obs.astype(np.float32),
                          terminals, env="toy", name="synthetic", version="test")


def learner_batches(dataset) -> list:
    from rkl_bench.data.dataset import TensorSampler

    sampler = TensorSampler(dataset, 32, 4, *dataset.state_stats())
    return [sampler.sample() for _ in range(FIRST + REST)]


def sac_batches() -> list:
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(32, 5, generator=g), torch.rand(32, 2, generator=g) * 2 - 1, torch.randn(32, 1, generator=g),
             torch.randn(32, 5, generator=g), (torch.rand(32, 1, generator=g) > 0.1).float())
            for _ in range(FIRST + REST)]


def build(case: str, dataset, state: dict | None = None):
    name, hp = CASES[case]
    if name == "sac":
        from rkl_bench.forge.sac import SACAgent, SACConfig

        agent = SACAgent(5, 2, SACConfig(hidden=(16, 16), batch_size=32), seed=3, fast=False)
        if state is not None:
            agent.load_state_dict(state)
        return agent
    from rkl_bench.algos import make_learner

    return make_learner(name, dataset, hp, seed=1, state=state)


def tensor_leaves(state: Any, prefix: str = "") -> dict[str, Any]:
    """Every tensor (and plain number) of a state dict by its path; the config is left out (its layout may change)."""
    out: dict[str, Any] = {}
    if isinstance(state, dict):
        for key, value in state.items():
            if prefix == "" and key == "config":
                continue
            out.update(tensor_leaves(value, f"{prefix}/{key}"))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            out.update(tensor_leaves(value, f"{prefix}/{i}"))
    elif isinstance(state, torch.Tensor):
        out[prefix] = state
    elif isinstance(state, (int, float, bool)) and not isinstance(state, str):
        out[prefix] = state
    return out


def fingerprint(state: dict) -> dict[str, Any]:
    """sha256 of each tensor's dtype, shape and bytes; numbers as they are."""
    out: dict[str, Any] = {}
    for path, value in sorted(tensor_leaves(state).items()):
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode() + t.numpy().tobytes()).hexdigest()
            out[path] = digest
        else:
            out[path] = value
    return out


def run(case: str, dataset, batches, learner=None, start: int = 0) -> tuple[list[dict[str, float]], Any]:
    learner = learner if learner is not None else build(case, dataset)
    metrics = [learner.update(b) for b in batches[start:]]
    return metrics, learner


def record() -> None:
    torch.set_num_threads(1)
    dataset = synthetic_dataset()
    numbers: dict[str, Any] = {}
    checkpoints: dict[str, Any] = {}
    for case in CASES:
        batches = sac_batches() if CASES[case][0] == "sac" else learner_batches(dataset)
        learner = build(case, dataset)
        first = [learner.update(b) for b in batches[:FIRST]]
        checkpoints[case] = copy.deepcopy(learner.state_dict())  # SAC's state_dict holds live tensors
        half = fingerprint(checkpoints[case])
        rest = [learner.update(b) for b in batches[FIRST:]]
        numbers[case] = {"metrics": first + rest, "half": half, "final": fingerprint(learner.state_dict())}
        print(f"recorded {case}: {len(numbers[case]['final'])} leaves")
    DATA.mkdir(exist_ok=True)
    NUMBERS.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    torch.save(checkpoints, CHECKPOINTS)


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(NUMBERS.read_text())


@pytest.fixture(scope="module")
def old_checkpoints() -> dict[str, Any]:
    return torch.load(CHECKPOINTS, weights_only=True)


@pytest.fixture(scope="module")
def dataset():
    return synthetic_dataset()


def _assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert sorted(got) == sorted(want), "state dict layout changed"
    differ = [path for path in want if got[path] != want[path]]
    assert not differ, f"numbers changed at {differ[:5]}"


@pytest.mark.parametrize("case", list(CASES))
def test_plain_path_numbers_are_bit_identical_to_before(case, dataset, recorded):
    batches = sac_batches() if CASES[case][0] == "sac" else learner_batches(dataset)
    learner = build(case, dataset)
    first = [learner.update(b) for b in batches[:FIRST]]
    _assert_same(fingerprint(learner.state_dict()), recorded[case]["half"])
    rest = [learner.update(b) for b in batches[FIRST:]]
    assert first + rest == recorded[case]["metrics"]
    _assert_same(fingerprint(learner.state_dict()), recorded[case]["final"])


@pytest.mark.parametrize("case", list(CASES))
def test_checkpoints_written_before_resume_to_the_same_numbers(case, dataset, recorded, old_checkpoints):
    batches = sac_batches() if CASES[case][0] == "sac" else learner_batches(dataset)
    state = old_checkpoints[case]
    _assert_same(fingerprint(state), recorded[case]["half"])
    learner = build(case, dataset, state=state)
    rest = [learner.update(b) for b in batches[FIRST:]]
    assert rest == recorded[case]["metrics"][FIRST:]
    _assert_same(fingerprint(learner.state_dict()), recorded[case]["final"])


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_numbers_unchanged.py --record")
    record()
