"""Report: an experiment directory -> Table II, the paper beside it, aggregate
metrics, figures and one HTML page. Reads result rows only; never re-runs.

``build_report`` is the one entry point (the ``rkl-bench report`` verb calls
it). The modules each do one job: ``results`` reads rows, ``scores`` defines
the final score, ``table2`` / ``compare`` / ``aggregate`` build tables,
``render`` writes them as Markdown / LaTeX / HTML, ``figures`` draws,
``html`` assembles the page, ``output`` makes the write all-or-nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import LAMBDAS_FILE
from rkl_bench.report.aggregate import DEFAULT_REPS, aggregate_metrics, aggregate_tables, write_aggregate_csv
from rkl_bench.report.algos import column_order
from rkl_bench.report.compare import build_comparison, split_by_learner, write_comparison_csv
from rkl_bench.report.fig5 import FIG5_TITLE, bc_signal_figures
from rkl_bench.report.figures import copy_toys, iqm_plot, lambda_histograms, learning_curves
from rkl_bench.report.html import PageSection, render_page
from rkl_bench.report.lambdas import find_lambdas
from rkl_bench.report.output import atomic_dir, display_path
from rkl_bench.report.paper import load_paper_table
from rkl_bench.report.render import latex_document, to_markdown
from rkl_bench.report.results import load_experiments
from rkl_bench.report.scores import PAPER_K, PAPER_SEEDS, FinalRule, cell_stats
from rkl_bench.report.smoke import smoke_notice
from rkl_bench.report.table2 import build_table2, layout, write_csv

__all__ = ["ReportPaths", "build_report"]


@dataclass(frozen=True)
class ReportPaths:
    out_dir: Path
    index_html: Path
    table2_csv: Path
    table2_tex: Path
    table2_md: Path
    comparison_csv: Path
    aggregate_csv: Path
    figures: tuple[Path, ...]
    warnings: tuple[str, ...] = ()
    """Result lines that could not be read (each names its file and line); also on the page."""


def build_report(
    experiment_dir: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    *,
    final_mode: str = "last-evals",
    k: int = PAPER_K,
    expected_seeds: int = PAPER_SEEDS,
    toys_dir: str | Path | None = None,
    bootstrap_reps: int = DEFAULT_REPS,
    seed: int = 0,
    strict: bool = False,
    tuned_on: Mapping[str, frozenset[str]] | None = None,
    smoke_of: str | Path | None = None,
) -> ReportPaths:
    """Write the report of ``experiment_dir`` to ``out_dir`` (replacing an older report there).

    ``experiment_dir`` may be several experiment directories and results archives,
    merged into one experiment (:func:`~rkl_bench.report.results.load_experiments`).

    ``final_mode`` / ``k`` define the final score (see ``rkl_bench.report.scores``),
    ``expected_seeds`` the n a complete cell has, ``bootstrap_reps`` / ``seed``
    the confidence intervals. Raises :class:`~rkl_bench.errors.RklBenchError`
    on bad input, leaving ``out_dir`` untouched; with ``strict``, an unreadable
    result line (a torn last line, otherwise a warning) is such an error too.
    ``tuned_on`` (column -> the datasets its setting was tuned on,
    :mod:`rkl_bench.report.tuning_sets`) marks that column's in-sample cells and
    adds the held-out average. ``smoke_of`` (a report folder) puts a line at the top of the page
    saying this is a smoke budget, linking that report (:mod:`rkl_bench.report.smoke`).
    """
    rule = FinalRule(final_mode, k)
    experiment = load_experiments(experiment_dir)
    if strict and experiment.warnings:
        raise RklBenchError(
            f"--strict: {len(experiment.warnings)} unreadable result line(s), no report written: "
            + "; ".join(experiment.warnings)
        )
    cells = cell_stats(experiment.runs, rule, expected_seeds)
    algos = column_order({c.algo for c in cells.values()})
    paper = load_paper_table()
    table2 = build_table2(cells, algos, rule, expected_seeds, tuned_on)
    comparison = build_comparison(cells, algos, paper)
    estimates = aggregate_metrics(cells, algos, reps=bootstrap_reps, seed=seed, tuned_on=tuned_on)
    agg_tables = aggregate_tables(estimates)
    lambda_sets = find_lambdas(experiment.runs)
    out = Path(out_dir).expanduser()

    with atomic_dir(out) as tmp:
        write_csv(tmp / "table2.csv", cells, algos, expected_seeds)
        (tmp / "table2.md").write_text(to_markdown(table2), encoding="utf-8")
        (tmp / "table2.tex").write_text(latex_document([table2]), encoding="utf-8")
        write_comparison_csv(tmp / "paper_comparison.csv", cells, algos, paper)
        downloads = ["table2.csv", "table2.md", "table2.tex", "paper_comparison.csv"]
        if comparison is not None:
            (tmp / "paper_comparison.md").write_text(to_markdown(comparison), encoding="utf-8")
            (tmp / "paper_comparison.tex").write_text(latex_document([comparison]), encoding="utf-8")
            downloads += ["paper_comparison.md", "paper_comparison.tex"]
        write_aggregate_csv(tmp / "aggregate.csv", estimates, bootstrap_reps, seed)
        (tmp / "aggregate.md").write_text("\n".join(to_markdown(t) for t in agg_tables) or "No aggregate metrics.\n", encoding="utf-8")
        downloads += ["aggregate.csv", "aggregate.md"]

        curves = learning_curves(experiment.runs, layout({c.dataset for c in cells.values()}), algos, tmp)
        iqm_fig = iqm_plot(estimates, algos, tmp)
        lambda_figs = lambda_histograms(lambda_sets, tmp)
        fig5_figs = bc_signal_figures(experiment.runs, tmp)  # only when BC-signal learners ran
        toys = copy_toys(Path(toys_dir).expanduser() if toys_dir else None, tmp)
        sections = [
            PageSection("Table II", (table2,)),
            PageSection("Next to the paper", split_by_learner(comparison) if comparison else (),
                        notes=() if comparison else ("No dataset of this experiment is in Table II.",)),
            PageSection("Aggregate metrics", tuple(agg_tables), (iqm_fig,) if iqm_fig else (),
                        notes=() if agg_tables else ("Not enough finished runs on Table II datasets for aggregate metrics.",)),
            PageSection("Learning curves", figures=tuple(curves)),
            *([PageSection(FIG5_TITLE, figures=tuple(fig5_figs))] if fig5_figs else []),
            PageSection("Per-state BC weights λ(s) (Fig. 4)", figures=tuple(lambda_figs), notes=() if lambda_figs else (
                f"No run saved {LAMBDAS_FILE} (one array of λ(s) per dataset component, beside its result rows), "
                "so Fig. 4 is not drawn.",)),
            PageSection("Toy experiments (Fig. 2, Fig. 3)", figures=tuple(toys), notes=() if toys else (
                "No toy figures given (pass --toys DIR, e.g. reports/toys after `rkl-bench toy fig2` / `fig3`).",)),
        ]
        facts = {
            "experiment": ", ".join(display_path(p) for p in experiment.inputs),
            "result files": f"{len(experiment.files)} ({len(experiment.runs)} runs)",
            "final score": rule.describe(),
            "expected seeds": str(expected_seeds),
            "bootstrap": f"{bootstrap_reps} resamples, seed {seed}",
            **({"tuned on": "; ".join(f"{a}: {', '.join(sorted(n))}" for a, n in tuned_on.items())} if tuned_on else {}),
            **({"unreadable result lines": "; ".join(experiment.warnings)} if experiment.warnings else {}),
        }
        notice = None if smoke_of is None else smoke_notice(Path(smoke_of), out)
        title = f"rkl_bench report: {', '.join(p.resolve().name for p in experiment.inputs)}"
        (tmp / "index.html").write_text(render_page(title, facts, sections, downloads, notice), encoding="utf-8")
        figures = [f.png for f in curves + lambda_figs + toys + ([iqm_fig] if iqm_fig else []) + fig5_figs]

    return ReportPaths(out, out / "index.html", out / "table2.csv", out / "table2.tex", out / "table2.md",
                       out / "paper_comparison.csv", out / "aggregate.csv", tuple(out / f for f in figures),
                       experiment.warnings)
