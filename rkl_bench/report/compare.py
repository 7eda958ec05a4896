"""Our Table II next to the paper's, with the difference.

One row per Table II row of the experiment, and per algorithm the experiment
ran: ours, the paper's, and ours minus the paper's. Rows on forge data carry
the dagger of Table II: the paper never saw that data, so the difference says
how far apart two different benchmarks are, not whether we reproduced it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from rkl_bench.report.algos import algo_label
from rkl_bench.report.datasets import GROUPS, DatasetKey
from rkl_bench.report.paper import PaperCell, PaperTable
from rkl_bench.report.render import MISSING, Cell, Table
from rkl_bench.report.scores import CellStats
from rkl_bench.report.table2 import (
    AVERAGE_SCOPES,
    FORGE_NOTE,
    Cells,
    Section,
    average,
    average_label,
    cell_text,
    covers_scope,
    fmt,
    layout,
    row_label,
    scope_keys,
)

QUOTED_NOTE = ("Paper: BC, BRAC and TD3+BC on the four D4RL groups are quoted by the paper from their original papers; "
               "the paper gives no std for BRAC and CDC there.")
CSV_COLUMNS = ("algo", "row", "group", "env", "dataset", "source", "paper_data", "ours_mean", "ours_std",
               "n_seeds", "paper_mean", "paper_std", "paper_origin", "diff")


def _signed(value: float) -> str:
    text = fmt(value)
    return text if text.startswith("-") or text == "0.0" else "+" + text


def _paper_text(cell: PaperCell | None) -> str:
    if cell is None:
        return MISSING
    return fmt(cell.mean) + ("" if cell.std is None else f" ± {fmt(cell.std)}")


def _table2_sections(cells: Cells) -> list[Section]:
    return [s for s in layout({key for (_, key) in cells}) if s.title in GROUPS]


def _ran(cells: Cells, algos: Sequence[str]) -> list[str]:
    return [a for a in algos if any(a == c for c, _ in cells)]


def build_comparison(cells: Cells, algos: Sequence[str], paper: PaperTable) -> Table | None:
    """The side-by-side table, or None when the experiment has no Table II dataset."""
    sections, ran = _table2_sections(cells), _ran(cells, algos)
    if not sections or not ran:
        return None
    header = ["Task"] + [f"{algo_label(a)} {part}" for a in ran for part in ("ours", "paper", "Δ")]
    body = []
    for section in sections:
        rows = []
        for key in section.keys:
            row = [Cell(row_label(key))]
            for algo in ran:
                ours, theirs = cells.get((algo, key)), paper.cells.get((algo, section.title, key.env))
                diff = _signed(ours.mean - theirs.mean) if ours and ours.mean is not None and theirs else MISSING
                row += [Cell(cell_text(ours)), Cell(_paper_text(theirs)), Cell(diff)]
            rows.append(tuple(row))
        body.append(tuple(rows))
    averages = []
    for scope, label, groups in AVERAGE_SCOPES:
        keys = scope_keys(sections, groups)
        if not keys:
            continue
        row = [Cell(average_label(label, groups, keys))]
        comparable = covers_scope(keys, groups)
        for algo in ran:
            ours, theirs = average(cells, algo, keys), paper.averages.get((algo, scope))
            text = MISSING if ours.value is None else fmt(ours.value) + ("" if ours.complete else f" ({ours.covered}/{ours.total})")
            diff = _signed(ours.value - theirs) if comparable and ours.complete and theirs is not None else MISSING
            row += [Cell(text), Cell(MISSING if theirs is None else fmt(theirs)), Cell(diff)]
        averages.append(tuple(row))
    body.append(tuple(averages))
    notes = ["Δ = ours − paper; an average is compared only when this experiment has every row the paper averages.", QUOTED_NOTE]
    if any(not k.is_paper_data for s in sections for k in s.keys):
        notes.append(FORGE_NOTE)
    return Table("Table II: this experiment next to the paper", tuple(header), tuple(body), tuple(notes))


PAGE_LEARNERS = 2
"""Learners per side-by-side table on the HTML page: three columns each, so two fit a 1280 px window."""


def split_by_learner(table: Table, per_table: int = PAGE_LEARNERS) -> tuple[Table, ...]:
    """The side-by-side table as narrower tables of ``per_table`` learners each (same rows), for the
    HTML page, where a reader at 1280 px must see every column without scrolling sideways
    (tested in headless Chromium). The Markdown and LaTeX files keep the one wide table."""
    learners = (len(table.header) - 1) // 3
    if learners <= per_table:
        return (table,)
    parts = []
    for first in range(0, learners, per_table):
        columns = [0, *range(1 + 3 * first, 1 + 3 * min(learners, first + per_table))]
        names = [table.header[c].removesuffix(" ours") for c in columns[1::3]]
        last = first + per_table >= learners
        parts.append(Table(
            f"{table.caption} ({', '.join(names)})",
            tuple(table.header[c] for c in columns),
            tuple(tuple(tuple(row[c] for c in columns) for row in section) for section in table.sections),
            table.footnotes if last else (),
        ))
    return tuple(parts)


def write_comparison_csv(path: Path, cells: Cells, algos: Sequence[str], paper: PaperTable) -> None:
    """Tidy rows: per algorithm the experiment ran, each Table II row and the two averages."""
    sections, ran = _table2_sections(cells), _ran(cells, algos)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for algo in ran:
            for section in sections:
                for key in section.keys:
                    writer.writerow(_cell_row(algo, section.title, key, cells.get((algo, key)),
                                              paper.cells.get((algo, section.title, key.env))))
            for scope, _, groups in AVERAGE_SCOPES:
                keys = scope_keys(sections, groups)
                if not keys:
                    continue
                ours, theirs = average(cells, algo, keys), paper.averages.get((algo, scope))
                comparable = covers_scope(keys, groups) and ours.complete and theirs is not None
                writer.writerow({
                    "algo": algo, "row": "average", "group": scope,
                    "paper_data": all(k.is_paper_data for k in keys),
                    "ours_mean": "" if ours.value is None else f"{ours.value:.6g}",
                    "n_seeds": "", "paper_mean": "" if theirs is None else theirs, "paper_origin": "printed average",
                    "diff": f"{ours.value - theirs:.6g}" if comparable else "",
                })


def _cell_row(algo: str, group: str, key: DatasetKey, ours: CellStats | None, theirs: PaperCell | None) -> dict[str, object]:
    has_ours = ours is not None and ours.mean is not None
    return {
        "algo": algo, "row": "cell", "group": group, "env": key.env, "dataset": key.name, "source": key.source,
        "paper_data": key.is_paper_data,
        "ours_mean": f"{ours.mean:.6g}" if has_ours else "",
        "ours_std": f"{ours.std:.6g}" if has_ours else "",
        "n_seeds": ours.n if ours else 0,
        "paper_mean": "" if theirs is None else theirs.mean,
        "paper_std": "" if theirs is None or theirs.std is None else theirs.std,
        "paper_origin": "" if theirs is None else theirs.origin,
        "diff": f"{ours.mean - theirs.mean:.6g}" if has_ours and theirs else "",
    }
