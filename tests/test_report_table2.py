"""Table II from the synthetic experiment: CSV values, bold, averages, gain,
partial seeds, the LaTeX file, and the paper's own averages as a check of the rules."""

from __future__ import annotations

import dataclasses

import csv
import math
import re
import shutil
import subprocess

import pytest
from test_report_synthetic import make_experiment

from rkl_bench.report import build_report
from rkl_bench.report.algos import ALGO_ORDER, algo_label
from rkl_bench.report.datasets import GROUPS, SOURCE_D4RL, table_key
from rkl_bench.report.paper import load_paper_table
from rkl_bench.report.render import to_markdown
from rkl_bench.report.results import load_experiment
from rkl_bench.report.scores import CellStats, FinalRule, cell_stats
from rkl_bench.report.table2 import build_table2


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    return build_report(make_experiment(root), root / "out", bootstrap_reps=200)


def markdown_rows(text: str) -> dict[str, list[str]]:
    """Table rows of a Markdown file: label -> the other cells."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| Task"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def csv_rows(path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path, newline="") as handle:
        return {(r["algo"], r["dataset"]): r for r in csv.DictReader(handle)}


# ----------------------------------------------------------------------- CSV
def test_csv_holds_known_means_stds_and_provenance(report):
    rows = csv_rows(report.table2_csv)
    hc = rows[("td3_rkl", "halfcheetah-random-v2")]
    assert float(hc["mean"]) == pytest.approx(24.0)
    assert float(hc["std"]) == pytest.approx(math.sqrt(8.0), rel=1e-5)  # finals 20..28, ddof=0
    assert (hc["n_seeds"], hc["expected_seeds"], hc["n_incomplete"]) == ("5", "5", "0")
    assert (hc["steps"], hc["episodes"], hc["final_evals"]) == ("12000", "10", "10")
    assert (hc["source"], hc["dataset_version"], hc["group"], hc["env"]) == ("d4rl-v2", "d4rl-v2", "Random", "halfcheetah")

    forge = rows[("td3_rkl", "forge-v5/hopper-random-expert")]
    assert float(forge["mean"]) == pytest.approx(80.0)
    assert (forge["n_seeds"], forge["n_incomplete"], forge["seeds"]) == ("3", "1", "0 1 2")
    assert (forge["source"], forge["group"]) == ("forge-v5", "Random-Expert")
    assert forge["dataset_version"] == "forge-v5:aaaa+forge-v5:bbbb"

    other = rows[("td3_rkl", "hopper-medium-v2")]
    assert (other["group"], other["n_seeds"], float(other["mean"])) == ("Other", "2", 50.0)


def test_csv_has_a_row_per_algorithm_and_dataset_even_when_missing(report):
    rows = csv_rows(report.table2_csv)
    datasets = {d for _, d in rows}
    assert len(datasets) == 5
    assert set(rows) == {(a, d) for a in ALGO_ORDER for d in datasets}
    brac = rows[("brac", "halfcheetah-random-v2")]
    assert (brac["mean"], brac["std"], brac["n_seeds"]) == ("", "", "0")


# --------------------------------------------------------------- Table cells
def test_markdown_cells_bold_and_ties(report):
    rows = markdown_rows(report.table2_md.read_text())
    assert rows["HalfCheetah-Random"] == ["2.0 ± 0.0", "—", "—", "10.0 ± 1.4", "**24.0 ± 2.8**"]
    assert rows["Hopper-Random"] == ["9.0 ± 0.0", "—", "—", "**11.0 ± 0.0**", "**11.0 ± 0.0**"]  # a tie: both bold
    assert rows["Walker2d-Random"][3] == "**4.0 ± 0.0**"


def test_partial_seeds_are_shown_not_averaged_as_complete(report):
    rows = markdown_rows(report.table2_md.read_text())
    assert rows["Hopper-Random-Expert†"] == ["—", "—", "—", "60.0 ± 0.0", "**80.0 ± 2.4 (n=3/5)**"]
    assert rows["HalfCheetah-Random-Expert†"] == ["—"] * 5  # a row no run covered
    assert rows["hopper-medium-v2"][-1] == "50.0 ± 1.0 (n=2/5)"
    text = report.table2_md.read_text()
    assert "TD3+RKL on forge-v5/hopper-random-expert (seeds 3)" in text
    assert "Not in this experiment at all: BRAC, CDC." in text


def test_averages_and_gain_line(report):
    rows = markdown_rows(report.table2_md.read_text())
    d4rl = rows["Average on D4RL datasets (Random only)"]
    # BC 4.0, TD3+BC (10+11+4)/3 = 8.33, TD3+RKL (24+11+2)/3 = 12.33; gain 12.3/8.3 - 1 = +48.2 %
    assert d4rl == ["4.0", "—", "—", "8.3", "**12.3 (+48.2%)**"]
    mixed = rows["Average on mixed datasets† (Random-Expert only)"]
    assert mixed == ["—", "—", "—", "60.0 (1/3)", "80.0 (1/3)"]  # partial: no bold, no gain


def test_sections_follow_the_paper_order(report):
    labels = list(markdown_rows(report.table2_md.read_text()))
    assert labels == [
        "HalfCheetah-Random", "Hopper-Random", "Walker2d-Random", "Average on D4RL datasets (Random only)",
        "HalfCheetah-Random-Expert†", "Hopper-Random-Expert†", "Walker2d-Random-Expert†",
        "Average on mixed datasets† (Random-Expert only)", "hopper-medium-v2",
    ]


def test_paper_comparison_marks_forge_rows_and_differences(report):
    rows = markdown_rows((report.out_dir / "paper_comparison.md").read_text())
    assert rows["HalfCheetah-Random"][-3:] == ["24.0 ± 2.8", "23.2 ± 1.1", "+0.8"]
    assert rows["Hopper-Random-Expert†"][-3:] == ["80.0 ± 2.4 (n=3/5)", "111.8 ± 4.5", "-31.8"]
    assert rows["Average on D4RL datasets (Random only)"][-1] == "—"  # 3 of the paper's 12 rows: no Δ
    assert "not the paper's D4RL v2 data" in (report.out_dir / "paper_comparison.md").read_text()


# -------------------------------------------------------------- final score
def test_final_score_modes(tmp_path):
    runs = load_experiment(make_experiment(tmp_path)).runs
    key = next(k for (a, k) in cell_stats(runs, FinalRule()) if k.name == "halfcheetah-random-v2")
    last10 = cell_stats(runs, FinalRule("last-evals", 10))[("td3_rkl", key)]
    last5 = cell_stats(runs, FinalRule("last-evals", 5))[("td3_rkl", key)]
    final = cell_stats(runs, FinalRule("final-episodes", 10))[("td3_rkl", key)]
    assert last10.mean == pytest.approx(24.0)
    assert last5.mean == pytest.approx(23.8)  # the last five are final -1, +1, -1, +1, -1
    assert final.mean == pytest.approx(23.0)  # the last evaluation is final - 1
    assert (last10.final_evals, last5.final_evals, final.final_evals) == (10, 5, 1)
    assert FinalRule("last-evals", 20).short(cell_stats(runs, FinalRule("last-evals", 20))[("td3_rkl", key)])


# --------------------------------------------------- the paper's own numbers
def paper_cells(paper) -> dict:
    """The paper's Table II as one-seed cells, each resting on 10 evaluations."""
    cells = {}
    for (algo, group, env), cell in paper.cells.items():
        key = table_key(group, env, SOURCE_D4RL)
        cells[(algo, key)] = CellStats(algo, key, (0,), (cell.mean,), (), 1, (1,), (10,), 10, ("d4rl-v2",))
    return cells


def test_rules_reproduce_the_papers_averages_and_gains():
    paper = load_paper_table()
    cells = paper_cells(paper)
    assert len(cells) == len(GROUPS) * 3 * len(ALGO_ORDER)
    rows = markdown_rows(to_markdown(build_table2(cells, list(ALGO_ORDER), FinalRule(), expected_seeds=1)))
    assert rows["Average on D4RL datasets"] == ["43.3", "11.4", "55.2", "62.9", "**66.2 (+5.2%)**"]
    assert rows["Average on mixed datasets"] == ["28.6", "12.9", "31.2", "49.4", "**62.0 (+25.5%)**"]
    assert [paper.averages[(a, "D4RL")] for a in ALGO_ORDER] == [43.3, 11.4, 55.2, 62.9, 66.2]
    assert paper.gains == {"D4RL": 5.2, "mixed": 25.5}


def test_a_tuned_td3_rkl_column_is_not_a_baseline_and_gets_its_own_gain():
    """A variant of TD3+RKL (``td3_rkl@tuned``) is the method, not a baseline: the paper's column keeps
    its gain over the best baseline (TD3+BC's 49.4 on the mixed groups, +25.5 %) even when the variant
    scores higher, and the variant's average carries its own gain over the same baseline."""
    paper = load_paper_table()
    cells = paper_cells(paper)
    for (algo, key), cell in list(cells.items()):
        if algo == "td3_rkl":  # every cell of the variant 10 above the paper's TD3+RKL
            cells[("td3_rkl@tuned", key)] = dataclasses.replace(cell, algo="td3_rkl@tuned",
                                                                 finals=(cell.finals[0] + 10.0,))
    algos = [*ALGO_ORDER, "td3_rkl@tuned"]
    rows = markdown_rows(to_markdown(build_table2(cells, algos, FinalRule(), expected_seeds=1)))
    # 72.0 / 49.4 - 1 = +45.7 %; 76.2 / 62.9 - 1 = +21.1 %
    assert rows["Average on mixed datasets"] == ["28.6", "12.9", "31.2", "49.4", "62.0 (+25.5%)", "**72.0 (+45.7%)**"]
    assert rows["Average on D4RL datasets"] == ["43.3", "11.4", "55.2", "62.9", "66.2 (+5.2%)", "**76.2 (+21.1%)**"]


def test_short_runs_are_listed_or_summarised_in_one_line():
    cells = paper_cells(load_paper_table())
    first = next(iter(cells))
    one_short = {**cells, first: dataclasses.replace(cells[first], final_evals=3)}
    text = to_markdown(build_table2(one_short, list(ALGO_ORDER), FinalRule(), expected_seeds=1))
    assert f"Fewer than 10 evaluations: {algo_label(first[0])} on {first[1].name}." in text
    all_short = {k: dataclasses.replace(c, final_evals=5 if i % 2 else 4) for i, (k, c) in enumerate(cells.items())}
    text = to_markdown(build_table2(all_short, list(ALGO_ORDER), FinalRule(), expected_seeds=1))
    assert "Every run has fewer than 10 evaluations (4-5 here)" in text
    assert "Fewer than" not in text


# -------------------------------------------------------------------- LaTeX
def latex_problems(text: str) -> list[str]:
    """Structural problems of a booktabs document: braces, environments, rules, column counts."""
    problems, depth, stack = [], 0, []
    plain = re.sub(r"\\[{}&%$#_]", "", text)  # escaped characters do not count
    for ch in plain:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            problems.append("a } closes nothing")
            depth = 0
    if depth:
        problems.append(f"{depth} unclosed {{")
    for kind, name in re.findall(r"\\(begin|end)\{(\w+)\}", plain):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            problems.append(f"\\end{{{name}}} does not match")
    problems += [f"\\begin{{{name}}} never ends" for name in stack]
    for rule in ("\\documentclass", "\\begin{document}", "\\toprule", "\\midrule", "\\bottomrule"):
        if rule not in plain:
            problems.append(f"no {rule}")
    for spec, body in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", plain, re.S):
        if body.strip().index("\\toprule") != 0 or not body.strip().endswith("\\bottomrule"):
            problems.append("tabular does not start with \\toprule and end with \\bottomrule")
        for row in re.findall(r"([^\n]*)\\\\", body):
            if row.count("&") + 1 != len(spec):
                problems.append(f"row has {row.count('&') + 1} columns, spec {len(spec)}: {row[:40]}")
    return problems


def test_latex_is_a_well_formed_booktabs_document(report):
    text = report.table2_tex.read_text()
    assert latex_problems(text) == []
    assert r"\textbf{24.0 $\pm$ 2.8}" in text
    assert r"\textbf{12.3 (+48.2\%)}" in text
    assert r"Hopper-Random-Expert$^{\dagger}$" in text
    assert latex_problems((report.out_dir / "paper_comparison.tex").read_text()) == []


def test_latex_checker_catches_a_broken_row():
    broken = "\\documentclass{article}\\begin{document}\\begin{tabular}{lr}\n\\toprule\na & b & c \\\\\n\\midrule\n\\bottomrule\n\\end{tabular}\\end{document}"
    assert any("columns" in p for p in latex_problems(broken))
    assert any("unclosed" in p for p in latex_problems(broken.replace("\\end{document}", "\\end{document}{")))


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed; the structural check above still runs")
def test_latex_compiles_with_pdflatex(report, tmp_path):
    for name in ("table2.tex", "paper_comparison.tex"):
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-output-directory", str(tmp_path),
                               str(report.out_dir / name)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]
        assert (tmp_path / name.replace(".tex", ".pdf")).stat().st_size > 0


# ------------------------------------------------------------ a tuned column
def test_a_tuned_column_marks_its_tuning_set_and_gets_a_held_out_average(tmp_path):
    """--tuned-on: the tuned column's cells on the study's datasets carry ‡, and a held-out average
    over the six other mixtures follows the mixed average, for every column, from the CSV's means."""
    import yaml
    from test_report_html import mixtures_grid

    from rkl_bench import cli
    from rkl_bench.errors import RklBenchError
    from rkl_bench.report.tuning_sets import parse_tuned_on

    best = tmp_path / "best_config.yaml"
    tuning = ["halfcheetah-random-medium-replay", "hopper-random-medium-replay", "walker2d-random-medium-replay"]
    best.write_text(yaml.safe_dump({"name": "study-best", "datasets": tuning, "algorithms": {"td3_rkl": {}}}))
    experiment = mixtures_grid(tmp_path)
    out = tmp_path / "report"
    code = cli.main(["report", str(experiment), "--out", str(out), "--seeds", "3", "--bootstrap", "50",
                     "--tuned-on", f"td3_rkl@tuned={best}"])
    assert code == 0
    text = (out / "table2.md").read_text()
    rows = markdown_rows(text)
    header = next(line for line in text.splitlines() if line.startswith("| Task"))
    columns = [c.strip() for c in header.strip("|").split(" | ")][1:]
    tuned = columns.index(algo_label("td3_rkl@tuned"))
    marked = sorted(label for label, cells in rows.items() if "‡" in cells[tuned])
    assert marked == ["HalfCheetah-Random-MediumReplay†", "Hopper-Random-MediumReplay†", "Walker2d-Random-MediumReplay†"]
    assert not any("‡" in cell for label, cells in rows.items() for i, cell in enumerate(cells) if i != tuned)
    (held_label,) = [label for label in rows if "held out" in label]
    assert "6 not tuned on" in held_label
    means = csv_rows(out / "table2.csv")
    for i, algo in enumerate(("bc", "td3_bc", "td3_rkl", "td3_rkl@tuned")):
        held = [float(r["mean"]) for (a, d), r in means.items() if a == algo and not d.endswith("random-medium-replay")]
        assert len(held) == 6
        shown = rows[held_label][columns.index(algo_label(algo))]
        assert shown.strip("*").split()[0] == f"{sum(held) / 6:.1f}", (algo, shown)
    assert "was tuned on this dataset" in text and "tuned on" in (out / "index.html").read_text()

    with pytest.raises(RklBenchError, match="give LABEL=BEST_CONFIG"):
        parse_tuned_on(["td3_rkl@tuned"])
    with pytest.raises(RklBenchError, match="does not exist"):
        parse_tuned_on([f"td3_rkl@tuned={tmp_path / 'none.yaml'}"])
    best.write_text("name: x\n")
    with pytest.raises(RklBenchError, match="has no list of datasets"):
        parse_tuned_on([f"td3_rkl@tuned={best}"])


def test_both_td3_rkl_columns_get_their_probability_of_improvement_and_a_held_out_scope(tmp_path):
    from test_report_html import mixtures_grid

    from rkl_bench.report.aggregate import HELD_OUT_SCOPE, aggregate_metrics, comparisons
    from rkl_bench.report.results import load_experiment
    from rkl_bench.report.scores import FinalRule, cell_stats

    assert comparisons(["bc", "td3_bc", "td3_rkl", "td3_rkl@tuned"]) == [
        ("td3_rkl", "bc"), ("td3_rkl", "td3_bc"), ("td3_rkl@tuned", "bc"), ("td3_rkl@tuned", "td3_bc"),
        ("td3_rkl@tuned", "td3_rkl")]
    cells = cell_stats(load_experiment(mixtures_grid(tmp_path)).runs, FinalRule("last-evals", 10), 3)
    algos = ["bc", "td3_bc", "td3_rkl", "td3_rkl@tuned"]
    tuning = frozenset(f"{env}-random-medium-replay" for env in ("halfcheetah", "hopper", "walker2d"))
    plain = aggregate_metrics(cells, algos, reps=100, seed=0)
    tuned = aggregate_metrics(cells, algos, reps=100, seed=0, tuned_on={"td3_rkl@tuned": tuning})
    pois = {(e.scope, e.algo, e.baseline): e for e in tuned if e.metric == "poi"}
    # The synthetic scores rise with the column (bc < td3_bc < td3_rkl < tuned) on every dataset.
    assert pois[("mixed", "td3_rkl@tuned", "td3_bc")].estimate == 1.0
    assert pois[("mixed", "td3_rkl@tuned", "td3_rkl")].estimate == 1.0
    assert pois[("mixed", "td3_rkl", "bc")].estimate == 1.0
    held = pois[(HELD_OUT_SCOPE, "td3_rkl@tuned", "td3_bc")]
    assert (held.n_datasets, held.n_runs) == (6, 36)
    assert [e for e in tuned if e.scope != HELD_OUT_SCOPE] == plain  # the other scopes are unchanged
