"""Learners (one file per algorithm), the learner core, shared nets, the behaviour models and BC regularisers.

Build learners by name through :func:`make_learner`; see ``algos/registry.py``
for the state-normalisation convention and ``algos/base.py`` (or
``docs/architecture.md``) for what a learner declares.
"""

from rkl_bench.algos.base import Learner, Step
from rkl_bench.algos.config import ConfigError, config_from_dict
from rkl_bench.algos.registry import (
    LEARNERS,
    default_hyperparams,
    learner_names,
    make_config,
    make_learner,
    make_learners,
)

__all__ = [
    "LEARNERS",
    "ConfigError",
    "Learner",
    "Step",
    "config_from_dict",
    "default_hyperparams",
    "learner_names",
    "make_config",
    "make_learner",
    "make_learners",
]
