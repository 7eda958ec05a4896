"""Figures, each as PNG (for the page) and PDF (for a paper).

Matplotlib is used through ``Figure`` objects only, never ``pyplot``: no GUI
backend is touched, nothing global changes, and the report can run in a
headless job or inside another program.

* Learning curves, one figure per Table II group: per dataset, the mean
  normalised score over seeds against gradient steps, shaded ± one std over
  seeds, one line per algorithm. Runs still training are drawn too (a curve
  shows progress, unlike a final score); at each step the mean is over the
  seeds evaluated there.
* Fig. 4: histograms of lambda(s) per dataset component (see ``lambdas.py``).
* IQM with its confidence interval per scope and algorithm.
* The toy figures (Fig. 2, Fig. 3), copied in when present.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from rkl_bench.layout import FIGURES_DIR
from rkl_bench.report.aggregate import Estimate
from rkl_bench.report.algos import algo_label
from rkl_bench.report.lambdas import LambdaSet
from rkl_bench.report.results import Run
from rkl_bench.report.table2 import Section, row_label

PANEL = (4.0, 3.0)


@dataclass(frozen=True)
class FigureFile:
    """A figure's caption and its files, relative to the report directory."""

    title: str
    png: str
    pdf: str | None


def _save(fig: Figure, out_dir: Path, stem: str, title: str) -> FigureFile:
    (out_dir / FIGURES_DIR).mkdir(exist_ok=True)
    png, pdf = f"{FIGURES_DIR}/{stem}.png", f"{FIGURES_DIR}/{stem}.pdf"
    fig.savefig(out_dir / png, dpi=100)
    fig.savefig(out_dir / pdf, metadata={"CreationDate": None})  # no timestamp: same input, same file
    return FigureFile(title, png, pdf)


def _colours(algos: Sequence[str]) -> dict[str, str]:
    """The same colour for an algorithm in every figure: its column position in tab10."""
    return {algo: f"C{i % 10}" for i, algo in enumerate(algos)}


def learning_curves(runs: Sequence[Run], sections: Sequence[Section], algos: Sequence[str], out_dir: Path) -> list[FigureFile]:
    colours = _colours(algos)
    files = []
    for section in sections:
        keys = [k for k in section.keys if any(r.dataset == k for r in runs)]
        if not keys:
            continue
        cols = min(3, len(keys))
        rows = -(-len(keys) // cols)
        fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, key in zip(axes, keys):
            for algo in algos:
                mine = [r for r in runs if r.dataset == key and r.algo == algo]
                if mine:
                    _curve(ax, mine, f"{algo_label(algo)} (n={len(mine)})", colours[algo])
            ax.set_title(row_label(key), fontsize=10)
            ax.set_xlabel("gradient steps")
            ax.set_ylabel("normalised score")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in axes[len(keys):]:
            ax.set_visible(False)
        fig.tight_layout()
        slug = section.title.lower()
        files.append(_save(fig, out_dir, f"curves_{slug}", f"Learning curves: {section.title}"))
    return files


def _curve(ax, runs: Sequence[Run], label: str, colour: str) -> None:
    by_step: dict[int, list[float]] = {}
    for run in runs:
        for e in run.evaluations:
            by_step.setdefault(e.step, []).append(e.score)
    steps = np.array(sorted(by_step))
    mean = np.array([np.mean(by_step[s]) for s in steps])
    std = np.array([np.std(by_step[s]) for s in steps])
    ax.plot(steps, mean, color=colour, label=label)
    ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)


def lambda_histograms(sets: Sequence[LambdaSet], out_dir: Path) -> list[FigureFile]:
    files = []
    for index, item in enumerate(sets):
        fig = Figure(figsize=(5.0, 3.4))
        ax = fig.subplots()
        for name, (edges, counts) in item.components.items():
            ax.stairs(counts, edges, fill=True, alpha=0.6, label=f"{name} ({int(counts.sum())} states)")
        ax.set_xlabel("λ(s)")
        ax.set_ylabel("count")
        ax.set_title(f"{row_label(item.dataset)}, {algo_label(item.algo)} seed {item.seed}", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        files.append(_save(fig, out_dir, f"lambdas_{index:02d}", f"λ(s) histogram (Fig. 4): {item.dataset.name}"))
    return files


def iqm_plot(estimates: Sequence[Estimate], algos: Sequence[str], out_dir: Path) -> FigureFile | None:
    iqms = [e for e in estimates if e.metric == "iqm"]
    if not iqms:
        return None
    colours = _colours(algos)
    scopes = list(dict.fromkeys(e.scope for e in iqms))
    fig = Figure(figsize=(3.6 * len(scopes), 0.5 * max(len([e for e in iqms if e.scope == s]) for s in scopes) + 1.2))
    axes = fig.subplots(1, len(scopes), squeeze=False).ravel()
    for ax, scope in zip(axes, scopes):
        mine = [e for e in iqms if e.scope == scope]
        for y, e in enumerate(mine):
            ax.errorbar(e.estimate, y, xerr=[[e.estimate - e.low], [e.high - e.estimate]], fmt="o",
                        color=colours.get(e.algo, "k"), capsize=4)
        ax.set_yticks(range(len(mine)), [algo_label(e.algo) for e in mine])
        ax.set_ylim(-0.6, len(mine) - 0.4)
        ax.set_title(f"IQM, {scope}", fontsize=10)
        ax.set_xlabel("normalised score")
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return _save(fig, out_dir, "iqm", "IQM with 95% stratified-bootstrap CIs")


def copy_toys(toys_dir: Path | None, out_dir: Path) -> list[FigureFile]:
    """The toy figures' PNGs (and a PDF of the same name, if any), copied beside the page."""
    if toys_dir is None or not toys_dir.is_dir():
        return []
    files = []
    for png in sorted(toys_dir.glob("*.png")):
        target = out_dir / FIGURES_DIR / "toys"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(png, target / png.name)
        pdf = png.with_suffix(".pdf")
        if pdf.is_file():
            shutil.copy2(pdf, target / pdf.name)
        rel = f"{FIGURES_DIR}/toys/{png.name}"
        files.append(FigureFile(f"Toy: {png.stem}", rel, rel[:-4] + ".pdf" if pdf.is_file() else None))
    return files
