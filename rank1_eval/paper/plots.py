"""A filled table as a bar chart (matplotlib, Agg; imported only when a plot is drawn)."""

from __future__ import annotations

import os
from pathlib import Path

from rank1_eval.paper.render import _unit
from rank1_eval.paper.results import TableResult


def plot_png(result: TableResult, path: str | os.PathLike[str]) -> Path:
    """Bars of ours vs paper per subset (and average), one panel per row and printed scale (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result.table
    panels: dict[float, list[str]] = {}  # scale -> column keys, then the averages wholly inside the panel
    for c in table.columns:
        if c.reproducible and c.metric:
            panels.setdefault(c.scale, []).append(c.key)
    for a in table.averages:
        scales = {table.column(k).scale for k in a.of}
        if len(scales) == 1 and (scale := scales.pop()) in panels:
            panels[scale].append(a.key)
    rows = [r for r in result.rows if result.mode == "paper" or r.n_ours] or result.rows
    widest = max((len(v) for v in panels.values()), default=1)
    width = min(20.0, max(6.0, 1.2 + 0.55 * sum(len(v) for v in panels.values())))
    fig, axes = plt.subplots(
        max(1, len(rows)), max(1, len(panels)), figsize=(width, 3.4 * max(1, len(rows))), squeeze=False,
        gridspec_kw={"width_ratios": [max(1, len(v)) for v in panels.values()] or [widest]},
    )  # fmt: skip
    for i, r in enumerate(rows):
        for j, (scale, keys) in enumerate(panels.items()):
            ax = axes[i][j]
            labels, paper, ours = [], [], []
            for k in keys:
                if k in r.cells:
                    labels.append(r.cells[k].column.label)
                    paper.append(r.cells[k].paper)
                    ours.append(r.cells[k].ours)
                else:
                    avg = r.averages[k]
                    labels.append(avg.average.label)
                    paper.append(avg.paper)
                    ours.append(avg.ours if avg.complete else None)
            xs = list(range(len(keys)))
            bar_w = 0.4 if result.mode == "results" else 0.6
            shift = 0.2 if result.mode == "results" else 0.0
            ax.bar([x - shift for x in xs], [v or 0 for v in paper], bar_w, label="paper", color="#9aa5b1")
            if result.mode == "results":
                ax.bar([x + shift for x in xs], [v or 0 for v in ours], bar_w, label="ours", color="#2b6cb0")
                for x, v in zip(xs, ours, strict=True):
                    if v is None:
                        ax.text(x + shift, 0, "n/a", ha="center", va="bottom", fontsize=7, color="#b00020")
            ax.set_xticks(xs)
            ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
            ax.set_title(f"{r.label} ({_unit(scale)})", fontsize=9)
            ax.axhline(0, color="black", linewidth=0.5)
            if j == 0:
                ax.legend(fontsize=7)
    fig.suptitle(f"Table {table.number} ({table.name}): {'paper' if result.mode == 'paper' else 'ours vs paper'}")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
