"""Small inline SVG charts for the report.

Why not matplotlib PNGs: these charts are part of the page, not pictures of it — a bar is a link to its query,
every mark has a tooltip (``<title>``), text stays text (searchable, sharp at any zoom) and a chart of a
thousand queries costs a few kB and no second of rendering. Each function returns one ``<svg>`` string; all
text is escaped. Colours: blue/orange/grey for the relevance groups, green/red for gains/losses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

GAIN, LOSS, TIE = "#1a7f37", "#c0392b", "#9aa5b1"
GROUP_COLOURS = {"relevant": "#2b6cb0", "not relevant": "#dd6b20", "unjudged": "#9aa5b1"}
SERIES = ("#2b6cb0", "#dd6b20", "#2f855a", "#805ad5", "#c53030", "#319795", "#b7791f", "#4a5568")


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-6:
        if v >= lo - step * 1e-6:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:.1f}".rstrip("0").rstrip(".")


@dataclass
class Frame:
    """A plot area inside an SVG: data -> pixel mapping, axes with ticks and labels."""

    width: int
    height: int
    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 52
    right: int = 12
    top: int = 26
    bottom: int = 40

    def px(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def py(self, y: float) -> float:
        span = (self.y1 - self.y0) or 1.0
        return self.height - self.bottom - (y - self.y0) / span * (self.height - self.top - self.bottom)

    def axes(
        self,
        *,
        title: str,
        xlabel: str = "",
        ylabel: str = "",
        xticks: Sequence[float] | None = None,
        yticks: Sequence[float] | None = None,
        xtick_labels: Sequence[str] | None = None,
    ) -> list[str]:
        out = [f'<text class="t" x="{self.left}" y="16">{escape(title)}</text>']
        bottom, top = self.height - self.bottom, self.top
        for v in yticks if yticks is not None else nice_ticks(self.y0, self.y1):
            y = self.py(v)
            out.append(
                f'<line class="grid" x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            )
            out.append(f'<text class="tick" x="{self.left - 4}" y="{y + 3:.1f}" text-anchor="end">{_fmt(v)}</text>')
        ticks = list(xticks) if xticks is not None else nice_ticks(self.x0, self.x1)
        labels = list(xtick_labels) if xtick_labels is not None else [_fmt(v) for v in ticks]
        for v, lab in zip(ticks, labels, strict=True):
            x = self.px(v)
            out.append(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}"/>')
            out.append(f'<text class="tick" x="{x:.1f}" y="{bottom + 15}" text-anchor="middle">{escape(lab)}</text>')
        out.append(f'<line class="axis" x1="{self.left}" x2="{self.width - self.right}" y1="{bottom}" y2="{bottom}"/>')
        out.append(f'<line class="axis" x1="{self.left}" x2="{self.left}" y1="{top}" y2="{bottom}"/>')
        if xlabel:
            cx = (self.left + self.width - self.right) / 2
            out.append(
                f'<text class="lab" x="{cx:.0f}" y="{self.height - 6}" text-anchor="middle">{escape(xlabel)}</text>'
            )
        if ylabel:
            cy = (top + bottom) / 2
            out.append(
                f'<text class="lab" transform="translate(12 {cy:.0f}) rotate(-90)" text-anchor="middle">'
                f"{escape(ylabel)}</text>"
            )
        return out


def _svg(width: int, height: int, body: Sequence[str], label: str, cls: str = "") -> str:
    return (
        f'<svg class="chart {cls}" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">' + "".join(body) + "</svg>"
    )


def legend(frame: Frame, items: Sequence[tuple[str, str]], *, x: float | None = None, y: float = 16) -> list[str]:
    """Coloured squares with names, in a row from the right edge of the plot area."""
    out = []
    pos = x if x is not None else frame.width - frame.right
    for name, colour in reversed(items):
        pos -= 7.0 * len(name) + 22
        out.append(f'<rect x="{pos:.0f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text class="tick" x="{pos + 14:.0f}" y="{y}">{escape(name)}</text>')
    return out


@dataclass(frozen=True)
class Bar:
    key: str
    value: float
    href: str | None = None
    tip: str = ""


def delta_bars(bars: Sequence[Bar], *, title: str, ylabel: str, width: int = 1080, height: int = 230) -> str:
    """One bar per query, in the order given (sorted by the caller), green above zero and red below; each bar is
    a link (``href``) with a tooltip."""
    if not bars:
        return _svg(
            width, 60, [f'<text class="t" x="8" y="20">{escape(title)}: no queries with a metric</text>'], title
        )
    lo = min(0.0, min(b.value for b in bars))
    hi = max(0.0, max(b.value for b in bars))
    if hi == lo:
        lo, hi = -0.05, 0.05
    pad = (hi - lo) * 0.05
    f = Frame(width, height, 0, len(bars), lo - pad, hi + pad, bottom=22)
    body = f.axes(title=title, ylabel=ylabel, xticks=[], xtick_labels=[])
    zero = f.py(0.0)
    slot = (width - f.left - f.right) / len(bars)
    w = max(0.6, slot * 0.82)
    for i, b in enumerate(bars):
        colour = GAIN if b.value > 1e-9 else LOSS if b.value < -1e-9 else TIE
        y = f.py(b.value)
        top, h = min(y, zero), max(abs(zero - y), 1.0)
        x = f.left + i * slot + (slot - w) / 2
        # a transparent full-height hit area makes thin bars clickable
        rect = (
            f'<rect class="hit" x="{f.left + i * slot:.2f}" y="{f.top}" width="{slot:.2f}" '
            f'height="{height - f.top - f.bottom}"/><rect x="{x:.2f}" y="{top:.1f}" width="{w:.2f}" height="{h:.1f}" '
            f'fill="{colour}"/><title>{escape(b.tip or f"{b.key}: {b.value:+.4f}")}</title>'
        )
        if b.href:
            body.append(f'<a href="{escape(b.href)}" data-key="{escape(b.key)}">{rect}</a>')
        else:
            body.append(f"<g>{rect}</g>")
    body.append(f'<line class="zero" x1="{f.left}" x2="{width - f.right}" y1="{zero:.1f}" y2="{zero:.1f}"/>')
    return _svg(width, height, body, title, "bars")


def grouped_histogram(
    edges: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    colours: Mapping[str, str] | None = None,
    counts: Mapping[str, int] | None = None,
    width: int = 530,
    height: int = 250,
) -> str:
    """Side-by-side bars per bin, one colour per series (values are what to draw, e.g. shares of a group)."""
    names = [n for n in series if any(v for v in series[n])]
    top = max((v for n in names for v in series[n]), default=1.0) or 1.0
    f = Frame(width, height, edges[0], edges[-1], 0.0, top * 1.08)
    body = f.axes(title=title, xlabel=xlabel, ylabel=ylabel, xticks=nice_ticks(edges[0], edges[-1], 5))
    colours = colours or {}
    for i in range(len(edges) - 1):
        x_lo, x_hi = f.px(edges[i]), f.px(edges[i + 1])
        w = (x_hi - x_lo) * 0.9 / max(1, len(names))
        for j, n in enumerate(names):
            v = series[n][i]
            if not v:
                continue
            y = f.py(v)
            colour = colours.get(n, SERIES[j % len(SERIES)])
            body.append(
                f'<rect x="{x_lo + (x_hi - x_lo) * 0.05 + j * w:.2f}" y="{y:.1f}" width="{w:.2f}" '
                f'height="{f.py(0) - y:.1f}" fill="{colour}"><title>{escape(n)} {edges[i]:g}–{edges[i + 1]:g}: '
                f"{v:.3f}</title></rect>"
            )
    items = [
        (f"{n} ({counts[n]:,})" if counts and n in counts else n, colours.get(n, SERIES[j % len(SERIES)]))
        for j, n in enumerate(names)
    ]
    body += legend(f, items, y=f.top + 8)
    return _svg(width, height, body, title)


def grouped_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    colours: Mapping[str, str] | None = None,
    width: int = 530,
    height: int = 250,
) -> str:
    """Side-by-side bars per named category, one colour per series (e.g. pass-2 share per relevance group)."""
    n, names = len(categories), list(series)
    top = max((v for vs in series.values() for v in vs), default=0.0)
    f = Frame(width, height, 0, max(1, n), 0.0, top * 1.15 if top > 0 else 1.0)
    body = f.axes(title=title, ylabel=ylabel, xticks=[i + 0.5 for i in range(n)], xtick_labels=list(categories))
    colours = colours or {}
    w = 0.76 / max(1, len(names))
    for i in range(n):
        for j, name in enumerate(names):
            v = series[name][i]
            x0, x1 = f.px(i + 0.12 + j * w), f.px(i + 0.12 + (j + 1) * w)
            y = f.py(v)
            colour = colours.get(name, SERIES[j % len(SERIES)])
            body.append(
                f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0 - 1:.1f}" height="{max(0.0, f.py(0) - y):.1f}" '
                f'fill="{colour}"><title>{escape(categories[i])}, {escape(name)}: {v:.3f}</title></rect>'
            )
            body.append(
                f'<text class="tick" x="{(x0 + x1) / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{100 * v:.1f}%</text>'
            )
    body += legend(f, [(name, colours.get(name, SERIES[j % len(SERIES)])) for j, name in enumerate(names)], y=f.top + 8)
    return _svg(width, height, body, title)


def reliability(bins: Sequence[Mapping[str, Any]], *, title: str, width: int = 530, height: int = 250) -> str:
    """Share relevant against mean P(true) per score bin, circles sized by pair count, on the diagonal of
    perfect calibration."""
    f = Frame(width, height, 0.0, 1.0, 0.0, 1.0)
    ticks = [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    body = f.axes(title=title, xlabel="mean P(true) in the bin", ylabel="share relevant", xticks=ticks, yticks=ticks)
    body.append(f'<line class="diag" x1="{f.px(0):.1f}" y1="{f.py(0):.1f}" x2="{f.px(1):.1f}" y2="{f.py(1):.1f}"/>')
    pts = [b for b in bins if b.get("n")]
    biggest = max((int(b["n"]) for b in pts), default=1)
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{f.px(float(b['mean_score'])):.1f},{f.py(float(b['share_relevant'])):.1f}"
        for i, b in enumerate(pts)
    )
    if path:
        body.append(f'<path class="line" d="{path}" stroke="{SERIES[0]}"/>')
    for b in pts:
        n = int(b["n"])
        r = 2.5 + 7.5 * math.sqrt(n / biggest)
        x, y = f.px(float(b["mean_score"])), f.py(float(b["share_relevant"]))
        body.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{SERIES[0]}" fill-opacity="0.55">'
            f"<title>scores {float(b['lo']):.1f}–{float(b['hi']):.1f}: {n:,} pairs, mean P(true) "
            f"{float(b['mean_score']):.3f}, share relevant {float(b['share_relevant']):.3f}</title></circle>"
        )
    return _svg(width, height, body, title)


def value_bars(
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    notes: Sequence[str] | None = None,
    y_max: float | None = None,
    width: int = 530,
    height: int = 250,
) -> str:
    """One bar per labelled category (e.g. accuracy per length bin), a note above each (e.g. its count)."""
    n = len(labels)
    top = y_max if y_max is not None else max((v for v in values if v is not None), default=1.0) * 1.1 or 1.0
    f = Frame(width, height, 0, max(1, n), 0.0, top)
    body = f.axes(
        title=title, xlabel=xlabel, ylabel=ylabel, xticks=[i + 0.5 for i in range(n)], xtick_labels=list(labels)
    )
    for i, v in enumerate(values):
        if v is None:
            continue
        x0, x1 = f.px(i + 0.12), f.px(i + 0.88)
        y = f.py(v)
        tip = f"{labels[i]}: {v:.3f}" + (f" ({notes[i]})" if notes else "")
        body.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{x1 - x0:.1f}" height="{f.py(0) - y:.1f}" fill="{SERIES[0]}">'
            f"<title>{escape(tip)}</title></rect>"
        )
        if notes:
            body.append(
                f'<text class="tick" x="{(x0 + x1) / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">'
                f"{escape(notes[i])}</text>"
            )
    return _svg(width, height, body, title)


def lines(
    series: Mapping[str, Sequence[tuple[float, float, str]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 530,
    height: int = 250,
) -> str:
    """One line with labelled points per series (x, y, point label), e.g. metric against reasoning tokens."""
    pts = [(x, y) for s in series.values() for x, y, _ in s]
    if not pts:
        return _svg(width, 60, [f'<text class="t" x="8" y="20">{escape(title)}: no points</text>'], title)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xpad = (max(xs) - min(xs)) * 0.06 or 1.0
    ypad = (max(ys) - min(ys)) * 0.15 or 0.05
    f = Frame(width, height, min(xs) - xpad, max(xs) + xpad, min(ys) - ypad, max(ys) + ypad, right=60)
    body = f.axes(title=title, xlabel=xlabel, ylabel=ylabel)
    items = []
    placed: list[tuple[float, float, float, float]] = []  # label boxes drawn so far: a new label avoids them
    for j, (name, s) in enumerate(series.items()):
        colour = SERIES[j % len(SERIES)]
        items.append((name, colour))
        d = " ".join(f"{'M' if i == 0 else 'L'}{f.px(x):.1f},{f.py(y):.1f}" for i, (x, y, _) in enumerate(s))
        body.append(f'<path class="line" d="{d}" stroke="{colour}"/>')
        for x, y, lab in s:
            body.append(
                f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(lab)}: {y:.4f} at {x:,.1f}</title></circle>"
            )
            lx, ly, anchor = _free_spot(placed, f.px(x), f.py(y), lab, width)
            body.append(f'<text class="tick" x="{lx:.1f}" y="{ly:.1f}" text-anchor="{anchor}">{escape(lab)}</text>')
    if len(items) > 1:
        body += legend(f, items, y=f.top + 8)
    return _svg(width, height, body, title)


def _free_spot(
    placed: list[tuple[float, float, float, float]], px: float, py: float, text: str, width: int
) -> tuple[float, float, str]:
    """Where a point's label goes: above right, below right, above left, below left, further out — the first
    spot that overlaps no label placed before (budgets of near-equal length otherwise print over each other)."""
    w, h = 6.2 * len(text), 11.0
    spots = [
        (5, -6, "start"),
        (5, 14, "start"),
        (-5, -6, "end"),
        (-5, 14, "end"),
        (5, -18, "start"),
        (5, 26, "start"),
        (-5, -18, "end"),
        (-5, 26, "end"),
    ]
    for dx, dy, anchor in spots:
        x0 = px + dx if anchor == "start" else px + dx - w
        box = (x0, py + dy - h, x0 + w, py + dy)
        inside = box[0] >= 0 and box[2] <= width
        if inside and not any(b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3] for b in placed):
            placed.append(box)
            return px + dx, py + dy, anchor
    placed.append((px + 5, py - 6 - h, px + 5 + w, py - 6))
    return px + 5, py - 6, "start"


def scatter(
    points: Sequence[tuple[float, float, str, str | None]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    lo: float = 0.0,
    hi: float = 1.0,
    width: int = 420,
    height: int = 330,
) -> str:
    """Points (x, y, tooltip, href) on equal axes with the diagonal x = y: above it, y is better."""
    f = Frame(width, height, lo, hi, lo, hi)
    ticks = nice_ticks(lo, hi, 5)
    body = f.axes(title=title, xlabel=xlabel, ylabel=ylabel, xticks=ticks, yticks=ticks)
    body.append(f'<line class="diag" x1="{f.px(lo):.1f}" y1="{f.py(lo):.1f}" x2="{f.px(hi):.1f}" y2="{f.py(hi):.1f}"/>')
    for x, y, tip, href in points:
        colour = GAIN if y > x + 1e-9 else LOSS if y < x - 1e-9 else TIE
        dot = (
            f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="3.5" fill="{colour}" fill-opacity="0.7">'
            f"<title>{escape(tip)}</title></circle>"
        )
        body.append(f'<a href="{escape(href)}">{dot}</a>' if href else dot)
    return _svg(width, height, body, title)


def heatmap(
    matrix: Sequence[Sequence[int]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    edges: Sequence[float],
    width: int = 420,
    height: int = 330,
) -> str:
    """Counts on a square grid (row 0 at the bottom), shaded by log count: where two runs' scores agree."""
    n = len(matrix)
    f = Frame(width, height, edges[0], edges[-1], edges[0], edges[-1])
    ticks = nice_ticks(edges[0], edges[-1], 5)
    body = f.axes(title=title, xlabel=xlabel, ylabel=ylabel, xticks=ticks, yticks=ticks)
    top = max((c for row in matrix for c in row), default=0)
    for i in range(n):  # i: y bin
        for j in range(n):  # j: x bin
            c = matrix[i][j]
            if not c:
                continue
            shade = 0.15 + 0.85 * math.log1p(c) / math.log1p(top)
            x0, x1 = f.px(edges[j]), f.px(edges[j + 1])
            y0, y1 = f.py(edges[i + 1]), f.py(edges[i])
            body.append(
                f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" fill="{SERIES[0]}" '
                f'fill-opacity="{shade:.2f}"><title>{c:,} pairs</title></rect>'
            )
    return _svg(width, height, body, title)
