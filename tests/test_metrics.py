"""mteb's scoring rules in rank1_eval.metrics: hand-computed values, and mteb's own code on the same inputs."""

from __future__ import annotations

import math

import pytest

from rank1_eval.metrics import EvalRules, MetricError, aggregate, evaluation_qrels, evaluation_run, mean, per_query

N2 = 1 / math.log2(3)  # nDCG@10 of one relevant doc at rank 2
N3 = 1 / math.log2(4)  # ... at rank 3

QRELS = {
    "q1": {"r1": 1},
    "q2": {"r2": 1},
    "q3": {"r3": 1},  # judged, but the run has nothing for it: mteb scores it 0
    "q4": {"z4": 0},  # judged only with grade 0: evaluated, nDCG 0
    "q5": {},  # no judgement: never evaluated
}
RUN = {
    "q1": {"q1": 3.0, "r1": 2.0, "x": 1.0},  # the query itself on top (ArguAna-style)
    "q2": {"x": 2.0, "y": 1.5, "r2": 1.0},
    "q4": {"z4": 1.0},
    "q5": {"a": 1.0},
    "q9": {"r1": 1.0},  # not a judged query
}


def test_rules_by_hand():
    plain = per_query(RUN, QRELS, "ndcg_cut_10")
    assert plain == pytest.approx({"q1": N2, "q2": N3, "q3": 0.0, "q4": 0.0})
    ignored = per_query(RUN, QRELS, "ndcg_cut_10", rules=EvalRules(ignore_identical_ids=True))
    assert ignored == pytest.approx({"q1": 1.0, "q2": N3, "q3": 0.0, "q4": 0.0})
    assert mean(plain) == pytest.approx((N2 + N3) / 4)  # 4 evaluated queries, not the 2 with relevant hits
    only = per_query(RUN, QRELS, "ndcg_cut_10", query_ids=["q1", "q3", "q5"])
    assert only == pytest.approx({"q1": N2, "q3": 0.0})
    assert per_query(RUN, {"q5": {}}, "ndcg_cut_10") == {}


def test_judged_at_k_by_hand():
    # q1: 3 ranked, q1 and x unjudged, r1 judged -> 1/3; q2: r2 judged of 3 -> 1/3; q3 unranked -> 0; q4: 1/1
    values = per_query(RUN, QRELS, "Judged@10")
    assert values == pytest.approx({"q1": 1 / 3, "q2": 1 / 3, "q3": 0.0, "q4": 1.0})
    with_rule = per_query(RUN, QRELS, "Judged@10", rules=EvalRules(ignore_identical_ids=True))
    assert with_rule["q1"] == pytest.approx(1 / 2)
    assert aggregate(RUN, QRELS, ["Judged@10", "recall_100"]) == pytest.approx(
        {"Judged@10": (2 / 3 + 1) / 4, "recall_100": 2 / 4}
    )


def test_evaluation_views():
    judged = evaluation_qrels(QRELS)
    assert sorted(judged) == ["q1", "q2", "q3", "q4"]
    rankings = evaluation_run(RUN, judged, EvalRules(ignore_identical_ids=True))
    assert rankings == {"q1": {"r1": 2.0, "x": 1.0}, "q2": RUN["q2"], "q3": {}, "q4": {"z4": 1.0}}
    assert EvalRules.from_summary({}) == EvalRules()
    assert EvalRules.from_summary({"eval_rules": {"ignore_identical_ids": True}}).ignore_identical_ids


def test_unknown_measure():
    with pytest.raises(MetricError, match="no_such_measure"):
        per_query(RUN, QRELS, "no_such_measure")


def test_equals_mteb_on_the_same_inputs():
    """mteb's own path (RetrievalEvaluator.evaluate -> calculate_retrieval_scores) on mteb's results dict."""
    from datasets import Dataset
    from mteb._evaluators.retrieval_evaluator import RetrievalEvaluator
    from mteb.abstasks.retrieval import _filter_queries_without_positives

    queries = Dataset.from_list([{"id": q, "text": q} for q in ("q1", "q2", "q3", "q4", "q5")])
    for ignore in (False, True):
        relevant, kept = _filter_queries_without_positives({q: dict(d) for q, d in QRELS.items()}, queries)
        results = {q: {} for q in kept["id"]}  # SearchCrossEncoderWrapper: every query, scored pairs filled in
        for q in results:
            results[q].update(RUN.get(q, {}))
        evaluation = RetrievalEvaluator.evaluate(None, relevant, results, [10, 100], ignore_identical_ids=ignore)
        ours = per_query(RUN, QRELS, "ndcg_cut_10", rules=EvalRules(ignore_identical_ids=ignore))
        theirs = {q: v["ndcg_cut_10"] for q, v in evaluation.all_scores.items()}
        assert ours == pytest.approx(theirs, abs=1e-12)
        assert mean(ours) == pytest.approx(evaluation.ndcg["NDCG@10"], abs=5e-6)  # mteb rounds to 5 decimals
