"""The page of one result folder: what the run scored, where it gained and lost, and why, pair by pair."""

from __future__ import annotations

import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from rank1_eval.report import data as D
from rank1_eval.report import svg
from rank1_eval.report.page import (
    PAGE_SIZE,
    blob,
    cap,
    head,
    href,
    index_controls,
    index_row,
    num,
    signed,
    snippet,
    tail,
)


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


def cost_line(summary: Mapping[str, Any]) -> str:
    from rank1_eval.evaluate import cost_line as line

    try:
        return line(summary)
    except (KeyError, TypeError):
        return "cost counters missing from summary.json"


def _sampling(prov: Mapping[str, Any]) -> Mapping[str, Any]:
    value = prov.get("sampling")
    return value if isinstance(value, dict) else {}


def provenance_line(view: D.RunView) -> str:
    prov, summary = view.provenance, view.summary
    items = (
        ("engine", prov.get("engine")),
        ("dtype", prov.get("dtype")),
        ("prompt set", prov.get("prompt_set")),
        ("split", prov.get("split")),
        ("top-k", prov.get("top_k")),
        ("max output tokens", _sampling(prov).get("max_output_tokens")),
        ("context", _sampling(prov).get("context_size")),
        ("run file", prov.get("run_file")),
        ("queries", summary.get("queries") or len(view.by_query)),
        ("queries evaluated", summary.get("queries_evaluated")),
        ("judged without candidates (scored 0)", summary.get("judged_without_candidates") or None),
        ("ignore_identical_ids", "yes" if view.rules.ignore_identical_ids else None),
        ("pairs", view.n_pairs),
        ("texts", view.texts_source),
    )
    return '<p class="meta">' + " · ".join(escape(f"{k}: {v}") for k, v in items if v is not None) + "</p>"


def vs_first_stage(summary: Mapping[str, Any]) -> list[str]:
    vs = summary.get("vs_first_stage")
    if not vs:
        return []
    rnd, tt = vs.get("randomization", {}), vs.get("t_test", {})
    return [
        "<h3>Against the first stage</h3>",
        "<table><tr><th>metric</th><th>queries</th><th>reranked</th><th>first stage</th><th>Δ</th>"
        "<th>wins/ties/losses</th><th>t-test p</th><th>randomization p</th></tr>",
        f"<tr><td>{escape(str(vs.get('metric')))}</td><td class=num>{vs.get('n_queries')}</td>"
        f"<td class=num>{num(vs.get('mean_a'))}</td><td class=num>{num(vs.get('mean_b'))}</td>"
        f"<td class=num>{num(vs.get('mean_delta'))}</td>"
        f"<td class=num>{vs.get('wins')}/{vs.get('ties')}/{vs.get('losses')}</td>"
        f"<td class=num>{num(tt.get('p_value'))}</td><td class=num>{num(rnd.get('p_value'))}</td></tr>",
        "</table>",
    ]


def _pct(part: int, whole: int) -> str:
    return f"{part:,} ({100 * part / whole:.1f}%)" if whole else "0"


def analysis_sections(view: D.RunView, who: str = "") -> list[str]:
    """Score distributions by label, calibration, reasoning length vs correctness, paths by label."""
    if not view.reasoning:  # a baseline's folder: scores on the model's own scale, no reasoning, no P(true)
        kind = view.summary.get("model_kind") or "a ranking without reasoning"
        return [
            f'<h2 id="scores">Scores{escape(who)}</h2>',
            f'<p class="note">{escape(str(kind))}: scores on the model\'s own scale and no reasoning; the P(true), '
            "calibration and reasoning-length charts are drawn for rank1 runs.</p>",
        ]
    pairs = list(view.pairs)
    out = [f'<h2 id="scores">Scores, calibration and reasoning{escape(who)}</h2>']
    dist = D.score_distributions(pairs)
    totals = {g: sum(c) for g, c in dist["counts"].items()}
    shares = {g: [c / totals[g] if totals[g] else 0.0 for c in counts] for g, counts in dist["counts"].items()}
    cal = D.calibration(pairs)
    out.append('<div class="figs">')
    out.append(
        svg.grouped_histogram(
            dist["edges"],
            shares,
            title="P(true) by relevance label (share of each group's pairs)",
            xlabel="P(true)",
            ylabel="share of the group",
            colours=svg.GROUP_COLOURS,
            counts=totals,
        )
    )
    out.append(svg.reliability(cal["bins"], title="Calibration: share relevant per P(true) bin"))
    lvc = D.length_vs_correctness(pairs)
    labels = [f"{b['lo']:.0f}–{b['hi']:.0f}" for b in lvc["bins"]]
    out.append(
        svg.value_bars(
            labels,
            [b["accuracy"] for b in lvc["bins"]],
            title="Accuracy of the call by reasoning length",
            xlabel="output tokens (bins of about equal size)",
            ylabel="correct calls",
            y_max=1.0,
            notes=[f"{b['n']:,}" for b in lvc["bins"]],
        )
    )
    rates = D.path_rates(pairs)
    out.append(_path_svg(rates))
    out.append("</div>")
    out.append(
        '<p class="note">A pair is <b>relevant</b> when its qrels grade is above 0; unjudged pairs count as not '
        "relevant (as trec_eval and mteb count them). The <b>call</b> is P(true) ≥ 0.5; it is <b>correct</b> when "
        "it matches relevance. "
        + escape(
            f"Over {cal['n']:,} pairs ({cal['n_relevant']:,} relevant): ECE {num(cal['ece'], 3)}, "
            f"Brier {num(cal['brier'], 3)}, ROC AUC {num(cal['auc'], 3)}."
        )
        + "</p>"
    )
    rows = "".join(
        f"<tr><td>{escape(g)}</td><td class=num>{s['n']:,}</td><td class=num>{num(s['accuracy'], 3)}</td>"
        f"<td class=num>{num(s['tokens_correct'], 1)} ({s['n_correct']:,})</td>"
        f"<td class=num>{num(s['tokens_wrong'], 1)} ({s['n_wrong']:,})</td></tr>"
        for g, s in lvc["groups"].items()
    )
    out.append(
        '<div class="figs"><div><h3>Reasoning length of correct and wrong calls</h3>'
        "<table><tr><th>label</th><th>pairs</th><th>accuracy</th><th>mean tokens, correct (n)</th>"
        f"<th>mean tokens, wrong (n)</th></tr>{rows}</table></div>"
    )
    rows = "".join(
        f"<tr><td>{escape(g)}</td><td class=num>{r['n']:,}</td>"
        + "".join(f"<td class=num>{_pct(r[k], r['n'])}</td>" for k in ("pass1", "pass2", "failed", "truncated"))
        + f"<td class=num>{num(r['tokens'], 1)}</td><td class=num>{num(r['score'], 3)}</td></tr>"
        for g, r in rates.items()
    )
    out.append(
        "<div><h3>Paths and truncation by label</h3><table><tr><th>label</th><th>pairs</th><th>pass 1</th>"
        "<th>pass 2</th><th>failed</th><th>truncated</th><th>mean tokens</th><th>mean P(true)</th></tr>"
        f"{rows}</table></div></div>"
    )
    return out


def _path_svg(rates: Mapping[str, Mapping[str, Any]]) -> str:
    """Pass-2, failed and truncated shares per relevance group, side by side."""
    groups = [g for g in D.GROUPS if rates[g]["n"]]
    series = {k: [rates[g][k] / rates[g]["n"] for g in groups] for k in ("pass2", "failed", "truncated")}
    return svg.grouped_bars(
        [f"{g} ({rates[g]['n']:,})" for g in groups],
        series,
        title="Pass 2, failed and truncated pairs by label",
        ylabel="share of the group's pairs",
        colours={"pass2": "#b7791f", "failed": "#c0392b", "truncated": "#805ad5"},
    )


# the budget table's columns (sweep.json keys) with the headers the rest of the page uses
SWEEP_COLUMNS = (
    ("source", "made by"),
    ("reasoning_tokens_mean", "mean reasoning tokens"),
    ("reasoning_tokens_p95", "p95 tokens"),
    ("pass2_share", "pass 2 share"),
    ("generated_tokens", "tokens a real run decodes"),
    ("sweep_kept", "kept"),
    ("sweep_cut", "cut + forced answer"),
    ("sweep_run", "judged for real"),
    ("sweep_prefill_tokens", "prefill tokens"),
    ("vs_first_stage_delta", "Δ vs first stage"),
)


def sweep_section(folder: Path) -> list[str]:
    """The budget curve of ``rank1-eval sweep`` (``sweep.json``), or its picture when only that exists."""
    sweep = D.read_sweep(folder)
    out: list[str] = []
    if sweep and sweep["rows"]:
        metric = str(sweep["metric"])
        points = [
            (float(r["tokens"]), float(r["value"]), f"budget {r['budget']}")
            for r in sweep["rows"]
            if r["tokens"] is not None and r["value"] is not None
        ]
        out += ['<h2 id="budget">Reasoning budget</h2>', '<div class="figs">']
        out.append(
            svg.lines(
                {sweep.get("task") or "this task": points},
                title=f"{metric} against mean reasoning tokens",
                xlabel="mean reasoning tokens per pair",
                ylabel=metric,
            )
        )
        rows = sweep["rows"]
        columns = [(k, label) for k, label in SWEEP_COLUMNS if any(r.get(k) is not None for r in rows)]
        head_cells = "".join(f"<th>{escape(label)}</th>" for _, label in columns)
        body = "".join(
            f"<tr><td class=num>{escape(str(r['budget']))}</td><td class=num>{num(r['value'])}</td>"
            + "".join(f"<td class=num>{_short(r.get(k))}</td>" for k, _ in columns)
            + "</tr>"
            for r in rows
        )
        out.append(
            f'</div><div class="scroll"><table><tr><th>budget</th><th>{escape(metric)}</th>{head_cells}</tr>'
            f"{body}</table></div>"
        )
    elif (folder / "sweep.png").is_file():
        import base64

        data = base64.b64encode((folder / "sweep.png").read_bytes()).decode("ascii")
        out += ['<h2 id="budget">Reasoning budget</h2>', f'<img alt="budget sweep" src="data:image/png;base64,{data}">']
    return out


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _short(value: Any) -> str:
    """Sweep-table cells: shares and metrics with 4 decimals, token counts with 1."""
    if isinstance(value, float) and abs(value) >= 10:
        return f"{value:,.1f}"
    return num(value)


def query_payload(view: D.RunView, qid: str, max_doc_chars: int) -> dict[str, Any]:
    """Everything the page shows when one query is opened."""
    pairs = sorted(view.by_query[qid], key=lambda t: t["rank"])
    st = D.query_stats(view, qid)
    metric = D.measure_label(view.measure)
    summary = (
        f"{metric} {num(st['metric'])} (first stage {num(st['metric_fs'])}, Δ "
        f"{'—' if st['delta'] is None else format(st['delta'], '+.4f')}) · {st['pairs']} pairs · "
        f"{st['relevant']} relevant among them ({st['relevant_total']} judged relevant) · "
        f"mean {st['tokens']:.0f} output tokens"
    )
    rows = []
    for t in pairs:
        text, full = cap(view.texts.docs.get(t["docid"]), max_doc_chars)
        rows.append(
            {
                "d": t["docid"],
                "r": t["rank"],
                "f": t.get("first_stage_rank"),
                "fs": t.get("first_stage_score"),
                "s": float(t["score"]),
                "l": t.get("label"),
                "p": t.get("path"),
                "t": t.get("output_tokens"),
                "tr": bool(t.get("truncated")),
                "st": t.get("stop_reason") or t.get("finish_reason"),
                "re": t.get("reasoning"),
                "fr": t.get("forced_reasoning"),
                "e": t.get("error"),
                "x": text,
                "xn": full,
            }
        )
    candidates = {t["docid"] for t in pairs}
    missed = []
    for d, rel in sorted(view.qrels.get(qid, {}).items(), key=lambda kv: (-kv[1], kv[0])):
        if rel > 0 and d not in candidates:
            text, full = cap(view.texts.docs.get(d), max_doc_chars)
            missed.append({"d": d, "l": rel, "x": text, "xn": full})
    return {
        "qid": qid,
        "query": view.texts.queries.get(qid),
        "instruction": view.texts.instructions.get(qid),
        "summary": summary,
        "pairs": rows,
        "missed": missed,
    }


def render_report(
    folder: str | os.PathLike[str],
    *,
    texts: bool = True,
    max_doc_chars: int = 2000,
    metric: str | None = None,
    allow_partial: bool = False,
) -> str:
    """The HTML page of one result folder (``summary.json`` + ``traces.jsonl``; ``qrels.tsv`` for labels and
    per-query metrics; ``texts.jsonl.gz`` for texts; ``sweep.json`` for the budget curve)."""
    view = D.load_run(folder, measure=metric, texts=texts, allow_partial=allow_partial)
    summary, prov = view.summary, view.provenance
    metric_name = D.measure_label(view.measure)
    title = f"{summary.get('task', view.folder.name)} — {prov.get('model', '?')}"
    h = head(f"rank1 report: {title}", "single")
    h += [
        f"<h1>{escape(title)}</h1>",
        provenance_line(view),
    ]
    if prov.get("command_line"):
        h.append(f'<p class="meta"><code>{escape(" ".join(map(str, prov["command_line"])))}</code></p>')
    h.append(
        '<nav class="top"><a href="#gains">per query</a><a href="#scores">scores and reasoning</a>'
        + ('<a href="#budget">budget</a>' if (view.folder / D.SWEEP_FILE).is_file() else "")
        + '<a href="#queries">queries</a></nav>'
    )
    h += ['<h2 id="metrics">Metrics</h2><div class="figs"><div>', "<table><tr><th>metric</th><th>value</th></tr>"]
    h += [f"<tr><td>{escape(str(n))}</td><td class=num>{num(v)}</td></tr>" for n, v in _metric_rows(summary)]
    h.append("</table></div><div>")
    h += vs_first_stage(summary)
    h.append("</div></div>")
    h.append(f'<p class="cost">{escape(cost_line(summary))}</p>')
    if summary.get("run_warnings"):
        h.append("<ul>" + "".join(f"<li>{escape(str(w))}</li>" for w in summary["run_warnings"]) + "</ul>")
    if view.texts_source == "none" and texts:
        h.append(
            '<p class="note warn">No texts in this folder (written before rank1_eval kept <code>texts.jsonl.gz</code>, '
            "and its task is not a local folder): pairs show ids only. Rerun the command above — every judgement "
            "is in the store, nothing is scored again — to add them.</p>"
        )

    stats = {q: D.query_stats(view, q) for q in view.by_query}
    h += _gains_section(view, stats, metric_name)
    h += analysis_sections(view)
    h += sweep_section(view.folder)
    h += _index_section(view, stats, metric_name)
    h.append(
        '<section id="detail"><p class="meta">Open a query (a row above, or a bar of the chart) to read its '
        "pairs: passages, scores, labels, paths and every reasoning chain.</p></section>"
    )
    blobs = ((q, blob(query_payload(view, q, max_doc_chars))) for q in view.by_query)
    return "\n".join(h + tail(blobs)) + "\n"


def _gains_section(view: D.RunView, stats: Mapping[str, Mapping[str, Any]], metric_name: str) -> list[str]:
    with_delta = [s for s in stats.values() if s["delta"] is not None]
    out = [f'<h2 id="gains">Per query: {escape(metric_name)} against the first stage</h2>']
    if not view.qrels:
        return out + ['<p class="note">No <code>qrels.tsv</code> in this folder: no per-query metric.</p>']
    if not with_delta:
        return out + [
            '<p class="note">The traces record no first-stage rank: per-query metrics only (see the index).</p>'
        ]
    bars = sorted(with_delta, key=lambda s: (-s["delta"], s["qid"]))
    gains = sum(s["delta"] > 1e-9 for s in bars)
    losses = sum(s["delta"] < -1e-9 for s in bars)
    out.append(
        svg.delta_bars(
            [
                svg.Bar(
                    s["qid"],
                    s["delta"],
                    href(s["qid"]),
                    f"{s['qid']}: {s['metric']:.4f} vs first stage {s['metric_fs']:.4f} (Δ {s['delta']:+.4f})",
                )
                for s in bars
            ],
            title=f"Δ {metric_name} (reranked − first stage) per query, largest gain first",
            ylabel=f"Δ {metric_name}",
        )
    )
    out.append(
        f'<p class="note">{gains} queries gained, {losses} lost, {len(bars) - gains - losses} tied. Click a bar to '
        "open its query; the index below sorts and filters the same numbers.</p>"
    )
    return out


def _index_section(view: D.RunView, stats: Mapping[str, Mapping[str, Any]], metric_name: str) -> list[str]:
    out = [f'<h2 id="queries">Queries ({len(stats)})</h2>', index_controls(metric_name)]
    out.append(
        f'<table class="index sortable" data-page="{PAGE_SIZE}"><thead><tr>'
        '<th data-sort="1">query</th><th data-sort="1">text</th><th data-sort="-1" class=num>pairs</th>'
        '<th data-sort="-1" class=num title="relevant passages among the candidates / judged relevant">relevant</th>'
        f'<th data-sort="-1" class=num>{escape(metric_name)}</th><th data-sort="-1" class=num>first stage</th>'
        '<th data-sort="-1" class=num>Δ</th><th data-sort="-1" class=num>pass 2</th>'
        '<th data-sort="-1" class=num>failed</th><th data-sort="-1" class=num>truncated</th>'
        '<th data-sort="-1" class=num>mean tokens</th><th data-sort="-1" class=num>accuracy</th>'
        "</tr></thead><tbody>"
    )
    for i, (qid, s) in enumerate(stats.items()):
        cells = [
            (f'<a href="{href(qid)}">{escape(qid)}</a>', qid),
            (snippet(view.texts.queries.get(qid)), view.texts.queries.get(qid) or ""),
            (str(s["pairs"]), s["pairs"]),
            (f"{s['relevant']}/{s['relevant_total']}", s["relevant"]),
            (num(s["metric"]), s["metric"]),
            (num(s["metric_fs"]), s["metric_fs"]),
            (signed(s["delta"]), s["delta"]),
            (str(s["pass2"]), s["pass2"]),
            (str(s["failed"]), s["failed"]),
            (str(s["truncated"]), s["truncated"]),
            (f"{s['tokens']:.0f}", round(s["tokens"], 1)),
            (num(s["accuracy"], 2), s["accuracy"]),
        ]
        data = {
            "delta": s["delta"],
            "metric": s["metric"],
            "pass2": s["pass2"],
            "failed": s["failed"],
            "trunc": s["truncated"],
            "rel": s["relevant"],
        }
        out.append(index_row(qid, cells, data, hidden=i >= PAGE_SIZE))
    out.append("</tbody></table>")
    return out
