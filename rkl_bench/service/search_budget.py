"""What a search will cost and what it optimises, said in one line each before it starts.

Two estimates: :func:`budget_estimate` from the spec alone, at the reference rates of the project's
machines (printed before every search), and, when a study is resumed, :func:`measured_estimate`
from the wall time the study's own trials took on this machine, evaluation and behaviour fits
included (the reference rates are of the update step alone, on faster machines).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rkl_bench.service.search_config import SearchConfig
from rkl_bench.service.study_attrs import RESUME_ATTR


def objective_text(config: SearchConfig) -> str:
    exp, obj = config.experiment, config.search.objective
    text = (
        f"{obj.aggregate} over {len(exp.datasets)} dataset(s) x {len(exp.seeds)} seed(s) of the final normalised score "
        f"(mean of the last {obj.final_evals} evaluation(s) of {exp.evaluation.episodes} episodes) after {exp.steps} steps"
    )
    if config.staged and len(config.stages) > 1:
        text += f"; every dataset trained to {', '.join(f'{s:,}' for s in config.stages[:-1])} steps before early stopping compares"
    return text


REFERENCE_RATES = (380.0, 175.0)
"""Fast-path TD3+BC-sized steps/s per core measured on the fastest and slowest of the
project's machines (docs/speed.md), for the estimate printed before a search starts."""


@dataclass(frozen=True)
class StepBudget:
    """Gradient steps of a whole search: at most (no trial stopped early) and expected with early stopping."""

    trials: int
    pairs: int
    worst: float
    expected: float

    @property
    def expected_per_trial(self) -> float:
        return self.expected / max(1, self.trials)


def step_budget(config: SearchConfig) -> StepBudget:
    """The search's gradient steps; with ASHA a fraction 1 / rf^k of the trials goes on past the k-th rung
    (ASHA's expectation)."""
    exp, search = config.experiment, config.search
    trials, pairs = search.num_samples, config.num_pairs
    worst = trials * pairs * exp.steps
    stopping = search.early_stopping
    if stopping.kind == "asha" and config.staged:
        rungs, rf, spent = config.stages, stopping.reduction_factor, 0.0
        for k, rung in enumerate(rungs):
            spent += (rung - (rungs[k - 1] if k else 0)) / rf**k
        expected = trials * pairs * spent
    elif stopping.kind == "asha":
        rf, grace, spent, k, done = stopping.reduction_factor, config.grace_period, 0.0, 0, 0
        rung = grace
        while done < pairs:
            upto = min(pairs, rung)
            spent += (upto - done) / rf**k
            done, rung, k = upto, rung * rf, k + 1
        expected = trials * spent * exp.steps
    else:
        expected = worst
    return StepBudget(trials, pairs, float(worst), float(expected))


def budget_estimate(config: SearchConfig, cores: int | None = None) -> str:
    """Gradient steps a search will take, with and without early stopping, and the wall
    time they mean at :data:`REFERENCE_RATES` on ``cores`` cores (one trial per core);
    printed before the search starts, so nobody starts a two-day search by accident."""
    exp, search = config.experiment, config.search
    budget = step_budget(config)
    trials, pairs, worst, expected = budget.trials, budget.pairs, budget.worst, budget.expected
    cores = max(1, min(cores or os.cpu_count() or 1, search.max_concurrent))
    fast, slow = REFERENCE_RATES

    def hours(steps: float, rate: float) -> str:
        return f"{steps / (rate * cores) / 3600:.1f} h"

    return (
        f"budget: {trials} trials x {pairs} (dataset, seed) pair(s) x {exp.steps:,} steps = {worst / 1e6:.1f}M gradient steps "
        f"at most; about {expected / 1e6:.1f}M with early stopping. On {cores} core(s) at {fast:.0f}-{slow:.0f} steps/s "
        f"per core: {hours(expected, fast)} to {hours(expected, slow)} (at most {hours(worst, fast)} to {hours(worst, slow)}), "
        "plus evaluation and behaviour fits."
    )


def trial_steps(trial: Any, config: SearchConfig) -> int:
    """Gradient steps an Optuna trial of this search reported reaching, over all its pairs: a staged
    trial's clock is steps per pair, an unstaged one's the pairs finished."""
    clock = max((int(k) for k in trial.intermediate_values), default=0)
    return clock * config.num_pairs if config.staged else clock * config.experiment.steps


def measured_estimate(config: SearchConfig, study: Any) -> str | None:
    """The time the rest of a resumed search will take at the rate its own finished trials ran here.

    The rate is steps per second of wall time per trial (running ``max_concurrent`` at once, with
    their evaluations and behaviour fits), from trials that ran start to end in one session: a trial
    that went on from a checkpoint reports steps it did not take in its own duration. None when no
    such trial has finished yet.
    """
    from optuna.trial import TrialState

    steps = seconds = 0.0
    used = 0
    finished = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED):
            continue
        finished += 1
        if trial.user_attrs.get(RESUME_ATTR) or trial.duration is None:
            continue
        done = trial_steps(trial, config)
        if done and trial.duration.total_seconds() > 0:
            steps, seconds, used = steps + done, seconds + trial.duration.total_seconds(), used + 1
    if not used:
        return None
    rate = steps / seconds
    left = max(0, config.search.num_samples - finished)
    left_steps = left * step_budget(config).expected_per_trial
    concurrent = max(1, config.search.max_concurrent)
    return (
        f"measured in this study: {used} trial(s) ran {steps / 1e6:.2f}M steps at {rate:.0f} steps/s each "
        f"(wall clock, {concurrent} at a time, evaluation included); the {left} trial(s) left, about "
        f"{left_steps / 1e6:.1f}M steps with early stopping: {left_steps / (rate * concurrent) / 3600:.1f} h"
    )
