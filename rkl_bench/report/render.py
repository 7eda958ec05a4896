"""One table model, three renderings (Markdown, LaTeX, HTML).

Tables are built once, as text cells in plain Unicode (``±``, ``—``, ``†``),
and each renderer only translates that text and the bold flag. This keeps the
three files of a report saying the same thing.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

DAGGER = "†"
MISSING = "—"


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False


@dataclass(frozen=True)
class Table:
    """A caption, one header row, row sections (drawn with rules between them), footnotes.

    The first column holds row labels (left-aligned); the others are numbers.
    """

    caption: str
    header: tuple[str, ...]
    sections: tuple[tuple[tuple[Cell, ...], ...], ...]
    footnotes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for section in self.sections:
            for row in section:
                if len(row) != len(self.header):
                    raise ValueError(f"row {row[0].text!r} has {len(row)} cells, the header {len(self.header)}")


# ---------------------------------------------------------------- Markdown
def to_markdown(table: Table) -> str:
    def cell(c: Cell) -> str:
        text = c.text.replace("|", "\\|")
        return f"**{text}**" if c.bold else text

    lines = [f"**{table.caption}**", "", "| " + " | ".join(table.header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(table.header) - 1)) + "|")
    for section in table.sections:
        lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in section]
    lines += [""] + [f"{note}  " for note in table.footnotes]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------- LaTeX
_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
    "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
_LATEX_UNICODE = {"±": r"$\pm$", MISSING: "--", DAGGER: r"$^{\dagger}$", "‡": r"$^{\ddagger}$", "Δ": r"$\Delta$", "λ": r"$\lambda$", "−": "$-$"}


def latex_escape(text: str) -> str:
    """Plain Unicode table text -> LaTeX that pdflatex accepts without extra packages."""
    out = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)
    for char, macro in _LATEX_UNICODE.items():
        out = out.replace(char, macro)
    return out


SHRINK_TO_FIT = r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{"
"""Scales a tabular down to the line width when wider, never up (needs graphicx)."""


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (no preamble; needs booktabs and graphicx); see :func:`latex_document`."""
    def cell(c: Cell) -> str:
        text = latex_escape(c.text)
        return rf"\textbf{{{text}}}" if c.bold else text

    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{latex_escape(table.caption)}}}",
             SHRINK_TO_FIT + "%",
             r"\begin{tabular}{l" + "r" * (len(table.header) - 1) + "}", r"\toprule",
             " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for index, section in enumerate(table.sections):
        if index:
            lines.append(r"\midrule")
        lines += [" & ".join(cell(c) for c in row) + r" \\" for row in section]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.footnotes:
        lines += [r"\par\smallskip", r"\begin{minipage}{0.95\linewidth}\footnotesize"]
        lines += [latex_escape(note) + r"\par" for note in table.footnotes]
        lines.append(r"\end{minipage}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def latex_document(tables: list[Table]) -> str:
    """A complete landscape article that compiles on its own with pdflatex
    (booktabs from texlive-latex-recommended; geometry, graphicx from texlive-latex-base)."""
    body = "\n".join(to_latex(t) for t in tables)
    return "\n".join([
        r"\documentclass[10pt]{article}",
        r"\usepackage[a4paper,landscape,margin=1.5cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage{graphicx}",
        r"\pagestyle{empty}",
        r"\begin{document}",
        body.rstrip(),
        r"\end{document}",
        "",
    ])


# -------------------------------------------------------------------- HTML
def to_html(table: Table, css_class: str = "results") -> str:
    def cell(c: Cell, tag: str) -> str:
        text = html.escape(c.text)
        return f"<{tag}>{'<strong>' + text + '</strong>' if c.bold else text}</{tag}>"

    parts = [f'<table class="{css_class}">', f"<caption>{html.escape(table.caption)}</caption>", "<thead><tr>"]
    parts += [f"<th>{html.escape(h)}</th>" for h in table.header]
    parts.append("</tr></thead>")
    for section in table.sections:
        parts.append("<tbody>")
        for row in section:
            parts.append("<tr>" + cell(row[0], "th") + "".join(cell(c, "td") for c in row[1:]) + "</tr>")
        parts.append("</tbody>")
    parts.append("</table>")
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in table.footnotes]
    return "\n".join(parts) + "\n"
