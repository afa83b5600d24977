"""``rank1-eval report DIR``: one self-contained static HTML page for a result folder.

The page is for reading a run, not for running anything: no server, no CDN, no JavaScript. It shows the
metric table and the cost line, the test against the first stage, histograms of scores and output tokens
(inline base64 PNGs), and per query the reranked list — first-stage rank → new rank, score, relevance label —
with each pair's reasoning in a ``<details>`` element. Every piece of text from the run is HTML-escaped:
reasoning is model output and may contain anything.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from rank1_eval.runs import ranked

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1150px;
 color:#1f2933;background:#fff;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #d9dee3}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#52606d;font-size:13px}code{font-size:12px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #d9dee3;padding:3px 8px;vertical-align:top}
th{background:#f0f4f8;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cost{background:#f0f4f8;padding:8px 10px;border-radius:4px}
.up{color:#1a7f37}.down{color:#b42318}.same{color:#52606d}
tr.rel-pos td.label{background:#dcfce7;font-weight:600}tr.rel-unjudged td.label{color:#9aa5b1}
.path-pass2{color:#b45309}.path-failed{color:#b42318;font-weight:600}
details summary{cursor:pointer;color:#2b6cb0}pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;
 background:#f8fafc;padding:6px;border-radius:3px;font-size:12px}
.figs{display:flex;gap:16px;flex-wrap:wrap}.figs img{max-width:540px;border:1px solid #d9dee3}
.qtext{margin:0 0 6px;color:#323f4b}nav.toc{columns:4;font-size:12px}
"""


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _texts(source: str | None, qids: set[str], docids: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Query and document texts when the task is a local BEIR folder (mteb tasks: ids only, nothing loaded)."""
    if not source or source == "mteb" or not Path(source).is_dir():
        return {}, {}
    folder = Path(source)
    queries: dict[str, str] = {}
    docs: dict[str, str] = {}
    if (folder / "queries.jsonl").is_file():
        for q in _read_jsonl(folder / "queries.jsonl"):
            if str(q.get("_id")) in qids:
                queries[str(q["_id"])] = str(q.get("text", ""))
    if (folder / "corpus.jsonl").is_file():
        for d in _read_jsonl(folder / "corpus.jsonl"):
            if str(d.get("_id")) in docids:
                docs[str(d["_id"])] = f"{d.get('title') or ''} {d.get('text', '')}".strip()
    return queries, docs


def _histogram_png(values: Sequence[float], title: str, xlabel: str, bins: int = 20) -> str:
    """A histogram as a base64 PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.0))
    if values:
        ax.hist(list(values), bins=bins, color="#2b6cb0", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("pairs", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _metric_rows(summary: Mapping[str, Any]) -> list[tuple[str, Any]]:
    metrics = summary.get("metrics", {})
    names = [summary.get("main_metric")] + [
        m
        for m in ("ndcg_at_1", "ndcg_at_5", "ndcg_at_10", "ndcg_at_20", "map_at_100", "mrr_at_10", "recall_at_100")
        if m in metrics
    ]
    rows = [(n, metrics.get(n, summary.get("main_score"))) for n in dict.fromkeys(n for n in names if n)]
    for qname, values in (summary.get("extra_qrels") or {}).items():
        rows += [(f"{qname}: {m}", v) for m, v in values.items()]
    return rows


def _cost_line(summary: Mapping[str, Any]) -> str:
    from rank1_eval.evaluate import cost_line

    try:
        return cost_line(summary)
    except (KeyError, TypeError):
        return "cost counters missing from summary.json"


def _vs_first_stage(summary: Mapping[str, Any]) -> list[str]:
    vs = summary.get("vs_first_stage")
    if not vs:
        return []
    rnd, tt = vs.get("randomization", {}), vs.get("t_test", {})
    return [
        "<h2>Against the first stage</h2>",
        "<table><tr><th>metric</th><th>queries</th><th>reranked</th><th>first stage</th><th>Δ</th>"
        "<th>wins/ties/losses</th><th>t-test p</th><th>randomization p</th></tr>",
        f"<tr><td>{escape(str(vs.get('metric')))}</td><td class=num>{vs.get('n_queries')}</td>"
        f"<td class=num>{_num(vs.get('mean_a'))}</td><td class=num>{_num(vs.get('mean_b'))}</td>"
        f"<td class=num>{_num(vs.get('mean_delta'))}</td>"
        f"<td class=num>{vs.get('wins')}/{vs.get('ties')}/{vs.get('losses')}</td>"
        f"<td class=num>{_num(tt.get('p_value'))}</td><td class=num>{_num(rnd.get('p_value'))}</td></tr>",
        "</table>",
    ]


def _move(first: int | None, new: int) -> str:
    if first is None:
        return '<span class="same">new</span>'
    if first > new:
        return f'<span class="up">▲{first - new}</span>'
    if first < new:
        return f'<span class="down">▼{new - first}</span>'
    return '<span class="same">=</span>'


def render_report(
    folder: str | os.PathLike[str], *, texts: bool = True, max_doc_chars: int = 600, allow_partial: bool = False
) -> str:
    """The HTML page of one result folder (summary.json + traces.jsonl; qrels.tsv for the labels).

    ``folder``: a run folder, or a task folder holding one complete run (:func:`rank1_eval.layout.resolve_run_folder`).
    """
    from rank1_eval.beir import read_qrels
    from rank1_eval.layout import resolve_run_folder

    root = resolve_run_folder(folder, allow_partial=allow_partial)
    summary_path, traces_path = root / "summary.json", root / "traces.jsonl"
    if not summary_path.is_file() or not traces_path.is_file():
        raise FileNotFoundError(f"{root} is not a result folder (needs summary.json and traces.jsonl)")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    traces = list(_read_jsonl(traces_path))
    qrels = read_qrels(root / "qrels.tsv") if (root / "qrels.tsv").is_file() else {}
    prov = summary.get("provenance", {})
    by_query: dict[str, list[dict[str, Any]]] = {}
    for t in traces:
        by_query.setdefault(str(t["qid"]), []).append(t)
    qtexts, dtexts = (
        _texts(prov.get("task_source"), set(by_query), {str(t["docid"]) for t in traces}) if texts else ({}, {})
    )

    title = f"{summary.get('task', root.name)} — {prov.get('model', '?')}"
    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>rank1 report: {escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="meta">'
        + " · ".join(
            escape(f"{k}: {v}")
            for k, v in (
                ("engine", prov.get("engine")),
                ("dtype", prov.get("dtype")),
                ("prompt set", prov.get("prompt_set")),
                ("split", prov.get("split")),
                ("top-k", prov.get("top_k")),
                ("run file", prov.get("run_file")),
                ("queries", summary.get("queries")),
            )
            if v is not None
        )
        + "</p>",
    ]
    if prov.get("command_line"):
        h.append(f'<p class="meta"><code>{escape(" ".join(map(str, prov["command_line"])))}</code></p>')
    h += ["<h2>Metrics</h2>", "<table><tr><th>metric</th><th>value</th></tr>"]
    h += [f"<tr><td>{escape(str(n))}</td><td class=num>{_num(v)}</td></tr>" for n, v in _metric_rows(summary)]
    h.append("</table>")
    h.append(f'<p class="cost">{escape(_cost_line(summary))}</p>')
    if summary.get("run_warnings"):
        h.append("<ul>" + "".join(f"<li>{escape(str(w))}</li>" for w in summary["run_warnings"]) + "</ul>")
    h += _vs_first_stage(summary)

    scores = [float(t["score"]) for t in traces if t.get("score") is not None]
    tokens = [float(t.get("output_tokens") or 0) for t in traces]
    score_png = _histogram_png(scores, "scores P(true)", "score")
    token_png = _histogram_png(tokens, "output tokens per pair", "tokens")
    h += [
        "<h2>Distributions</h2>",
        '<div class="figs">',
        f'<img alt="histogram of scores" src="data:image/png;base64,{score_png}">',
        f'<img alt="histogram of output tokens" src="data:image/png;base64,{token_png}">',
        "</div>",
    ]
    paths: dict[str, int] = {}
    for t in traces:
        paths[str(t.get("path"))] = paths.get(str(t.get("path")), 0) + 1
    h.append('<p class="meta">' + escape(", ".join(f"{k}: {v}" for k, v in sorted(paths.items()))) + "</p>")

    h.append(f"<h2>Queries ({len(by_query)})</h2>")
    anchors = {qid: f"q{i}" for i, qid in enumerate(by_query, start=1)}
    h.append('<nav class="toc">' + "".join(f'<a href="#{anchors[q]}">{escape(q)}</a><br>' for q in by_query) + "</nav>")
    for qid, pairs in by_query.items():
        h += _query_section(qid, anchors[qid], pairs, qrels.get(qid, {}), qtexts.get(qid), dtexts, max_doc_chars)
    h.append("</body></html>")
    return "\n".join(h) + "\n"


def _query_section(
    qid: str,
    anchor: str,
    pairs: list[dict[str, Any]],
    labels: Mapping[str, int],
    qtext: str | None,
    dtexts: Mapping[str, str],
    max_doc_chars: int,
) -> list[str]:
    by_doc = {str(t["docid"]): t for t in pairs}
    order = ranked({d: float(t["score"]) for d, t in by_doc.items()})  # the evaluator's order (ties: docid desc)
    judged_pos = sum(1 for d in by_doc if labels.get(d, 0) > 0)
    out = [
        f'<section class="query" id="{anchor}" data-qid="{escape(qid)}">',
        f"<h3>Query {escape(qid)} <span class=meta>({len(pairs)} pairs, {judged_pos} relevant among them)</span></h3>",
    ]
    if qtext:
        out.append(f'<p class="qtext">{escape(qtext)}</p>')
    out.append(
        '<table class="pairs"><tr><th>new</th><th>first stage</th><th>move</th><th>doc</th><th>score</th>'
        "<th>label</th><th>path</th><th>tokens</th><th>reasoning</th></tr>"
    )
    for new_rank, (docid, score) in enumerate(order, start=1):
        t = by_doc[docid]
        first = t.get("first_stage_rank")
        label = labels.get(docid)
        label_text = "unjudged" if label is None else str(label)
        css = "rel-unjudged" if label is None else ("rel-pos" if label > 0 else "rel-neg")
        path = str(t.get("path"))
        doc = dtexts.get(docid)
        doc_html = f"<code>{escape(docid)}</code>"
        if doc:
            short = doc if len(doc) <= max_doc_chars else doc[:max_doc_chars] + "…"
            doc_html += f"<details><summary>text</summary><pre>{escape(short)}</pre></details>"
        reasoning = str(t.get("reasoning") or "")
        extra = []
        if t.get("forced_reasoning") is not None:
            extra.append(f"<p>forced answer after:</p><pre>{escape(str(t['forced_reasoning']))}</pre>")
        if t.get("error"):
            extra.append(f"<p class=path-failed>error: {escape(str(t['error']))}</p>")
        stop = t.get("stop_reason") or t.get("finish_reason")
        out.append(
            f'<tr class="pair {css}" data-docid="{escape(docid)}">'
            f"<td class=num>{new_rank}</td><td class=num>{'—' if first is None else int(first)}</td>"
            f"<td>{_move(first, new_rank)}</td><td>{doc_html}</td><td class=num>{score:.4f}</td>"
            f'<td class="label">{escape(label_text)}</td><td class="path-{escape(path)}">{escape(path)}</td>'
            f"<td class=num>{_num(t.get('output_tokens'))}</td>"
            f"<td><details><summary>reasoning ({escape(str(stop))})</summary><pre>{escape(reasoning)}</pre>"
            f"{''.join(extra)}</details></td></tr>"
        )
    out += ["</table>", "</section>"]
    return out


def write_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, **kwargs: Any) -> Path:
    """Write the page (default ``<run folder>/report.html``) and return its path."""
    from rank1_eval.layout import resolve_run_folder
    from rank1_eval.outputs import atomic_open

    root = resolve_run_folder(folder, allow_partial=kwargs.get("allow_partial", False))
    path = Path(out) if out else root / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    page = render_report(root, **kwargs)
    with atomic_open(path) as f:
        f.write(page)
    return path
