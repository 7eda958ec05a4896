"""The single-run training loop (no Ray): :class:`Trainer` steps, evaluates and
checkpoints one learner; :func:`train` drives it for ``rkl-bench train``."""

from rkl_bench.training.single_run import SingleRunSummary, TrainSpec, train
from rkl_bench.training.trainer import Trainer, eval_seed

__all__ = ["SingleRunSummary", "TrainSpec", "Trainer", "eval_seed", "train"]
