"""The scoring benchmark runs (``--smoke``) and reports every key; timings are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
VARIANT_KEYS = {
    "docs_per_s", "generated_tokens_per_s", "prompt_tokens_mean", "output_tokens_mean", "wall_s", "engine_s",
    "overhead_fraction", "peak_rss_mb", "mean_occupancy",
}  # fmt: skip
SUMMARY_KEYS = {
    "stream_vs_reference", "stream_vs_chunked", "reference_spread", "warm_rerun_speedup", "overhead_fraction",
    "scores_max_abs_diff", "occupancy",
}  # fmt: skip


def test_bench_smoke_reports_every_key():
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_scoring.py", "--smoke"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    variants = [line for line in lines if "variant" in line]
    names = ["reference", "chunked", "stream", "stream_warm", "reference_again"]
    assert [v["variant"] for v in variants] == names
    for v in variants:
        assert v.keys() >= VARIANT_KEYS
        assert 0 <= v["mean_occupancy"] <= 1
    (summary,) = [line for line in lines if line.get("summary")]
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["scores_max_abs_diff"] <= 1e-6
    assert summary["stream_vs_chunked_outputs"]["same_paths"] and summary["warm_equals_stream"]
    (lengths,) = [line["output_lengths"] for line in lines if "output_lengths" in line]
    assert lengths["min"] <= lengths["p50"] <= lengths["max"] <= lengths["budget"]


def test_bench_answers_workload_times_every_path_and_the_prefill_read():
    """``--answers``: pairs answer in pass 1 and reach the budget (pass 2); stream_prefill judges as stream."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_scoring.py", "--answers", "--queries", "3", "--top-k", "8",
         "--variants", "stream,stream_prefill"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    by = {line["variant"]: line for line in lines if "variant" in line}
    assert set(by) == {"stream", "stream_prefill"}
    assert by["stream"]["paths"]["pass1"] > 0 and by["stream"]["paths"]["pass2"] > 0
    assert by["stream_prefill"]["paths"] == by["stream"]["paths"]
    # one read per pass-1 answer, one token each: the prefill variant generates exactly that many more tokens
    assert by["stream_prefill"]["generated_tokens"] == by["stream"]["generated_tokens"] + by["stream"]["paths"]["pass1"]
    (summary,) = [line for line in lines if line.get("summary")]
    outputs = summary["prefill_vs_stream_outputs"]
    assert outputs["same_paths"] and outputs["same_reasoning"] and outputs["scores_max_abs_diff"] <= 1e-6
