"""The in-memory offline dataset every learner trains on.

An :class:`OfflineDataset` holds transitions as float32 numpy arrays (so Ray can
share them zero-copy through its object store) plus the metadata a result row
must carry: which env it belongs to, its name, the version of the data, and
where it came from (provenance) when it was mixed from several sources.

State normalisation follows TD3+BC: per-dimension mean and std over the
dataset's observations, with ``std + 1e-3`` so that constant dimensions do not
blow up. The statistics live with the dataset and are applied again at
evaluation time, so a policy always sees states on the scale it was trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

NORMALISATION_EPS = 1e-3
"""Added to the std of every state dimension (TD3+BC's choice)."""

ARRAY_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclass(frozen=True)
class Provenance:
    """Where one component of a dataset came from."""

    name: str
    """Dataset name, e.g. ``halfcheetah-random-v2`` or ``forge-v5/halfcheetah-random``."""
    version: str
    """Version of the data, e.g. ``d4rl-v2`` or ``forge-v5:<hash>``."""
    size: int
    """Number of transitions this component contributes."""
    source: str = ""
    """The file or Minari id it was read from."""


@dataclass
class OfflineDataset:
    """Transitions ``(s, a, r, s', terminal)`` as float32 arrays of equal length.

    Shapes: observations and next_observations ``(N, obs_dim)``, actions
    ``(N, act_dim)``, rewards and terminals ``(N,)``. ``terminals`` is 1.0 where
    the episode ended in a true terminal state (no bootstrapping), 0.0 otherwise;
    time-limit truncations are not terminals.

    ``episode_returns`` are the undiscounted returns of the behaviour episodes
    (complete or not) the transitions came from, kept for ``datasets info``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    env: str
    """Environment family: ``halfcheetah``, ``hopper``, ``walker2d`` or a toy name."""
    name: str
    version: str
    provenance: tuple[Provenance, ...] = ()
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ARRAY_FIELDS:
            arr = getattr(self, name)
            if arr.dtype != np.float32:
                object.__setattr__(self, name, np.ascontiguousarray(arr, dtype=np.float32))
        n = len(self.observations)
        for name in ARRAY_FIELDS:
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"dataset {self.name!r}: field {name!r} has {len(getattr(self, name))} rows, "
                    f"observations has {n}"
                )
        if not self.provenance:
            self.provenance = (Provenance(self.name, self.version, n),)

    # ----------------------------------------------------------------- shape
    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    # --------------------------------------------------------- normalisation
    def state_stats(self) -> tuple[np.ndarray, np.ndarray]:
        """TD3+BC's state normalisation: ``(mean, std + 1e-3)`` per dimension, float32."""
        mean = self.observations.mean(axis=0, dtype=np.float64)
        std = self.observations.std(axis=0, dtype=np.float64) + NORMALISATION_EPS
        return mean.astype(np.float32), std.astype(np.float32)

    def with_arrays(self, **arrays: np.ndarray) -> "OfflineDataset":
        """A copy with some array fields replaced (metadata kept)."""
        return dataclasses.replace(self, **arrays)


@dataclass(frozen=True)
class Batch:
    """One minibatch as torch tensors, states already normalised.

    ``indices`` are the rows of the dataset the batch was drawn from, so a
    learner can look up per-row quantities it precomputed (TD3+RKL's lambda(s)).
    The float fields from :class:`TensorSampler` are column views of one
    gathered ``(B, fields)`` block (not contiguous; never ``.view()`` them).
    """

    observations: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B, act_dim)
    rewards: torch.Tensor  # (B, 1)
    next_observations: torch.Tensor  # (B, obs_dim)
    not_dones: torch.Tensor  # (B, 1): 1 - terminal
    indices: torch.Tensor  # (B,) int64


class TensorSampler:
    """Uniform minibatch sampling over a dataset held as torch tensors.

    The dataset is normalised once and laid out as ONE contiguous table on
    the target device (:func:`transition_table`), a row per transition
    (``obs | action | reward | next_obs | not_done``); each call draws indices
    on that device from a seeded ``torch.Generator`` and gathers the rows with
    a single ``index_select`` (one kernel and one allocation per batch instead
    of five; the fields of the :class:`Batch` are column views of it). The
    generator's state is part of the training checkpoint, so a resumed run
    draws exactly the batches an uninterrupted run would. ``observations``,
    ``actions``, ``rewards``, ``next_observations`` and ``not_dones`` remain
    available as (strided) column views of the whole table.

    ``table`` (a table made for the same dataset, statistics and device)
    shares it instead of building another: what :class:`SeedSampler` does for
    the seeds trained together.
    """

    def __init__(
        self,
        dataset: OfflineDataset,
        batch_size: int,
        seed: int,
        state_mean: np.ndarray | None = None,
        state_std: np.ndarray | None = None,
        device: str | torch.device = "cpu",
        table: torch.Tensor | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.size = len(dataset)
        self.seed = int(seed)
        self.table = transition_table(dataset, state_mean, state_std, self.device) if table is None else table
        cuts = [dataset.obs_dim, dataset.act_dim, 1, dataset.obs_dim, 1]
        self._fields = [sum(cuts[:i]) for i in range(len(cuts) + 1)]
        (self.observations, self.actions, self.rewards, self.next_observations, self.not_dones) = self._split(self.table)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)

    def _split(self, block: torch.Tensor) -> tuple[torch.Tensor, ...]:
        f = self._fields
        return tuple(block[..., f[i] : f[i + 1]] for i in range(len(f) - 1))

    def sample_indices(self, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.randint(
            0, self.size, (self.batch_size,), generator=self.generator, device=self.device, out=out
        )

    def sample(self) -> Batch:
        idx = self.sample_indices()
        return self.batch(self.table.index_select(0, idx), idx)

    def batch(self, block: torch.Tensor, idx: torch.Tensor) -> Batch:
        """The :class:`Batch` of gathered table rows ``block`` (any leading axes) drawn at ``idx``."""
        obs, actions, rewards, next_obs, not_dones = self._split(block)
        return Batch(
            observations=obs,
            actions=actions,
            rewards=rewards,
            next_observations=next_obs,
            not_dones=not_dones,
            indices=idx,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], step: int = 0) -> None:
        """The generator state of a checkpoint; one saved on another device type (a CUDA state on the
        CPU, or the reverse: different generators) is replaced by a seed of ``(seed, step)``."""
        saved = state["generator"].to("cpu", torch.uint8)
        if saved.numel() == self.generator.get_state().numel():
            self.generator.set_state(saved)
        else:
            words = np.random.SeedSequence([self.seed & 0xFFFFFFFF, self.seed >> 32, int(step), 0x5A4D]).generate_state(2)
            self.generator.manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)


def transition_table(
    dataset: OfflineDataset,
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """The dataset as one float32 ``(N, 2 obs + act + 2)`` table on ``device``, states normalised:
    ``obs | action | reward | next_obs | not_done`` (built in host memory, moved once)."""
    obs_dim, act_dim = dataset.obs_dim, dataset.act_dim
    mean = np.zeros(obs_dim, np.float32) if state_mean is None else state_mean
    std = np.ones(obs_dim, np.float32) if state_std is None else state_std
    table = np.empty((len(dataset), 2 * obs_dim + act_dim + 2), np.float32)
    table[:, :obs_dim] = (dataset.observations - mean) / std
    table[:, obs_dim : obs_dim + act_dim] = dataset.actions
    table[:, obs_dim + act_dim] = dataset.rewards
    table[:, obs_dim + act_dim + 1 : 2 * obs_dim + act_dim + 1] = (dataset.next_observations - mean) / std
    table[:, -1] = 1.0 - dataset.terminals
    return torch.as_tensor(table, device=torch.device(device))


class SeedSampler:
    """Minibatches for ``K`` seeds trained together: one table on the device, one generator per seed.

    ``samplers[k]`` is seed ``k``'s own :class:`TensorSampler` (sharing the
    table), so its batches, and its checkpoint entry, are those of a run of
    that seed alone. :meth:`sample` draws each seed's indices with its own
    generator into one ``(K, B)`` buffer and gathers every row in one
    ``index_select``: a :class:`Batch` whose fields have a leading seed axis
    (``(K, B, obs_dim)``, ..., indices ``(K, B)``).
    """

    def __init__(
        self,
        dataset: OfflineDataset,
        batch_size: int,
        seeds: list[int] | tuple[int, ...],
        state_mean: np.ndarray | None = None,
        state_std: np.ndarray | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if not seeds:
            raise ValueError("a SeedSampler needs at least one seed")
        table = transition_table(dataset, state_mean, state_std, device)
        self.samplers = [TensorSampler(dataset, batch_size, seed, device=device, table=table) for seed in seeds]
        self.table = table
        self._idx = torch.empty(len(seeds), int(batch_size), dtype=torch.long, device=torch.device(device))

    def sample(self) -> Batch:
        idx = self._idx
        for k, sampler in enumerate(self.samplers):
            sampler.sample_indices(out=idx[k])
        first = self.samplers[0]
        block = self.table.index_select(0, idx.view(-1)).view(*idx.shape, -1)
        return first.batch(block, idx.clone())
