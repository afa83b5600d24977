"""Two runs of one task side by side: ``rank1-eval report A B``.

A and B are two result folders (two models, two prompt sets, two budgets) or a result folder and a ranking
without reasoning — a run file, or ``first-stage`` for the first stage A reranked. Per query both metrics and
their difference (on A's judgements, so both sides are measured alike); per pair both ranks and scores, and for
the pairs the two runs rank furthest apart, both reasoning chains next to each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
from rank1_eval.runs import Run, ranked

FIRST_STAGE = "first-stage"
TOP_SHIFTS = 30  # pairs listed in "ranked furthest apart"


def view_from_run(run: Run, like: D.RunView, label: str) -> D.RunView:
    """A ranking without reasoning (run file, first stage) as a view over A's queries, cut to A's depth."""
    by_query: dict[str, list[dict[str, Any]]] = {}
    for qid, a_pairs in like.by_query.items():
        docs = run.get(qid)
        if not docs:
            continue
        depth = max(len(a_pairs), int(like.provenance.get("top_k") or 0)) or len(docs)
        labels = like.qrels.get(qid, {})
        by_query[qid] = [
            {"qid": qid, "docid": d, "score": float(s), "rank": i, "label": labels.get(d)}
            for i, (d, s) in enumerate(ranked(docs)[:depth], start=1)
        ]
    summary = {"task": like.summary.get("task"), "provenance": {"model": label, "task": like.provenance.get("task")}}
    return D.RunView(
        Path(label), summary, by_query, like.qrels, like.texts, like.measure, texts_source="A's", reasoning=False
    )


def load_side(source: str | os.PathLike[str], a: D.RunView, *, allow_partial: bool = False) -> D.RunView:
    """B as a view: a result folder, ``first-stage`` (A's own), or a run file (TREC, rank1 JSON, mteb)."""
    from rank1_eval.compare import per_query
    from rank1_eval.runs import RunFileError, read_run

    text = str(source)
    if text == FIRST_STAGE:
        b = view_from_run(a.first_stage(), a, f"first stage of {a.label}")
    elif Path(text).is_dir():
        b = D.load_run(text, measure=a.measure, texts=False, allow_partial=allow_partial)
        b.texts = a.texts
        for qid, pairs in b.by_query.items():  # A's judgements for both sides
            labels = a.qrels.get(qid, {})
            for t in pairs:
                t["label"] = labels.get(t["docid"])
    elif Path(text).is_file():
        try:
            run = read_run(text, subset=a.provenance.get("subset"), split=a.provenance.get("split"))
        except RunFileError as exc:
            raise D.ReportError(str(exc)) from exc
        b = view_from_run(run, a, Path(text).name)
    else:
        raise D.ReportError(f"{text} is neither a result folder, a run file nor {FIRST_STAGE!r}")
    b.qrels = a.qrels
    b.rules = a.rules
    b.per_query = per_query(b.run(), a.qrels, a.measure, rules=a.rules) if a.qrels else {}
    return b


_SETTINGS = (
    ("model", ("model",)),
    ("model kind", ("model_kind",)),
    ("mteb name", ("mteb_name",)),
    ("weights fingerprint", ("weights_fingerprint",)),
    ("revision", ("revision",)),
    ("engine", ("engine",)),
    ("dtype", ("dtype",)),
    ("prompt set", ("prompt_set",)),
    ("prompt set sha256", ("prompt_set_sha256",)),
    ("dataset prompt", ("dataset_prompt",)),
    ("max output tokens", ("sampling", "max_output_tokens")),
    ("context size", ("sampling", "context_size")),
    ("failed score", ("sampling", "failed_score")),
    ("task", ("task",)),
    ("subset", ("subset",)),
    ("split", ("split",)),
    ("top-k", ("top_k",)),
    ("limit queries", ("limit_queries",)),
    ("run file", ("run_file",)),
    ("run sha256", ("run_sha256",)),
    ("rank1_eval", ("versions", "rank1_eval")),
    ("mteb", ("versions", "mteb")),
    ("vllm", ("versions", "vllm")),
)


def _get(prov: Mapping[str, Any], path: Sequence[str]) -> Any:
    obj: Any = prov
    for p in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(p)
    return obj


def settings_rows(a: D.RunView, b: D.RunView) -> list[tuple[str, str]]:
    """Provenance of both runs, settings both record with different values first and in bold."""
    same, diff = [], []
    for name, path in _SETTINGS:
        va, vb = _get(a.provenance, path), _get(b.provenance, path)
        if va is None and vb is None:
            continue
        cells = f"{escape(str(va) if va is not None else '—')}</td><td>{escape(str(vb) if vb is not None else '—')}"
        differs = va is not None and vb is not None and va != vb  # a side without the setting is no difference
        (diff if differs else same).append((f"<b>{escape(name)}</b>" if differs else escape(name), cells))
    return diff + same


def pair_rows(a: D.RunView, b: D.RunView, qid: str, max_doc_chars: int) -> list[dict[str, Any]]:
    """The union of both runs' candidates, furthest apart first (a passage only one side ranked comes last)."""
    pa = {t["docid"]: t for t in a.by_query.get(qid, [])}
    pb = {t["docid"]: t for t in b.by_query.get(qid, [])}
    with_reasoning = b.reasoning
    rows = []
    for d in dict.fromkeys([*pa, *pb]):
        ta, tb = pa.get(d), pb.get(d)
        ra, rb = (ta or {}).get("rank"), (tb or {}).get("rank")
        text, full = cap(a.texts.docs.get(d), max_doc_chars)
        row: dict[str, Any] = {
            "d": d,
            "l": (ta or tb or {}).get("label"),
            "x": text,
            "xn": full,
            "dr": abs(ra - rb) if ra is not None and rb is not None else None,
            "ra": ra,
            "rb": rb,
            "sa": None if ta is None else float(ta["score"]),
            "sb": None if tb is None else float(tb["score"]),
            "pa": (ta or {}).get("path"),
            "pb": (tb or {}).get("path"),
            "ta": (ta or {}).get("output_tokens"),
            "tb": (tb or {}).get("output_tokens"),
            "tra": bool((ta or {}).get("truncated")),
            "trb": bool((tb or {}).get("truncated")),
            "rea": (ta or {}).get("reasoning"),
            "fra": (ta or {}).get("forced_reasoning"),
            "ea": (ta or {}).get("error"),
        }
        if with_reasoning:
            row.update(
                reb=(tb or {}).get("reasoning"), frb=(tb or {}).get("forced_reasoning"), eb=(tb or {}).get("error")
            )
        rows.append(row)
    rows.sort(key=lambda r: (r["dr"] is None, -(r["dr"] or 0), min(r["ra"] or 10**9, r["rb"] or 10**9)))
    return rows


def _query_stats(a: D.RunView, b: D.RunView, qid: str) -> dict[str, Any]:
    pa = {t["docid"]: t for t in a.by_query.get(qid, [])}
    pb = {t["docid"]: t for t in b.by_query.get(qid, [])}
    common = set(pa) & set(pb)
    shifts = [abs(pa[d]["rank"] - pb[d]["rank"]) for d in common]
    ma, mb = a.per_query.get(qid), b.per_query.get(qid)

    def mean_tokens(pairs: Mapping[str, Mapping[str, Any]]) -> float | None:
        values = [float(t["output_tokens"]) for t in pairs.values() if t.get("output_tokens") is not None]
        return sum(values) / len(values) if values else None

    return {
        "qid": qid,
        "pairs": len(set(pa) | set(pb)),
        "relevant": sum(D.relevant(t) for t in pa.values()),
        "metric_a": ma,
        "metric_b": mb,
        "delta": ma - mb if ma is not None and mb is not None else None,
        "max_shift": max(shifts) if shifts else None,
        "flips": sum((float(pa[d]["score"]) >= 0.5) != (float(pb[d]["score"]) >= 0.5) for d in common)
        if b.reasoning
        else None,
        "tokens_a": mean_tokens(pa),
        "tokens_b": mean_tokens(pb),
    }


def render_comparison(
    dir_a: str | os.PathLike[str],
    b_source: str | os.PathLike[str],
    *,
    metric: str | None = None,
    texts: bool = True,
    max_doc_chars: int = 2000,
    allow_partial: bool = False,
) -> str:
    """The HTML page comparing result folder A with B (result folder, run file, or ``first-stage``)."""
    from rank1_eval.compare import paired

    a = D.load_run(dir_a, measure=metric, texts=texts, allow_partial=allow_partial)
    if not a.qrels:
        raise D.ReportError(f"{a.folder} has no qrels.tsv: two runs can only be compared on judgements")
    b = load_side(b_source, a, allow_partial=allow_partial)
    a_task, b_task = a.provenance.get("task"), b.provenance.get("task")
    if a_task and b_task and a_task != b_task:
        raise D.ReportError(f"different tasks: A is {a_task}, B is {b_task}")
    metric_name = D.measure_label(a.measure)
    test = paired(a.per_query, b.per_query, measure=a.measure, with_per_query=False)
    title = f"{a.summary.get('task', a.folder.name)}: {a.label} (A) vs {b.label} (B)"
    h = head(f"rank1 comparison: {title}", "pair")
    h += [
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">A: <code>{escape(str(a.folder))}</code> · B: <code>{escape(str(b_source))}</code> · '
        f"{len(a.by_query)} queries, {a.n_pairs:,} pairs in A, {b.n_pairs:,} in B · per-query {escape(metric_name)} "
        "on A's judgements</p>",
        '<nav class="top"><a href="#gains">per query</a><a href="#apart">ranked furthest apart</a>'
        '<a href="#scores">scores and reasoning</a><a href="#queries">queries</a></nav>',
        '<h2 id="metrics">Metrics and settings</h2><div class="figs"><div>',
    ]
    rnd, tt = test["randomization"], test["t_test"]
    rows = [
        (
            f"mean {escape(metric_name)} ({test['n_queries']} queries)",
            f"{num(test['mean_a'])}</td><td>{num(test['mean_b'])}</td><td>{signed(test['mean_delta'])}",
        ),
    ]
    ma, mb = a.summary.get("metrics") or {}, b.summary.get("metrics") or {}
    for name in [
        n for n in dict.fromkeys([a.summary.get("main_metric"), "ndcg_at_10", "map_at_100", "recall_at_100"]) if n
    ]:
        if name in ma and name in mb:
            va, vb = ma.get(name), mb.get(name)
            delta = va - vb if isinstance(va, int | float) and isinstance(vb, int | float) else None
            rows.append((escape(f"{name} (mteb)"), f"{num(va)}</td><td>{num(vb)}</td><td>{signed(delta)}"))
    h.append(
        "<table><tr><th></th><th>A</th><th>B</th><th>A − B</th></tr>"
        + "".join(f"<tr><td>{k}</td><td class=num>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )
    h.append(
        f'<p class="note">A vs B: {test["wins"]} wins, {test["ties"]} ties, {test["losses"]} losses · paired t-test '
        f"p = {num(tt.get('p_value'))} · randomization test p = {num(rnd.get('p_value'))}"
        + (" (exact)" if rnd.get("exact") else f" ({rnd.get('n_permutations')} sign flips, seed {rnd.get('seed')})")
        + "</p></div><div>"
    )
    h.append(
        "<table><tr><th>setting</th><th>A</th><th>B</th></tr>"
        + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in settings_rows(a, b))
        + "</table>"
    )
    h.append("</div></div>")

    stats = {q: _query_stats(a, b, q) for q in a.by_query}
    h += _gains(stats, a, b, metric_name)
    h += _apart(a, b)
    h += _scores(a, b)
    h += _index(a, stats, metric_name)
    h.append(
        '<section id="detail"><p class="meta">Open a query to see both runs\' ranks, scores and reasoning chains '
        "for each passage, furthest apart first.</p></section>"
    )

    def payload(qid: str) -> dict[str, Any]:
        s = stats[qid]
        return {
            "qid": qid,
            "query": a.texts.queries.get(qid),
            "instruction": a.texts.instructions.get(qid),
            "summary": f"{metric_name}: A {num(s['metric_a'])}, B {num(s['metric_b'])}, Δ "
            f"{'—' if s['delta'] is None else format(s['delta'], '+.4f')} · {s['pairs']} passages · largest rank "
            f"shift {s['max_shift'] if s['max_shift'] is not None else '—'}",
            "pairs": pair_rows(a, b, qid, max_doc_chars),
        }

    blobs = ((q, blob(payload(q))) for q in a.by_query)
    return "\n".join(h + tail(blobs)) + "\n"


def _gains(stats: Mapping[str, Mapping[str, Any]], a: D.RunView, b: D.RunView, metric_name: str) -> list[str]:
    rows = sorted((s for s in stats.values() if s["delta"] is not None), key=lambda s: (-s["delta"], s["qid"]))
    out = [f'<h2 id="gains">Per query: {escape(metric_name)} of A against B</h2><div class="figs">']
    out.append(
        svg.delta_bars(
            [
                svg.Bar(
                    s["qid"],
                    s["delta"],
                    href(s["qid"]),
                    f"{s['qid']}: A {s['metric_a']:.4f}, B {s['metric_b']:.4f} (Δ {s['delta']:+.4f})",
                )
                for s in rows
            ],
            title=f"Δ {metric_name} (A − B) per query, largest gain of A first",
            ylabel=f"Δ {metric_name}",
            width=640,
            height=300,
        )
    )
    out.append(
        svg.scatter(
            [
                (
                    s["metric_b"],
                    s["metric_a"],
                    f"{s['qid']}: A {s['metric_a']:.4f}, B {s['metric_b']:.4f}",
                    href(s["qid"]),
                )
                for s in rows
            ],
            title=f"{metric_name} per query: A (y) against B (x)",
            xlabel=f"B {metric_name}",
            ylabel=f"A {metric_name}",
        )
    )
    out.append("</div>")
    return out


def _apart(a: D.RunView, b: D.RunView, top: int = 10) -> list[str]:
    """The passages the two runs rank furthest apart where it matters: inside either run's top ``top``
    (what nDCG@10 sees), relevant passages first."""
    shifts = []
    for qid, pairs in a.by_query.items():
        pb = {t["docid"]: t for t in b.by_query.get(qid, [])}
        for t in pairs:
            u = pb.get(t["docid"])
            if u is not None and min(t["rank"], u["rank"]) <= top and t["rank"] != u["rank"]:
                shifts.append((abs(t["rank"] - u["rank"]), D.relevant(t), qid, t, u))
    shifts.sort(key=lambda x: (not x[1], -x[0], x[2], x[3]["docid"]))
    score_b = "P(true) B" if b.reasoning else "score B"
    out = [
        f'<h2 id="apart">Passages ranked furthest apart ({min(TOP_SHIFTS, len(shifts))} of {len(shifts):,} that '
        f"moved inside either run's top {top}; relevant ones first)</h2>",
        '<table class="apart"><tr><th>query</th><th>passage</th><th>label</th><th>rank A</th><th>rank B</th>'
        f"<th>P(true) A</th><th>{score_b}</th><th>passage text</th></tr>",
    ]
    for _, _, qid, t, u in shifts[:TOP_SHIFTS]:
        label = t.get("label")
        out.append(
            f'<tr class="{"rel-pos" if D.relevant(t) else ""}"><td class="id"><a href="{href(qid)}">{escape(qid)}</a>'
            f"</td><td><code>{escape(t['docid'])}</code></td>"
            f'<td class="label">{"unjudged" if label is None else label}</td>'
            f"<td class=num>{t['rank']}</td><td class=num>{u['rank']}</td><td class=num>{float(t['score']):.4f}</td>"
            f"<td class=num>{float(u['score']):.4f}</td><td>{snippet(a.texts.docs.get(t['docid']), 120)}</td></tr>"
        )
    out.append('</table><p class="note">Open the query to read both reasoning chains of each passage.</p>')
    return out


def _scores(a: D.RunView, b: D.RunView) -> list[str]:
    out = ['<h2 id="scores">Scores</h2><div class="figs">']
    if b.reasoning:
        edges = [i / 10 for i in range(11)]
        grid = [[0] * 10 for _ in range(10)]
        agree = n = 0
        for qid, pairs in a.by_query.items():
            pb = {t["docid"]: float(t["score"]) for t in b.by_query.get(qid, [])}
            for t in pairs:
                if t["docid"] not in pb:
                    continue
                sa, sb = float(t["score"]), pb[t["docid"]]
                grid[min(9, int(sa * 10))][min(9, int(sb * 10))] += 1
                agree += (sa >= 0.5) == (sb >= 0.5)
                n += 1
        out.append(
            svg.heatmap(
                grid,
                title="P(true) of each passage: A (y) against B (x)",
                xlabel="B P(true)",
                ylabel="A P(true)",
                edges=edges,
            )
        )
        out.append(
            f'<p class="note">{agree:,} of {n:,} common pairs ({100 * agree / max(1, n):.1f}%) get the same '
            "call (P(true) ≥ 0.5) from both runs.</p>"
        )
    out.append("</div>")
    from rank1_eval.report.single import analysis_sections

    out += [s.replace('id="scores"', 'id="scores-a"') for s in analysis_sections(a, " of A")]
    if b.reasoning:
        out += [s.replace('id="scores"', 'id="scores-b"') for s in analysis_sections(b, " of B")]
    return out


def _index(a: D.RunView, stats: Mapping[str, Mapping[str, Any]], metric_name: str) -> list[str]:
    out = [f'<h2 id="queries">Queries ({len(stats)})</h2>', index_controls(f"A {metric_name}", paths=False)]
    out.append(
        f'<table class="index sortable" data-page="{PAGE_SIZE}"><thead><tr>'
        '<th data-sort="1">query</th><th data-sort="1">text</th><th data-sort="-1" class=num>passages</th>'
        f'<th data-sort="-1" class=num>relevant</th><th data-sort="-1" class=num>A {escape(metric_name)}</th>'
        f'<th data-sort="-1" class=num>B {escape(metric_name)}</th><th data-sort="-1" class=num>Δ (A − B)</th>'
        '<th data-sort="-1" class=num title="largest |rank A − rank B| of a passage">max rank shift</th>'
        '<th data-sort="-1" class=num title="passages whose call (P(true) ≥ 0.5) differs">calls changed</th>'
        '<th data-sort="-1" class=num>tokens A</th><th data-sort="-1" class=num>tokens B</th></tr></thead><tbody>'
    )
    for i, (qid, s) in enumerate(stats.items()):
        cells = [
            (f'<a href="{href(qid)}">{escape(qid)}</a>', qid),
            (snippet(a.texts.queries.get(qid)), a.texts.queries.get(qid) or ""),
            (str(s["pairs"]), s["pairs"]),
            (str(s["relevant"]), s["relevant"]),
            (num(s["metric_a"]), s["metric_a"]),
            (num(s["metric_b"]), s["metric_b"]),
            (signed(s["delta"]), s["delta"]),
            (num(s["max_shift"]), s["max_shift"]),
            (num(s["flips"]), s["flips"]),
            (num(s["tokens_a"], 0), s["tokens_a"]),
            (num(s["tokens_b"], 0), s["tokens_b"]),
        ]
        data = {"delta": s["delta"], "metric": s["metric_a"], "rel": s["relevant"]}
        out.append(index_row(qid, cells, data, hidden=i >= PAGE_SIZE))
    out.append("</tbody></table>")
    return out


def default_output(
    dir_a: str | os.PathLike[str], b_source: str | os.PathLike[str], *, allow_partial: bool = False
) -> Path:
    """``<A's run folder>/report-vs-<B>.html``: B's model, task and run folder names, made safe."""
    from rank1_eval.layout import ResultsError, RunFolder, resolve_run_folder, safe_name

    try:
        a = resolve_run_folder(dir_a, allow_partial=allow_partial)
        b = Path(str(b_source))
        if str(b_source) == FIRST_STAGE:
            name = FIRST_STAGE
        elif b.is_dir():
            run = RunFolder.read(resolve_run_folder(b, allow_partial=allow_partial))
            model, task = (run.path.parent.parent, run.path.parent) if run.hash else (run.path.parent, run.path)
            name = "__".join(x for x in (model.name, task.name, run.hash) if x)  # older folders have no hash
        else:
            name = b.name
    except ResultsError as exc:
        raise D.ReportError(str(exc)) from None
    return a / f"report-vs-{safe_name(name)}.html"
