"""Retrieval metrics computed the way mteb computes them: the one place that knows mteb's rules.

rank1_eval reports numbers of its own beside mteb's (the first stage's nDCG@10, paired tests, metrics on extra
judgement sets, ``compare``, the first-stage rows of the paper tables). They must equal what mteb 2.26 would print
for the same run, so every one of them goes through this module. mteb's rules (``AbsTaskRetrieval._evaluate_subset``,
``SearchCrossEncoderWrapper.search``, ``RetrievalEvaluator.evaluate``, ``calculate_retrieval_scores``):

1. **Evaluated queries**: the task's queries that have at least one judgement, of any grade, in the qrels
   (``_filter_queries_without_positives``). Queries without judgements are not scored at all.
2. **Judged queries without candidates count**: every evaluated query gets a ranking, an empty one when the first
   stage returned nothing for it, and trec_eval scores an empty ranking 0. Dropping those queries (what an
   evaluator fed only the reranked pairs does) raises the mean.
3. **ignore_identical_ids** (ArguAna, FiQA2018, FEVER, QuoraRetrieval, TREC DL, ...): a document whose id equals
   the query id is removed from the ranking before scoring.
4. **Per-query values are trec_eval's** (pytrec_eval; ties by doc id descending) and the task's value is their mean
   over the evaluated queries. mteb rounds that mean to 5 decimals in its result; we keep full precision.

Judged@k (not a trec_eval measure) comes from ir_measures, on the same evaluated queries and rankings.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

_JUDGED = re.compile(r"Judged@(\d+)")
_PYTREC_FAMILIES = {"ndcg_cut", "map_cut", "recall", "P", "success", "Rprec_mult", "iprec_at_recall"}


class MetricError(ValueError):
    """A measure that cannot be computed (unknown name, no judged query)."""


@dataclass(frozen=True)
class EvalRules:
    """How a task's runs are scored; built from the mteb task (``from_task``) or a result folder's summary."""

    ignore_identical_ids: bool = False

    @classmethod
    def from_task(cls, task: Any) -> EvalRules:
        """The rules of an mteb ``AbsTaskRetrieval`` instance."""
        return cls(ignore_identical_ids=bool(getattr(task, "ignore_identical_ids", False)))

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any]) -> EvalRules:
        """The rules a driver run recorded in ``summary.json`` (older folders: mteb's defaults)."""
        rules = summary.get("eval_rules") or {}
        return cls(ignore_identical_ids=bool(rules.get("ignore_identical_ids", False)))

    def to_dict(self) -> dict[str, Any]:
        return {"ignore_identical_ids": self.ignore_identical_ids, "empty_ranking_scores": 0.0}


def evaluation_qrels(qrels: Mapping[str, Mapping[str, int]], query_ids: Collection[str] | None = None) -> Qrels:
    """Rule 1: the judgements of the queries mteb evaluates (judged at all, and in ``query_ids`` when given)."""
    keep = None if query_ids is None else set(query_ids)
    return {
        str(q): {str(d): int(r) for d, r in docs.items()}
        for q, docs in qrels.items()
        if docs and (keep is None or q in keep)
    }


def evaluation_run(run: Mapping[str, Mapping[str, float]], qrels: Mapping[str, Any], rules: EvalRules) -> Run:
    """Rules 2 and 3: one ranking per evaluated query (empty when the run has none), identical ids dropped."""
    out: Run = {}
    for qid in qrels:
        docs = run.get(qid) or {}
        out[qid] = {str(d): float(s) for d, s in docs.items() if not (rules.ignore_identical_ids and str(d) == qid)}
    return out


def pytrec_request(measure: str) -> str:
    """``ndcg_cut_10`` -> ``ndcg_cut.10`` (what ``pytrec_eval.RelevanceEvaluator`` takes)."""
    m = re.fullmatch(r"(.+)_(\d+)", measure)
    return f"{m.group(1)}.{m.group(2)}" if m and m.group(1) in _PYTREC_FAMILIES else measure


def per_query(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measure: str,
    *,
    rules: EvalRules | None = None,
    query_ids: Collection[str] | None = None,
) -> dict[str, float]:
    """One value per evaluated query (mteb's rules 1-4); ``measure`` is trec_eval's name or ``Judged@k``."""
    judged = evaluation_qrels(qrels, query_ids)
    if not judged:
        return {}
    rankings = evaluation_run(run, judged, rules or EvalRules())
    if (m := _JUDGED.fullmatch(measure)) is not None:
        return _judged(rankings, judged, int(m.group(1)))
    import pytrec_eval

    try:
        evaluator = pytrec_eval.RelevanceEvaluator(judged, {pytrec_request(measure)})
    except Exception as exc:  # pytrec_eval raises plain exceptions for unknown measures
        raise MetricError(f"unknown trec_eval measure {measure!r}: {exc}") from exc
    values = evaluator.evaluate(rankings)
    out = {}
    for qid in judged:
        if measure not in values.get(qid, {}):
            raise MetricError(f"pytrec_eval returned no {measure!r} for query {qid!r} (unknown measure?)")
        out[qid] = float(values[qid][measure])
    return out


def _judged(rankings: Run, qrels: Qrels, k: int) -> dict[str, float]:
    """Judged@k from ir_measures (share of the top k that is judged); an empty ranking is 0."""
    import ir_measures
    from ir_measures import Judged

    ranked = {q: docs for q, docs in rankings.items() if docs}  # ir_measures divides by the ranking's length
    out = dict.fromkeys(qrels, 0.0)
    for metric in ir_measures.iter_calc([Judged @ k], qrels, ranked):
        out[metric.query_id] = float(metric.value)
    return out


def mean(values: Mapping[str, float] | Iterable[float]) -> float | None:
    """The task's value: the mean of the per-query values (None without evaluated queries)."""
    items = list(values.values()) if isinstance(values, Mapping) else list(values)
    return sum(items) / len(items) if items else None


def aggregate(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    measures: Iterable[str],
    *,
    rules: EvalRules | None = None,
    query_ids: Collection[str] | None = None,
) -> dict[str, float | None]:
    """The task-level value of each measure under mteb's rules."""
    return {m: mean(per_query(run, qrels, m, rules=rules, query_ids=query_ids)) for m in measures}
