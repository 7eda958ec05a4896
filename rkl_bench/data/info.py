"""``rkl-bench datasets info``: what a dataset holds, at a glance.

The summary is the evidence for the paper's premise about a mixed dataset
(how many transitions each part brings, how spread its returns and actions
are) and the sanity check before a long run (right env, right version, no
surprise terminals). :func:`dataset_info` returns plain JSON-ready data;
:func:`format_info` lays it out for a terminal.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from rkl_bench.data.envs import gym_env_id
from rkl_bench.data.registry import load_dataset
from rkl_bench.data.scores import REF_MIN_SCORE, normalized_score


def dataset_info(spec: str, d4rl_dir: str | Path | None = None) -> dict[str, Any]:
    """Load ``spec`` and summarise it.

    Keys: ``name``, ``env``, ``version``, ``gym_env_id``, ``transitions``,
    ``episodes`` (complete behaviour episodes), ``obs_dim``, ``act_dim``,
    ``terminals`` (count), ``return_mean/std/min/max`` (raw episode returns,
    None without episodes), ``normalized_return_mean/std`` (D4RL scale, None
    when the env has no reference scores), ``action_spread`` (``per_dim_std``,
    their mean ``mean_std``, and ``mean_abs`` = mean |a|), ``provenance`` (one
    dict per part: name, version, size, source) and ``metadata`` (the file's
    scalar metadata entries).
    """
    ds = load_dataset(spec, d4rl_dir=d4rl_dir)
    returns = ds.episode_returns.astype(np.float64)
    has_returns = len(returns) > 0
    scored = has_returns and ds.env in REF_MIN_SCORE
    normalized = normalized_score(ds.env, returns) if scored else None
    action_std = ds.actions.std(axis=0, dtype=np.float64)
    return {
        "name": ds.name,
        "env": ds.env,
        "version": ds.version,
        "gym_env_id": gym_env_id(ds),
        "transitions": len(ds),
        "episodes": len(returns),
        "obs_dim": ds.obs_dim,
        "act_dim": ds.act_dim,
        "terminals": int(ds.terminals.sum()),
        "return_mean": float(returns.mean()) if has_returns else None,
        "return_std": float(returns.std()) if has_returns else None,
        "return_min": float(returns.min()) if has_returns else None,
        "return_max": float(returns.max()) if has_returns else None,
        "normalized_return_mean": float(normalized.mean()) if normalized is not None else None,
        "normalized_return_std": float(normalized.std()) if normalized is not None else None,
        "action_spread": {
            "per_dim_std": [float(s) for s in action_std],
            "mean_std": float(action_std.mean()),
            "mean_abs": float(np.abs(ds.actions).mean(dtype=np.float64)),
        },
        "provenance": [dataclasses.asdict(p) for p in ds.provenance],
        "metadata": {k: v for k, v in ds.metadata.items() if isinstance(v, (str, int, float, bool))},
    }


def format_info(info: dict[str, Any]) -> str:
    """A dataset summary as an aligned ``label  value`` text block."""
    spread = info["action_spread"]
    rows: list[tuple[str, str]] = [
        ("name", info["name"]),
        ("env", f"{info['env']} (gymnasium {info['gym_env_id']})" if info["gym_env_id"] else f"{info['env']} (no gymnasium env known)"),
        ("version", info["version"]),
        ("transitions", f"{info['transitions']:,}"),
        ("episodes", f"{info['episodes']:,} complete, {info['terminals']:,} terminal transitions"),
        ("dims", f"obs {info['obs_dim']}, act {info['act_dim']}"),
        ("return", _stats(info, "return_", ("mean", "std", "min", "max"), "{:.1f}")),
        ("normalized return", _stats(info, "normalized_return_", ("mean", "std"), "{:.1f}")),
        ("action std per dim", " ".join(f"{s:.2f}" for s in spread["per_dim_std"])),
        ("action spread", f"mean std {spread['mean_std']:.3f}, mean |a| {spread['mean_abs']:.3f}"),
    ]
    for i, part in enumerate(info["provenance"]):
        rows.append(
            ("provenance" if i == 0 else "", f"{part['name']}  {part['version']}  {part['size']:,} rows  {part['source']}")
        )
    for i, (key, value) in enumerate(info["metadata"].items()):
        rows.append(("metadata" if i == 0 else "", f"{key} = {value}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _stats(info: dict[str, Any], prefix: str, names: tuple[str, ...], fmt: str) -> str:
    if info[prefix + names[0]] is None:
        return "n/a"
    return ", ".join(f"{name} {fmt.format(info[prefix + name])}" for name in names)
