"""The driver end to end on every dataset family of the paper, through mteb's own task classes, with the micro rank1.

Each family runs once per session with ``rank1-eval run ... --dataset-path <Hub-shaped copy>`` (in process, the
Transformers engine, small budgets). Every number rank1_eval computes itself is then recomputed with mteb's own
evaluator (``RetrievalEvaluator.evaluate``: pytrec_eval under mteb's query filter, ``ignore_identical_ids`` and
empty rankings) from the run's predictions and first stage, and must agree to 1e-9 (mteb's printed means are
rounded to 5 decimals: those agree to 5e-6).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import MICRO_RANK1, one_torch_thread, session_engines

from rank1_eval.cli import main
from rank1_eval.compare import compare, folder_first_stage
from rank1_eval.tasks import load_task

pytestmark = pytest.mark.slow

MODEL_ARGS = [
    "--model",
    str(MICRO_RANK1),
    "--engine",
    "transformers",
    "--device",
    "cpu",
    "--dtype",
    "float32",
    "--max-output-tokens",
    "32",
    "--context-size",
    "1024",
    "--no-progress",
]
# family -> (task, subtask, Hub repo folder under the fixtures' data root, extra flags); 2 candidates per query
# keep the CPU time small (the Transformers engine on 2 shared cores)
FAMILIES = {
    "bright-v1": ("BrightRetrieval", "biology", "xlangai/BRIGHT", []),
    "bright-v1.1-excluded": ("BrightLeetcodeRetrieval", None, "mteb/BRIGHT", []),
    "mfollowir": ("mFollowIR", "fas", "jhu-clsp/mFollowIR-parquet-mteb", []),
    "mfollowir-crosslingual": ("mFollowIRCrossLingual", "eng-zho", "jhu-clsp/mFollowIR-cross-lingual-parquet-mteb", []),
    "nevir": ("NevIR", None, "orionweller/NevIR-mteb", ["--limit-queries", "3"]),  # odd: pairs stay whole
    "beir-scifact": ("SciFact", None, "mteb/scifact", []),
    "beir-arguana-identical-ids": ("ArguAna", None, "mteb/arguana", []),
}


def _folder(out: Path, label: str) -> Path:
    """The one run folder of a task (``--limit-queries`` runs included) under rank1_eval's layout."""
    from rank1_eval.layout import resolve_run_folder

    return resolve_run_folder(out / f"local__{MICRO_RANK1.name}" / label, allow_partial=True)


@pytest.fixture(scope="session")
def family_runs(hub_fixtures, tmp_path_factory, request):
    """Run every family once, in-process on the session's engine: {family: (result folder, command line)}."""
    out = tmp_path_factory.mktemp("families")
    runs = {}
    with pytest.MonkeyPatch.context() as mp, one_torch_thread(), session_engines(request) as handed:
        mp.setenv("RANK1_RUN_FILES", hub_fixtures["run_files"])
        for family, (task, subtask, repo, extra) in FAMILIES.items():
            args = ["run", "--task", task, "--dataset-path", str(Path(hub_fixtures["hub"]) / repo)]
            args += ["--subtask", subtask] if subtask else []
            args += ["--top-k", "2", *extra, "--output-dir", str(out), *MODEL_ARGS]
            assert main(args) == 0, family
            runs[family] = (_folder(out, f"{task}_{subtask or 'default'}"), args)
        dl19 = hub_fixtures["dl19"]
        args = [
            "run",
            "--task",
            dl19["DL19_DIR"],
            "--run-file",
            dl19["DL19_RUN"],
            "--qrels",
            f"rejudged={dl19['DL19_REJUDGED']}",
            "--top-k",
            "3",
            "--output-dir",
            str(out),
            *MODEL_ARGS,
        ]
        assert main(args) == 0
        runs["dl19-local-folder"] = (_folder(out, "Dl19Local_default"), args)
    assert set(handed) == {"hf_engine"}  # no run loaded an engine of its own
    return runs


def _mteb_scores(folder: Path, run: dict[str, dict[str, float]], qrels=None):
    """mteb's own evaluation of ``run`` on the task behind ``folder`` (its data loaded by mteb's class)."""
    from mteb._evaluators.retrieval_evaluator import RetrievalEvaluator
    from mteb.abstasks.retrieval import _filter_queries_without_positives

    summary = json.loads((folder / "summary.json").read_text())
    prov = summary["provenance"]
    if prov["task_source"] == "mteb":
        task = load_task(prov["task"], prov["subtask"], dataset_path=prov["dataset_path"])
    else:
        task = load_task(prov["task_source"])
    queries = task.data["queries"]
    if prov["limit_queries"] is not None:  # the queries the limited run kept (pairs whole): its qrels.tsv
        kept = set(_qrels(folder))
        queries = queries.filter(lambda row: row["id"] in kept)
    relevant, queries = _filter_queries_without_positives(qrels or task.qrels, queries)
    results = {q: dict(run.get(q, {})) for q in queries["id"]}  # as SearchCrossEncoderWrapper builds it
    k_values = list(task.task.k_values)
    ignore = task.task.ignore_identical_ids
    return RetrievalEvaluator.evaluate(None, relevant, results, k_values, ignore_identical_ids=ignore), task


def _mean(scores, measure: str) -> float:
    return sum(v[measure] for v in scores.all_scores.values()) / len(scores.all_scores)


@pytest.mark.parametrize("family", [*FAMILIES, "dl19-local-folder"])
def test_family_end_to_end_and_our_metrics_equal_mtebs(family_runs, family):
    folder, _ = family_runs[family]
    summary = json.loads((folder / "summary.json").read_text())
    predictions = json.loads((folder / "predictions.json").read_text())
    assert summary["pairs_total"] == sum(len(d) for d in predictions.values()) > 0
    assert summary["failed"] == 0
    reranked, task = _mteb_scores(folder, predictions)
    # mteb saw exactly the run we think it saw (its printed means are rounded to 5 decimals)
    assert summary["metrics"]["ndcg_at_10"] == pytest.approx(reranked.ndcg["NDCG@10"], abs=1e-12)
    # Judged@10 on the evaluated queries (an unranked judged query counts 0)
    judged10 = summary["extra_qrels"]["main"]["Judged@10"]
    assert judged10 == pytest.approx(_judged_at_10(predictions, reranked, task), abs=1e-9)
    if family == "nevir":  # no first stage: the task's own two candidates; doc2 is unjudged for q1 and vice versa
        assert summary["pairs_total"] == 8 and judged10 == pytest.approx(0.5)  # --limit-queries 3: 2 whole pairs
        assert summary["queries_evaluated"] == 4
        assert "paired_accuracy" in summary["metrics"] and "vs_first_stage" not in summary
        return
    vs = summary["vs_first_stage"]
    assert vs["mean_a"] == pytest.approx(_mean(reranked, "ndcg_cut_10"), abs=1e-9)
    assert vs["mean_a"] == pytest.approx(summary["metrics"]["ndcg_at_10"], abs=5e-6)
    first, _ = _mteb_scores(folder, folder_first_stage(folder))
    assert vs["mean_b"] == pytest.approx(_mean(first, "ndcg_cut_10"), abs=1e-9)  # the paper tables' first-stage row
    assert vs["n_queries"] == len(reranked.all_scores) == summary["queries_evaluated"]
    cmp = compare(folder)  # `rank1-eval compare DIR`: the folder against its own first stage
    assert (cmp["mean_a"], cmp["mean_b"]) == pytest.approx((vs["mean_a"], vs["mean_b"]), abs=1e-12)
    from rank1_eval.paper import Folder, first_stage_value

    assert first_stage_value(Folder.read(folder), "ndcg_at_10") == pytest.approx(vs["mean_b"], abs=1e-12)


def _judged_at_10(predictions, scores, task) -> float:
    values = []
    for qid in scores.all_scores:
        docs = {d: s for d, s in predictions.get(qid, {}).items() if not (task.task.ignore_identical_ids and d == qid)}
        top = sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]
        values.append(sum(d in task.qrels.get(qid, {}) for d, _ in top) / len(top) if top else 0.0)
    return sum(values) / len(values)


def test_identical_ids_are_dropped_as_mteb_drops_them(family_runs):
    folder, _ = family_runs["beir-arguana-identical-ids"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["eval_rules"]["ignore_identical_ids"] is True
    first = folder_first_stage(folder)
    assert all(q in first[q] for q in first)  # the first stage ranks each query's own document first
    with_rule, _ = _mteb_scores(folder, first)
    assert summary["vs_first_stage"]["mean_b"] == pytest.approx(_mean(with_rule, "ndcg_cut_10"), abs=1e-9)
    # without the rule the same first stage scores lower: the value rank1_eval reported before issue 9
    from rank1_eval.metrics import mean, per_query

    naive = mean(per_query(first, json.loads(json.dumps(_qrels(folder))), "ndcg_cut_10"))
    assert naive < summary["vs_first_stage"]["mean_b"] - 0.05


def _qrels(folder: Path) -> dict[str, dict[str, int]]:
    from rank1_eval.beir import read_qrels

    return read_qrels(folder / "qrels.tsv")


def test_judged_query_without_candidates_counts_zero(family_runs):
    folder, _ = family_runs["beir-scifact"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["judged_without_candidates"] == 1
    assert summary["queries_evaluated"] == 4 and summary["queries"] == 3
    predictions = json.loads((folder / "predictions.json").read_text())
    scored = compare(folder)
    assert len(predictions) == 3 and scored["n_queries"] == 4
    assert any(r["a"] == 0.0 and r["b"] == 0.0 for r in scored["per_query"])  # the unranked judged query


def test_bright_v1_1_excluded_ids_are_removed_and_counted(family_runs, hub_fixtures):
    import pandas as pd

    folder, _ = family_runs["bright-v1.1-excluded"]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["excluded_ids"] == {"queries_with_exclusions": 3, "pairs_removed": 3, "queries_affected": 3}
    path = Path(hub_fixtures["hub"]) / "mteb" / "BRIGHT" / "examples" / "leetcode-00000-of-00001.parquet"
    excluded = {r["id"]: set(r["excluded_ids"]) for _, r in pd.read_parquet(path).iterrows()}
    predictions = json.loads((folder / "predictions.json").read_text())
    assert all(not (set(docs) & excluded[q]) for q, docs in predictions.items())
    assert all(len(docs) == 2 for docs in predictions.values())  # still k candidates after the removal
    assert summary["prompt_template"]["key"] == "BrightRetrieval_leetcode"


def test_mfollowir_reports_p_mrr_and_og_ndcg(family_runs):
    for family in ("mfollowir", "mfollowir-crosslingual"):
        folder, _ = family_runs[family]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["main_metric"] == "p-MRR" and math.isfinite(summary["main_score"])
        result = json.loads((folder / "mteb_result.json").read_text())
        entry = result["scores"]["test"][0]
        assert "ndcg_at_20" in entry["og"] and "ndcg_at_20" in entry["changed"]
        assert summary["prompt_template"]["source"] == "none (raw query)"


def test_dl19_extra_qrels_equal_mteb_on_the_rejudged_set(family_runs, hub_fixtures):
    from rank1_eval.beir import read_qrels

    folder, _ = family_runs["dl19-local-folder"]
    summary = json.loads((folder / "summary.json").read_text())
    predictions = json.loads((folder / "predictions.json").read_text())
    rejudged = read_qrels(hub_fixtures["dl19"]["DL19_REJUDGED"])
    scores, _ = _mteb_scores(folder, predictions, qrels=rejudged)
    assert summary["extra_qrels"]["rejudged"]["nDCG@10"] == pytest.approx(_mean(scores, "ndcg_cut_10"), abs=1e-9)
    assert summary["extra_qrels"]["rejudged"]["R@100"] == pytest.approx(_mean(scores, "recall_100"), abs=1e-9)


def test_v1_tasks_dry_run_and_shards(run_files_env, tmp_path, capsys, single_thread, reuse_engines):
    """--dry-run and --shard on mteb's v1-format tasks; the shard's prompts are the mteb path's (same keys)."""
    hub = Path(run_files_env["hub"])
    bright = ["run", "--task", "BrightRetrieval", "--subtask", "aops", "--dataset-path", str(hub / "xlangai/BRIGHT")]
    assert main([*bright, "--top-k", "3", "--dry-run", "--output-dir", str(tmp_path), *MODEL_ARGS]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["queries"], info["pairs"], info["queries_evaluated"]) == (3, 9, 3)
    assert info["prompt_template"]["key"] == "BrightRetrieval_aops" and "excluded_ids" not in info  # v1: none
    assert not (tmp_path / "store.sqlite").exists()
    follow = [
        "run",
        "--task",
        "mFollowIRCrossLingual",
        "--subtask",
        "eng-rus",
        "--dataset-path",
        str(hub / "jhu-clsp/mFollowIR-cross-lingual-parquet-mteb"),
        "--top-k",
        "2",
        "--output-dir",
        str(tmp_path),
        *MODEL_ARGS,
    ]
    assert main([*follow, "--shard", "0/1"]) == 0
    assert "8 of 8 pairs (scored 8" in capsys.readouterr().out
    store = tmp_path / "store.shard-0-of-1.sqlite"
    assert main([*follow, "--store", str(store)]) == 0
    assert "pairs 8: scored 0, from store 8" in capsys.readouterr().out
    assert reuse_engines == ["hf_engine"]  # the shard loaded the session's engine; the run from its store none


def test_report_shows_what_mteb_scored(family_runs):
    from rank1_eval.report import load_run, render_report

    folder = family_runs["beir-arguana-identical-ids"][0]
    vs = json.loads((folder / "summary.json").read_text())["vs_first_stage"]
    view = load_run(folder, texts=False)
    assert sum(view.per_query.values()) / len(view.per_query) == pytest.approx(vs["mean_a"], abs=1e-12)
    assert sum(view.per_query_fs.values()) / len(view.per_query_fs) == pytest.approx(vs["mean_b"], abs=1e-12)
    own = [t for q, pairs in view.by_query.items() for t in pairs if t["docid"] == q]
    assert own and all(t.get("ignored") and t["rank"] == len(view.by_query[t["qid"]]) for t in own)
    assert "ignore_identical_ids: yes" in render_report(folder, texts=False)
    scifact = family_runs["beir-scifact"][0]
    view = load_run(scifact, texts=False)
    assert len(view.per_query) == 4 and len(view.by_query) == 3  # the unranked judged query: 0, as in mteb
    page = render_report(scifact, texts=False)
    assert "queries evaluated: 4" in page and "judged without candidates (scored 0): 1" in page


def test_bm25_first_stage_drops_bright_exclusions(run_files_env, tmp_path, capsys):
    hub = Path(run_files_env["hub"])
    args = [
        "run",
        "--task",
        "BrightAopsRetrieval",
        "--dataset-path",
        str(hub / "mteb/BRIGHT"),
        "--first-stage",
        "bm25",
        "--top-k",
        "2",
        "--dry-run",
        "--output-dir",
        str(tmp_path),
        *MODEL_ARGS,
    ]
    assert main(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["excluded_ids"]["queries_with_exclusions"] == 3 and info["excluded_ids"]["pairs_removed"] >= 1
    assert info["pairs"] == 6  # still k = 2 candidates per query after the removal
    assert not list(tmp_path.rglob("first_stage.bm25.trec"))  # a dry run writes nothing (a run: with its results)
    from rank1_eval.evaluate import BM25_FILE, RunOptions, prepare

    prepared = prepare(
        RunOptions(
            task="BrightAopsRetrieval",
            dataset_path=str(hub / "mteb/BRIGHT"),
            first_stage="bm25",
            top_k=2,
            output_dir=tmp_path,
        )
    )
    pairs = [line.split()[:3:2] for line in prepared.first_stage_files[BM25_FILE].splitlines()]
    assert len(pairs) == 6 and all(doc != f"aops_self_{qid}.txt" for qid, doc in pairs)  # its own problem: excluded
