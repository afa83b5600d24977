"""Every rendering of a filled table written to disk at once (``table --out`` and ``reproduce``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rank1_eval.paper.plots import plot_delta_png, plot_png
from rank1_eval.paper.render import render_csv, render_latex, render_markdown
from rank1_eval.paper.results import TableResult


def write_table_files(result: TableResult, out_dir: str | os.PathLike[str], stem: str | None = None) -> dict[str, Path]:
    """``<stem>.md``, ``.csv``, ``.tex``, ``.json`` and ``.png`` (grouped bars) under ``out_dir``, and with
    results ``<stem>.delta.png`` (the ours − paper heatmap)."""
    from rank1_eval.outputs import atomic_open

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or result.table.name
    files = {}
    for ext, text in (
        ("md", render_markdown(result)),
        ("csv", render_csv(result)),
        ("tex", render_latex(result)),
        ("json", json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n"),
    ):
        path = out / f"{stem}.{ext}"
        with atomic_open(path) as f:
            f.write(text)
        files[ext] = path
    files["png"] = plot_png(result, out / f"{stem}.png")
    if result.mode == "results":
        files["delta_png"] = plot_delta_png(result, out / f"{stem}.delta.png")
    return files
