"""Figures of a hyper-parameter search, each as PNG and PDF.

Plain data in (one :class:`SearchTrial` per Optuna trial, the parameter
importances), ``Figure`` objects out (no ``pyplot``, no Optuna, no Ray), so
the figures are the same whoever calls: ``rkl-bench tune`` draws them after
every session from the study's ``search_summary.json``
(:func:`draw_search_summary`).

* ``search_history``: each trial's objective against its number (pruned
  trials at their running score when stopped, marked apart), the best
  COMPLETE value so far as a step line; the initial points are ringed.
* ``search_importances``: parameter importances (Optuna's PED-ANOVA over
  COMPLETE trials, or in a staged search with too few of them over every
  trial's score at the first rung; computed by the caller), largest on top,
  with the number of trials they came from and, for a rung, its step.
* ``search_slices``: objective against each searched parameter (log axis
  for log-scale parameters), coloured by trial number, so where TPE went
  shows.
* ``search_intermediate``: the running score after each finished
  (dataset, seed) pair, or at each rung of a staged search, one line per
  trial: what early stopping compared.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from rkl_bench.layout import FIGURES_DIR, SEARCH_SUMMARY_FILE

PANEL = (4.0, 3.0)
COMPLETE, PRUNED = "COMPLETE", "PRUNED"


@dataclass(frozen=True)
class SearchTrial:
    number: int
    state: str
    """Optuna's state name: COMPLETE, PRUNED, FAIL, RUNNING, WAITING."""
    value: float | None
    params: Mapping[str, Any]
    intermediate: Mapping[int, float] = field(default_factory=dict)
    """Running score after ``k`` finished pairs."""
    initial_point: bool = False


@dataclass(frozen=True)
class SearchFigure:
    """A figure's caption and its files, relative to the output directory."""

    title: str
    png: str
    pdf: str


def write_search_figures(
    trials: Sequence[SearchTrial],
    importances: Mapping[str, float] | None,
    log_scale: Mapping[str, bool],
    out_dir: Path,
    title: str = "objective",
    importance_trials: int | None = None,
    clock: str = "pairs",
    importance_step: int | None = None,
) -> list[SearchFigure]:
    """Draw every figure the trials allow into ``out_dir/figures``; returns what was written.

    ``clock`` is what a trial's intermediate values count: ``pairs`` finished,
    or ``steps`` per pair (a staged search). ``log_scale`` names the searched parameters (in order) and whether each
    is searched on a log scale. No scored trial: no figure.
    """
    scored = [t for t in trials if _finite(t.value) and t.state in (COMPLETE, PRUNED)]
    if not scored:
        return []
    out_dir = Path(out_dir)
    files = [_history(scored, out_dir, title)]
    if importances:
        files.append(_importances(importances, out_dir, importance_trials, importance_step))
    files.append(_slices(scored, log_scale, out_dir, title))
    if any(t.intermediate for t in scored):
        files.append(_intermediate(scored, out_dir, title, clock))
    return files


def draw_search_summary(experiment_dir: Path) -> list[Path]:
    """Draw the figures of the search in ``experiment_dir`` from its ``search_summary.json``;
    returns the PNG paths (PDFs beside them)."""
    experiment_dir = Path(experiment_dir)
    summary = json.loads((experiment_dir / SEARCH_SUMMARY_FILE).read_text(encoding="utf-8"))
    trials = [
        SearchTrial(
            row["number"], row["state"], row["value"], row["params"],
            {int(k): v for k, v in row["intermediate"].items()}, row["initial_point"],
        )
        for row in summary["trials"]
    ]
    log_scale = {name: bool(spec.get("log", False)) for name, spec in summary["space"].items()}
    title = f"{summary['study_name']}: {summary['aggregate']} final normalised score"
    files = write_search_figures(
        trials, summary["importances"], log_scale, experiment_dir, title=title,
        importance_trials=summary["importances_from"] or None, clock=summary.get("clock", "pairs"),
        importance_step=summary.get("importances_at"),
    )
    return [experiment_dir / f.png for f in files]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _save(fig: Figure, out_dir: Path, stem: str, title: str) -> SearchFigure:
    (out_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    png, pdf = f"{FIGURES_DIR}/{stem}.png", f"{FIGURES_DIR}/{stem}.pdf"
    fig.savefig(out_dir / png, dpi=100)
    fig.savefig(out_dir / pdf, metadata={"CreationDate": None})  # no timestamp: same input, same file
    return SearchFigure(title, png, pdf)


def _history(trials: Sequence[SearchTrial], out_dir: Path, title: str) -> SearchFigure:
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    complete = [t for t in trials if t.state == COMPLETE]
    pruned = [t for t in trials if t.state == PRUNED]
    if complete:
        ax.scatter([t.number for t in complete], [t.value for t in complete], color="C0", s=22, label="complete", zorder=3)
        best, xs, ys = -math.inf, [], []
        for t in sorted(complete, key=lambda t: t.number):
            best = max(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", color="C3", label="best so far", zorder=2)
    if pruned:
        ax.scatter([t.number for t in pruned], [t.value for t in pruned], color="0.55", marker="x", s=22,
                   label="stopped early (running score)", zorder=3)
    initial = [t for t in trials if t.initial_point]
    if initial:
        ax.scatter([t.number for t in initial], [t.value for t in initial], facecolors="none", edgecolors="k", s=70,
                   label="initial point", zorder=4)
    ax.set_xlabel("trial")
    ax.set_ylabel(title, fontsize=9)
    ax.set_title("optimisation history", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "search_history", "Optimisation history")


def _importances(importances: Mapping[str, float], out_dir: Path, n_trials: int | None,
                 step: int | None = None) -> SearchFigure:
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(5.0, 0.5 + 0.45 * len(items) + 0.8), layout="constrained")
    ax = fig.subplots()
    ax.barh([name for name, _ in items], [value for _, value in items], color="C0")
    for i, (_, value) in enumerate(items):
        ax.text(value, i, f" {value:.2f}", va="center", fontsize=8)
    ax.set_xlabel("importance (share of the objective's variation)")
    ax.set_xlim(0, max(1.0, max(v for _, v in items) * 1.15))
    if step is None:
        source = f" ({n_trials} complete trials)" if n_trials else ""
    else:  # over every trial's running score at the first rung of a staged search
        source = f"\nof the score at {step:,} steps ({n_trials} trials, pruned ones included)"
    ax.set_title(f"hyper-parameter importances{source}", fontsize=10)
    return _save(fig, out_dir, "search_importances", "Hyper-parameter importances")


def _slices(trials: Sequence[SearchTrial], log_scale: Mapping[str, bool], out_dir: Path, title: str) -> SearchFigure:
    names = list(log_scale) or sorted({n for t in trials for n in t.params})
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    numbers = [t.number for t in trials]
    low, high = min(numbers), max(max(numbers), min(numbers) + 1)
    for ax, name in zip(axes, names):
        mine = [t for t in trials if name in t.params]
        values = [t.params[name] for t in mine]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            xs: list[Any] = values
            if log_scale.get(name):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels of a short decade overlap
        else:
            labels = sorted({str(v) for v in values})
            xs = [labels.index(str(v)) for v in values]
            ax.set_xticks(range(len(labels)), labels)
        colours = [t.number for t in mine]
        markers = {COMPLETE: "o", PRUNED: "x"}
        for state, marker in markers.items():
            idx = [i for i, t in enumerate(mine) if t.state == state]
            if idx:
                ax.scatter([xs[i] for i in idx], [mine[i].value for i in idx], c=[colours[i] for i in idx],
                           cmap="viridis", vmin=low, vmax=high, marker=marker, s=22)
        ax.set_xlabel(name)
        ax.set_ylabel(title, fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle("objective against each hyper-parameter (colour: trial number; x: stopped early)", fontsize=10)
    return _save(fig, out_dir, "search_slices", "Objective against each hyper-parameter")


def _intermediate(trials: Sequence[SearchTrial], out_dir: Path, title: str, clock: str = "pairs") -> SearchFigure:
    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    for t in trials:
        if not t.intermediate:
            continue
        steps = sorted(t.intermediate)
        style = dict(color="C0", alpha=0.7) if t.state == COMPLETE else dict(color="0.6", ls="--", alpha=0.8)
        ax.plot(steps, [t.intermediate[k] for k in steps], marker=".", lw=1, **style)
    ax.plot([], [], color="C0", label="complete")
    ax.plot([], [], color="0.6", ls="--", label="stopped early")
    ax.set_xlabel("gradient steps on every dataset" if clock == "steps" else "(dataset, seed) pairs finished")
    ax.set_ylabel(f"running {title}", fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("running score per trial (what early stopping compares)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "search_intermediate", "Running score per trial")
