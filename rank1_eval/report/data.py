"""A result folder read for people: pairs grouped by query, labels, ranks, per-query metrics and the statistics
the report draws. Pure functions over plain values, so every number on the page has a hand-checkable test.

Conventions (said on the page too): a pair is *relevant* when its qrels grade is > 0; an unjudged pair counts
as not relevant, as trec_eval and mteb count it; a pair's *call* is ``score >= 0.5`` ("true" more likely than
"false") and it is *correct* when the call matches relevance.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rank1_eval.metrics import EvalRules
from rank1_eval.runs import Run, ranked
from rank1_eval.texts import Texts, TextsError, read_texts

GROUPS = ("relevant", "not relevant", "unjudged")
PATHS = ("pass1", "pass2", "failed")
SWEEP_FILE = "sweep.json"  # written by `rank1-eval sweep` (issue 12); the report draws it when present


class ReportError(ValueError):
    """A folder the report cannot read (not a result folder, malformed traces)."""


def group_of(label: int | None) -> str:
    if label is None:
        return "unjudged"
    return "relevant" if label > 0 else "not relevant"


def measure_label(measure: str) -> str:
    """``ndcg_cut_10`` -> ``nDCG@10`` (what a reader expects to see)."""
    names = {"ndcg_cut": "nDCG", "map_cut": "MAP", "recall": "R", "P": "P", "success": "Success"}
    head, _, k = measure.rpartition("_")
    if head in names and k.isdigit():
        return f"{names[head]}@{k}"
    return {"recip_rank": "MRR", "map": "MAP", "ndcg": "nDCG"}.get(measure, measure)


@dataclass
class RunView:
    """One result folder, as the report reads it."""

    folder: Path
    summary: dict[str, Any]
    by_query: dict[str, list[dict[str, Any]]]  # qid -> its pairs (trace order), each with "rank" and "label"
    qrels: dict[str, dict[str, int]]
    texts: Texts
    measure: str
    per_query: dict[str, float] = field(default_factory=dict)  # reranked metric per judged query
    per_query_fs: dict[str, float] = field(default_factory=dict)  # first stage metric per judged query
    texts_source: str = "none"
    reasoning: bool = True  # False for a ranking without traces (a run file, the first stage)
    rules: EvalRules = field(default_factory=EvalRules)  # how mteb scored the run (ignore_identical_ids)

    @property
    def pairs(self) -> Iterable[dict[str, Any]]:
        for pairs in self.by_query.values():
            yield from pairs

    @property
    def n_pairs(self) -> int:
        return sum(len(p) for p in self.by_query.values())

    @property
    def provenance(self) -> dict[str, Any]:
        return self.summary.get("provenance") or {}

    @property
    def label(self) -> str:
        prov = self.provenance
        return str(prov.get("model") or self.folder.parent.name)

    def run(self) -> Run:
        return {q: {str(t["docid"]): float(t["score"]) for t in pairs} for q, pairs in self.by_query.items()}

    def first_stage(self) -> Run:
        """The first stage as the traces record it (its score, else minus its rank)."""
        run: Run = {}
        for q, pairs in self.by_query.items():
            for t in pairs:
                if t.get("first_stage_score") is not None:
                    run.setdefault(q, {})[str(t["docid"])] = float(t["first_stage_score"])
                elif t.get("first_stage_rank") is not None:
                    run.setdefault(q, {})[str(t["docid"])] = -float(t["first_stage_rank"])
        return run

    def delta(self, qid: str) -> float | None:
        if qid in self.per_query and qid in self.per_query_fs:
            return self.per_query[qid] - self.per_query_fs[qid]
        return None


def read_traces(path: Path) -> list[dict[str, Any]]:
    """``traces.jsonl``, every line checked for the fields the report needs (a bad line names its number)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                t = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ReportError(f"{path}: line {n} is not JSON ({exc.msg})") from None
            if not isinstance(t, dict) or any(k not in t for k in ("qid", "docid", "score")):
                raise ReportError(f"{path}: line {n} lacks qid, docid or score")
            if not isinstance(t["score"], int | float) or isinstance(t["score"], bool) or not math.isfinite(t["score"]):
                raise ReportError(f"{path}: line {n} has a score that is not a finite number: {t['score']!r}")
            t["qid"], t["docid"] = str(t["qid"]), str(t["docid"])
            out.append(t)
    return out


def _local_texts(source: str | None, qids: set[str], docids: set[str]) -> Texts:
    """Texts from the local BEIR folder a run read (result folders written before ``texts.jsonl.gz``)."""
    from rank1_eval.texts import doc_text

    out = Texts()
    if not source or source == "mteb" or not Path(source).is_dir():
        return out
    folder = Path(source)
    for name, kind in (("queries.jsonl", "q"), ("corpus.jsonl", "d")):
        if not (folder / name).is_file():
            continue
        with (folder / name).open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                rid = str(row.get("_id"))
                if kind == "q" and rid in qids:
                    out.queries[rid] = str(row.get("text", ""))
                    if row.get("instruction"):
                        out.instructions[rid] = str(row["instruction"])
                elif kind == "d" and rid in docids:
                    out.docs[rid] = doc_text(row.get("title"), row.get("text"))
    return out


def load_run(
    folder: str | os.PathLike[str], *, measure: str | None = None, texts: bool = True, allow_partial: bool = False
) -> RunView:
    """Read a result folder: summary, traces (grouped by query, ranked as the evaluator ranks), qrels, texts.

    ``folder`` is a run folder or a task folder holding one complete run (:func:`rank1_eval.layout.resolve_run_folder`;
    its partial runs only with ``allow_partial``). ``measure`` is the per-query metric (trec_eval name or
    ``ndcg_at_10`` style; default: the one the run's test against its first stage used, else ``ndcg_cut_10``).
    """
    from rank1_eval.beir import read_qrels
    from rank1_eval.compare import per_query, trec_measure
    from rank1_eval.layout import ResultsError, resolve_run_folder
    from rank1_eval.outputs import ResultFolderError, check_result_folder

    try:
        root = resolve_run_folder(folder, allow_partial=allow_partial)
    except ResultsError as exc:
        raise ReportError(str(exc)) from None
    summary_path, traces_path = root / "summary.json", root / "traces.jsonl"
    if not summary_path.is_file() or not traces_path.is_file():
        raise ReportError(f"{root} is not a result folder (needs summary.json and traces.jsonl)")
    try:  # whole, not truncated or mixed: else one line saying how to rebuild it
        summary = check_result_folder(root)
    except ResultFolderError as exc:
        raise ReportError(str(exc)) from None
    traces = read_traces(traces_path)
    qrels = read_qrels(root / "qrels.tsv") if (root / "qrels.tsv").is_file() else {}
    by_query: dict[str, list[dict[str, Any]]] = {}
    for t in traces:
        by_query.setdefault(t["qid"], []).append(t)
    rules = EvalRules.from_summary(summary)
    for qid, pairs in by_query.items():
        # ranked as the evaluator ranks; with ignore_identical_ids mteb drops the query's own id: ranked last here
        scores = {t["docid"]: float(t["score"]) for t in pairs}
        ignored = [qid] if rules.ignore_identical_ids and qid in scores else []
        kept = ranked({d: s for d, s in scores.items() if d not in ignored})
        order = {d: i for i, d in enumerate([d for d, _ in kept] + ignored, start=1)}
        labels = qrels.get(qid, {})
        for t in pairs:
            t["rank"] = order[t["docid"]]
            t["label"] = labels.get(t["docid"])
            if t["docid"] in ignored:
                t["ignored"] = True
    chosen = measure or (summary.get("vs_first_stage") or {}).get("metric") or "ndcg_cut_10"
    view = RunView(root, summary, by_query, qrels, Texts(), trec_measure(chosen), rules=rules)
    view.reasoning = summary.get("reasoning_traces") is not False  # a baseline's folder: scores, no reasoning
    if qrels:  # mteb's rules: judged queries the run left unranked count 0, identical ids dropped
        view.per_query = per_query(view.run(), qrels, view.measure, rules=rules)
        fs = view.first_stage()
        if fs:
            view.per_query_fs = per_query(fs, qrels, view.measure, rules=rules)
    if texts:
        try:
            view.texts = read_texts(root)
        except TextsError:
            view.texts = Texts()
        if view.texts:
            view.texts_source = "texts.jsonl.gz"
        else:
            docids = {t["docid"] for t in traces} | {d for q in by_query for d in qrels.get(q, {})}
            view.texts = _local_texts(view.provenance.get("task_source"), set(by_query), docids)
            view.texts_source = "task folder" if view.texts else "none"
    return view


# ----------------------------------------------------------------------------------------------------
# Statistics (plain numbers; the page draws them)
# ----------------------------------------------------------------------------------------------------


def relevant(t: Mapping[str, Any]) -> bool:
    return (t.get("label") or 0) > 0


def correct(t: Mapping[str, Any]) -> bool:
    """The call (``score >= 0.5``) matches relevance (unjudged = not relevant)."""
    return (float(t["score"]) >= 0.5) == relevant(t)


def histogram(values: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin ``[e_i, e_i+1)``, the last bin closed (a score of exactly 1.0 lands in it)."""
    counts = [0] * (len(edges) - 1)
    last = len(counts) - 1
    for v in values:
        if v < edges[0] or v > edges[-1]:
            continue
        lo, hi = 0, last
        while lo < hi:  # the bin whose left edge is the largest one <= v
            mid = (lo + hi + 1) // 2
            if edges[mid] <= v:
                lo = mid
            else:
                hi = mid - 1
        counts[lo] += 1
    return counts


def score_distributions(pairs: Iterable[Mapping[str, Any]], bins: int = 20) -> dict[str, Any]:
    """P(true) histograms per relevance group (counts; the page shows each group's shares)."""
    edges = [i / bins for i in range(bins + 1)]
    values: dict[str, list[float]] = {g: [] for g in GROUPS}
    for t in pairs:
        values[group_of(t.get("label"))].append(float(t["score"]))
    return {"edges": edges, "counts": {g: histogram(v, edges) for g, v in values.items()}}


def calibration(pairs: Iterable[Mapping[str, Any]], bins: int = 10) -> dict[str, Any]:
    """Reliability of P(true) against relevance: per equal-width bin the mean score and the share relevant.

    Also the expected calibration error (ECE, bin-weighted |share relevant - mean score|), the Brier score and
    the ROC AUC of the score for relevance (ties count one half), over every pair.
    """
    rows = [(float(t["score"]), relevant(t)) for t in pairs]
    n = len(rows)
    out_bins = []
    ece = 0.0
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        inside = [(s, r) for s, r in rows if lo <= s < hi or (i == bins - 1 and s == hi)]
        if not inside:
            out_bins.append({"lo": lo, "hi": hi, "n": 0, "mean_score": None, "share_relevant": None})
            continue
        mean_s = sum(s for s, _ in inside) / len(inside)
        share = sum(r for _, r in inside) / len(inside)
        ece += len(inside) / n * abs(share - mean_s)
        out_bins.append({"lo": lo, "hi": hi, "n": len(inside), "mean_score": mean_s, "share_relevant": share})
    return {
        "bins": out_bins,
        "n": n,
        "n_relevant": sum(r for _, r in rows),
        "ece": ece if n else None,
        "brier": sum((s - r) ** 2 for s, r in rows) / n if n else None,
        "auc": roc_auc([s for s, _ in rows], [r for _, r in rows]),
    }


def roc_auc(scores: Sequence[float], positive: Sequence[bool]) -> float | None:
    """P(score of a random relevant pair > that of a random other pair), ties one half (Mann-Whitney U)."""
    n_pos = sum(positive)
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):  # average ranks over ties
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    pos_rank_sum = sum(r for r, p in zip(ranks, positive, strict=True) if p)
    return (pos_rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def quantile_edges(values: Sequence[float], n_bins: int) -> list[float]:
    """Up to ``n_bins`` bins holding about equal counts (repeated edges merged)."""
    if not values:
        return []
    s = sorted(values)
    edges = [s[min(len(s) - 1, round(i * (len(s) - 1) / n_bins))] for i in range(n_bins + 1)]
    merged = [edges[0]]
    for e in edges[1:]:
        if e > merged[-1]:
            merged.append(e)
    if len(merged) == 1:
        merged.append(merged[0])
    return merged


def length_vs_correctness(pairs: Iterable[Mapping[str, Any]], n_bins: int = 8) -> dict[str, Any]:
    """Accuracy of the call per reasoning-length bin (output tokens, bins of about equal counts), and the mean
    length of correct and wrong calls per relevance group."""
    rows = [(float(t.get("output_tokens") or 0), correct(t), group_of(t.get("label"))) for t in pairs]
    edges = quantile_edges([r[0] for r in rows], n_bins)
    out_bins = []
    for i in range(len(edges) - 1):
        lo, hi = edges[i], edges[i + 1]
        last = i == len(edges) - 2
        inside = [c for v, c, _ in rows if lo <= v < hi or (last and v == hi)]
        out_bins.append(
            {"lo": lo, "hi": hi, "n": len(inside), "accuracy": sum(inside) / len(inside) if inside else None}
        )
    by_group: dict[str, dict[str, Any]] = {}
    for g in (*GROUPS, "all"):
        sel = [(v, c) for v, c, gg in rows if g in ("all", gg)]
        right = [v for v, c in sel if c]
        wrong = [v for v, c in sel if not c]
        by_group[g] = {
            "n": len(sel),
            "accuracy": sum(c for _, c in sel) / len(sel) if sel else None,
            "tokens_correct": sum(right) / len(right) if right else None,
            "tokens_wrong": sum(wrong) / len(wrong) if wrong else None,
            "n_correct": len(right),
            "n_wrong": len(wrong),
        }
    return {"bins": out_bins, "groups": by_group}


def path_rates(pairs: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per relevance group (and all): pairs, pass1/pass2/failed and truncated counts, mean tokens and score."""
    acc: dict[str, dict[str, Any]] = {
        g: {"n": 0, "pass1": 0, "pass2": 0, "failed": 0, "truncated": 0, "tokens": 0.0, "score": 0.0}
        for g in (*GROUPS, "all")
    }
    for t in pairs:
        path = str(t.get("path"))
        for g in (group_of(t.get("label")), "all"):
            a = acc[g]
            a["n"] += 1
            if path in PATHS:
                a[path] += 1
            a["truncated"] += bool(t.get("truncated"))
            a["tokens"] += float(t.get("output_tokens") or 0)
            a["score"] += float(t["score"])
    for a in acc.values():
        n = a["n"]
        a["tokens"] = a["tokens"] / n if n else None
        a["score"] = a["score"] / n if n else None
    return acc


def query_stats(view: RunView, qid: str) -> dict[str, Any]:
    """What the query index shows for one query."""
    pairs = view.by_query[qid]
    tokens = [float(t.get("output_tokens") or 0) for t in pairs]
    return {
        "qid": qid,
        "pairs": len(pairs),
        "relevant": sum(relevant(t) for t in pairs),
        "relevant_total": sum(1 for r in view.qrels.get(qid, {}).values() if r > 0),
        "metric": view.per_query.get(qid),
        "metric_fs": view.per_query_fs.get(qid),
        "delta": view.delta(qid),
        "pass2": sum(t.get("path") == "pass2" for t in pairs),
        "failed": sum(t.get("path") == "failed" for t in pairs),
        "truncated": sum(bool(t.get("truncated")) for t in pairs),
        "tokens": sum(tokens) / len(tokens) if tokens else 0.0,
        "accuracy": sum(correct(t) for t in pairs) / len(pairs) if pairs else None,
    }


def read_sweep(folder: Path) -> dict[str, Any] | None:
    """The budget sweep of a result folder (``sweep.json``), normalised to ``{metric, rows: [...]}``.

    Contract with ``rank1-eval sweep`` (issue 12): ``{"metric": NAME, "budgets": [{"budget": B, "metrics":
    {NAME: value, ...}, "reasoning_tokens_mean": x, ...}, ...]}``. Read tolerantly: a bare list of rows, the
    metric value under ``metrics[NAME]``, ``NAME`` or ``main_score``, the mean length under
    ``reasoning_tokens_mean``, ``mean_reasoning_tokens``, ``output_tokens_mean`` or ``tokens_mean``.
    """
    path = folder / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    rows_in = raw if isinstance(raw, list) else raw.get("budgets") or raw.get("rows") or []
    metric = None if isinstance(raw, list) else raw.get("metric")
    rows = []
    for r in rows_in:
        if not isinstance(r, dict) or "budget" not in r:
            raise ReportError(f"{path}: every row needs a 'budget' (got {str(r)[:80]})")
        metrics = r.get("metrics") or {}
        name = metric or next(iter(metrics), None) or "main_score"
        value = metrics.get(name, r.get(name, r.get("main_score")))
        tokens = next(
            (
                r[k]
                for k in ("reasoning_tokens_mean", "mean_reasoning_tokens", "output_tokens_mean", "tokens_mean")
                if r.get(k) is not None
            ),
            None,
        )
        rows.append({**r, "value": value, "tokens": tokens})
        metric = name
    rows.sort(key=lambda r: float(r["budget"]))
    return {"metric": metric, "rows": rows, "task": None if isinstance(raw, list) else raw.get("task")}
