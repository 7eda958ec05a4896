"""Table II from cell statistics: layout, cell text, bold, averages, gain, CSV.

Layout follows the paper: the seven task groups in order, HalfCheetah /
Hopper / Walker2d within each, the D4RL average after the four D4RL groups
and the mixed average after the three mixed ones, then an "Other" section for
datasets outside Table II. A group appears when the experiment has any
dataset of it; all three env rows are then shown, so a missing run reads
"—" instead of vanishing. Forge rows carry a dagger: not the paper's data.

Rules (each one a choice the paper leaves open):

* a cell is ``mean ± std`` over the seeds that finished, with ``(n=k/N)``
  whenever k differs from the expected N;
* bold marks the best mean of a row at the printed precision (ties all bold),
  only when at least two algorithms have a number in that row;
* an average covers every row of its groups; an algorithm missing some shows
  the average of what it has with ``(k/N)`` and is neither bolded nor used
  for the gain;
* the gain is TD3+RKL's average over the best complete baseline's, from the
  averages as printed (one decimal), which is how the paper's +5.2 % and
  +25.5 % come out; a variant of TD3+RKL (``td3_rkl@tuned``) is not a
  baseline, and its average carries its own gain over the same baseline;
* a tuned column (``tuned_on``) marks its cells on its tuning set with ‡,
  and a held-out average over the rows outside every tuning set follows the
  mixed (or D4RL) average.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from rkl_bench.report.algos import algo_label, is_ours
from rkl_bench.report.datasets import D4RL_GROUPS, ENVS, GROUPS, MIXED_GROUPS, OTHER, DatasetKey, table_key
from rkl_bench.report.render import DAGGER, MISSING, Cell, Table
from rkl_bench.report.scores import CellStats, FinalRule
from rkl_bench.report.tuning_sets import IN_SAMPLE, TuningSets, in_sample, tuned_anywhere

Cells = Mapping[tuple[str, DatasetKey], CellStats]

AVERAGE_SCOPES = (("D4RL", "Average on D4RL datasets", D4RL_GROUPS), ("mixed", "Average on mixed datasets", MIXED_GROUPS))
"""(scope key, row label, groups), matching the scopes of the paper's data."""
FORGE_NOTE = (f"{DAGGER} forge data (gymnasium MuJoCo v5 envs, this project's behaviour policies), "
              "not the paper's D4RL v2 data: its numbers are not directly comparable with the paper's.")
CSV_COLUMNS = ("algo", "algo_label", "group", "env", "dataset", "source", "dataset_version", "mean", "std",
               "n_seeds", "expected_seeds", "n_incomplete", "seeds", "steps", "episodes", "final_evals")


@dataclass(frozen=True)
class Section:
    title: str
    keys: tuple[DatasetKey, ...]


@dataclass(frozen=True)
class Average:
    value: float | None
    covered: int
    total: int

    @property
    def complete(self) -> bool:
        return self.total > 0 and self.covered == self.total


def layout(present: set[DatasetKey]) -> list[Section]:
    """Table sections for the datasets an experiment has (see the module doc)."""
    sections = []
    for group in GROUPS:
        sources = sorted({(k.source_rank, k.source) for k in present if k.group == group})
        keys = tuple(table_key(group, env, source) for _, source in sources for env in ENVS)
        if keys:
            sections.append(Section(group, keys))
    others = tuple(sorted(k for k in present if k.group == OTHER))
    if others:
        sections.append(Section(OTHER, others))
    return sections


def scope_keys(sections: Sequence[Section], groups: Sequence[str]) -> tuple[DatasetKey, ...]:
    return tuple(k for s in sections if s.title in groups for k in s.keys)


def average_label(label: str, groups: Sequence[str], keys: Sequence[DatasetKey]) -> str:
    """The average row's label, saying which groups it covers when not all of the paper's."""
    present = [g for g in groups if any(k.group == g for k in keys)]
    label += DAGGER if any(not k.is_paper_data for k in keys) else ""
    return label if len(present) == len(groups) else f"{label} ({', '.join(present)} only)"


def covers_scope(keys: Sequence[DatasetKey], groups: Sequence[str]) -> bool:
    """True when ``keys`` hold every (group, env) row the paper averages over."""
    return {(k.group, k.env) for k in keys} == {(g, e) for g in groups for e in ENVS}


def average(cells: Cells, algo: str, keys: Sequence[DatasetKey]) -> Average:
    values = [c.mean for k in keys if (c := cells.get((algo, k))) is not None and c.mean is not None]
    return Average(sum(values) / len(values) if values else None, len(values), len(keys))


def relative_gain(ours: float, best: float) -> float | None:
    """Percent gain as the paper prints it: from the one-decimal averages."""
    ours_r, best_r = round(ours, 1), round(best, 1)
    return None if best_r <= 0 else (ours_r / best_r - 1.0) * 100.0


def fmt(value: float) -> str:
    """One decimal, never ``-0.0``."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def row_label(key: DatasetKey) -> str:
    return key.label + (DAGGER if key.in_table2 and not key.is_paper_data else "")


def cell_text(cell: CellStats | None) -> str:
    if cell is None:
        return MISSING
    seeds = f" (n={cell.n}/{cell.expected_seeds})" if cell.partial else ""
    if cell.mean is None:
        return MISSING + seeds
    return f"{fmt(cell.mean)} ± {fmt(cell.std)}{seeds}"


def bold_flags(values: Sequence[float | None]) -> list[bool]:
    """Best of a row at one decimal; ties all bold; nothing bold with fewer than two numbers."""
    shown = [round(v, 1) for v in values if v is not None]
    if len(shown) < 2:
        return [False] * len(values)
    best = max(shown)
    return [v is not None and round(v, 1) == best for v in values]


def build_table2(cells: Cells, algos: Sequence[str], rule: FinalRule, expected_seeds: int,
                 tuned_on: TuningSets | None = None) -> Table:
    """Table II of ``cells``; ``tuned_on`` (column -> tuning set, :mod:`.tuning_sets`) marks a tuned
    column's in-sample cells and adds the held-out average after the mixed one."""
    tuned_on = tuned_on or {}
    present = {key for (_, key) in cells}
    sections = layout(present)
    body: list[tuple[tuple[Cell, ...], ...]] = []
    for section in sections:
        rows = []
        for key in section.keys:
            stats = [cells.get((algo, key)) for algo in algos]
            bold = bold_flags([s.mean if s else None for s in stats])
            texts = [cell_text(s) + (IN_SAMPLE if s is not None and in_sample(tuned_on, a, key.name) else "")
                     for a, s in zip(algos, stats)]
            rows.append((Cell(row_label(key)),) + tuple(Cell(t, b) for t, b in zip(texts, bold)))
        body.append(tuple(rows))
        for _, label, groups in AVERAGE_SCOPES:
            if section.title in groups and _last_present(sections, groups) == section.title:
                keys = scope_keys(sections, groups)
                body.append((_average_row(cells, algos, average_label(label, groups, keys), keys),))
                held_out = tuple(k for k in keys if not tuned_anywhere(tuned_on, k.name))
                if tuned_on and held_out and len(held_out) < len(keys):
                    body.append((_average_row(cells, algos, f"{label}, held out ({len(held_out)} not tuned on)",
                                              held_out),))
                break
    notes = _footnotes(cells, algos, present, rule, expected_seeds)
    for algo, names in tuned_on.items():
        if algo in algos:
            notes.append(f"{IN_SAMPLE} {algo_label(algo)} was tuned on this dataset ({', '.join(sorted(names))}): "
                         "in-sample, optimistic; the held-out average leaves every tuning set out.")
    return Table(_caption(rule), ("Task",) + tuple(algo_label(a) for a in algos), tuple(body), tuple(notes))


def _last_present(sections: Sequence[Section], groups: Sequence[str]) -> str:
    return [s.title for s in sections if s.title in groups][-1]


def _average_row(cells: Cells, algos: Sequence[str], label: str, keys: Sequence[DatasetKey]) -> tuple[Cell, ...]:
    averages = [average(cells, algo, keys) for algo in algos]
    complete = [a.value if a.complete else None for a in averages]
    bold = bold_flags(complete)
    baselines = [a.value for algo, a in zip(algos, averages) if not is_ours(algo) and a.complete]
    texts = []
    for algo, avg in zip(algos, averages):
        if avg.value is None:
            texts.append(MISSING)
            continue
        text = fmt(avg.value) + ("" if avg.complete else f" ({avg.covered}/{avg.total})")
        if is_ours(algo) and avg.complete and baselines:
            gain = relative_gain(avg.value, max(baselines))
            text += "" if gain is None else f" ({gain:+.1f}%)"
        texts.append(text)
    return (Cell(label),) + tuple(Cell(t, b) for t, b in zip(texts, bold))


def _caption(rule: FinalRule) -> str:
    return f"Table II, this experiment: D4RL-normalised scores ({rule.describe()})"


def _footnotes(cells: Cells, algos: Sequence[str], present: set[DatasetKey], rule: FinalRule, expected: int) -> list[str]:
    notes = []
    if any(c.partial for c in cells.values()):
        notes.append(f"(n=k/{expected}): only k of the expected {expected} seeds reached their step budget; "
                     "the mean and std are over those k.")
    absent = [algo_label(a) for a in algos if not any(a == c for c, _ in cells)]
    if absent:
        notes.append(f"{MISSING}: no finished run. Not in this experiment at all: {', '.join(absent)}.")
    running = sorted((c.dataset, c.algo, c.incomplete_seeds) for c in cells.values() if c.incomplete_seeds)
    if running:
        listed = "; ".join(f"{algo_label(a)} on {k.name} (seeds {', '.join(map(str, s))})" for k, a, s in running)
        notes.append(f"Runs short of their step budget, left out: {listed}.")
    short_cells = [c for c in cells.values() if rule.short(c)]
    what = "evaluations" if rule.mode == "last-evals" else "episodes in the final evaluation"
    if short_cells and len(short_cells) == sum(1 for c in cells.values() if c.final_evals > 0):
        # A short experiment: one line, not one entry per cell.
        if rule.mode == "last-evals":
            counts = sorted({c.final_evals for c in short_cells})
            have = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
            notes.append(f"Every run has fewer than {rule.k} evaluations ({have} here): "
                         "each seed's score is the mean of all its evaluations.")
        else:
            notes.append(f"Every run has fewer than {rule.k} episodes in its final evaluation.")
    elif short_cells:
        short = sorted((c.dataset.name, algo_label(c.algo)) for c in short_cells)
        notes.append(f"Fewer than {rule.k} {what}: " + "; ".join(f"{a} on {d}" for d, a in short) + ".")
    if any(k.in_table2 and not k.is_paper_data for k in present):
        notes.append(FORGE_NOTE)
    return notes


def write_csv(path: Path, cells: Cells, algos: Sequence[str], expected_seeds: int) -> None:
    """Tidy rows, one per algorithm x dataset of the experiment (empty mean: no finished run)."""
    keys = sorted({key for (_, key) in cells})
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for key in keys:
            for algo in algos:
                cell = cells.get((algo, key))
                writer.writerow({
                    "algo": algo,
                    "algo_label": algo_label(algo),
                    "group": key.group,
                    "env": key.env or "",
                    "dataset": key.name,
                    "source": key.source,
                    "dataset_version": ";".join(cell.versions) if cell else "",
                    "mean": "" if cell is None or cell.mean is None else f"{cell.mean:.6g}",
                    "std": "" if cell is None or cell.std is None else f"{cell.std:.6g}",
                    "n_seeds": cell.n if cell else 0,
                    "expected_seeds": expected_seeds,
                    "n_incomplete": len(cell.incomplete_seeds) if cell else 0,
                    "seeds": " ".join(map(str, cell.seeds)) if cell else "",
                    "steps": ";".join(map(str, cell.steps)) if cell else "",
                    "episodes": ";".join(map(str, cell.episodes)) if cell else "",
                    "final_evals": cell.final_evals if cell else 0,
                })
