"""Synthetic D4RL-layout files: real file format, random numbers.

For tests and benchmarks that need datasets in D4RL's layout and naming
without any behaviour policy: the service's smoke grid, the object-store
test, the scheduling-overhead benchmark. Rewards and states are noise; the
``expert`` kind only makes actions a smooth function of the state, so a
behaviour model sees a narrower action spread there than in ``random``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rkl_bench.data.d4rl import write_d4rl_hdf5

ENV_DIMS = {"hopper": (11, 3), "walker2d": (17, 6), "halfcheetah": (17, 6)}


def write_synthetic_d4rl(
    directory: Path, env: str, kind: str, rows: int = 400, episode: int = 50, seed: int = 0
) -> Path:
    """``<directory>/<env>_<kind>-v2.hdf5`` (D4RL's file naming): ``rows`` transitions in
    episodes of ``episode`` steps ending in timeouts, evaluated in ``<Env>-v4``."""
    obs_dim, act_dim = ENV_DIMS[env]
    rng = np.random.default_rng(seed)
    observations = rng.normal(size=(rows, obs_dim)).astype(np.float32)
    if kind == "random":
        actions = rng.uniform(-1, 1, size=(rows, act_dim))
    else:
        actions = np.tanh(observations[:, :act_dim] + 0.1 * rng.normal(size=(rows, act_dim)))
    timeouts = np.zeros(rows, bool)
    timeouts[episode - 1 :: episode] = True
    return write_d4rl_hdf5(
        Path(directory) / f"{env}_{kind.replace('-', '_')}-v2.hdf5",
        observations,
        actions.astype(np.float32),
        rng.normal(size=rows).astype(np.float32),
        np.zeros(rows, bool),
        timeouts,
        {"env": env, "version": "d4rl-v2", "name": f"{env}-{kind}-v2"},
    )
