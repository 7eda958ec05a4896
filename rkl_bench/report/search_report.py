"""The report of a hyper-parameter search, next to its reference points.

``rkl-bench report SEARCH_DIR --references EXPERIMENT_DIR ...`` turns what
``rkl-bench tune`` left in an experiment directory (``search_summary.json``,
``trials.csv``, ``best_config.yaml``, ``figures/``) into a self-contained
report directory with an ``index.html``. Reference experiments (grids run by
``rkl-bench run`` on the search's datasets, seeds and budget: the paper's
defaults, TD3+BC) are scored by the search's own objective, so the page
compares like with like:

* a pair's score: the mean normalised score of its last ``final_evals``
  evaluations (an evaluation every ``evaluation.interval`` steps);
* the objective: the ``aggregate`` (mean or median) of the pairs' scores.

A reference run that did not reach the search's step budget, or a dataset a
reference lacks, is named on the page and gets no objective: a half-trained
reference would flatter the search.

Plain data in (JSON, CSV, result rows through :mod:`rkl_bench.report.results`),
files out; nothing here imports Ray or Optuna.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rkl_bench.errors import RklBenchError
from rkl_bench.layout import BEST_CONFIG_FILE, SEARCH_RECORD_FILE, SEARCH_SUMMARY_FILE, TRIALS_FILE
from rkl_bench.report.algos import algo_label
from rkl_bench.report.figures import FigureFile
from rkl_bench.report.html import PageSection, render_page
from rkl_bench.report.output import atomic_dir, display_path
from rkl_bench.report.render import MISSING, Cell, Table, to_markdown
from rkl_bench.report.results import load_experiment

COPIED = (BEST_CONFIG_FILE, TRIALS_FILE, SEARCH_SUMMARY_FILE, SEARCH_RECORD_FILE)
FIGURE_STEMS = (
    ("search_history", "Objective per trial (best so far as a line)"),
    ("search_importances", "Hyper-parameter importances"),
    ("search_slices", "Objective against each hyper-parameter"),
    ("search_intermediate", "Running score per trial (what early stopping compared)"),
)


@dataclass(frozen=True)
class ScoredSetting:
    """One row of the comparison: a search trial or a reference, scored by the search's rule."""

    label: str
    scores: dict[str, float | None]
    """Pair label (``score:<dataset>[@seed]``) -> the pair's score; None where missing."""
    objective: float | None
    note: str = ""


def build_search_report(
    search_dir: str | Path,
    out_dir: str | Path,
    references: Sequence[str | Path] = (),
    *,
    display_root: str | Path | None = None,
) -> Path:
    """Write the report of the search in ``search_dir`` to ``out_dir`` (replacing an older
    one there) and return its ``index.html``. ``references`` are experiment directories
    scored by the search's objective. Paths on the page are relative to ``display_root``
    (default: the current directory) when they lie under it."""
    search_dir = Path(search_dir).expanduser()
    summary = read_search_summary(search_dir)
    labels: list[str] = list(summary["pair_labels"])
    root = Path(display_root or Path.cwd()).resolve()
    settings = [_best_setting(summary, labels)] if summary.get("best") else []
    settings += [s for ref in references for s in reference_settings(ref, summary, labels)]
    out = Path(out_dir).expanduser()
    with atomic_dir(out) as tmp:
        for name in COPIED:
            if (search_dir / name).is_file():
                shutil.copyfile(search_dir / name, tmp / name)
        if (tmp / BEST_CONFIG_FILE).is_file():
            text = (tmp / BEST_CONFIG_FILE).read_text(encoding="utf-8")
            (tmp / BEST_CONFIG_FILE).write_text(relocated_header(text, out / BEST_CONFIG_FILE, root), encoding="utf-8")
        figures = []
        for stem, title in FIGURE_STEMS:
            png = search_dir / "figures" / f"{stem}.png"
            if png.is_file():
                (tmp / "figures").mkdir(exist_ok=True)
                shutil.copyfile(png, tmp / "figures" / png.name)
                pdf = png.with_suffix(".pdf")
                if pdf.is_file():
                    shutil.copyfile(pdf, tmp / "figures" / pdf.name)
                figures.append(FigureFile(title, f"figures/{png.name}", f"figures/{pdf.name}" if pdf.is_file() else None))
        comparison = comparison_table(settings, labels, summary)
        trials = trials_table(summary, labels)
        (tmp / "comparison.md").write_text(to_markdown(comparison), encoding="utf-8")
        (tmp / "trials.md").write_text(to_markdown(trials), encoding="utf-8")
        counts = _counts(summary["trials"])
        facts = {
            "search": _shown(search_dir, root),
            "references": ", ".join(_shown(Path(r), root) for r in references) or "none",
            "study": str(summary.get("study_name")),
            "objective": str(summary.get("objective")),
            "trials": ", ".join(f"{n} {state.lower()}" for state, n in counts.items()) or "none",
        }
        if summary.get("commit"):
            facts["commit"] = str(summary["commit"])
        sections = [
            PageSection("The best setting against the references", (comparison,), notes=tuple(
                s.note for s in settings if s.note)),
            PageSection("Every trial", (trials,)),
            PageSection("Figures", figures=tuple(figures), notes=() if figures else ("The search drew no figures.",)),
        ]
        downloads = [n for n in (*COPIED, "comparison.md", "trials.md") if (tmp / n).is_file()]
        page = render_page(f"Search {summary.get('study_name')}", facts, sections, downloads)
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def read_search_summary(search_dir: Path) -> dict[str, Any]:
    """``search_summary.json`` plus, from the search's record, ``steps`` and ``final_evals``."""
    data = {}
    for name in (SEARCH_SUMMARY_FILE, SEARCH_RECORD_FILE):
        file = search_dir / name
        if not file.is_file():
            raise RklBenchError(f"{search_dir} holds no {name}; pass the experiment directory of an `rkl-bench tune` run")
        try:
            data[name] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RklBenchError(f"cannot read {file} ({exc}); run `rkl-bench tune ... --resume` to rewrite it") from None
    summary, record = data[SEARCH_SUMMARY_FILE], data[SEARCH_RECORD_FILE]
    try:
        summary = {**summary, "steps": int(record["config"]["steps"]),
                   "final_evals": int(record["search"]["objective"]["final_evals"])}
        for key in ("trials", "pair_labels", "aggregate"):
            summary[key]  # noqa: B018 - presence check
    except (KeyError, TypeError, ValueError) as exc:
        raise RklBenchError(f"{search_dir}: the search's files lack {exc}; they were written by an older rkl-bench "
                            "(resume the search to rewrite them)") from None
    return summary


# ----------------------------------------------------------------- scoring
def pair_score(scores: Sequence[float], final_evals: int) -> float:
    """The search's score of one pair: the mean of its last ``final_evals`` evaluations."""
    last = list(scores)[-final_evals:]
    return float(sum(last) / len(last))


def aggregate(values: Sequence[float], how: str) -> float:
    return float(statistics.median(values) if how == "median" else statistics.fmean(values))


def reference_settings(experiment_dir: str | Path, summary: dict[str, Any], labels: Sequence[str]) -> list[ScoredSetting]:
    """Each algorithm of a reference experiment, scored by the search's rule on the search's pairs."""
    experiment = load_experiment(experiment_dir)
    steps, final_evals, how = int(summary["steps"]), int(summary["final_evals"]), summary["aggregate"]
    by_algo: dict[str, dict[str, Any]] = {}
    for run in experiment.runs:
        by_algo.setdefault(run.algo, {})[_run_label(run.dataset, run.seed, labels)] = run
    settings = []
    for algo, runs in sorted(by_algo.items()):
        scores: dict[str, float | None] = {}
        problems = []
        for label in labels:
            run = runs.get(label)
            if run is None:
                scores[label] = None
                problems.append(f"no run for {label.removeprefix('score:')}")
            elif run.final_step < steps or run.damaged:
                scores[label] = None
                problems.append(f"{label.removeprefix('score:')} reached {run.final_step:,} of {steps:,} steps")
            else:
                scores[label] = pair_score([e.score for e in run.evaluations], final_evals)
        values = [v for v in scores.values() if v is not None]
        objective = aggregate(values, how) if len(values) == len(labels) else None
        note = f"{algo_label(algo)}: {'; '.join(problems)} (no objective)." if problems else ""
        settings.append(ScoredSetting(f"{algo_label(algo)} [{_shown_name(experiment_dir)}]", scores, objective, note))
    return settings


def _run_label(dataset: Any, seed: int, labels: Sequence[str]) -> str:
    """The search's pair label a reference run belongs to (labels name the config's dataset entries)."""
    name = str(getattr(dataset, "name", dataset))
    for label in labels:
        entry, _, pair_seed = label.removeprefix("score:").partition("@")
        if (not pair_seed or int(pair_seed) == seed) and _same_dataset(entry, name):
            return label
    return f"score:{name}@{seed}"


def _same_dataset(entry: str, name: str) -> bool:
    """A config entry names a dataset: ``hopper-random-medium-replay`` names
    ``forge-v5/hopper-random-medium-replay`` and ``hopper-random-medium-replay-v2``."""
    def base(text: str) -> str:
        return re.sub(r"-v\d+$", "", text.split("/")[-1])

    return name == entry or base(name) == base(entry)


def _best_setting(summary: dict[str, Any], labels: Sequence[str]) -> ScoredSetting:
    best = summary["best"]
    row = next(t for t in summary["trials"] if t["number"] == best["number"])
    scores = dict(zip(labels, row.get("pair_scores") or [None] * len(labels)))
    return ScoredSetting(f"best trial {best['number']}", scores, float(best["value"]))


def _best_params(summary: dict[str, Any]) -> str:
    best = summary["best"]
    return f"best trial {best['number']}: " + ", ".join(f"{k}={_fmt_param(v)}" for k, v in best["params"].items())


# ------------------------------------------------------------------ tables
def comparison_table(settings: Sequence[ScoredSetting], labels: Sequence[str], summary: dict[str, Any]) -> Table:
    shown, shared = short_labels(labels)
    header = ("setting", *shown, summary["aggregate"])
    top = max((s.objective for s in settings if s.objective is not None), default=None)
    rows = tuple(
        (Cell(s.label), *(Cell(_fmt(s.scores.get(label))) for label in labels),
         Cell(_fmt(s.objective), bold=top is not None and s.objective == top))
        for s in settings
    )
    return Table(
        caption=f"Normalised score per dataset{shared} (mean of the last {summary['final_evals']} evaluations "
                f"at {int(summary['steps']):,} steps) and the search's objective",
        header=header,
        sections=(rows,) if rows else ((Cell("no finished setting"), *(Cell(MISSING) for _ in labels), Cell(MISSING)),),
        footnotes=((_best_params(summary) + ".",) if summary.get("best") else ()) + (
            "Same datasets, seeds, budget and evaluation for every row; the best trial was chosen on these "
            "very datasets (it is the tuning set), so its lead over the references is optimistic.",),
    )


def trials_table(summary: dict[str, Any], labels: Sequence[str]) -> Table:
    names = list(summary.get("space") or {})
    staged = summary.get("clock") == "steps"
    shown, shared = short_labels(labels)
    header = ("trial", "state", "steps" if staged else "pairs", "objective", *(_breakable(n) for n in names), *shown)
    rerun = rerun_trials(summary["trials"])
    rows = []
    for t in sorted(summary["trials"], key=lambda t: t["number"]):
        if t["number"] in rerun:
            continue
        scores = t.get("pair_scores") or []
        rows.append((
            Cell(str(t["number"])), Cell(t["state"].lower()),
            Cell(f"{t.get('steps_reached', 0):,}" if staged else str(t.get("pairs_done", 0))),
            Cell(_fmt(t.get("value"))),
            *(Cell(_fmt_param(t["params"][n]) if n in t["params"] else MISSING) for n in names),
            *(Cell(_fmt(scores[i]) if i < len(scores) else MISSING) for i in range(len(labels))),
        ))
    note = ("A stopped trial's objective and scores are those at the rung it reached." if staged
            else "A stopped trial's objective is its running score over the pairs it finished.")
    notes = (note,)
    if rerun:
        notes += (f"Left out: {len(rerun)} trial(s) interrupted by a stopped session and re-run under a later number "
                  f"({', '.join(f'{n} as {m}' for n, m in sorted(rerun.items()))}); trials.csv lists them.",)
    return Table(
        caption=f"Every trial of the study: parameters (— where a conditional one was not sampled) and scores{shared}",
        header=header,
        sections=(tuple(rows),) if rows else ((Cell("none"), *(Cell(MISSING) for _ in header[1:])),),
        footnotes=notes,
    )


def rerun_trials(trials: Sequence[dict[str, Any]]) -> dict[int, int]:
    """FAIL trials that a later trial re-ran (``rerun_of``): number -> the number that re-ran it last."""
    states = {t["number"]: t["state"] for t in trials}
    out: dict[int, int] = {}
    for t in sorted(trials, key=lambda t: t["number"]):
        source = t.get("rerun_of")
        if source is not None and states.get(int(source)) == "FAIL":
            out[int(source)] = t["number"]
    return out


def short_labels(labels: Sequence[str]) -> tuple[list[str], str]:
    """Dataset column labels without what they all share: ``halfcheetah-random-medium-replay``,
    ``hopper-random-medium-replay`` -> ``halfcheetah``, ``hopper`` and `` (columns: each env's random-medium-replay)``
    for the caption; unchanged (and no caption text) when they share no such tail."""
    names = [_short(label) for label in labels]
    heads = [n.split("-", 1) for n in names]
    tails = {h[1] for h in heads if len(h) == 2}
    if len(names) > 1 and len(tails) == 1 and all(len(h) == 2 for h in heads) and len({h[0] for h in heads}) == len(names):
        return [h[0] for h in heads], f" (columns: each env's {tails.pop()})"
    return names, ""


def _breakable(name: str) -> str:
    """A parameter name the header may wrap after its underscores (zero-width spaces)."""
    return name.replace("_", "_\u200b")


# ----------------------------------------------------------------- helpers
def _counts(trials: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Trials per state; an interrupted trial that a later one re-ran counts as ``interrupted (re-run)``."""
    rerun = rerun_trials(trials)
    counts: dict[str, int] = {}
    for t in trials:
        state = "interrupted (re-run)" if t["number"] in rerun else t["state"]
        counts[state] = counts.get(state, 0) + 1
    return counts


def _short(label: str) -> str:
    return label.removeprefix("score:")


def _fmt(value: Any) -> str:
    return MISSING if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.1f}"


def _fmt_param(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def relocated_header(text: str, new_path: Path, root: Path) -> str:
    """A search's ``best_config.yaml`` as the report ships it: its header's "Run it" line names the
    report's copy and a SQLite study is named relative to ``root`` (never an absolute path of the
    machine that ran the search); the YAML below the header is unchanged."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        if line.startswith("# Run it") and "rkl-bench run " in line:
            lines[i] = line[: line.index("rkl-bench run ")] + f"rkl-bench run {_shown(new_path, root)}\n"
        elif line.startswith("# Best trial of study"):
            lines[i] = re.sub(r"\(sqlite:///([^)]+)\)", lambda m: f"(sqlite:///{_shown(Path(m.group(1)), root)})", line)
    return "".join(lines)


def _shown(path: Path, root: Path) -> str:
    return display_path(path, root)


def _shown_name(path: str | Path) -> str:
    return Path(path).expanduser().resolve().name

