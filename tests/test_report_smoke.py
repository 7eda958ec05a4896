"""The smoke-budget line of the README's main job: printed, and at the top of its report, linking the
decisive run's report by a path relative to the page (never an absolute path of this machine)."""

from __future__ import annotations

from rkl_bench.report.smoke import smoke_notice, smoke_summary_line


def test_the_line_links_the_decisive_report_and_says_when_it_is_not_made_yet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    decisive = tmp_path / "reports" / "table2_mixtures"
    line = smoke_summary_line(decisive)
    assert line.startswith("Smoke budget: these numbers only show that the pipeline runs end to end;")
    assert line.endswith("reports/table2_mixtures/index.html (not in this checkout yet: its grid is still running)")
    notice = smoke_notice(decisive, tmp_path / "reports" / "quick")
    assert notice.href == "../table2_mixtures/index.html" and "not in this checkout yet" in notice.link_text

    decisive.mkdir(parents=True)
    (decisive / "index.html").write_text("<html></html>")
    assert smoke_summary_line(decisive).endswith("The decisive run's report: reports/table2_mixtures/index.html")
    notice = smoke_notice(decisive, tmp_path / "reports" / "quick")
    assert notice.link_text == "reports/table2_mixtures/index.html" and str(tmp_path) not in notice.href
