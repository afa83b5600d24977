"""Any mteb reranker through ``rank1-eval run`` (issue 22), with no download: mteb's random cross-encoder baseline
and the bundled micro CrossEncoder (scripts/build_micro_crossencoder.py) on the demo, against the micro rank1,
through run -> resume -> compare -> report -> table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import DEMO, MICRO_RANK1, only_run

from rank1_eval import baseline
from rank1_eval.cli import EXIT_ERROR, main

MICRO_CE = Path(__file__).resolve().parents[1] / "rank1_eval" / "data" / "micro-crossencoder"
RANDOM = "mteb/baseline-random-cross-encoder"
DEMO_ARGS = [
    "--task",
    str(DEMO),
    "--run-file",
    str(DEMO / "bm25s_top20.trec"),
    "--top-k",
    "20",
    "--limit-queries",
    "3",
    "--no-progress",
]


def _run(out: Path, model: str, *extra: str) -> int:
    return main(["run", "--model", model, "--output-dir", str(out), *DEMO_ARGS, *extra])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """One output folder holding the micro rank1, mteb's random baseline and the micro CrossEncoder on the same
    3 demo queries x bm25s top-20."""
    if not (MICRO_RANK1 / "model.safetensors").exists():
        pytest.skip("micro rank1 fixture not built")
    out = tmp_path_factory.mktemp("baselines")
    common = ["--max-output-tokens", "64", "--context-size", "1024", "--dtype", "float32", "--device", "cpu"]
    assert _run(out, str(MICRO_RANK1), "--engine", "transformers", *common) == 0
    assert _run(out, RANDOM) == 0
    assert _run(out, str(MICRO_CE)) == 0
    return out


def test_which_models_are_baselines():
    assert baseline.is_baseline(RANDOM)
    assert baseline.is_baseline(str(MICRO_CE))
    assert baseline.is_baseline("BAAI/bge-reranker-v2-m3")  # a registered mteb cross-encoder (not loaded here)
    assert not baseline.is_baseline(str(MICRO_RANK1))  # a local causal LM: rank1
    assert not baseline.is_baseline("jhu-clsp/rank1-7b")  # registered in mteb as a cross-encoder, but rank1
    assert not baseline.is_baseline("sentence-transformers/all-MiniLM-L6-v2")  # a bi-encoder
    assert not baseline.is_baseline(None)


def test_rank1_flags_with_a_baseline_are_an_error_naming_them(tmp_path, capsys):
    assert _run(tmp_path, RANDOM, "--max-output-tokens", "5", "--prompt-set", "paper") == EXIT_ERROR
    err = capsys.readouterr().err
    assert "--max-output-tokens, --prompt-set are rank1 flags" in err and RANDOM in err
    assert _run(tmp_path, RANDOM, "--answer-rule", "reference") == EXIT_ERROR
    assert "--answer-rule is a rank1 flag" in capsys.readouterr().err
    assert not (tmp_path / "store.sqlite").exists()  # refused before anything was written


def test_a_baseline_folder_is_a_result_folder_without_reasoning(results):
    from rank1_eval.outputs import check_result_folder

    folder = only_run(results, "mteb__baseline-random-cross-encoder")
    summary = check_result_folder(folder)  # whole: every file matches its summary
    assert summary["model_kind"] == "mteb-cross-encoder" and summary["reasoning_traces"] is False
    assert "no reasoning" in summary["traces_note"]
    prov = summary["provenance"]
    from rank1_eval.mteb_compat import registered_meta

    revision = registered_meta(RANDOM).revision  # mteb's own entry ("2" in mteb 2.26, "1" in 2.12)
    assert prov["mteb_name"] == RANDOM and prov["revision"] == revision and prov["reasoning_traces"] is False
    assert prov["mteb_wrapper"].endswith("RandomCrossEncoderBaseline")  # mteb's own model did the scoring
    assert summary["settings"]["kind"] == "mteb-cross-encoder" and summary["settings"]["revision"] == revision
    assert summary["pairs_total"] == 60 and summary["pairs_scored"] == 60 and summary["failed"] == 0
    traces = _jsonl(folder / "traces.jsonl")
    assert len(traces) == 60 and not any("reasoning" in t for t in traces)
    assert all(t["first_stage_rank"] is not None for t in traces)
    predictions = json.loads((folder / "predictions.json").read_text())
    assert {(t["qid"], t["docid"]): t["score"] for t in traces} == {
        (q, d): s for q, docs in predictions.items() for d, s in docs.items()
    }
    assert len((folder / "run.trec").read_text().splitlines()) == 60
    # mteb's ResultCache layout, beside it: the same scores mteb's loader reads back
    from rank1_eval.mteb_compat import task_result_class

    mteb_file = Path(summary["mteb"]["result"])
    assert mteb_file.is_file() and "mteb__baseline-random-cross-encoder" in mteb_file.parts
    again = task_result_class().from_disk(mteb_file)
    assert again.scores["test"][0]["ndcg_at_10"] == pytest.approx(summary["metrics"]["ndcg_at_10"])


def test_a_rerun_reads_every_score_from_the_store(results, capsys):
    folder = only_run(results, "mteb__baseline-random-cross-encoder")
    before = (folder / "predictions.json").read_text()
    assert _run(results, RANDOM) == 0
    assert "scored 0, from store 60" in capsys.readouterr().out
    assert (folder / "predictions.json").read_text() == before


def test_the_local_cross_encoder_scores_what_sentence_transformers_scores(results):
    from sentence_transformers import CrossEncoder

    folder = only_run(results, "local__micro-crossencoder")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["settings"]["weights_fingerprint"] and summary["settings"]["model"] == "local"
    assert summary["provenance"]["mteb_wrapper"].endswith("CrossEncoderWrapper")
    traces = _jsonl(folder / "traces.jsonl")[:5]
    queries = {r["_id"]: r["text"] for r in _jsonl(DEMO / "queries.jsonl")}
    corpus = {r["_id"]: r for r in _jsonl(DEMO / "corpus.jsonl")}
    from rank1_eval.tasks import mteb_doc_text

    pairs = [
        (queries[t["qid"]], mteb_doc_text(corpus[t["docid"]].get("title"), corpus[t["docid"]]["text"])) for t in traces
    ]
    direct = CrossEncoder(str(MICRO_CE), device="cpu").predict(pairs)
    assert [t["score"] for t in traces] == pytest.approx([float(s) for s in direct], abs=1e-5)
    assert len({round(t["score"], 6) for t in _jsonl(folder / "traces.jsonl")}) > 30  # scores differ


def test_other_weights_are_another_model_in_the_store(results, tmp_path, capsys):
    copy = tmp_path / "micro-crossencoder"
    shutil.copytree(MICRO_CE, copy)
    (copy / "README.md").write_text("changed\n")  # a different folder content: a different fingerprint
    store = results / "store.sqlite"
    assert (
        main(["run", "--model", str(copy), "--output-dir", str(tmp_path / "out"), "--store", str(store), *DEMO_ARGS])
        == 0
    )
    assert "scored 60, from store 0" in capsys.readouterr().out


def test_compare_report_and_table_side_by_side(results, tmp_path, capsys):
    from rank1_eval.compare import compare
    from rank1_eval.paper import table_from_results
    from rank1_eval.report import write_comparison

    rank1_dir = only_run(results)
    base_dir = only_run(results, "local__micro-crossencoder")
    result = compare(rank1_dir, base_dir)
    assert result["candidates"]["identical"] and result["candidates"]["pairs_a"] == 60
    assert (
        result["model_a"].endswith("(rank1)")
        and result["model_b"] == "local/micro-crossencoder (baseline: mteb cross-encoder)"
    )
    a = json.loads((rank1_dir / "summary.json").read_text())["metrics"]["ndcg_at_10"]
    b = json.loads((base_dir / "summary.json").read_text())["metrics"]["ndcg_at_10"]
    assert result["mean_a"] - result["mean_b"] == pytest.approx(a - b, abs=1e-4)  # mteb rounds to 5 decimals
    assert result["n_queries"] == 3 and result["wins"] + result["ties"] + result["losses"] == 3
    assert main(["compare", str(rank1_dir), str(base_dir), "--no-per-query"]) == 0
    out = capsys.readouterr().out
    assert "candidates: the same 60 (query, passage) pairs on both sides" in out and "paired t-test" in out
    # the two-run page: rank1's reasoning on A's side, the baseline's scores on B's
    page = write_comparison(rank1_dir, base_dir, tmp_path / "two.html").read_text(encoding="utf-8")
    assert "score B" in page and "mteb-cross-encoder" in page
    from rank1_eval.report import write_report

    single = write_report(base_dir, tmp_path / "one.html").read_text(encoding="utf-8")
    assert "own scale and no reasoning" in single and "Calibration" not in single
    # one table row per model, rank1 next to the baselines
    table = table_from_results("dl19", results, [str(MICRO_RANK1), RANDOM, str(MICRO_CE)], allow_partial=True)
    rows = [r for r in table.rows if not r.first_stage]
    assert [r.model_folder for r in rows] == [
        "local__micro-rank1",
        "mteb__baseline-random-cross-encoder",
        "local__micro-crossencoder",
    ]
    assert rows[0].cells["ndcg_at_10-original"].ours == pytest.approx(100 * a)
    assert rows[2].cells["ndcg_at_10-original"].ours == pytest.approx(100 * b)
    assert (
        main(
            [
                "table",
                "dl19",
                "--results",
                str(results),
                "--model",
                str(MICRO_RANK1),
                "--model",
                RANDOM,
                "--allow-partial",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert str(MICRO_RANK1) in printed and RANDOM in printed


def test_a_baseline_dry_run_loads_no_model(tmp_path, capsys):
    assert _run(tmp_path, str(MICRO_CE), "--dry-run") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pairs"] == 60 and report["model"]["model_kind"] == "mteb-cross-encoder"
    assert report["model"]["mteb_wrapper"] is None  # nothing loaded


def test_export_files_a_baseline_under_mteb_s_own_name(results, tmp_path):
    from rank1_eval.evaluate import export_results

    done = export_results(results, tmp_path / "cache", allow_partial=True)
    files = {str(path.relative_to(tmp_path / "cache")) for _, path in done}
    from rank1_eval.mteb_compat import registered_meta

    revision = registered_meta(RANDOM).revision
    assert any(f.startswith(f"results/mteb__baseline-random-cross-encoder/{revision}/") for f in files), files
    assert any(f.startswith("results/local__micro-crossencoder/") for f in files), files


@pytest.mark.slow  # launch_job.sh end to end: two fresh interpreters, mteb evaluate
def test_launch_job_runs_a_baseline(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    cmd = [
        "bash",
        str(root / "scripts" / "launch_job.sh"),
        RANDOM,
        str(DEMO),
        "default",
        "--run-file",
        str(DEMO / "bm25s_top20.trec"),
        "--top-k",
        "20",
        "--limit-queries",
        "2",
        "--no-progress",
        "--output-dir",
        str(tmp_path),
    ]
    env = dict(os.environ, PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ndcg_at_10" in proc.stdout and "scored 40" in proc.stdout
    assert only_run(tmp_path, "mteb__baseline-random-cross-encoder").is_dir()
    proc = subprocess.run([*cmd[:5], "2", *cmd[5:]], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == EXIT_ERROR and "--num-gpus is a rank1 flag" in proc.stderr
