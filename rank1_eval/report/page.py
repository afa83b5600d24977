"""What every report page shares: the skeleton, the inlined stylesheet and script, the per-query data blobs.

A page is one self-contained HTML file (no server, no CDN, nothing fetched). The part a reader sees first —
metrics, charts, the query index — is plain HTML and SVG, so it paints before any script runs. The pairs of
each query (reasoning, passages) are a gzip-compressed, base64-encoded JSON blob at the end of the page, one per
query, inflated by the script only when that query is opened: the first paint does not grow with the number
of pairs, and the file stays a fraction of the size of its text.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

ASSETS = Path(__file__).resolve().parent
PAGE_SIZE = 100  # query index rows per page


def asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def blob(data: Any) -> str:
    """JSON -> gzip -> base64 (what the page's script inflates with DecompressionStream)."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return base64.b64encode(gzip.compress(raw, compresslevel=6, mtime=0)).decode("ascii")


def unblob(text: str) -> Any:
    """The inverse of :func:`blob` (tests and scripts read a page's data with it)."""
    return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))


def href(qid: str) -> str:
    return "#q=" + quote(qid, safe="")


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def signed(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "—"
    cls = "gain" if value > 1e-9 else "loss" if value < -1e-9 else "same"
    return f'<span class="{cls}">{value:+.{digits}f}</span>'


def sort_value(value: Any) -> str:
    return "" if value is None else escape(str(value))


def head(title: str, mode: str) -> list[str]:
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{asset('report.css')}</style>",
        "<noscript><style>tr[hidden]{display:table-row!important}</style></noscript></head>",
        f'<body data-mode="{mode}">',
    ]


def tail(blobs: Iterable[tuple[str, str]]) -> list[str]:
    """The data blobs, then the script (last, so it runs once everything above is parsed)."""
    out = ['<div id="data" hidden>']
    out += [f'<script type="application/octet-stream" data-qid="{escape(qid)}">{b64}</script>' for qid, b64 in blobs]
    out.append("</div>")
    out.append(f"<script>{asset('report.js')}</script>")
    out.append("</body></html>")
    return out


def index_controls(metric_label: str, *, paths: bool = True) -> str:
    """Search and filters above a query index (the script reads them by id)."""
    path_filter = (
        '<label>path <select id="f-path"><option value="all">any</option><option value="pass2">has pass 2</option>'
        '<option value="failed">has failed</option><option value="trunc">has truncated</option></select></label>'
        if paths
        else ""
    )
    return (
        '<div class="controls">'
        '<input type="search" id="f-search" placeholder="search query id or text" aria-label="search queries">'
        '<label>Δ <select id="f-delta"><option value="all">any</option><option value="gain">gains</option>'
        '<option value="loss">losses</option><option value="tie">ties</option></select></label>'
        f"{path_filter}"
        '<label>label <select id="f-label"><option value="all">any</option>'
        '<option value="rel">relevant among candidates</option>'
        '<option value="norel">none relevant among candidates</option></select></label>'
        f'<label>{escape(metric_label)} ≤ <input type="number" id="f-metric" step="0.05" min="0" max="1"></label>'
        "</div>"
        '<div class="pager"><button id="pager-prev">◀</button><button id="pager-next">▶</button>'
        '<span id="pager-info" class="meta"></span></div>'
    )


def index_row(qid: str, cells: Sequence[tuple[str, Any]], data: Mapping[str, Any], hidden: bool) -> str:
    """One row of a query index: ``cells`` are (HTML, sort value); ``data`` become ``data-*`` attributes."""
    attrs = "".join(f' data-{k}="{sort_value(v)}"' for k, v in data.items())
    tds = "".join(f'<td data-s="{sort_value(s)}"{_td_class(i, s)}>{h}</td>' for i, (h, s) in enumerate(cells))
    return f'<tr data-qid="{escape(qid)}"{attrs}{" hidden" if hidden else ""}>{tds}</tr>'


def _td_class(i: int, s: Any) -> str:
    if i == 0:
        return ' class="id"'
    return " class=num" if isinstance(s, int | float) or s is None else ""


def snippet(text: str | None, n: int = 110) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return escape(text if len(text) <= n else text[:n] + "…")


def cap(text: str | None, n: int) -> tuple[str | None, int | None]:
    """A text cut to ``n`` characters, and its full length when it was cut (the page says so)."""
    if text is None:
        return None, None
    return (text, None) if len(text) <= n else (text[:n], len(text))
