"""End to end on CPU, offline: ``rank1-eval run`` and ``launch_job.sh`` on a BEIR folder with a TREC run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO, MICRO_RANK1, only_run

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
RUN = DEMO / "bm25s_top20.trec"


def _env(**extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0", TOKENIZERS_PARALLELISM="false")
    env.update(extra)
    return env


def _cli(*args, check=True, timeout=600, **popen):
    cmd = [sys.executable, "-m", "rank1_eval.cli", "run", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _base(out, engine="transformers", limit=3, *extra):
    return [
        "--task", DEMO, "--run-file", RUN, "--model", MICRO_RANK1, "--engine", engine, "--device", "cpu",
        "--dtype", "float32", "--max-output-tokens", 64, "--context-size", 1024, "--output-dir", out,
        "--limit-queries", limit, "--top-k", 20, "--enforce-eager", "--no-progress", *extra,
    ]  # fmt: skip


def _folder(out: Path) -> Path:
    return only_run(out)


def _trec_ndcg10(run_trec: Path, qrels_tsv: Path) -> float:
    import pytrec_eval

    run: dict[str, dict[str, float]] = {}
    for line in run_trec.read_text().splitlines():
        q, _, d, _, s, _ = line.split()
        run.setdefault(q, {})[d] = float(s)
    qrels: dict[str, dict[str, int]] = {}
    for line in qrels_tsv.read_text().splitlines():
        q, d, r = line.split("\t")
        if q in run:
            qrels.setdefault(q, {})[d] = int(r)
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return sum(v["ndcg_cut_10"] for v in per_query.values()) / len(per_query)


@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_run_on_beir_folder(tmp_path, engine):
    if engine == "vllm":
        pytest.importorskip("vllm")
    proc = _cli(*_base(tmp_path, engine))
    assert "ndcg_at_10" in proc.stdout and "pairs 60: scored 60" in proc.stdout
    # what it loads, said while it loads
    assert "rank1-eval: loading mteb, datasets and transformers" in proc.stderr
    assert "rank1-eval: loading task " in proc.stderr and "rank1-eval: 60 pairs to judge with " in proc.stderr
    folder = _folder(tmp_path)
    assert {p.name for p in folder.iterdir()} >= {
        "mteb_result.json", "predictions.json", "run.trec", "traces.jsonl", "summary.json"
    }  # fmt: skip
    summary = json.loads((folder / "summary.json").read_text())
    traces = [json.loads(line) for line in (folder / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == summary["pairs_total"] == 60
    assert {t["path"] for t in traces} == {"pass1"}
    assert all(t["first_stage_rank"] in range(1, 21) and t["first_stage_score"] > 0 for t in traces)
    assert summary["main_metric"] == "ndcg_at_10"
    # mteb rounds its scores to 5 decimals
    expected = _trec_ndcg10(folder / "run.trec", DEMO / "qrels" / "test.tsv")
    assert summary["main_score"] == pytest.approx(expected, abs=5e-6)
    prov = summary["provenance"]
    assert prov["run_sha256"] and prov["prompt_set_sha256"] and prov["versions"]["mteb"]
    assert prov["engine"] == engine and prov["top_k"] == 20
    predictions = json.loads((folder / "predictions.json").read_text())
    assert sum(len(v) for v in predictions.values()) == 60
    assert (tmp_path / "store.sqlite").exists()


def test_launch_job_script(tmp_path):
    cmd = ["bash", str(ROOT / "scripts" / "launch_job.sh"), str(MICRO_RANK1), str(DEMO), "default", "1",
           *map(str, _base(tmp_path)[2:4]), *map(str, _base(tmp_path)[6:])]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(PYTHON=sys.executable), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "host:" in proc.stdout and "cpu:" in proc.stdout and "memory:" in proc.stdout
    assert "ndcg_at_10" in proc.stdout
    assert len((_folder(tmp_path) / "traces.jsonl").read_text().splitlines()) == 60


def _outputs(folder: Path):
    traces = [json.loads(line) for line in (folder / "traces.jsonl").read_text().splitlines()]
    summary = json.loads((folder / "summary.json").read_text())
    return traces, summary


def test_resume_after_sigkill(tmp_path):
    args_killed = _base(tmp_path / "killed", "transformers", 5, "--chunk-size", 4)
    cmd = [sys.executable, "-m", "rank1_eval.cli", "run", *map(str, args_killed)]
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = tmp_path / "killed" / "store.sqlite"
    deadline = time.time() + 300
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        if store.exists():
            try:
                with sqlite3.connect(store) as conn:
                    rows = conn.execute("select count(*) from judgements").fetchone()[0]
            except sqlite3.Error:
                rows = 0
            if rows >= 12:
                break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 12 <= rows < 100

    _cli(*args_killed)
    _cli(*_base(tmp_path / "clean", "transformers", 5, "--chunk-size", 4))
    (t1, s1), (t2, s2) = _outputs(_folder(tmp_path / "killed")), _outputs(_folder(tmp_path / "clean"))
    assert s1["pairs_total"] == 100 and s1["pairs_scored"] + s1["pairs_from_store"] == 100
    assert s1["pairs_from_store"] >= 12
    assert s2["pairs_from_store"] == 0
    assert [(a["qid"], a["docid"], a["path"]) for a in t1] == [(b["qid"], b["docid"], b["path"]) for b in t2]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(t1, t2, strict=True)) <= 1e-5
    assert s1["metrics"] == pytest.approx(s2["metrics"], abs=1e-9)
    for name in ("predictions.json", "run.trec"):
        assert (_folder(tmp_path / "killed") / name).read_text() == (_folder(tmp_path / "clean") / name).read_text()


def test_dry_run_loads_no_model(tmp_path):
    proc = _cli(*_base(tmp_path, "vllm", 10), "--dry-run", "-q")
    assert "rank1-eval:" not in proc.stderr  # -q: no status lines
    info = json.loads(proc.stdout)
    assert info["pairs"] == 200 and info["queries"] == 10
    assert info["prompt_tokens"] > 200 * 50
    assert not (tmp_path / "store.sqlite").exists()


def test_hub_unreachable_fails_fast_and_clearly(tmp_path):
    started = time.time()
    proc = _cli("--model", "jhu-clsp/rank1-7b", "--task", "NevIR", "--output-dir", tmp_path, check=False, timeout=120)
    assert proc.returncode == 2
    assert "could not download" in proc.stderr and "NevIR" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.time() - started < 60


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "JSON"),
        ('{"1037798": [1, 2]}', "nest|object|mapping"),
        ('{"1037798": {"3641634": "high"}}', "numeric|number"),
        ('{"nope": {"3641634": 1}}', "absent from the task|not in the task"),
        ('{"1037798": {"no-such-doc": 1}}', "absent from the corpus|not in the corpus"),
    ],
)
def test_bad_run_file_fails_before_loading(tmp_path, content, match):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    args = _base(tmp_path)
    args[args.index(RUN)] = bad
    proc = _cli(*args, "--dry-run", check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    import re

    assert re.search(match, proc.stderr, re.IGNORECASE), proc.stderr


def test_integer_scores_are_valid(tmp_path):
    run = tmp_path / "int.json"
    run.write_text(json.dumps({"1037798": {"3641634": 3, "3641640": 2}}))
    args = _base(tmp_path)
    args[args.index(RUN)] = run
    info = json.loads(_cli(*args, "--dry-run").stdout)
    assert info["pairs"] == 2


def test_unknown_task_lists_valid_ones(tmp_path):
    proc = _cli("--task", "NoSuchTask", "--model", MICRO_RANK1, "--output-dir", tmp_path, check=False, timeout=120)
    assert proc.returncode == 2
    assert "NevIR" in proc.stderr and "BrightRetrieval" in proc.stderr
