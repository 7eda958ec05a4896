"""Fidelity of a bf16 column against its fp32 reference: are its scores inside fp32's seed spread?

    .venv/bin/python benchmarks/precision_fidelity.py EXPERIMENT [EXPERIMENT ...]
        [--reference td3_bc] [--variant td3_bc@bf16] [--k 3] [--markdown OUT.md]

``EXPERIMENT`` is what ``rkl-bench report`` reads: experiment directories of
``rkl-bench run tune_configs/bf16_fidelity.yaml`` and/or results archives
(several are merged). For every dataset on which both columns have complete
runs it prints each seed's final score (the mean normalised score of the
run's last ``--k`` evaluations, the report's ``last-evals`` rule), the mean ±
std (ddof=0) of each column, the fp32 seeds' spread [min, max], and the
verdict.

The verdict (issue 16: "bf16 scores must lie within the fp32 runs' seed
spread") is read as: the variant's mean over seeds lies inside
[min, max] of the reference's seeds. A stricter reading, every variant
seed inside that range, is printed beside it (``seeds inside``) but is not
the verdict: with 3 seeds per side, a fourth draw from the *same*
distribution falls outside the range of three with probability 1/2, so
it would fail identical arithmetic half the time.

It also checks, from the rows themselves, that the variant really trained in
bf16 (rows carry ``"matmul_precision": "bf16"`` only when the fast path
multiplied in bf16; a CPU without bf16 units falls back to fp32 and the rows
say nothing) and prints each column's median training steps/s from the rows.

Exit status: 0 when every dataset passes, 1 when one fails or the variant
did not train in bf16, 2 with one ``error:`` line for bad input.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from rkl_bench.errors import RklBenchError
from rkl_bench.report.results import Experiment, load_experiments
from rkl_bench.report.scores import CellStats, FinalRule, cell_stats


@dataclass(frozen=True)
class Fidelity:
    """One dataset: the reference's and the variant's per-seed finals and the verdict."""

    dataset: str
    reference: CellStats
    variant: CellStats

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.reference.finals), max(self.reference.finals)

    @property
    def inside(self) -> bool:
        low, high = self.spread
        return low <= float(self.variant.mean) <= high

    @property
    def seeds_inside(self) -> int:
        low, high = self.spread
        return sum(low <= f <= high for f in self.variant.finals)


def fidelity(experiment: Experiment, reference: str, variant: str, k: int) -> list[Fidelity]:
    """Per dataset where both columns have complete runs, sorted by dataset label."""
    cells = cell_stats(experiment.runs, FinalRule("last-evals", k), expected_seeds=1)
    datasets = sorted({d for (a, d) in cells if a == reference} & {d for (a, d) in cells if a == variant},
                      key=lambda d: d.name)
    out = [Fidelity(d.name, cells[(reference, d)], cells[(variant, d)]) for d in datasets
           if cells[(reference, d)].finals and cells[(variant, d)].finals]
    if not out:
        have = sorted({a for a, _ in cells})
        raise RklBenchError(f"no dataset has complete runs of both {reference!r} and {variant!r} "
                            f"(columns with complete runs: {', '.join(have) or 'none'})")
    return out


def row_facts(experiment: Experiment) -> dict[str, dict[str, list]]:
    """Per algorithm label: the ``matmul_precision`` values and ``steps_per_second`` of its rows."""
    facts: dict[str, dict[str, list]] = {}
    for path in experiment.files:
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # load_experiments already warned about it
            if not isinstance(row, dict) or "algo" not in row:
                continue
            entry = facts.setdefault(str(row["algo"]), {"precision": [], "steps_per_second": []})
            entry["precision"].append(row.get("matmul_precision", "fp32"))
            if isinstance(row.get("steps_per_second"), (int, float)):
                entry["steps_per_second"].append(float(row["steps_per_second"]))
    return facts


def _seeds(cell: CellStats) -> str:
    return ", ".join(f"{f:.1f}" for f in cell.finals)


def table(results: list[Fidelity], reference: str, variant: str, k: int) -> str:
    """The Markdown table of the module doc."""
    lines = [f"| dataset | {reference} seeds | {reference} mean ± std | {variant} seeds | {variant} mean ± std "
             f"| {reference} spread | {variant} mean inside | seeds inside |",
             "|---|---|---:|---|---:|---|---|---:|"]
    for r in results:
        low, high = r.spread
        lines.append(f"| {r.dataset} | {_seeds(r.reference)} | {r.reference.mean:.1f} ± {r.reference.std:.1f} "
                     f"| {_seeds(r.variant)} | {r.variant.mean:.1f} ± {r.variant.std:.1f} | [{low:.1f}, {high:.1f}] "
                     f"| {'yes' if r.inside else 'NO'} | {r.seeds_inside}/{r.variant.n} |")
    steps = sorted({s for r in results for c in (r.reference, r.variant) for s in c.steps})
    lines.append("")
    lines.append(f"Final score per seed: mean normalised score of the last {k} evaluations; "
                 f"runs of {', '.join(map(str, steps))} steps; std over seeds with ddof=0.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--reference", default="td3_bc")
    parser.add_argument("--variant", default="td3_bc@bf16")
    parser.add_argument("--k", type=int, default=3, help="evaluations averaged per seed (default 3)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    try:
        experiment = load_experiments(args.experiments)
        results = fidelity(experiment, args.reference, args.variant, args.k)
    except RklBenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    facts = row_facts(experiment)
    text = table(results, args.reference, args.variant, args.k)
    print(text)
    ok = all(r.inside for r in results)
    variant_precisions = set(facts.get(args.variant, {}).get("precision", []))
    for label in (args.reference, args.variant):
        rates = facts.get(label, {}).get("steps_per_second", [])
        precisions = sorted(set(facts.get(label, {}).get("precision", [])))
        rate = f"{statistics.median(rates):.0f}" if rates else "-"
        print(f"{label}: rows' matmul precision {'/'.join(precisions) or '-'}, median training {rate} steps/s")
    if "bf16" not in variant_precisions:
        print(f"{args.variant} has no row trained in bf16 (no bf16 units here?): the comparison says nothing",
              file=sys.stderr)
        ok = False
    print("verdict: " + ("every dataset inside the fp32 seed spread" if ok else "FAILS (see above)"))
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
