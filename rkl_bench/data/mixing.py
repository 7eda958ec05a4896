"""Mixed datasets: several behaviour datasets concatenated, their origins kept.

The paper's mixed datasets (Random-MediumReplay, Random-MediumExpert,
Random-Expert) are plain concatenations of transitions; no re-weighting. What
must survive the concatenation is where each row came from, so a result row
can name the exact data versions behind it: the mixed dataset's
``provenance`` lists every part (name, version, size, source file) in order,
and its ``version`` joins the distinct part versions with ``+``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rkl_bench.data.dataset import ARRAY_FIELDS, OfflineDataset
from rkl_bench.data.envs import gym_env_id
from rkl_bench.errors import RklBenchError


def concat_datasets(name: str, parts: Sequence[OfflineDataset]) -> OfflineDataset:
    """Concatenate ``parts`` (in order) into one dataset called ``name``.

    The parts must share env family, observation and action dims, and the
    gymnasium env their data comes from (D4RL v2 data runs on ``*-v4``,
    forge data on ``*-v5``: mixing them would blend two simulators).
    """
    if not parts:
        raise RklBenchError(f"mixed dataset {name!r} needs at least one part")
    first = parts[0]
    for part in parts[1:]:
        for what, a, b in (
            ("env", first.env, part.env),
            ("obs_dim", first.obs_dim, part.obs_dim),
            ("act_dim", first.act_dim, part.act_dim),
            ("gymnasium env", gym_env_id(first), gym_env_id(part)),
        ):
            if a != b:
                raise RklBenchError(
                    f"cannot mix {first.name!r} ({what} {a}) with {part.name!r} ({what} {b}) into {name!r}; "
                    "parts of a mixed dataset must come from the same environment"
                )
    versions = list(dict.fromkeys(v for part in parts for v in part.version.split("+")))
    return OfflineDataset(
        **{key: np.concatenate([getattr(part, key) for part in parts]) for key in ARRAY_FIELDS},
        env=first.env,
        name=name,
        version="+".join(versions),
        provenance=tuple(p for part in parts for p in part.provenance),
        episode_returns=np.concatenate([part.episode_returns for part in parts]).astype(np.float32),
    )
