"""What the report computes, against values worked out by hand, and its readers on malformed input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rank1_eval.report import data as D
from rank1_eval.report import side_by_side as S
from rank1_eval.report import svg
from rank1_eval.report.page import blob, unblob

LOG3 = math.log2(3)


def _pair(score, label, tokens=10, path="pass1", truncated=False):
    return {"score": score, "label": label, "output_tokens": tokens, "path": path, "truncated": truncated}


def test_calibration_brier_auc_by_hand():
    pairs = [_pair(0.05, 2), _pair(0.15, 0), _pair(0.95, 1), _pair(0.95, None)]
    cal = D.calibration(pairs, bins=10)
    filled = {i: b for i, b in enumerate(cal["bins"]) if b["n"]}
    assert set(filled) == {0, 1, 9}
    assert filled[0] == {"lo": 0.0, "hi": 0.1, "n": 1, "mean_score": 0.05, "share_relevant": 1.0}
    assert filled[9]["n"] == 2 and filled[9]["share_relevant"] == 0.5  # unjudged counts as not relevant
    # ECE = 1/4 |1 - .05| + 1/4 |0 - .15| + 2/4 |.5 - .95| = .2375 + .0375 + .225
    assert cal["ece"] == pytest.approx(0.5)
    # Brier = ((.05-1)^2 + .15^2 + (.95-1)^2 + .95^2) / 4
    assert cal["brier"] == pytest.approx((0.9025 + 0.0225 + 0.0025 + 0.9025) / 4)
    # AUC: relevant {.05, .95} vs other {.15, .95}: pairs 0, 0, 1, 1/2 -> 1.5 / 4
    assert cal["auc"] == pytest.approx(0.375)
    assert (cal["n"], cal["n_relevant"]) == (4, 2)


def test_auc_edge_cases_and_histogram_edges():
    assert D.roc_auc([0.1, 0.2], [True, True]) is None
    assert D.roc_auc([0.1, 0.9], [False, True]) == 1.0
    assert D.roc_auc([0.5, 0.5], [False, True]) == 0.5
    edges = [0.0, 0.5, 1.0]
    assert D.histogram([0.0, 0.49, 0.5, 1.0, 1.2, -0.1], edges) == [2, 2]  # 0.5 opens the upper bin; 1.0 is in it
    dist = D.score_distributions([_pair(0.1, 1), _pair(0.9, 1), _pair(0.3, 0), _pair(1.0, None)], bins=2)
    assert dist["counts"] == {"relevant": [1, 1], "not relevant": [1, 0], "unjudged": [0, 1]}


def test_length_vs_correctness_by_hand():
    pairs = [
        _pair(0.9, 1, tokens=10),  # correct
        _pair(0.8, 0, tokens=20),  # wrong (called relevant)
        _pair(0.2, None, tokens=30),  # correct (unjudged = not relevant)
        _pair(0.4, 2, tokens=40),  # wrong (missed)
    ]
    out = D.length_vs_correctness(pairs, n_bins=2)
    assert [(b["lo"], b["hi"], b["n"], b["accuracy"]) for b in out["bins"]] == [(10, 30, 2, 0.5), (30, 40, 2, 0.5)]
    g = out["groups"]
    assert g["all"] == {
        "n": 4,
        "accuracy": 0.5,
        "tokens_correct": 20.0,
        "tokens_wrong": 30.0,
        "n_correct": 2,
        "n_wrong": 2,
    }
    assert (g["relevant"]["tokens_correct"], g["relevant"]["tokens_wrong"]) == (10.0, 40.0)
    assert g["not relevant"]["accuracy"] == 0.0 and g["unjudged"]["accuracy"] == 1.0
    assert D.quantile_edges([5, 5, 5], 4) == [5, 5]  # one value: one bin, still drawable
    assert D.quantile_edges([], 4) == []


def test_path_rates_by_label():
    pairs = [_pair(0.5, 1, path="failed"), _pair(0.7, 1, path="pass2", truncated=True), _pair(0.1, None, tokens=30)]
    rates = D.path_rates(pairs)
    assert rates["relevant"] == {
        "n": 2,
        "pass1": 0,
        "pass2": 1,
        "failed": 1,
        "truncated": 1,
        "tokens": 10.0,
        "score": 0.6,
    }
    assert rates["unjudged"]["pass1"] == 1 and rates["not relevant"]["n"] == 0
    assert rates["all"]["n"] == 3 and rates["all"]["tokens"] == pytest.approx(50 / 3)


def _folder(root: Path, name: str, rows: list[tuple[str, str, float, int | None]], qrels: dict) -> Path:
    """A result folder with traces (qid, docid, score, first-stage rank), qrels and a summary."""
    folder = root / name
    folder.mkdir(parents=True)
    traces = [
        {
            "qid": q,
            "docid": d,
            "score": s,
            "first_stage_rank": r,
            "path": "pass1",
            "output_tokens": 5,
            "reasoning": f"about {d}",
        }
        for q, d, s, r in rows
    ]
    (folder / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    (folder / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n"
        + "".join(f"{q}\t{d}\t{r}\n" for q, docs in qrels.items() for d, r in docs.items())
    )
    prov = {"model": name, "task": "T", "subset": "default", "split": "test", "top_k": 3}
    summary = {"task": "T_default", "main_metric": "ndcg_at_10", "metrics": {"ndcg_at_10": 0.5}, "provenance": prov}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_per_query_metric_and_delta_by_hand(tmp_path):
    # q1: the relevant doc was 2nd in the first stage and is 1st after reranking: nDCG@10 1 vs 1/log2(3)
    # q2: it was 1st and falls to 3rd: nDCG@10 1/log2(4) = 0.5 vs 1
    rows = [
        ("q1", "a", 0.9, 2),
        ("q1", "b", 0.5, 1),
        ("q1", "c", 0.1, 3),
        ("q2", "x", 0.2, 1),
        ("q2", "y", 0.9, 2),
        ("q2", "z", 0.8, 3),
    ]
    folder = _folder(tmp_path, "m", rows, {"q1": {"a": 1, "c": 0}, "q2": {"x": 2}})
    view = D.load_run(folder)
    assert view.measure == "ndcg_cut_10"
    assert view.per_query == pytest.approx({"q1": 1.0, "q2": 0.5})
    assert view.per_query_fs == pytest.approx({"q1": 1 / LOG3, "q2": 1.0})
    assert view.delta("q1") == pytest.approx(1 - 1 / LOG3) and view.delta("q2") == pytest.approx(-0.5)
    ranks = {t["docid"]: (t["rank"], t["label"]) for t in view.pairs}
    assert ranks == {"a": (1, 1), "b": (2, None), "c": (3, 0), "y": (1, None), "z": (2, None), "x": (3, 2)}
    stats = D.query_stats(view, "q1")
    assert (stats["relevant"], stats["relevant_total"], stats["accuracy"]) == (1, 1, 2 / 3)  # b: 0.5 -> called true
    assert D.load_run(folder, measure="recip_rank").per_query == pytest.approx({"q1": 1.0, "q2": 1 / 3})
    assert D.measure_label("ndcg_cut_10") == "nDCG@10" and D.measure_label("recip_rank") == "MRR"


def test_malformed_folders_are_named(tmp_path):
    with pytest.raises(D.ReportError, match="not a result folder"):
        D.load_run(tmp_path)
    folder = _folder(tmp_path, "m", [("q", "d", 0.5, 1)], {"q": {"d": 1}})
    (folder / "traces.jsonl").write_text('{"qid": "q", "docid": "d", "score": 0.5}\nnot json\n')
    with pytest.raises(D.ReportError, match="line 2 is not JSON"):
        D.load_run(folder)
    (folder / "traces.jsonl").write_text('{"qid": "q", "docid": "d"}\n')
    with pytest.raises(D.ReportError, match="line 1 lacks qid, docid or score"):
        D.load_run(folder)
    (folder / "traces.jsonl").write_text('{"qid": "q", "docid": "d", "score": NaN}\n')
    with pytest.raises(D.ReportError, match="not a finite number"):
        D.load_run(folder)
    (folder / "traces.jsonl").write_text('{"qid": 7, "docid": 8, "score": 1}\n')
    assert [t["docid"] for t in D.load_run(folder).pairs] == ["8"]  # ids stay strings
    (folder / "summary.json").write_text("{")
    with pytest.raises(D.ReportError, match="summary.json is truncated or not JSON .* rebuild it"):
        D.load_run(folder)


def test_sweep_contract_and_tolerance(tmp_path):
    assert D.read_sweep(tmp_path) is None
    rows = [
        {"budget": 512, "metrics": {"ndcg_at_10": 0.4}, "reasoning_tokens_mean": 300.0, "pass2_share": 0.2},
        {"budget": 256, "metrics": {"ndcg_at_10": 0.3}, "reasoning_tokens_mean": 200.0},
    ]
    (tmp_path / D.SWEEP_FILE).write_text(json.dumps({"metric": "ndcg_at_10", "budgets": rows}))
    sweep = D.read_sweep(tmp_path)
    assert sweep["metric"] == "ndcg_at_10"
    assert [(r["budget"], r["value"], r["tokens"]) for r in sweep["rows"]] == [(256, 0.3, 200.0), (512, 0.4, 300.0)]
    (tmp_path / D.SWEEP_FILE).write_text(json.dumps([{"budget": 64, "main_score": 0.1, "output_tokens_mean": 50}]))
    assert [(r["value"], r["tokens"]) for r in D.read_sweep(tmp_path)["rows"]] == [(0.1, 50)]
    (tmp_path / D.SWEEP_FILE).write_text(json.dumps({"budgets": [{"metrics": {}}]}))
    with pytest.raises(D.ReportError, match="every row needs a 'budget'"):
        D.read_sweep(tmp_path)
    (tmp_path / D.SWEEP_FILE).write_text("{")
    with pytest.raises(D.ReportError, match="sweep.json: not JSON"):
        D.read_sweep(tmp_path)


def test_second_side_first_stage_run_file_and_folder(tmp_path):
    rows = [("q1", "a", 0.9, 2), ("q1", "b", 0.5, 1), ("q1", "c", 0.1, 3)]
    a = D.load_run(_folder(tmp_path, "a", rows, {"q1": {"a": 1}}))
    fs = S.load_side(S.FIRST_STAGE, a)
    assert not fs.reasoning and [(t["docid"], t["rank"]) for t in fs.by_query["q1"]] == [("b", 1), ("a", 2), ("c", 3)]
    assert fs.per_query == pytest.approx({"q1": 1 / LOG3})
    run = tmp_path / "run.trec"
    run.write_text("q1 Q0 c 1 9 x\nq1 Q0 a 2 8 x\nq1 Q0 b 3 7 x\nq1 Q0 d 4 6 x\n")  # d: deeper than A's top-3
    other = S.load_side(run, a)
    assert [t["docid"] for t in other.by_query["q1"]] == ["c", "a", "b"]
    rows = S.pair_rows(a, other, "q1", 100)
    assert [(r["d"], r["ra"], r["rb"], r["dr"]) for r in rows] == [("c", 3, 1, 2), ("a", 1, 2, 1), ("b", 2, 3, 1)]
    assert "reb" not in rows[0]  # B has no reasoning: the page says so instead of showing an empty chain
    b = S.load_side(_folder(tmp_path, "b", [("q1", "a", 0.1, 2), ("q1", "b", 0.2, 1)], {"q1": {"b": 1}}), a)
    assert b.reasoning and b.by_query["q1"][0]["label"] == 1  # A's judgements on both sides (B's own say "b")
    assert b.per_query == pytest.approx({"q1": 1 / LOG3})
    both = S.pair_rows(a, b, "q1", 100)
    assert [(r["d"], r["dr"]) for r in both] == [("a", 1), ("b", 1), ("c", None)]  # only A ranked c: last
    assert (both[0]["rea"], both[0]["reb"], both[2]["reb"]) == ("about a", "about a", None)
    settings = S.settings_rows(a, b)
    assert settings[0][0] == "<b>model</b>"  # what differs comes first, in bold
    with pytest.raises(D.ReportError, match="neither a result folder, a run file nor 'first-stage'"):
        S.load_side(tmp_path / "nothing", a)
    assert S.default_output(a.folder, b.folder) == a.folder / f"report-vs-{tmp_path.name}__b.html"
    assert S.default_output(a.folder, S.FIRST_STAGE).name == "report-vs-first-stage.html"


def test_svg_ticks_bars_and_escaping():
    assert svg.nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert svg.nice_ticks(-0.37, 0.52, 4) == [-0.25, 0, 0.25, 0.5]
    assert svg.nice_ticks(3, 3) == [3]
    chart = svg.delta_bars(
        [svg.Bar('q<1>"', 0.25, "#q=q%3C1%3E%22"), svg.Bar("q2", -0.5, "#q=q2")], title="Δ <x>", ylabel="Δ"
    )
    assert chart.count("<a href=") == 2 and "q&lt;1&gt;&quot;" in chart and "Δ &lt;x&gt;" in chart
    assert chart.index("#1a7f37") < chart.index("#c0392b")  # a gain in green, then a loss in red
    assert "no queries" in svg.delta_bars([], title="t", ylabel="y")


def test_blobs_round_trip():
    data = {"pairs": [{"re": "</script><script>alert(1)</script>", "s": 0.5}], "q": "ü"}
    text = blob(data)
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")  # never ends a tag
    assert unblob(text) == data
