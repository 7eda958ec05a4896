"""A fixed-capacity replay buffer for SAC, saved with its checkpoints.

Storage is one preallocated float32 torch tensor per field, so sampling is a
seeded ``randint`` plus ``index_select`` with nothing reallocated per step.
Saving writes only the filled rows (``.npy`` files), and loading restores them
into a fresh buffer of the same capacity, so a resumed SAC run samples exactly
the batches an uninterrupted one would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

FIELDS = ("observations", "actions", "rewards", "next_observations", "not_dones")


class ReplayBuffer:
    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        self.capacity = int(capacity)
        self.size = 0
        self.position = 0
        self.observations = torch.zeros(capacity, obs_dim)
        self.actions = torch.zeros(capacity, act_dim)
        self.rewards = torch.zeros(capacity, 1)
        self.next_observations = torch.zeros(capacity, obs_dim)
        self.not_dones = torch.zeros(capacity, 1)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray, terminal: bool) -> None:
        i = self.position
        self.observations[i] = torch.from_numpy(np.asarray(obs, dtype=np.float32))
        self.actions[i] = torch.from_numpy(np.asarray(action, dtype=np.float32))
        self.rewards[i, 0] = float(reward)
        self.next_observations[i] = torch.from_numpy(np.asarray(next_obs, dtype=np.float32))
        self.not_dones[i, 0] = 0.0 if terminal else 1.0
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(0, self.size, (batch_size,), generator=generator)
        return tuple(getattr(self, name).index_select(0, idx) for name in FIELDS)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name in FIELDS:
            np.save(directory / f"{name}.npy", getattr(self, name)[: self.size].numpy())
        np.save(directory / "cursor.npy", np.array([self.size, self.position], dtype=np.int64))

    def load(self, directory: Path) -> None:
        size, position = (int(v) for v in np.load(directory / "cursor.npy"))
        if size > self.capacity:
            raise ValueError(f"replay buffer in {directory} holds {size} rows, capacity is {self.capacity}")
        for name in FIELDS:
            rows = torch.from_numpy(np.load(directory / f"{name}.npy"))
            getattr(self, name)[:size] = rows
        self.size, self.position = size, position
