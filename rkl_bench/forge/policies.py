"""The behaviour policies the forge rolls out, as shipped in the repo.

Each env has a folder ``rkl_bench/forge/policies/<env>/`` holding

* ``card.json``: which SAC snapshot is the ``medium`` and the ``expert``
  policy, the ``ladder`` of snapshots from the start of training to medium
  (rolled out for medium-replay), and their measured scores;
* ``actor_<step>.pt``: the actor weights of every snapshot the card names;
* ``agent_latest.pt``: the full SAC agent (no replay buffer) of the latest
  milestone, from which a new machine continues training.

The ``random`` policy needs no file: it samples actions uniformly in [-1, 1],
as the issue for the forge specifies (D4RL itself rolled out a randomly
initialised SAC policy; see docs/forge.md).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkl_bench.algos.nets import GaussianHead
from rkl_bench.errors import RklBenchError
from rkl_bench.safe_load import load_torch_bytes

POLICY_ROOT = Path(__file__).parent / "policies"


@dataclass
class SnapshotPolicy:
    """A SAC actor that samples actions for a batch of raw observations."""

    actor: GaussianHead
    step: int
    digest: str
    """sha256 of the weights file: part of every dataset version made from it."""

    @torch.no_grad()
    def sample(self, obs: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """tanh-Gaussian actions with the caller's standard-normal ``noise`` (B, act_dim)."""
        mean, log_std = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        # tanh_gaussian_sample's action, without the log-density nobody reads here.
        return torch.tanh(mean + log_std.exp() * torch.as_tensor(noise, dtype=torch.float32)).numpy()

    @torch.no_grad()
    def mean_action(self, obs: np.ndarray) -> np.ndarray:
        mean, _ = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        return torch.tanh(mean).numpy()


def policy_dir(env: str, root: Path | None = None) -> Path:
    return (root or POLICY_ROOT) / env


def read_card(env: str, root: Path | None = None) -> dict[str, Any]:
    """The env's policy card, or a clear error saying how to make it."""
    path = policy_dir(env, root) / "card.json"
    if not path.is_file():
        raise RklBenchError(
            f"no behaviour policies shipped for {env} yet ({path} missing); train them with "
            f"`rkl-bench forge train-policy {env}` and export with `rkl-bench forge export {env}`"
        )
    return json.loads(path.read_text())


def load_snapshot(env: str, step: int, obs_dim: int, act_dim: int, root: Path | None = None,
                  hidden: tuple[int, ...] = (256, 256)) -> SnapshotPolicy:
    path = policy_dir(env, root) / f"actor_{step:07d}.pt"
    if not path.is_file():
        raise RklBenchError(f"policy card for {env} names snapshot {step}, but {path} is missing")
    return load_actor_file(path, step, obs_dim, act_dim, hidden)


def load_actor_file(path: Path, step: int, obs_dim: int, act_dim: int,
                    hidden: tuple[int, ...] = (256, 256)) -> SnapshotPolicy:
    """A SAC actor from its weights file; the file's sha256 identifies it in dataset versions."""
    payload = path.read_bytes()
    actor = GaussianHead(obs_dim, act_dim, hidden)
    actor.load_state_dict(load_torch_bytes(payload, path, "re-export the policies with `rkl-bench forge export`"))
    actor.eval()
    return SnapshotPolicy(actor, step, hashlib.sha256(payload).hexdigest())
