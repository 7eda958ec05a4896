"""Layer 3: seeded, batched policy rollouts in gymnasium MuJoCo envs (see ``rollouts``)."""

from rkl_bench.evaluation.rollouts import EvalResult, Evaluator, evaluate_policy, make_env

__all__ = ["EvalResult", "Evaluator", "evaluate_policy", "make_env"]
