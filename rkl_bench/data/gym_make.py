"""Every gymnasium MuJoCo env of the project is made here.

Two things must happen at each ``gym.make``, and five modules made envs
(evaluation, the forge's generation, policy training and env sizes, the data
check): MuJoCo's C warnings are routed through :mod:`warnings`
(:mod:`rkl_bench.data.mujoco_warnings`: once per text, not 100 copies a
minute in a grid's log) before the first env exists, and a wrong id gives one
line naming it and the ids that work, not gymnasium's traceback. One
function, so a new caller cannot forget either.
"""

from __future__ import annotations

import gymnasium as gym

from rkl_bench.data.mujoco_warnings import route_mujoco_warnings
from rkl_bench.errors import RklBenchError


def make_env(env_id: str, max_episode_steps: int | None = None) -> gym.Env:
    """``gym.make(env_id, max_episode_steps=...)`` (wrappers included; ``.unwrapped`` for the bare env),
    with MuJoCo's warnings routed and gymnasium's lookup errors as one :class:`RklBenchError` line."""
    route_mujoco_warnings()
    try:
        return gym.make(env_id, max_episode_steps=max_episode_steps)
    except gym.error.Error as exc:
        raise RklBenchError(
            f"cannot make environment {env_id!r} ({exc}); use a gymnasium id such as "
            "HalfCheetah-v4, Hopper-v5 or Walker2d-v4"
        ) from None
