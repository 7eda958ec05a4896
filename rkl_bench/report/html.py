"""``index.html``: the tables and figures of a report on one page.

Self-contained on purpose: inline CSS, no scripts, no fonts or styles from
the network, and images referenced by paths relative to the page, so the
report directory can be copied, zipped or served as it is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from rkl_bench.report.figures import FigureFile
from rkl_bench.report.render import Table, to_html
from rkl_bench.report.smoke import Notice

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table.results { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
table.results caption { text-align: left; font-weight: 600; padding-bottom: 0.4em; }
table.results th, table.results td { padding: 0.2em 0.7em; white-space: nowrap; }
table.results thead th { white-space: normal; vertical-align: bottom; }
table.results td { text-align: right; font-variant-numeric: tabular-nums; }
table.results th { text-align: left; }
table.results thead th { border-bottom: 2px solid #444; border-top: 2px solid #444; }
table.results tbody + tbody { border-top: 1px solid #888; }
table.results tbody:last-child { border-bottom: 2px solid #444; }
div.scroll { overflow-x: auto; }
p.note { font-size: 0.85em; color: #555; margin: 0.2em 0; }
p.notice { background: #fff6d5; border-left: 4px solid #d9a400; padding: 0.5em 0.8em; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #444; }
dl { font-size: 0.9em; } dt { font-weight: 600; float: left; clear: left; width: 12em; } dd { margin-left: 13em; }
"""


@dataclass(frozen=True)
class PageSection:
    """A heading with its tables, figures, and notes (e.g. why a figure is absent)."""

    title: str
    tables: tuple[Table, ...] = ()
    figures: tuple[FigureFile, ...] = ()
    notes: tuple[str, ...] = ()


def render_page(title: str, facts: dict[str, str], sections: list[PageSection], downloads: list[str],
                notice: Notice | None = None) -> str:
    """The whole page; ``facts`` are the inputs and choices behind it, ``downloads`` relative file paths,
    ``notice`` a line above them (a smoke run's pointer to the run that decides)."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>", f"<h1>{esc(title)}</h1>"]
    if notice is not None:
        parts.append(f'<p class="notice">{esc(notice.text)} <a href="{esc(notice.href)}">{esc(notice.link_text)}</a></p>')
    parts.append("<dl>")
    parts += [f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts.items()]
    parts.append("</dl>")
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [f'<div class="scroll">{to_html(t)}</div>' for t in section.tables]
        parts += [f'<p class="note">{esc(n)}</p>' for n in section.notes]
        for fig in section.figures:
            pdf = f' (<a href="{esc(fig.pdf)}">PDF</a>)' if fig.pdf else ""
            parts.append(f'<figure><img src="{esc(fig.png)}" alt="{esc(fig.title)}">'
                         f"<figcaption>{esc(fig.title)}{pdf}</figcaption></figure>")
    parts.append("<h2>Files</h2><ul>")
    parts += [f'<li><a href="{esc(name)}">{esc(name)}</a></li>' for name in downloads]
    parts += ["</ul>", "</body>", "</html>", ""]
    return "\n".join(parts)
