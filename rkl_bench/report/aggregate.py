"""Aggregate metrics with uncertainty, after rliable (Agarwal et al., 2021).

Five seeds per dataset make a per-dataset mean ± std a weak basis for "A
beats B". Pooling runs across datasets helps, as long as the resampling
respects that each dataset is its own task:

* IQM: the interquartile mean of all per-run final scores (the mean of the
  middle 50 %, cutting ``int(0.25 n)`` runs from each end, as
  ``scipy.stats.trim_mean(x, 0.25)`` does), with a percentile confidence
  interval from a *stratified* bootstrap: runs are resampled with
  replacement within each dataset, never across.
* Probability of improvement of each TD3+RKL column (the paper's, and
  variants such as a tuned one, which are also compared with the paper's)
  over each baseline: per dataset
  P(X > Y) (ties count half; the Mann-Whitney U over n·m), averaged over the
  datasets both ran, with a CI from resampling both algorithms' runs
  independently within each dataset.

Scopes are the paper's two (D4RL groups, mixed groups) plus all of Table II,
and with a tuned column the mixed groups without its tuning set ("mixed,
held out"). A scope that selects exactly the runs of one before it (``all``
when an experiment ran only mixed data) is left out rather than printed twice
with a second bootstrap's CI.
Within a scope, IQMs are taken over the datasets every algorithm with runs
in that scope has finished, so the numbers compare like with like. Each
estimate draws from its own generator seeded by ``seed`` and its name, so
results do not depend on which other algorithms are present.
"""

from __future__ import annotations

import csv
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rkl_bench.report.algos import OURS, algo_label, is_ours
from rkl_bench.report.datasets import D4RL_GROUPS, GROUPS, MIXED_GROUPS
from rkl_bench.report.render import Cell, Table
from rkl_bench.report.table2 import Cells
from rkl_bench.report.tuning_sets import TuningSets, tuned_anywhere

SCOPES = (("D4RL", D4RL_GROUPS), ("mixed", MIXED_GROUPS), ("all", GROUPS))
DEFAULT_REPS = 2000
CONFIDENCE = 0.95
CSV_COLUMNS = ("metric", "scope", "algo", "baseline", "estimate", "ci_low", "ci_high", "n_datasets", "n_runs", "reps", "seed")


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean along the last axis (``scipy.stats.trim_mean(x, 0.25)``)."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64), axis=-1)
    n = ordered.shape[-1]
    cut = int(0.25 * n)
    return ordered[..., cut:n - cut].mean(axis=-1)


def stratified_bootstrap(strata: Sequence[np.ndarray], statistic: Callable[[np.ndarray], np.ndarray],
                         reps: int, rng: np.random.Generator) -> np.ndarray:
    """``statistic`` of ``reps`` resamples ``(reps, N)``, each stratum resampled within itself."""
    draws = [s[rng.integers(0, len(s), size=(reps, len(s)))] for s in strata]
    return statistic(np.concatenate(draws, axis=1))


def improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 over the last two axes' pairs: ``x (..., n)``, ``y (..., m)``."""
    diff = x[..., :, None] - y[..., None, :]
    return (diff > 0).mean(axis=(-2, -1)) + 0.5 * (diff == 0).mean(axis=(-2, -1))


def probability_of_improvement(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], reps: int,
                               rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Mean over datasets of P(X > Y), and its ``reps`` bootstrap replicates."""
    point = float(np.mean([improvement(x, y) for x, y in zip(xs, ys)]))
    boot = np.zeros(reps)
    for x, y in zip(xs, ys):
        bx = x[rng.integers(0, len(x), size=(reps, len(x)))]
        by = y[rng.integers(0, len(y), size=(reps, len(y)))]
        boot += improvement(bx, by)
    return point, boot / len(xs)


@dataclass(frozen=True)
class Estimate:
    metric: str
    """``iqm`` or ``poi`` (probability of improvement of TD3+RKL over ``baseline``)."""
    scope: str
    algo: str
    baseline: str
    estimate: float
    low: float
    high: float
    n_datasets: int
    n_runs: int


def aggregate_metrics(cells: Cells, algos: Sequence[str], reps: int = DEFAULT_REPS, seed: int = 0,
                      tuned_on: TuningSets | None = None) -> list[Estimate]:
    """IQM per algorithm and each TD3+RKL column's probability of improvement, per scope (see the
    module doc). With ``tuned_on`` (:mod:`.tuning_sets`), a scope ``mixed, held out`` leaves every
    tuning set's datasets out, so a tuned column is also judged on data it was not tuned on."""
    finals = {(c.algo, c.dataset): np.asarray(c.finals) for c in cells.values() if c.n and c.dataset.in_table2}
    scopes = [(scope, groups, False) for scope, groups in SCOPES]
    if tuned_on:
        scopes.insert(2, (HELD_OUT_SCOPE, MIXED_GROUPS, True))
    estimates: list[Estimate] = []
    selections: list[dict[str, set]] = []
    for scope, groups, held_out in scopes:
        by_algo = {a: {k for (b, k) in finals if b == a and k.group in groups
                       and not (held_out and tuned_anywhere(tuned_on or {}, k.name))} for a in algos}
        ran = [a for a in algos if by_algo[a]]
        if not ran or by_algo in selections:
            continue  # (a scope holding exactly an earlier one's runs would repeat its rows)
        selections.append(by_algo)
        common = sorted(set.intersection(*(by_algo[a] for a in ran)))
        for algo in ran if common else ():
            strata = [finals[(algo, k)] for k in common]
            boot = stratified_bootstrap(strata, iqm, reps, _rng(seed, "iqm", scope, algo))
            estimates.append(_estimate("iqm", scope, algo, "", float(iqm(np.concatenate(strata))), boot, strata, len(common)))
        for ours, baseline in comparisons(ran):
            shared = sorted(by_algo[ours] & by_algo[baseline])
            if not shared:
                continue
            xs, ys = [finals[(ours, k)] for k in shared], [finals[(baseline, k)] for k in shared]
            # (the paper's column keeps the generator name it always had: its numbers do not move)
            name = ("poi", scope, baseline) if ours == OURS else ("poi", scope, baseline, ours)
            point, boot = probability_of_improvement(xs, ys, reps, _rng(seed, *name))
            estimates.append(_estimate("poi", scope, ours, baseline, point, boot, xs + ys, len(shared)))
    return estimates


HELD_OUT_SCOPE = "mixed, held out"
"""The mixed groups without any tuned column's tuning set."""


def comparisons(algos: Sequence[str]) -> list[tuple[str, str]]:
    """``(X, Y)`` pairs for P(X > Y): every TD3+RKL column (the paper's and variants such as
    ``td3_rkl@tuned``) against every other learner, then each variant against the paper's TD3+RKL."""
    ours = [a for a in algos if is_ours(a)]
    others = [a for a in algos if not is_ours(a)]
    pairs = [(x, y) for x in ours for y in others]
    if OURS in ours:
        pairs += [(x, OURS) for x in ours if x != OURS]
    return pairs


def _rng(seed: int, *name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("/".join(name).encode())])


def _estimate(metric: str, scope: str, algo: str, baseline: str, point: float, boot: np.ndarray,
              runs: Sequence[np.ndarray], n_datasets: int) -> Estimate:
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return Estimate(metric, scope, algo, baseline, point, float(low), float(high),
                    n_datasets, sum(len(r) for r in runs))


def aggregate_tables(estimates: Sequence[Estimate]) -> list[Table]:
    """An IQM table and a probability-of-improvement table (either left out when empty)."""
    ci = f"{CONFIDENCE:.0%} CI"
    tables = []
    iqms = [e for e in estimates if e.metric == "iqm"]
    if iqms:
        rows = tuple((Cell(e.scope), Cell(algo_label(e.algo)), Cell(f"{e.estimate:.1f} [{e.low:.1f}, {e.high:.1f}]"),
                      Cell(str(e.n_datasets)), Cell(str(e.n_runs))) for e in iqms)
        tables.append(Table(f"IQM of final normalised scores, {ci} from a stratified bootstrap over runs",
                            ("Scope", "Algorithm", f"IQM [{ci}]", "datasets", "runs"), (rows,),
                            ("Per scope, only datasets every algorithm with runs there has finished; a scope with "
                             "exactly the runs of one above it is not repeated.",)))
    pois = [e for e in estimates if e.metric == "poi"]
    if pois:
        rows = tuple((Cell(e.scope), Cell(f"{algo_label(e.algo)} vs {algo_label(e.baseline)}"),
                      Cell(f"{e.estimate:.2f} [{e.low:.2f}, {e.high:.2f}]"), Cell(str(e.n_datasets)), Cell(str(e.n_runs)))
                     for e in pois)
        tables.append(Table(f"Probability of improvement P(X > Y), averaged over datasets, {ci}",
                            ("Scope", "Comparison", f"P(X > Y) [{ci}]", "datasets", "runs"), (rows,),
                            ("0.5 means no difference; ties count half.", *_degenerate_note(pois))))
    return tables


def _degenerate_note(pois: Sequence[Estimate]) -> tuple[str, ...]:
    """A footnote for intervals of zero width, which read like a bug but are not: on every dataset each
    run of one learner is above (or each below, or all tie with) each run of the other, so no resample of
    the runs moves the estimate."""
    if not any(e.low == e.high for e in pois):
        return ()
    return ("An interval of zero width is exact, not an error: on every dataset of its comparison all runs "
            "of one learner score above all runs of the other (or all tie), so no bootstrap resample changes it.",)


def write_aggregate_csv(path: Path, estimates: Sequence[Estimate], reps: int, seed: int) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for e in estimates:
            writer.writerow({"metric": e.metric, "scope": e.scope, "algo": e.algo, "baseline": e.baseline,
                             "estimate": f"{e.estimate:.6g}", "ci_low": f"{e.low:.6g}", "ci_high": f"{e.high:.6g}",
                             "n_datasets": e.n_datasets, "n_runs": e.n_runs, "reps": reps, "seed": seed})
