"""The one line a smoke-budget run (the README's main job) says about its numbers.

A few minutes of training on 2 cores shows that data, learners, service and
report work end to end; it decides nothing about the methods. A config with
``smoke_of: <report folder>`` (:class:`rkl_bench.service.config.ExperimentConfig`)
makes the run's printed summary and its report say so, and link the report of
the run that does decide (``reports/table2_mixtures/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rkl_bench.report.output import display_path

SMOKE_LINE = "Smoke budget: these numbers only show that the pipeline runs end to end; they decide nothing about the methods."


@dataclass(frozen=True)
class Notice:
    """A line at the top of a report page, with a link (``href`` relative to the page)."""

    text: str
    link_text: str
    href: str


NOT_MADE = " (not in this checkout yet: its grid is still running)"


def _decisive(report_dir: Path) -> tuple[Path, str]:
    """The decisive report's page, and how a reader sees it: its path, and whether it is made yet."""
    index = Path(report_dir) / "index.html"
    return index, display_path(index) + ("" if index.is_file() else NOT_MADE)


def smoke_summary_line(report_dir: Path) -> str:
    """What ``rkl-bench run`` prints after its report line."""
    return f"{SMOKE_LINE} The decisive run's report: {_decisive(report_dir)[1]}"


def smoke_notice(report_dir: Path, page_dir: Path) -> Notice:
    """The same line for the report page in ``page_dir``, linking the decisive report relative to it."""
    index, shown = _decisive(report_dir)
    href = Path(os.path.relpath(index.resolve(), Path(page_dir).resolve())).as_posix()
    return Notice(f"{SMOKE_LINE} The decisive run:", shown, href)
