"""Fitted behaviour models kept on disk, so that learners on the same data and seed fit once.

A TD3+RKL trial begins with 50k steps of behaviour fitting (Algorithm 1,
lines 6-8): on this project's 2-core machines a few minutes per (dataset,
seed), as long as a whole 25k-step rung of a search trial. Every trial of a
lambda search, and both TD3+RKL columns of a grid, fit the same model: the
fit depends on the rows, the seed and the fit's own settings (steps, batch,
lr, network, squash), not on zeta1/zeta2, the regulariser or how ``beta`` is
read (``beta_reduce``, ``beta_normalization`` are applied after the fit,
``calibrate_beta``). BRAC's tanh-Gaussian ``pi_b`` (300k steps, half an
hour or more per fit on those machines) is fitted the same way by ``brac``
and ``bc_reverse_kl`` on the same rows and seed. The cache key holds the
rows, the seed, the fit's kind and settings (:data:`FIT_FIELDS` for the
Gaussian, the caller's for the others), plus the torch version and the
device type (another build may round differently); the file holds the
fitted weights (the Gaussian head, or the whole tanh model with its entropy
weight) and is read weights-only (``safe_load``). A cached model equals a
fresh fit bit for bit (tested), so runs give the same numbers with or
without it.

Where: ``$RKL_BENCH_BEHAVIOUR_CACHE`` (default ``~/.cache/rkl_bench/behaviour``);
``off`` turns it off. Files are written atomically; an unreadable one is
refitted, saying so. :func:`load_or_fit` is the one protocol every fit goes
through (key, read or train, keep); :func:`fit_counts` tells a caller how
many fits it read and how many it trained, which the fit's statistics cannot
say (they equal between the two).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from rkl_bench.errors import RklBenchError
from rkl_bench.safe_load import load_torch_file

CACHE_FORMAT = 1
FIT_FIELDS = ("steps", "batch_size", "lr", "hidden_dim", "hidden_layers", "squash", "tanh_eps")
"""The behaviour settings the fitted weights depend on (``BehaviourConfig``)."""

_COUNTS = {"read": 0, "trained": 0}
"""Fits of this process so far, by how they were made (:func:`fit_counts`)."""


def cache_dir() -> Path | None:
    """The cache folder, or None when ``$RKL_BENCH_BEHAVIOUR_CACHE`` is ``off``."""
    value = os.environ.get("RKL_BENCH_BEHAVIOUR_CACHE", "")
    if value.strip().lower() in ("off", "0", "false", "no"):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "rkl_bench" / "behaviour"


def fit_settings(config: Any, fields: Sequence[str] = FIT_FIELDS) -> dict[str, Any]:
    """The settings of ``config`` a fit's weights depend on, by field name (default the Gaussian's)."""
    return {field: getattr(config, field) for field in fields}


def fit_key(observations: Tensor, actions: Tensor, settings: Mapping[str, Any], seed: int, kind: str) -> str:
    """The digest of everything a fit's weights depend on: the rows, ``seed``, ``kind`` (``"gaussian"``,
    ``"tanh"``), its ``settings`` (JSON values), the torch version and the device type."""
    digest = hashlib.sha256()
    for array in (observations, actions):
        data = array.detach().float().contiguous().cpu()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.numpy().tobytes())
    record = {"format": CACHE_FORMAT, "kind": kind, "seed": int(seed), "torch": torch.__version__,
              "device": observations.device.type, **settings}
    digest.update(json.dumps(record, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def load_or_fit(module: nn.Module, train: Callable[[], None], observations: Tensor, actions: Tensor,
                settings: Mapping[str, Any], seed: int, kind: str, use_cache: bool = True) -> bool:
    """Fill ``module`` with the fit that the rows, ``settings``, ``seed`` and ``kind`` define: the
    cached weights when the cache holds them, else ``train()`` (which fits ``module`` in place),
    kept for the next caller. True when the fit was read from the cache."""
    key = fit_key(observations, actions, settings, seed, kind) if use_cache and cache_dir() is not None else None
    if key is not None and load_fit(module, key):
        _COUNTS["read"] += 1
        return True
    train()
    _COUNTS["trained"] += 1
    if key is not None:
        save_fit(module, key)
    return False


def fit_counts() -> tuple[int, int]:
    """How many fits this process has read from the cache and trained, so far: ``(read, trained)``."""
    return _COUNTS["read"], _COUNTS["trained"]


def load_fit(module: nn.Module, key: str) -> bool:
    """Load the cached weights of fit ``key`` into ``module``; False when there are none (or unreadable)."""
    folder = cache_dir()
    path = None if folder is None else folder / f"{key}.pt"
    if path is None or not path.is_file():
        return False
    try:
        state = load_torch_file(path, "it is refitted")
        module.load_state_dict(state)
    except (RklBenchError, RuntimeError, KeyError, TypeError) as exc:
        print(f"behaviour cache: {path} unreadable ({str(exc).splitlines()[0][:200]}); refitting", flush=True)
        return False
    return True


def save_fit(module: nn.Module, key: str) -> None:
    """Keep ``module``'s weights as fit ``key`` (atomic; a failure to write only loses the cache entry)."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{key}.pt"
        tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
        torch.save({k: v.detach().cpu() if isinstance(v, Tensor) else v  # a module's extra state (plain values)
                    for k, v in module.state_dict().items()}, tmp)
        os.replace(tmp, final)
    except OSError as exc:
        print(f"behaviour cache: cannot write {folder} ({exc}); fits are not kept", flush=True)
