"""Learners by name: the one place the training loop and the CLI build them.

    learner = make_learner("td3_bc", dataset, {"q_weight": 2.5}, seed=0)

Convention for state normalisation: the learner is handed the RAW
:class:`~rkl_bench.data.dataset.OfflineDataset` plus the statistics the
training loop normalises batches with (``state_mean``, ``state_std``, the same
arrays given to :class:`~rkl_bench.data.dataset.TensorSampler`). If they are
omitted, ``dataset.state_stats()`` (TD3+BC's normalisation) is used, which is
what the training loop should use too. Learners that need the dataset itself
(TD3+RKL fits its behaviour model and per-row lambdas on the normalised
observations) get it normalised with those statistics; every learner is
built the same way, ``cls(observations, actions, config, seed, device,
progress=..., fit=...)``, and most read only the shapes. Batches passed to
``update`` and observations passed to ``act`` are always normalised.

Each learner's config dataclass also carries ``batch_size``; the training
loop reads it from ``learner.config.batch_size`` (or
``default_hyperparams(name)["batch_size"]``) to build its sampler.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from rkl_bench.algos.base import Learner
from rkl_bench.algos.config import config_from_dict, flat_defaults
from rkl_bench.algos.bc import BC
from rkl_bench.algos.bc_signals import BCMSE, BCForwardKL, BCReverseKL, BCWeightedRKL
from rkl_bench.algos.brac import BRAC
from rkl_bench.algos.cdc import CDC
from rkl_bench.algos.td3_bc import TD3BC
from rkl_bench.algos.td3_rkl import TD3RKL
from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.errors import RklBenchError

LEARNERS: dict[str, type[Learner]] = {
    cls.algo: cls
    for cls in (BC, TD3BC, TD3RKL, BRAC, CDC,
                # Fig. 5: the four BC signals alone (no RL signal), for expert datasets.
                BCWeightedRKL, BCMSE, BCForwardKL, BCReverseKL)
}
"""Every learner by name; each class carries its ``config_cls`` (and says what it is in its docstring)."""


VARIANT_LABEL = re.compile(r"[a-z0-9][a-z0-9_.]*")
"""What may follow ``@`` in a variant key (lower case, so reports never split it)."""


def split_variant(key: str) -> tuple[str, str | None]:
    """``"td3_rkl@kernel"`` -> ``("td3_rkl", "kernel")``; ``"td3_rkl"`` -> ``("td3_rkl", None)``.

    An experiment may run one learner with several hyper-parameter sets side
    by side (an ablation in one Table II) by listing it under keys
    ``<learner>@<label>``; results carry the whole key as their ``algo``.
    """
    base, separator, label = key.partition("@")
    if not separator:
        return key, None
    if not VARIANT_LABEL.fullmatch(label):
        raise RklBenchError(
            f"bad variant key {key!r}: write <learner>@<label>, the label in lower-case letters, "
            "digits, '_' and '.', e.g. td3_rkl@kernel"
        )
    return base, label


def learner_names() -> list[str]:
    """Registered algorithm names, sorted."""
    return sorted(LEARNERS)


def _learner(name: str) -> type[Learner]:
    try:
        return LEARNERS[name]
    except (KeyError, TypeError):
        raise RklBenchError(
            f"unknown algorithm {name!r}; valid algorithms are: {', '.join(learner_names())}"
        ) from None


def default_hyperparams(name: str) -> dict[str, Any]:
    """The default hyper-parameters of algorithm ``name``, flat: every name one can be given by.

    A nested section's fields appear under their dotted names
    (``behaviour.steps``) and under the flat names they had before
    (``behaviour_steps``), which configs, searches and checkpoints still use.
    """
    return flat_defaults(_learner(name).config_cls)


def make_config(name: str, hyperparams: Mapping[str, Any] | Any | None = None) -> Any:
    """Parse ``hyperparams`` (a mapping, or already a config of the right class) for ``name``.

    Unknown keys and bad values raise :class:`RklBenchError` naming the algorithm.
    """
    config_cls = _learner(name).config_cls
    if isinstance(hyperparams, config_cls):
        return hyperparams
    owner = f"{name} hyper-parameters"
    try:
        return config_from_dict(config_cls, hyperparams, owner)
    except RklBenchError as err:
        message = str(err)
        raise RklBenchError(message if name in message else f"{owner}: {message}") from None
    except (ValueError, TypeError) as err:
        raise RklBenchError(f"{owner}: {err}") from None


def make_learner(
    name: str,
    dataset: OfflineDataset,
    hyperparams: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    *,
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    state: Mapping[str, Any] | None = None,
) -> Learner:
    """Build algorithm ``name`` for ``dataset`` (raw, un-normalised) with ``hyperparams`` over its defaults.

    ``state_mean``/``state_std`` default to ``dataset.state_stats()``; pass
    the ones the training loop's sampler uses if they differ. ``progress``
    shows bars for construction-time work (TD3+RKL's behaviour fit).

    ``state`` (a learner ``state_dict()`` from a checkpoint) resumes: the
    learner is built and the state loaded, and construction-time fitting is
    skipped (TD3+RKL's behaviour model and lambdas come from the checkpoint).
    Building without ``state`` and calling ``load_state_dict`` later is
    equivalent but refits TD3+RKL's behaviour model first, only to replace it.
    """
    cls = _learner(name)
    config = make_config(name, hyperparams)
    observations = _normalised(dataset, state_mean, state_std)
    learner = cls(observations, dataset.actions, config, int(seed), device, progress=progress, fit=state is None)
    if state is not None:
        learner.load_state_dict(dict(state))
    return learner


def make_learners(
    name: str,
    dataset: OfflineDataset,
    hyperparams: Mapping[str, Any] | None,
    seeds: Sequence[int],
    device: str = "cpu",
    progress: bool = False,
    *,
    state_mean: np.ndarray | None = None,
    state_std: np.ndarray | None = None,
    states: Sequence[Mapping[str, Any] | None] | None = None,
) -> list[Learner]:
    """:func:`make_learner` for each of ``seeds`` (the seeds trained together, :mod:`rkl_bench.algos.seeds`).

    Each learner is the one :func:`make_learner` builds for its seed; the
    dataset's rows are moved to ``device`` once and shared by all of them.
    ``states[k]`` (or None) resumes seed ``k`` from its checkpoint.
    """
    cls = _learner(name)
    config = make_config(name, hyperparams)
    states = list(states) if states is not None else [None] * len(seeds)
    if len(states) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(states)} states")
    rows = torch.as_tensor(_normalised(dataset, state_mean, state_std), device=torch.device(device))
    actions = torch.as_tensor(dataset.actions, device=torch.device(device))
    learners = []
    for seed, state in zip(seeds, states):
        learner = cls(rows, actions, config, int(seed), device, progress=progress, fit=state is None)
        if state is not None:
            learner.load_state_dict(dict(state))
        learners.append(learner)
    return learners


def _normalised(dataset: OfflineDataset, state_mean: np.ndarray | None, state_std: np.ndarray | None) -> np.ndarray:
    """The dataset's observations normalised with ``state_mean``/``state_std`` (default ``dataset.state_stats()``)."""
    if state_mean is None or state_std is None:
        mean, std = dataset.state_stats()
        state_mean = mean if state_mean is None else state_mean
        state_std = std if state_std is None else state_std
    state_mean = np.asarray(state_mean, np.float32)
    state_std = np.asarray(state_std, np.float32)
    if state_mean.shape != (dataset.obs_dim,) or state_std.shape != (dataset.obs_dim,):
        raise RklBenchError(
            f"state_mean/state_std must have shape ({dataset.obs_dim},) for dataset {dataset.name!r}; "
            f"got {state_mean.shape} and {state_std.shape}"
        )
    return (dataset.observations - state_mean) / state_std
