"""Learners (one file per algorithm), shared nets, the behaviour model and BC regularisers.

Build learners by name through :func:`make_learner`; see ``algos/registry.py``
for the state-normalisation convention.
"""

from rkl_bench.algos.base import Learner, config_from_dict
from rkl_bench.algos.registry import (
    LEARNERS,
    LearnerEntry,
    default_hyperparams,
    learner_names,
    make_config,
    make_learner,
)

__all__ = [
    "LEARNERS",
    "Learner",
    "LearnerEntry",
    "config_from_dict",
    "default_hyperparams",
    "learner_names",
    "make_config",
    "make_learner",
]
