"""The paper's Table II, kept as data (``paper_table2.csv`` beside this file).

Every number of the table is there: each cell's mean and, where the paper
gives one, its std; the two average rows; and the printed relative gains of
TD3+RKL (+5.2 %, +25.5 %). ``origin`` says where the paper got a cell: BC,
BRAC and TD3+BC on the four D4RL groups are "quoted from the original paper";
everything else was "run by the TD3+RKL authors". The paper prints no std for
BRAC and CDC on the D4RL groups, so those are empty.

Two things worth knowing when comparing: the text says +5.3 % where the table
says +5.2 %, and the gains follow from the *printed* (rounded) averages
(62.0 / 49.4 gives +25.5 %; the unrounded cell means give +25.6 %).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

PAPER_CSV = Path(__file__).with_name("paper_table2.csv")
SCOPES = ("D4RL", "mixed")
"""The paper's two average rows: the four D4RL groups, and the three mixed groups."""


@dataclass(frozen=True)
class PaperCell:
    mean: float
    std: float | None
    origin: str


@dataclass(frozen=True)
class PaperTable:
    cells: dict[tuple[str, str, str], PaperCell]
    """(algo, group, env) -> the paper's number."""
    averages: dict[tuple[str, str], float]
    """(algo, scope) -> the printed average, scope in :data:`SCOPES`."""
    gains: dict[str, float]
    """scope -> TD3+RKL's printed relative gain over the best baseline, in percent."""


def load_paper_table(path: Path = PAPER_CSV) -> PaperTable:
    cells: dict[tuple[str, str, str], PaperCell] = {}
    averages: dict[tuple[str, str], float] = {}
    gains: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["row"] == "cell":
                std = float(row["std"]) if row["std"] else None
                cells[(row["algo"], row["group"], row["env"])] = PaperCell(float(row["mean"]), std, row["origin"])
            else:
                averages[(row["algo"], row["group"])] = float(row["mean"])
                if row["gain_pct"]:
                    gains[row["group"]] = float(row["gain_pct"])
    return PaperTable(cells, averages, gains)
