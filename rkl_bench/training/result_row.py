"""The result row, built in one place for the single run (``metrics.jsonl``) and the Tune trial (``result.json``).

A row is one flat JSON object per evaluation; its keys are the contract
between training, the service, the results archive and the report
(docs/architecture.md, "Result rows"). A Tune trial builds its row in two
halves, because its evaluation runs on an actor while training goes on: the
progress fields when it sends the policy out, the scores when they come back.
The single run does both at once. Either way the row ends with the code it
came from (package version, git commit, evaluation-loop version).
"""

from __future__ import annotations

from typing import Any, Mapping

from rkl_bench.evaluation import EvalResult
from rkl_bench.training.provenance import code_fields


def progress_fields(
    identity: Mapping[str, Any],
    *,
    step: int,
    total_steps: int,
    losses: Mapping[str, float],
    wall_time: float,
    steps_per_second: float | None,
) -> dict[str, Any]:
    """What a row says about training: who (``identity``: algo, dataset, dataset_version, seed, ...),
    how far, the loss means since the last row, and the clocks."""
    return {
        **identity,
        "step": step,
        "total_steps": total_steps,
        **losses,
        "wall_time": wall_time,
        "steps_per_second": steps_per_second,
    }


def score_fields(result: EvalResult | None) -> dict[str, Any]:
    """What a row says about the evaluation; ``None`` (a run without evaluation) gives empty scores."""
    if result is None:
        return {"eval_episodes": 0, "return_mean": None, "return_std": None,
                "normalized_score": None, "normalized_std": None, "eval_seconds": 0.0}
    return {
        "eval_episodes": result.episodes,
        "return_mean": result.return_mean,
        "return_std": result.return_std,
        "normalized_score": result.normalized_mean,
        "normalized_std": result.normalized_std,
        "eval_seconds": result.seconds,
    }


def precision_fields(learner: Any) -> dict[str, Any]:
    """``{"matmul_precision": "bf16"}`` for a learner whose fast path multiplies in bf16, else ``{}``.

    What the run actually used, not what its config asked for: a ``precision: bf16`` run on a CPU
    without bf16 units trains in fp32 (``rkl_bench/algos/precision.py``), and its rows say nothing,
    as every fp32 row."""
    return {"matmul_precision": "bf16"} if getattr(learner, "matmul_precision", "fp32") == "bf16" else {}


def finish_row(progress: Mapping[str, Any], scores: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The complete row: progress, scores, any ``extra`` fields, and last the code it came from."""
    return {**progress, **scores, **extra, **code_fields()}
