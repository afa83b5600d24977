"""A filled table as Markdown, aligned text, LaTeX (booktabs) and long-format CSV: paper / ours / Δ per cell."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

from rank1_eval.paper.manifests import Average, Table
from rank1_eval.paper.results import AverageCell, TableResult

MISSING = "—"


def fmt(value: float | None, decimals: int, signed: bool = False) -> str:
    """A value as the paper prints it; missing is a dash, never 0."""
    if value is None:
        return MISSING
    if signed:
        return f"{value:+.{decimals}f}"
    return f"{value:.{decimals}f}"


def _delta(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:+.{decimals}f}"


def _avg_decimals(table: Table, average: Average) -> tuple[int, bool]:
    col = table.column(average.of[0])
    return col.decimals, col.signed


def _paper_avg_text(table: Table, a: AverageCell) -> tuple[str, bool]:
    """The printed average, and whether it disagrees with the mean of the printed cells (beyond rounding)."""
    d, signed = _avg_decimals(table, a.average)
    text = fmt(a.paper, d, signed)
    off = a.paper is not None and a.paper_mean is not None and abs(a.paper - a.paper_mean) > 10**-d + 1e-9
    return text, off


def _ours_avg_text(table: Table, a: AverageCell) -> str:
    d, signed = _avg_decimals(table, a.average)
    if a.ours is None:
        return MISSING
    text = fmt(a.ours, d, signed)
    return text if a.complete else f"{text}* ({a.n_ours}/{a.n_total})"


@dataclass
class _Grid:
    """The table as rows of strings, shared by Markdown, LaTeX and the console."""

    header: list[str]
    lines: list[list[str]]
    footnotes: list[str]


def _grid(result: TableResult) -> _Grid:
    table = result.table
    header = ["Model"] + ([] if result.mode == "paper" else [""]) + [c.label for c in table.columns]
    header += [a.label for a in table.averages]
    lines: list[list[str]] = []
    foot: list[str] = []
    off_rows: list[str] = []
    starred = False
    for r in result.rows:
        paper = [fmt(c.paper, c.column.decimals, c.column.signed) for c in r.cells.values()]
        avg_texts = []
        for a in r.averages.values():
            text, off = _paper_avg_text(table, a)
            if off:
                d, _ = _avg_decimals(table, a.average)
                text += "†"
                off_rows.append(
                    f"{r.label} {a.average.label}: printed {fmt(a.paper, d)}, mean of cells {fmt(a.paper_mean, d)}"
                )
            avg_texts.append(text)
        if result.mode == "paper":
            lines.append([r.label, *paper, *avg_texts])
            continue
        ours = [fmt(c.ours, c.column.decimals, c.column.signed) for c in r.cells.values()]
        ours_avg = [_ours_avg_text(table, a) for a in r.averages.values()]
        starred |= any(a.ours is not None and not a.complete for a in r.averages.values())
        delta = [_delta(c.delta, c.column.decimals) for c in r.cells.values()]
        delta += [_delta(a.delta, _avg_decimals(table, a.average)[0]) for a in r.averages.values()]
        lines.append([r.label, "paper", *paper, *avg_texts])
        lines.append(["", "ours", *ours, *ours_avg])
        lines.append(["", "Δ", *delta])
        notes: dict[str, list[str]] = {}
        for c in r.cells.values():
            shown = c.ours is not None or c.folder is not None or "folders match" in c.note if c.note else False
            if c.note and (shown or "--allow-partial" in c.note):  # a refused smoke run is said, not hidden
                notes.setdefault(c.note, []).append(c.column.label)
        for note, labels in notes.items():
            where = "all cells" if len(labels) == len(r.cells) else ", ".join(labels)
            foot.append(f"{r.label} ({where}): {note}")
    if off_rows:
        foot.insert(
            0, "† the paper's printed average differs from the mean of its printed cells: " + "; ".join(off_rows)
        )
    if starred:
        foot.append("* our average over the cells we have (n/N): not comparable with the paper's average")
    if result.mode == "results":
        foot.append(f"{MISSING} missing (no result folder or metric); Δ = ours − paper")
    return _Grid(header, lines, foot)


def _scale_note(table: Table) -> str:
    parts = []
    for c in table.columns:
        if not c.metric:
            continue
        parts.append(f"{c.metric} {_unit(c.scale)}")
    return ", ".join(dict.fromkeys(parts))


def render_markdown(result: TableResult) -> str:
    """Paper / ours / Δ per cell as a GitHub Markdown table (paper mode: the paper's lines only)."""
    table = result.table
    g = _grid(result)
    out = [f"**Table {table.number} ({table.name}) — {table.title}**", ""]
    if result.mode == "results":
        out += [f"Results: `{result.results_dir}`; scales: {_scale_note(table)}.", ""]
    n_text = 2 if result.mode == "results" else 1
    out.append("| " + " | ".join(g.header) + " |")
    out.append("|" + "|".join([":--"] * n_text + ["--:"] * (len(g.header) - n_text)) + "|")
    for line in g.lines:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |")
    if g.footnotes:
        out.append("")
        out += [f"- {f}" for f in g.footnotes]
    return "\n".join(out) + "\n"


def render_text(result: TableResult) -> str:
    """An aligned plain-text version for the terminal."""
    g = _grid(result)
    widths = [max(len(h), *(len(line[i]) for line in g.lines)) if g.lines else len(h) for i, h in enumerate(g.header)]
    n_text = 2 if result.mode == "results" else 1
    lines = [
        "  ".join(c.ljust(w) if i < n_text else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in [g.header, *g.lines]
    ]
    return (
        "\n".join([f"Table {result.table.number} ({result.table.name}): {result.table.title}", *lines, *g.footnotes])
        + "\n"
    )


_LATEX_SPECIAL = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def latex_escape(text: str) -> str:
    """Labels and notes as LaTeX text (the table's own symbols become math)."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("Δ", r"$\Delta$").replace("†", r"$^\dagger$").replace("—", "--").replace("−", "-")


def _latex_cell(cell: str) -> str:
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", cell):
        return f"${cell}$"
    m = re.fullmatch(r"([+-]?\d+(?:\.\d+)?)(\*|†)(.*)", cell)
    if m:
        mark = "^*" if m.group(2) == "*" else r"^\dagger"
        return f"${m.group(1)}{mark}${latex_escape(m.group(3))}"
    return latex_escape(cell)


def render_latex(result: TableResult) -> str:
    """A booktabs ``tabular`` with the same lines as the Markdown table."""
    g = _grid(result)
    n_text = 2 if result.mode == "results" else 1
    spec = "l" * n_text + "r" * (len(g.header) - n_text)
    out = [
        f"% Table {result.table.number} ({result.table.name}): {result.table.title}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in g.header) + r" \\",
        r"\midrule",
    ]
    for i, line in enumerate(g.lines):
        if result.mode == "results" and i and i % 3 == 0:
            out.append(r"\midrule")
        out.append(" & ".join(_latex_cell(c) for c in line) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [f"% {latex_escape(f)}" for f in g.footnotes]
    return "\n".join(out) + "\n"


CSV_FIELDS = (
    "table",
    "row",
    "label",
    "checkpoint",
    "kind",
    "column",
    "column_label",
    "task",
    "subtask",
    "split",
    "metric",
    "scale",
    "paper",
    "paper_mean_of_cells",
    "ours",
    "ours_cells",
    "delta",
    "folder",
    "note",
)


def render_csv(result: TableResult) -> str:
    """Long format, one line per (row, cell or average): easy to diff, filter and plot."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n", restval="")
    w.writeheader()

    def num(v: float | None) -> str:
        return "" if v is None else repr(round(v, 10))

    for r in result.rows:
        base = {"table": result.table.name, "row": r.key, "label": r.label, "checkpoint": r.checkpoint or ""}
        for c in r.cells.values():
            col = c.column
            w.writerow(
                {
                    **base,
                    "kind": "cell",
                    "column": col.key,
                    "column_label": col.label,
                    "task": col.task or "",
                    "subtask": col.subtask or "",
                    "split": col.split or "",
                    "metric": col.metric or "",
                    "scale": f"{col.scale:g}",
                    "paper": num(c.paper),
                    "ours": num(c.ours),
                    "delta": num(c.delta),
                    "folder": c.folder or "",
                    "note": c.note or "",
                }
            )
        for a in r.averages.values():
            w.writerow(
                {
                    **base,
                    "kind": "average",
                    "column": a.average.key,
                    "column_label": a.average.label,
                    "paper": num(a.paper),
                    "paper_mean_of_cells": num(a.paper_mean),
                    "ours": num(a.ours),
                    "ours_cells": f"{a.n_ours}/{a.n_total}",
                    "delta": num(a.delta),
                }
            )
    return buf.getvalue()


def _unit(scale: float) -> str:
    return "×100" if scale == 100 else ("0–1" if scale == 1 else f"×{scale:g}")
