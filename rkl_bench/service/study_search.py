"""Tune's ``OptunaSearch``, with the study's record kept in the search's terms.

* one intermediate value per tick of the search's clock (step = pairs done,
  or, in a staged search, the rung in steps every pair has reached), not one
  per result row, so the study's intermediate values are the running scores
  early stopping compares; the per-pair scores behind the latest one are the
  trial's user attribute ``pair_scores`` (``pair_scores_at``: its clock);
* a conditional search space samples define-by-run (:class:`ConditionalSpace`);
* a trial stopped before its last pair (ASHA) is PRUNED, with its running
  score as value (Optuna takes the last intermediate value); a finished one
  is COMPLETE with its objective; an objective that is not a number makes the
  trial FAIL (Optuna refuses NaN, and OptunaSearch would leave it RUNNING);
* each Optuna trial records its Tune trial id (user attribute
  ``tune_trial_id``), and each Tune config its Optuna trial number
  (``optuna_trial``), so the dashboard and the experiment directory meet.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from rkl_bench.service.private_apis import searcher_completed, searcher_study, searcher_trials
from rkl_bench.service.study_attrs import RESUME_ATTR, RESUMED_VALUES_ATTR, TUNE_TRIAL_ATTR
from rkl_bench.service.search_config import ParamSpace
from rkl_bench.service.search_trial import OBJECTIVE, PAIR_SCORES, PAIRS_DONE, RESUME_KEY

logger = logging.getLogger(__name__)


class ConditionalSpace:
    """Define-by-run sampling of a space whose parameters may hold conditions
    (``when:``): each is suggested, in the space's order, only when the values
    sampled before it meet its condition. A plain class, so Tune can pickle the
    searcher with it."""

    def __init__(self, space: tuple[ParamSpace, ...]) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        values: dict[str, Any] = {}
        for param in self.space:
            if param.active(values):
                values[param.name] = suggest(trial, param)


def suggest(trial: Any, param: ParamSpace) -> Any:
    """One parameter through Optuna's public ``suggest_*`` (same distribution as :meth:`ParamSpace.distribution`)."""
    if param.kind == "categorical":
        return trial.suggest_categorical(param.name, list(param.choices))
    if param.kind == "int":
        return trial.suggest_int(param.name, int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return trial.suggest_float(param.name, float(param.low), float(param.high), log=param.log, step=param.step)


class StudySearch(OptunaSearch):
    """See the module docstring; constructed like ``OptunaSearch``, plus ``clock``
    (it reads ``OptunaSearch``'s own state through ``private_apis.py``):
    the result field that counts the trial's progress (``pairs_done``, or
    ``stage_steps`` in a staged search)."""

    def __init__(self, *args: Any, clock: str = PAIRS_DONE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._pairs_reported: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        if config is None:
            return None
        ot_trial = searcher_trials(self)[trial_id]
        ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        resume_from = ot_trial.user_attrs.get(RESUME_ATTR)
        if resume_from is None:
            return {**config, "optuna_trial": ot_trial.number}
        # An interrupted trial of an earlier session, going on from its checkpoint: what it had
        # reported there is this trial's history too.
        for step, value in ot_trial.user_attrs.get(RESUMED_VALUES_ATTR, []):
            ot_trial.report(float(value), step=int(step))
            self._pairs_reported[trial_id] = max(self._pairs_reported.get(trial_id, 0), int(step))
        return {**config, "optuna_trial": ot_trial.number, RESUME_KEY: resume_from}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in searcher_trials(self) and trial_id not in searcher_completed(self):
            self._report_pairs(trial_id, result)

    def _report_pairs(self, trial_id: str, result: dict) -> None:
        done, value = result.get(self._clock), result.get(OBJECTIVE)
        if not done or value is None or not math.isfinite(value):
            return
        if self._pairs_reported.get(trial_id, 0) < done:
            ot_trial = searcher_trials(self)[trial_id]
            ot_trial.report(float(value), step=int(done))
            if result.get(PAIR_SCORES) is not None:
                ot_trial.set_user_attr(PAIR_SCORES, [float(x) for x in result[PAIR_SCORES]])
                ot_trial.set_user_attr("pair_scores_at", int(done))
            self._pairs_reported[trial_id] = int(done)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in searcher_completed(self) or trial_id not in searcher_trials(self):
            return
        ot_trial = searcher_trials(self)[trial_id]
        value = None
        finished = bool(result) and result.get(PAIRS_DONE) is not None and result.get(PAIRS_DONE) == result.get("pairs_total")
        if error:
            state = TrialState.FAIL
        elif finished:
            self._report_pairs(trial_id, result)
            objective = result.get(OBJECTIVE)
            if objective is not None and math.isfinite(objective):
                state, value = TrialState.COMPLETE, float(objective)
            else:
                ot_trial.set_user_attr("fail_reason", f"objective is {objective!r}")
                state = TrialState.FAIL
        else:
            if result:
                self._report_pairs(trial_id, result)
                ot_trial.set_user_attr("stopped_after_pairs", int(result.get(PAIRS_DONE) or 0))
                if self._clock != PAIRS_DONE:
                    ot_trial.set_user_attr(f"stopped_at_{self._clock}", int(result.get(self._clock) or 0))
            state = TrialState.PRUNED
        try:
            searcher_study(self).tell(ot_trial, value, state=state)
        except Exception as exc:  # noqa: BLE001 - a storage hiccup must not end the search
            logger.warning("could not record trial %s in the study: %s", ot_trial.number, exc)
        searcher_completed(self).add(trial_id)
