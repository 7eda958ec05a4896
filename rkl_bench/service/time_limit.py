"""``rkl-bench run --time-limit``: start only the trials expected to end before the machine goes.

A session, a Slurm allocation or a spot instance has a known end, and a
trial still running then is lost: archives keep finished trials only, and
a K-seed TD3 trial of the mixtures grid takes ~1.8 h on a 2-core VM. A
grid that starts trials blindly spends a session's last hour on trials that
cannot finish, where a shorter trial further down the list (a BC
K-seed trial took 0.75 h against TD3's 1.8 h on that VM) could have.

The plan is made before Ray starts, from the archive's measured rates
(:func:`rkl_bench.service.grid_budget.archived_rates`; each rate covers a
trial's whole wall clock, set-up and evaluation included). The trials, in
the order the grid runs them, go one by one to the run slot that frees
first (the trials a local Ray runs at once); a trial that would end after
the time left is deferred, its slot kept for the next, so the plan is
greedy list scheduling in the grid's own order. A column with no rate of
its own or of its learner is deferred too: its length is unknown. Deferred
trials are left for a later run (``--resume ARCHIVE`` after exporting
this one's). The plan is an estimate from the archive machines' rates: a
trial may still overrun, and is then lost as it would have been without
the limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Collection, Sequence

from rkl_bench.service.config import ExperimentConfig
from rkl_bench.service.grid_budget import concurrent_trials, rate_of
from rkl_bench.service.grid_cells import trial_order
from rkl_bench.training.archive import TrialKey

_UNITS = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


_NUMBER = r"([0-9]*\.?[0-9]+)"
_DURATION = re.compile(rf"\s*(?:{_NUMBER}\s*h)?\s*(?:{_NUMBER}\s*(?:min|m))?\s*(?:{_NUMBER}\s*s?)?\s*")


def parse_duration(text: str) -> float:
    """``2.5h``, ``150m``, ``90min``, ``600s``, plain seconds, or hours, minutes and seconds in that
    order (``1h55m``, ``2h 30m``), as seconds (positive and finite)."""
    match = _DURATION.fullmatch(text)
    if match is None or not any(match.groups()):
        raise ValueError(f"expected a duration such as 2.5h, 150m, 1h55m or 600s, got {text!r}")
    hours, minutes, rest = (float(part) if part else 0.0 for part in match.groups())
    seconds = hours * _UNITS["h"] + minutes * _UNITS["m"] + rest
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"expected a positive duration, got {text!r}")
    return seconds


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of the grid (an algo, a dataset, the seeds it trains) and its estimated length."""

    algo: str
    dataset: str
    seeds: tuple[int, ...]
    seconds: float | None
    """``None``: no archived rate for its learner, so its length is unknown."""

    @property
    def keys(self) -> list[TrialKey]:
        return [(self.algo, self.dataset, seed) for seed in self.seeds]


@dataclass(frozen=True)
class TimePlan:
    run: tuple[PlannedTrial, ...]
    deferred: tuple[PlannedTrial, ...]
    ends_after: float
    """Estimated seconds from now until the last planned trial ends (0 when none runs)."""
    seconds_left: float

    @property
    def deferred_keys(self) -> set[TrialKey]:
        return {key for trial in self.deferred for key in trial.keys}

    def lines(self) -> list[str]:
        """What is printed before the grid starts."""
        hours = self.seconds_left / 3600
        head = (f"time limit: {hours:.2f} h left; {len(self.run)} trial(s) planned to end in it "
                f"(the last about {self.ends_after / 3600:.2f} h from now), {len(self.deferred)} deferred")
        if not self.deferred:
            return [head]
        shown = ", ".join(_name(t) for t in self.deferred[:4]) + (", ..." if len(self.deferred) > 4 else "")
        return [head + f": {shown}"]


def plan_grid(config: ExperimentConfig, specs: Sequence[str], skip: Collection[TrialKey], rates: dict[str, float],
              seconds_left: float, slots: int | None = None, busy: Sequence[float] = ()) -> TimePlan:
    """The plan for the grid's trials less ``skip``, in their run order, on ``slots`` run slots (default those
    of a local Ray of this machine's CPUs), ``busy`` holding slots as in :func:`plan_within`."""
    lengths = trial_lengths(trial_order(config, specs, skip), config.steps, config.seeds_per_trial, rates)
    return plan_within(lengths, slots or concurrent_trials(config, None) or 1, seconds_left, busy)


def plan_within(trials: Sequence[PlannedTrial], slots: int, seconds_left: float, busy: Sequence[float] = ()) -> TimePlan:
    """Greedy list scheduling of ``trials`` in order on ``slots`` slots; see the module doc. ``busy``: the
    seconds left of trials already running, each holding a slot until then (the soonest to end first;
    any beyond ``slots`` are taken to run elsewhere)."""
    held = sorted(max(0.0, b) for b in busy)[:max(1, slots)]
    free_at = held + [0.0] * (max(1, slots) - len(held))
    run, deferred, ends = [], [], 0.0
    for trial in trials:
        slot = min(range(len(free_at)), key=free_at.__getitem__)
        if trial.seconds is None or free_at[slot] + trial.seconds > seconds_left:
            deferred.append(trial)
            continue
        free_at[slot] += trial.seconds
        ends = max(ends, free_at[slot])
        run.append(trial)
    return TimePlan(tuple(run), tuple(deferred), ends, seconds_left)


def trial_lengths(order: Sequence[tuple[str, str, Sequence[int]]], steps: int, seeds_per_trial: int,
                  rates: dict[str, float]) -> list[PlannedTrial]:
    """Each trial of ``order`` ((algo, dataset, seeds) as the grid runs them) with its length at ``rates``
    (seed-steps per second of one trial of ``seeds_per_trial`` seeds, per learner column). A trial of
    fewer seeds (the last group) is charged a whole group's time: a smaller stack is not
    proportionally faster, so the plan errs long."""
    out = []
    for algo, dataset, seeds in order:
        rate = rate_of(algo, rates)
        out.append(PlannedTrial(algo, dataset, tuple(seeds), None if rate is None else seeds_per_trial * steps / rate))
    return out


def _name(trial: PlannedTrial) -> str:
    length = "no rate" if trial.seconds is None else f"{trial.seconds / 3600:.1f} h"
    return f"{trial.algo} on {trial.dataset.split('/')[-1]} ({length})"
