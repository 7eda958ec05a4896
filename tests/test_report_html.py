"""index.html: self-contained, and what headless Chromium renders of it.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); the
Chromium test skips, saying so, only when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from test_report_synthetic import make_experiment

from rkl_bench.report import build_report

CHROMIUM = Path("/usr/bin/chromium")


class DomSummary(HTMLParser):
    """Tables (caption and cell texts, with whether each is bold), images, links, and tags seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None
        self._bold = False
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "table":
            self.tables.append({"caption": "", "cells": []})
        elif tag == "caption":
            self._in_caption = True
        elif tag in ("td", "th"):
            self._cell, self._bold = [], False
        elif tag == "strong" and self._cell is not None:
            self._bold = True
        elif tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag in ("a", "link", "script"):
            self.links.append(attrs.get("href") or attrs.get("src") or "")

    def handle_endtag(self, tag):
        if tag == "caption":
            self._in_caption = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["cells"].append(("".join(self._cell).strip(), self._bold))
            self._cell = None

    def handle_data(self, data):
        if self._in_caption:
            self.tables[-1]["caption"] += data
        elif self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    toys = root / "toys"
    toys.mkdir()
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([0, 1], [0, 1])
    fig.savefig(toys / "fig3_aleatoric_uncertainty.png")
    return build_report(make_experiment(root), root / "report", toys_dir=toys, bootstrap_reps=100)


def summarise(html_text: str) -> DomSummary:
    summary = DomSummary()
    summary.feed(html_text)
    return summary


def check_page(summary: DomSummary, out_dir: Path) -> None:
    table2 = next(t for t in summary.tables if t["caption"].startswith("Table II, this experiment"))
    cells = dict(table2["cells"])
    assert cells["24.0 ± 2.8"] is True
    assert cells["80.0 ± 2.4 (n=3/5)"] is True
    assert cells["12.3 (+48.2%)"] is True
    assert cells["60.0 (1/3)"] is False
    assert any(t["caption"].startswith("Table II: this experiment next to the paper") for t in summary.tables)
    assert any(t["caption"].startswith("IQM") for t in summary.tables)
    assert any(t["caption"].startswith("Probability of improvement") for t in summary.tables)
    assert summary.images, "no figures on the page"
    for src in summary.images + [link for link in summary.links if link]:
        assert "://" not in src and not src.startswith("/"), f"not a relative path: {src}"
        assert (out_dir / src).is_file(), f"{src} is referenced but missing"
    names = {Path(src).name for src in summary.images}
    assert {"curves_random.png", "lambdas_00.png", "iqm.png", "fig3_aleatoric_uncertainty.png"} <= names
    assert not summary.tags & {"script", "link", "iframe"}


def test_page_is_self_contained(report):
    check_page(summarise(report.index_html.read_text()), report.out_dir)
    assert all(p.is_file() and p.suffix == ".png" for p in report.figures)
    assert all(p.with_suffix(".pdf").is_file() for p in report.figures if "toys" not in p.parts)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium absent: install it with `apt-get install -y chromium`")
def test_page_renders_in_headless_chromium(report, tmp_path):
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", report.index_html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<table" in done.stdout, "Chromium rendered no table"
    check_page(summarise(done.stdout), report.out_dir)


WIDTH_PROBE = """<script>
const page = document.documentElement.scrollWidth;
const tables = [...document.querySelectorAll('table')].map(t => ({
  caption: (t.caption ? t.caption.textContent : '').slice(0, 60),
  width: t.getBoundingClientRect().right,
}));
document.body.setAttribute('data-widths', JSON.stringify({page: page, viewport: window.innerWidth, tables: tables}));
</script>"""


def mixtures_grid(root: Path) -> Path:
    """An experiment shaped like tune_configs/table2_mixtures.yaml: four learners (a variant label among
    them) on the nine forge mixtures, three seeds each, as Tune trial directories."""
    import json

    from test_report_synthetic import _rows, _write_lines, scores_for

    exp = root / "mixtures"
    algos = ("bc", "td3_bc", "td3_rkl", "td3_rkl@tuned")
    datasets = [f"forge-v5/{env}-random-{kind}" for env in ("halfcheetah", "hopper", "walker2d")
                for kind in ("medium-replay", "medium-expert", "expert")]
    trial = 0
    for a, algo in enumerate(algos):
        for d, dataset in enumerate(datasets):
            for seed in range(3):
                folder = exp / f"{algo}_{d}_s{seed}_{trial:05d}"
                _write_lines(folder / "result.json", _rows(algo, dataset, seed, scores_for(10.0 * a + d + 0.3 * seed)))
                (folder / "params.json").write_text(json.dumps({"algo": algo, "dataset": dataset, "seed": seed}))
                trial += 1
    return exp


@pytest.mark.skipif(not CHROMIUM.exists(), reason="headless Chromium absent: install it with `apt-get install -y chromium`")
def test_a_nine_mixture_four_learner_report_fits_1280_px_without_sideways_scrolling(tmp_path):
    """What a reader sees at 1280 px in Chromium: every table's right edge inside the window, and
    no horizontal scroll for the page (the probe script runs on a copy; the report itself has none)."""
    import json

    tuning = frozenset(f"{env}-random-medium-replay" for env in ("halfcheetah", "hopper", "walker2d"))
    paths = build_report(mixtures_grid(tmp_path), tmp_path / "report", expected_seeds=3, bootstrap_reps=50,
                         tuned_on={"td3_rkl@tuned": tuning})  # with its in-sample marks and held-out row
    assert "held out" in paths.table2_md.read_text()
    probe = paths.index_html.with_name("probe.html")
    probe.write_text(paths.index_html.read_text().replace("</body>", WIDTH_PROBE + "</body>"))
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('data-widths="') + len('data-widths="')
    widths = json.loads(done.stdout[start:done.stdout.index('"', start)].replace("&quot;", '"'))
    assert widths["viewport"] == 1280
    too_wide = [t for t in widths["tables"] if t["width"] > widths["viewport"]]
    assert not too_wide, f"tables wider than 1280 px: {too_wide}"
    assert widths["page"] <= widths["viewport"], f"the page scrolls sideways ({widths['page']} px)"
    assert len(widths["tables"]) >= 4


def test_the_page_splits_the_side_by_side_table_two_learners_a_table(tmp_path):
    """Without Chromium too: four learners' ours/paper/Δ columns become two tables of the same rows."""
    from rkl_bench.report.compare import split_by_learner
    from rkl_bench.report.render import Cell, Table

    header = ("Task", *(f"{name} {part}" for name in ("BC", "TD3+BC", "TD3+RKL", "TD3+RKL (tuned)")
                        for part in ("ours", "paper", "Δ")))
    rows = tuple(tuple(Cell(f"{r}.{c}") for c in range(len(header))) for r in range(3))
    first, second = split_by_learner(Table("Side by side", header, (rows[:2], rows[2:]), ("a note",)))
    assert first.caption == "Side by side (BC, TD3+BC)" and second.caption == "Side by side (TD3+RKL, TD3+RKL (tuned))"
    assert first.header == header[:7] and second.header == (header[0], *header[7:])
    assert [[c.text for c in row] for s in second.sections for row in s] == [
        [f"{r}.{c}" for c in (0, *range(7, 13))] for r in range(3)]
    assert (first.footnotes, second.footnotes) == ((), ("a note",))
    narrow = Table("Two", header[:7], ((rows[0][:7],),))
    assert split_by_learner(narrow) == (narrow,)
