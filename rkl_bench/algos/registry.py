"""Learners by name: the one place the training loop and the CLI build them.

    learner = make_learner("td3_bc", dataset, {"q_weight": 2.5}, seed=0)

Convention for state normalisation: the learner is handed the RAW
:class:`~rkl_bench.data.dataset.OfflineDataset` plus the statistics the
training loop normalises batches with (``state_mean``, ``state_std``, the same
arrays given to :class:`~rkl_bench.data.dataset.TensorSampler`). If they are
omitted, ``dataset.state_stats()`` (TD3+BC's normalisation) is used, which is
what the training loop should use too. Learners that need the dataset itself
(TD3+RKL fits its behaviour model and per-row lambdas on the normalised
observations) normalise it with those statistics; the others only read
``obs_dim`` and ``act_dim``. Batches passed to ``update`` and observations
passed to ``act`` are always normalised.

Each learner's config dataclass also carries ``batch_size``; the training
loop reads it from ``learner.config.batch_size`` (or
``default_hyperparams(name)["batch_size"]``) to build its sampler.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from rkl_bench.algos.base import Learner, config_from_dict
from rkl_bench.algos.bc import BC, BCConfig
from rkl_bench.algos.bc_signals import (
    BCMSE,
    BCForwardKL,
    BCForwardKLConfig,
    BCReverseKL,
    BCReverseKLConfig,
    BCWeightedRKL,
    BCWeightedRKLConfig,
)
from rkl_bench.algos.brac import BRAC, BRACConfig
from rkl_bench.algos.cdc import CDC, CDCConfig
from rkl_bench.algos.td3_bc import TD3BC, TD3BCConfig
from rkl_bench.algos.td3_rkl import TD3RKL, TD3RKLConfig
from rkl_bench.data.dataset import OfflineDataset
from rkl_bench.errors import RklBenchError

Builder = Callable[..., Learner]
"""``build(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner``.

``fit=False`` asks the builder to skip construction-time fitting because a
checkpoint will be loaded right after (TD3+RKL, BRAC and the KL-based BC signals fit
a behaviour model when built)."""


@dataclass(frozen=True)
class LearnerEntry:
    """One registered algorithm: its config dataclass and how to build it from a dataset."""

    name: str
    config_cls: type
    build: Builder
    summary: str


def _build_bc(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    return BC(dataset.obs_dim, dataset.act_dim, config, seed, device)


def _build_td3_bc(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    return TD3BC(dataset.obs_dim, dataset.act_dim, config, seed, device)


def _build_td3_rkl(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    observations = (dataset.observations - state_mean) / state_std
    return TD3RKL(observations, dataset.actions, config, seed, device, progress=progress, fit=fit)


def _build_brac(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    observations = (dataset.observations - state_mean) / state_std
    return BRAC(observations, dataset.actions, config, seed, device, progress=progress, fit=fit)


def _build_cdc(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    return CDC(dataset.obs_dim, dataset.act_dim, config, seed, device)


def _build_bc_mse(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    return BCMSE(dataset.obs_dim, dataset.act_dim, config, seed, device)


def _build_bc_weighted_rkl(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    observations = (dataset.observations - state_mean) / state_std
    return BCWeightedRKL(observations, dataset.actions, config, seed, device, progress=progress, fit=fit)


def _build_bc_forward_kl(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    return BCForwardKL(dataset.obs_dim, dataset.act_dim, config, seed, device)


def _build_bc_reverse_kl(dataset, config, seed, device, progress, state_mean, state_std, fit) -> Learner:
    observations = (dataset.observations - state_mean) / state_std
    return BCReverseKL(observations, dataset.actions, config, seed, device, progress=progress, fit=fit)


LEARNERS: dict[str, LearnerEntry] = {
    "bc": LearnerEntry("bc", BCConfig, _build_bc, "behaviour cloning, deterministic MSE"),
    "td3_bc": LearnerEntry("td3_bc", TD3BCConfig, _build_td3_bc, "TD3+BC (Fujimoto & Gu 2021), Eq. 6"),
    "td3_rkl": LearnerEntry(
        "td3_rkl", TD3RKLConfig, _build_td3_rkl, "TD3+RKL (the paper): Eq. 7 BC term weighted by Eq. 18"
    ),
    "brac": LearnerEntry(
        "brac", BRACConfig, _build_brac, "BRAC (Wu et al. 2019), Eq. 5: KL(pi || pi_b) penalty, tanh-Gaussian actor"
    ),
    "cdc": LearnerEntry(
        "cdc", CDCConfig, _build_cdc, "CDC (Fakoor et al. 2021), Eq. 4: log pi(a|s) term and the Delta critic penalty"
    ),
    # Fig. 5: the four BC signals alone (no RL signal), for expert datasets.
    "bc_weighted_rkl": LearnerEntry(
        "bc_weighted_rkl", BCWeightedRKLConfig, _build_bc_weighted_rkl, "Fig. 5: TD3+RKL's BC signal alone (Eq. 7 x Eq. 18)"
    ),
    "bc_mse": LearnerEntry("bc_mse", BCConfig, _build_bc_mse, "Fig. 5: TD3+BC's BC signal alone (Eq. 6, MSE)"),
    "bc_forward_kl": LearnerEntry(
        "bc_forward_kl", BCForwardKLConfig, _build_bc_forward_kl, "Fig. 5: CDC's BC signal alone (forward KL, Eq. 4)"
    ),
    "bc_reverse_kl": LearnerEntry(
        "bc_reverse_kl", BCReverseKLConfig, _build_bc_reverse_kl, "Fig. 5: BRAC's BC signal alone (reverse KL, Eq. 5)"
    ),
}


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


def _entry(name: str) -> LearnerEntry:
    try:
        return LEARNERS[name]
    except (KeyError, TypeError):
        raise RklBenchError(
            f"unknown algorithm {name!r}; valid algorithms are: {', '.join(learner_names())}"
        ) from None


def default_hyperparams(name: str) -> dict[str, Any]:
    """The default hyper-parameters of algorithm ``name`` as a plain dict."""
    return dataclasses.asdict(_entry(name).config_cls())


def make_config(name: str, hyperparams: Mapping[str, Any] | Any | None = None) -> Any:
    """Parse ``hyperparams`` (a mapping, or already a config of the right class) for ``name``.

    Unknown keys and bad values raise :class:`RklBenchError` naming the algorithm.
    """
    entry = _entry(name)
    if isinstance(hyperparams, entry.config_cls):
        return hyperparams
    owner = f"{name} hyper-parameters"
    try:
        return config_from_dict(entry.config_cls, hyperparams, owner)
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
    entry = _entry(name)
    config = make_config(name, hyperparams)
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
    learner = entry.build(dataset, config, int(seed), device, progress, state_mean, state_std, state is None)
    if state is not None:
        learner.load_state_dict(dict(state))
    return learner
