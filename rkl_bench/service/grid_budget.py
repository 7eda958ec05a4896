"""What a grid has left to do, printed before it starts.

A grid such as ``tune_configs/table2_mixtures.yaml`` spans sessions and
machines; whoever resumes it wants to know what is left and about how long
it takes before committing a machine to it. Two lines:

* the work: seed runs left of the grid's total, and the seed-steps of
  training they need;
* with a results archive (``--resume results/NAME``), the time: each
  learner's rate is the median over its archived seeds of
  ``seeds_per_trial x steps / wall_time`` at the seed's last row (a trial's
  wall clock, evaluation and set-up included, K seeds of a stack counted
  once each), and the time left is the work over those rates, over the
  trials a local Ray runs at once (CPUs / ``resources.cpus``). A column the
  archive has not timed takes its learner's rate under another label
  (``td3_rkl@tuned`` from ``td3_rkl``), else it is left out and the time is
  printed as a lower bound: BC's rate says nothing of TD3's. The rates are
  those of the machines that made the archive: on another machine they are
  a guide, not a promise (``docs/speed.md``: 2x between our machines).
"""

from __future__ import annotations

import math
import os
import statistics
from typing import Collection, Sequence

from rkl_bench.service.config import ExperimentConfig
from rkl_bench.service.grid_cells import grid_cells
from rkl_bench.training.archive import Archive, TrialKey


def archived_rates(archive: Archive) -> dict[str, float]:
    """Seed-steps per second of one trial, per learner column, from the archive's finished seeds."""
    samples: dict[str, list[float]] = {}
    for (algo, _dataset, _seed), trial in archive.trials.items():
        timed = [row for row in trial.rows if row.get("wall_time") and row.get("step")]
        if not timed:
            continue
        last = max(timed, key=lambda row: row["step"])
        stacked = int(last.get("seeds_per_trial", 1) or 1)
        samples.setdefault(algo, []).append(stacked * float(last["step"]) / float(last["wall_time"]))
    return {algo: statistics.median(values) for algo, values in samples.items()}


def concurrent_trials(config: ExperimentConfig, address: str | None, cpus: int | None = None) -> int | None:
    """Trials a local Ray runs at once: its CPUs (``cpus``, else the machine's) over each trial's;
    ``None`` on a cluster (unknown here)."""
    if address is not None:
        return None
    return max(1, int((cpus or os.cpu_count() or 1) // config.resources.cpus))


def budget_lines(config: ExperimentConfig, specs: Sequence[str], skip: Collection[TrialKey],
                 rates: dict[str, float] | None, slots: int | None) -> list[str]:
    """The lines printed before the grid starts (see the module doc)."""
    cells = grid_cells(config, specs)
    total = len(cells)
    left_by_algo = {algo: 0 for algo in config.algorithms}
    for algo, _spec, _seed in cells - set(skip):
        left_by_algo[algo] += 1
    left = sum(left_by_algo.values())
    work = left * config.steps
    group = f", {config.seeds_per_trial} seeds per trial" if config.seeds_per_trial > 1 else ""
    shape = " x ".join(_count(n, what) for n, what in
                       ((len(config.algorithms), "learner"), (len(specs), "dataset"), (len(config.seeds), "seed")))
    lines = [f"grid: {left} of {total} seed runs to run ({shape}{group}), {_millions(work)} seed-steps of training"]
    if rates is None or left == 0:
        return lines
    if not rates:
        return lines + ["time: the archive holds no timed rows, so no estimate"]
    timed = {algo: rate_of(algo, rates) for algo, n in left_by_algo.items() if n}
    untimed = [algo for algo, rate in timed.items() if rate is None]
    if len(untimed) == len(timed):
        return lines + [f"time: the archive has not timed {', '.join(untimed)} (nor its learner under another label), "
                        "so no estimate"]
    seconds = sum(left_by_algo[algo] * config.steps / rate for algo, rate in timed.items() if rate is not None)
    shown = ", ".join(f"{algo} {rate:.0f}" + ("" if algo in rates else f" ({_borrowed_from(algo, rates)}'s)")
                      for algo, rate in timed.items() if rate is not None)
    bound = "at least " if untimed else "about "
    line = f"time at the archive's rates (seed-steps/s per trial: {shown}): {bound}{seconds / 3600:.1f} trial-hours"
    if slots is not None:
        at_once = min(slots, math.ceil(left / config.seeds_per_trial))  # fewer trials left than slots: they are the bound
        line += f", {seconds / 3600 / at_once:.1f} h with {at_once} trial(s) at a time"
    if untimed:
        line += f" (not counted: {', '.join(untimed)}, which the archive has not timed yet)"
    return lines + [line + "; rates are the archive machines', a guide elsewhere"]


def rate_of(algo: str, rates: dict[str, float]) -> float | None:
    """``algo``'s archived rate, else that of its learner under another label (``td3_rkl@tuned`` takes
    ``td3_rkl``'s, the slowest of them): the same networks and update, other hyper-parameter values."""
    if algo in rates:
        return rates[algo]
    base = algo.split("@", 1)[0]
    same = [rate for name, rate in rates.items() if name.split("@", 1)[0] == base]
    return min(same) if same else None


def _borrowed_from(algo: str, rates: dict[str, float]) -> str:
    """The label whose rate :func:`rate_of` gives ``algo`` when it has none of its own."""
    rate = rate_of(algo, rates)
    return next(name for name, value in rates.items() if value == rate and name.split("@", 1)[0] == algo.split("@", 1)[0])


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n:,}"
