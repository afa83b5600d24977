"""Paired comparisons on hand-made result folders: per-query deltas, win/tie/loss, t-test, randomization test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rank1_eval.cli import main
from rank1_eval.compare import (
    CompareError,
    against_first_stage,
    compare,
    folder_first_stage,
    randomization_test,
    t_test,
    trec_measure,
)

# One relevant document per query, so nDCG@10 = 1 / log2(rank + 1) by hand.
QRELS = {"q1": {"r1": 1}, "q2": {"r2": 1}, "q3": {"r3": 1}, "q4": {"r4": 1}}
N2 = 1 / math.log2(3)  # relevant doc at rank 2: 0.6309...
N3 = 1 / math.log2(4)  # rank 3: 0.5
RANKS_A = {"q1": 1, "q2": 1, "q3": 2, "q4": 1}  # nDCG@10: 1, 1, N2, 1
RANKS_B = {"q1": 2, "q2": 3, "q3": 1, "q4": 1}  # nDCG@10: N2, N3, 1, 1
DELTAS = [1 - N2, 1 - N3, N2 - 1, 0.0]


def _run(ranks: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each query: its relevant doc at the given rank among three docs (scores 3, 2, 1)."""
    run = {}
    for qid, rank in ranks.items():
        docs = [f"x{qid}a", f"x{qid}b"]
        docs.insert(rank - 1, f"r{qid[1:]}")
        run[qid] = {d: float(3 - i) for i, d in enumerate(docs)}
    return run


def _trec(run: dict[str, dict[str, float]]) -> str:
    lines = []
    for qid, docs in run.items():
        for i, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1):
            lines.append(f"{qid} Q0 {d} {i} {s} test")
    return "\n".join(lines) + "\n"


def _folder(root: Path, name: str, ranks: dict[str, int], *, task: str = "T", first_stage: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run.trec").write_text(_trec(_run(ranks)))
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, ds in QRELS.items() for d, r in ds.items())
    )
    summary = {"task": f"{task}_default", "provenance": {"task": task, "subset": "default", "split": "test"}}
    (folder / "summary.json").write_text(json.dumps(summary))
    if first_stage is not None:  # traces carry the first-stage rank and score of every pair
        run = _run(first_stage)
        with (folder / "traces.jsonl").open("w") as f:
            for qid, docs in run.items():
                for rank, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1):
                    f.write(
                        json.dumps({"qid": qid, "docid": d, "first_stage_rank": rank, "first_stage_score": s}) + "\n"
                    )
    return folder


def _t_df3_p(t: float) -> float:
    """Two-sided p of Student's t with 3 degrees of freedom, closed form (no scipy)."""
    x = abs(t) / math.sqrt(3)
    return 1 - (2 / math.pi) * (x / (1 + x * x) + math.atan(x))


def test_hand_computed_deltas_and_p_values(tmp_path):
    a = _folder(tmp_path, "a", RANKS_A)
    b = _folder(tmp_path, "b", RANKS_B)
    res = compare(a, b)
    assert res["metric"] == "ndcg_cut_10" and res["n_queries"] == 4
    assert [r["qid"] for r in res["per_query"]] == ["q1", "q2", "q3", "q4"]
    assert [r["delta"] for r in res["per_query"]] == pytest.approx(DELTAS, abs=1e-12)
    assert [r["a"] for r in res["per_query"]] == pytest.approx([1, 1, N2, 1])
    assert (res["wins"], res["ties"], res["losses"]) == (2, 1, 1)
    assert res["mean_delta"] == pytest.approx(0.125)  # (0.5 + 0 + 0) / 4: q1 and q3 cancel
    # t = mean / (sd / sqrt(n)) by hand
    mean = 0.125
    sd = math.sqrt(sum((d - mean) ** 2 for d in DELTAS) / 3)
    t = mean / (sd / 2)
    assert res["t_test"]["statistic"] == pytest.approx(t)
    assert res["t_test"]["p_value"] == pytest.approx(_t_df3_p(t), abs=1e-9)
    assert res["t_test"]["p_value"] == pytest.approx(0.5684, abs=1e-3)
    # exact sign-flip test: sums ±a ±b ±a (a = 1 - N2, b = 0.5), q4's zero doubles each; |sum| >= 0.5 in 6 of 8
    assert res["randomization"] == {"p_value": 0.75, "n_permutations": 16, "exact": True, "seed": None}


def test_swapping_sides_flips_the_signs(tmp_path):
    a, b = _folder(tmp_path, "a", RANKS_A), _folder(tmp_path, "b", RANKS_B)
    ab, ba = compare(a, b), compare(b, a)
    assert ba["mean_delta"] == pytest.approx(-ab["mean_delta"])
    assert (ba["wins"], ba["losses"]) == (ab["losses"], ab["wins"])
    assert ba["t_test"]["p_value"] == pytest.approx(ab["t_test"]["p_value"])
    assert ba["randomization"]["p_value"] == ab["randomization"]["p_value"]


def test_against_first_stage_from_traces_and_run_file(tmp_path):
    a = _folder(tmp_path, "a", RANKS_A, first_stage=RANKS_B)
    assert folder_first_stage(a) == _run(RANKS_B)
    vs_traces = compare(a)  # no B: A's own first stage
    assert vs_traces["mean_delta"] == pytest.approx(0.125)
    run_file = tmp_path / "first.trec"
    run_file.write_text(_trec(_run(RANKS_B)))
    assert compare(a, run_file)["per_query"] == vs_traces["per_query"]
    # what the driver puts in summary.json: the same test, without the per-query list
    rec = against_first_stage(_run(RANKS_A), _run(RANKS_B), QRELS)
    assert rec["mean_a"] == pytest.approx((3 + N2) / 4) and rec["mean_b"] == pytest.approx((N2 + N3 + 2) / 4)
    assert rec["randomization"]["p_value"] == 0.75 and "per_query" not in rec
    # mteb's denominators: every judged query counts (an unranked one scores 0), unjudged ones never do
    more = {**_run(RANKS_B), "q9": {"r9": 1.0}}
    partial = against_first_stage({q: _run(RANKS_A)[q] for q in ("q1", "q2")}, more, QRELS)
    assert partial["n_queries"] == 4
    assert partial["mean_a"] == pytest.approx((1 + 1 + 0 + 0) / 4)
    assert partial["mean_b"] == pytest.approx((N2 + N3 + 1 + 1) / 4)


def test_judged_queries_a_run_left_unranked_score_zero(tmp_path):
    a = _folder(tmp_path, "a", RANKS_A)
    b = _folder(tmp_path, "b", {"q1": 2, "q2": 3})  # its qrels.tsv judges q3 and q4 too: mteb scored them 0
    res = compare(a, b)
    assert (res["n_queries"], res["queries_only_a"], res["queries_only_b"]) == (4, 0, 0)
    assert [r["b"] for r in res["per_query"]] == pytest.approx([N2, N3, 0.0, 0.0])
    assert res["mean_delta"] == pytest.approx(((1 - N2) + 0.5 + N2 + 1) / 4)


def test_queries_on_one_side_only_are_counted(tmp_path):
    a = _folder(tmp_path, "a", RANKS_A)
    b = _folder(tmp_path, "b", {"q1": 2, "q2": 3})
    (b / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tr1\t1\nq2\tr2\t1\n")  # B evaluated 2 queries
    res = compare(a, b)
    assert (res["n_queries"], res["queries_only_a"], res["queries_only_b"]) == (2, 2, 0)
    assert res["mean_delta"] == pytest.approx(((1 - N2) + 0.5) / 2)
    assert res["randomization"]["p_value"] == 0.5  # both positive: only the identity and its mirror, 2 of 4


def test_randomization_monte_carlo_is_seeded():
    deltas = [0.01 * ((i * 7) % 11 - 4) for i in range(40)]  # 2**40 flips: sampled
    r1 = randomization_test(deltas, n_permutations=3000, seed=1)
    assert r1 == randomization_test(deltas, n_permutations=3000, seed=1)
    assert not r1["exact"] and r1["n_permutations"] == 3000 and 0 < r1["p_value"] <= 1
    strong = randomization_test([1.0 + 0.01 * i for i in range(40)], n_permutations=999, seed=0)
    assert strong["p_value"] == pytest.approx(1 / 1000)  # nothing beats all-positive deltas: (0 + 1) / (N + 1)


def test_degenerate_cases():
    assert t_test([0.1]) == {"statistic": None, "p_value": None}
    assert t_test([0.0, 0.0, 0.0]) == {"statistic": 0.0, "p_value": 1.0}
    assert t_test([0.2, 0.2])["p_value"] == 0.0
    assert randomization_test([])["p_value"] is None
    assert randomization_test([0.0, 0.0])["p_value"] == 1.0
    assert trec_measure("ndcg_at_10") == "ndcg_cut_10" and trec_measure("recall_at_100") == "recall_100"
    assert trec_measure("recip_rank") == "recip_rank"


def test_refuses_what_it_cannot_compare(tmp_path):
    a = _folder(tmp_path, "a", RANKS_A)
    other = _folder(tmp_path, "other", RANKS_B, task="U")
    with pytest.raises(CompareError, match="different tasks"):
        compare(a, other)
    assert compare(a, other, allow_different_tasks=True)["n_queries"] == 4
    (a / "qrels.tsv").unlink()
    with pytest.raises(CompareError, match="--qrels"):
        compare(a, a)
    with pytest.raises(CompareError, match="neither a result folder nor a run file"):
        compare(other, tmp_path / "nope")


def test_cli_table_and_json(tmp_path, capsys):
    a, b = _folder(tmp_path, "a", RANKS_A), _folder(tmp_path, "b", RANKS_B)
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "wins/ties/losses (A vs B): 2/1/1" in out
    assert "paired randomization test (exact): p = 0.7500" in out
    assert "| q2 | 1.0000 | 0.5000 | +0.5000 |" in out
    assert main(["compare", str(a), str(b), "--json", "--metric", "ndcg_at_10"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["metric"] == "ndcg_cut_10" and res["randomization"]["p_value"] == 0.75
    assert main(["compare", str(a), str(tmp_path / "nope")]) == 2
    assert "neither a result folder nor a run file" in capsys.readouterr().err
