"""D4RL reference scores and the 0-100 normalised score every table reports.

The references are D4RL's ``REF_MIN_SCORE`` (a random policy) and
``REF_MAX_SCORE`` (an expert) from ``d4rl/infos.py``; D4RL uses the same pair
for every dataset of a family (random, medium, ..., all versions), so they are
keyed by env family here. Forge (v5) data is scored against the same
references so that its numbers read on the familiar scale.
"""

from __future__ import annotations

from typing import overload

import numpy as np

from rkl_bench.data.envs import env_family

REF_MIN_SCORE: dict[str, float] = {
    "halfcheetah": -280.178953,
    "hopper": -20.272305,
    "walker2d": 1.629008,
}
REF_MAX_SCORE: dict[str, float] = {
    "halfcheetah": 12135.0,
    "hopper": 3234.3,
    "walker2d": 4592.3,
}


@overload
def normalized_score(env: str, returns: float) -> float: ...
@overload
def normalized_score(env: str, returns: np.ndarray) -> np.ndarray: ...
def normalized_score(env: str, returns: float | np.ndarray) -> float | np.ndarray:
    """D4RL's ``100 * (R - R_random) / (R_expert - R_random)``.

    ``env`` is a family, gymnasium id or D4RL dataset name (see
    :func:`~rkl_bench.data.envs.env_family`); an unknown env raises
    :class:`~rkl_bench.errors.RklBenchError` listing the known ones. Scalars
    give a float, arrays an array of the same shape.
    """
    family = env_family(env)
    low, high = REF_MIN_SCORE[family], REF_MAX_SCORE[family]
    scores = 100.0 * (np.asarray(returns, dtype=np.float64) - low) / (high - low)
    return float(scores) if scores.ndim == 0 else scores
