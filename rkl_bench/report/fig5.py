"""Fig. 5: behaviour cloning with each BC signal alone, on expert datasets.

The paper's Fig. 5 trains a policy with one BC signal of Table I and no RL
signal, and plots the normalised score against training steps per expert
dataset, one curve per signal. Here the four signals are the registry's
``bc_weighted_rkl`` (TD3+RKL), ``bc_mse`` (TD3+BC), ``bc_forward_kl`` (CDC)
and ``bc_reverse_kl`` (BRAC) (``rkl_bench/algos/bc_signals.py``;
``tune_configs/fig5.yaml`` runs them).

One panel per dataset any of these learners ran on (expert datasets in the
paper, but any dataset is drawn), in Table II's row order: mean normalised
score over seeds against gradient steps, shaded ± one std over seeds, the
same way as the learning curves. The figure is drawn only when the
experiment holds runs of at least one of the four learners.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from rkl_bench.report.figures import PANEL, FigureFile, _curve, _save
from rkl_bench.report.results import Run
from rkl_bench.report.table2 import row_label

FIG5_ALGOS = ("bc_weighted_rkl", "bc_mse", "bc_forward_kl", "bc_reverse_kl")
"""The four BC signals, in the order of the paper's Sec. V-C."""
FIG5_LABELS = {
    "bc_weighted_rkl": "weighted RKL (TD3+RKL)",
    "bc_mse": "MSE (TD3+BC)",
    "bc_forward_kl": "forward KL (CDC)",
    "bc_reverse_kl": "reverse KL (BRAC)",
}
FIG5_TITLE = "Behaviour cloning with each BC signal (Fig. 5)"


def fig5_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs of the four BC-signal learners."""
    return [r for r in runs if r.algo in FIG5_ALGOS]


def bc_signal_figures(runs: Sequence[Run], out_dir: Path) -> list[FigureFile]:
    """Fig. 5 as one figure (a panel per dataset), or no figure when no run used a BC-signal learner."""
    mine = fig5_runs(runs)
    if not mine:
        return []
    datasets = sorted({r.dataset for r in mine})
    cols = min(3, len(datasets))
    rows = -(-len(datasets) // cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, key in zip(axes, datasets):
        for index, algo in enumerate(FIG5_ALGOS):
            group = [r for r in mine if r.dataset == key and r.algo == algo]
            if group:
                _curve(ax, group, f"{FIG5_LABELS[algo]} (n={len(group)})", f"C{index}")
        ax.set_title(row_label(key), fontsize=10)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    fig.tight_layout()
    return [_save(fig, out_dir, "fig5_bc_signals", "BC signals alone, normalised score per dataset (Fig. 5)")]
