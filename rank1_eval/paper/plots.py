"""A filled table as pictures people compare by eye (matplotlib, Agg; imported only when a plot is drawn).

``plot_png``: grouped bars, every model on **one axis** per table — per cell, each model's paper value (light,
hatched) beside ours (solid, same colour). A table that mixes printed units (mFollowIR: nDCG@20 as 0–1 and p-MRR
×100) gets one axis per unit, side by side, never one per model. ``plot_delta_png``: a heatmap of ours − paper,
cells × models, annotated, diverging around 0, a dash where either value is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rank1_eval.paper.render import _unit
from rank1_eval.paper.results import RowResult, TableResult

_COLOURS = (
    "#2b6cb0",
    "#dd6b20",
    "#2f855a",
    "#805ad5",
    "#c53030",
    "#319795",
    "#b7791f",
    "#4a5568",
    "#d53f8c",
    "#38a169",
    "#3182ce",
)


def axis_groups(result: TableResult) -> dict[float, list[str]]:
    """Printed scale -> keys of the columns (then the averages wholly inside it) drawn on that axis."""
    table = result.table
    groups: dict[float, list[str]] = {}
    for c in table.columns:
        if c.reproducible and c.metric:
            groups.setdefault(c.scale, []).append(c.key)
    for a in table.averages:
        scales = {table.column(k).scale for k in a.of}
        if len(scales) == 1 and (scale := scales.pop()) in groups:
            groups[scale].append(a.key)
    return groups


def _value(r: RowResult, key: str) -> tuple[str, float | None, float | None]:
    """(label, paper, ours) of a cell or an average (an incomplete average of ours is not drawn)."""
    if key in r.cells:
        c = r.cells[key]
        return c.column.label, c.paper, c.ours
    a = r.averages[key]
    return a.average.label, a.paper, a.ours if a.complete else None


def _rows(result: TableResult) -> list[RowResult]:
    rows = [r for r in result.rows if result.mode == "paper" or r.n_ours]
    return rows or list(result.rows)


def plot_png(result: TableResult, path: str | os.PathLike[str]) -> Path:
    """Grouped bars: per cell, every model's paper value and ours side by side on one shared axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    table, groups, rows = result.table, axis_groups(result), _rows(result)
    ours_too = result.mode == "results"
    per_model = 2 if ours_too else 1
    n_cells = sum(len(v) for v in groups.values()) or 1
    width = min(20.0, max(7.0, 1.5 + n_cells * (0.28 * per_model * len(rows) + 0.35)))
    fig, axes = plt.subplots(
        1,
        max(1, len(groups)),
        figsize=(width, 4.6),
        squeeze=False,
        gridspec_kw={"width_ratios": [max(1, len(v)) for v in groups.values()] or [1]},
    )
    slot = 0.84 / (per_model * max(1, len(rows)))
    for ax, (scale, keys) in zip(axes[0], groups.items(), strict=False):
        labels = []
        for x, key in enumerate(keys):
            for i, r in enumerate(rows):
                label, paper, ours = _value(r, key)
                colour = _COLOURS[i % len(_COLOURS)]
                left = x - 0.42 + i * per_model * slot
                if paper is not None:
                    ax.bar(
                        left + slot / 2,
                        paper,
                        slot,
                        color=colour,
                        alpha=0.35,
                        hatch="//",
                        edgecolor=colour,
                        linewidth=0,
                    )
                if ours_too:
                    if ours is not None:
                        ax.bar(left + 1.5 * slot, ours, slot, color=colour)
                    else:
                        ax.text(
                            left + 1.5 * slot, 0, "n/a", ha="center", va="bottom", fontsize=6, color=colour, rotation=90
                        )
            labels.append(label)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(
            labels, rotation=30 if len(keys) > 4 else 0, ha="right" if len(keys) > 4 else "center", fontsize=8
        )
        ax.set_ylabel(_unit(scale), fontsize=9)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.grid(axis="y", color="#e4e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_xlim(-0.55, len(keys) - 0.45)
    handles = [Patch(color=_COLOURS[i % len(_COLOURS)], label=r.label) for i, r in enumerate(rows)]
    handles.append(Patch(facecolor="white", edgecolor="#52606d", hatch="//", label="paper (light, hatched)"))
    if ours_too:
        handles.append(Patch(color="#52606d", label="ours (solid)"))
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(6, len(handles)),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.93),
    )
    what = "paper" if result.mode == "paper" else "ours vs paper"
    fig.suptitle(f"Table {table.number} ({table.name}): {what}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.86))
    return _save(fig, path)


def delta_cells(result: TableResult) -> tuple[list[str], list[str], list[list[float | None]], list[float]]:
    """(row labels, column labels, Δ = ours − paper per row and column, printed scale per column)."""
    groups = axis_groups(result)
    keys = [k for v in groups.values() for k in v]
    scales = [s for s, v in groups.items() for _ in v]
    rows = [r for r in result.rows if r.n_ours] or list(result.rows)
    columns = [_value(rows[0], k)[0] for k in keys] if rows else []
    values: list[list[float | None]] = []
    for r in rows:
        line: list[float | None] = []
        for k in keys:
            _, paper, ours = _value(r, k)
            line.append(None if paper is None or ours is None else ours - paper)
        values.append(line)
    return [r.label for r in rows], columns, values, scales


def plot_delta_png(result: TableResult, path: str | os.PathLike[str]) -> Path:
    """Heatmap of ours − paper (cells × models); colour scaled per printed unit, each cell annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    row_labels, col_labels, values, scales = delta_cells(result)
    grid = np.array([[np.nan if v is None else v for v in line] for line in values], dtype=float).reshape(
        len(row_labels), len(col_labels)
    )
    shade = np.full_like(grid, np.nan)
    for scale in set(scales):  # -1..1 per unit, so a p-MRR gap does not wash out nDCG@20 gaps
        cols = [j for j, s in enumerate(scales) if s == scale]
        block = grid[:, cols]
        top = np.nanmax(np.abs(block)) if np.isfinite(block).any() else 0.0
        shade[:, cols] = block / top if top > 0 else np.where(np.isfinite(block), 0.0, np.nan)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.85 * len(col_labels)), 1.4 + 0.55 * max(1, len(row_labels))))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#eef1f4")
    ax.imshow(np.ma.masked_invalid(shade), cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    for i in range(len(row_labels)):
        for j in range(len(col_labels)):
            v = grid[i, j]
            text = "—" if np.isnan(v) else f"{v:+.{_decimals(result, scales[j])}f}"
            dark = not np.isnan(v) and abs(shade[i, j]) > 0.6
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "#1f2933")
    ax.set_xticks(range(len(col_labels)))
    ax.set_xticklabels(col_labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)))
    ax.set_yticklabels(row_labels, fontsize=8)
    units = ", ".join(dict.fromkeys(_unit(s) for s in scales))
    ax.set_title(
        f"Table {result.table.number} ({result.table.name}): ours − paper ({units}; blue = above the paper)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def _decimals(result: TableResult, scale: float) -> int:
    return next((c.decimals for c in result.table.columns if c.scale == scale), 1)


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
