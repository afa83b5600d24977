"""``rank1-eval report``: self-contained HTML pages for reading runs — one result folder, or two side by side.

``data`` reads a result folder and computes what the pages show (pure functions, tested by hand), ``svg``
draws the charts, ``page`` holds the shared skeleton, stylesheet, script and data blobs, ``single`` is the page
of one run and ``side_by_side`` the page of two. Nothing here imports mteb, torch or vLLM.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rank1_eval.report.data import ReportError, load_run
from rank1_eval.report.page import unblob
from rank1_eval.report.side_by_side import FIRST_STAGE, default_output, render_comparison
from rank1_eval.report.single import render_report


def _write(path: Path, page: str) -> Path:
    from rank1_eval.outputs import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        f.write(page)
    return path


def write_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **kwargs: Any) -> Path:
    """Write the page of one result folder (default ``<run folder>/report.html``) and return its path."""
    from rank1_eval.layout import ResultsError
    from rank1_eval.outputs import open_run

    try:
        root = open_run(folder, allow_partial=kwargs.get("allow_partial", False)).path
    except ResultsError as exc:
        raise ReportError(str(exc)) from None
    return _write(Path(out) if out else root / "report.html", render_report(root, **kwargs))


def write_comparison(
    dir_a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Path:
    """Write the page of A against B (default ``A/report-vs-<B>.html``) and return its path."""
    partial = kwargs.get("allow_partial", False)
    target = Path(out) if out else default_output(dir_a, b, allow_partial=partial)
    return _write(target, render_comparison(dir_a, b, **kwargs))


__all__ = [
    "FIRST_STAGE",
    "ReportError",
    "load_run",
    "render_comparison",
    "render_report",
    "unblob",
    "write_comparison",
    "write_report",
]
