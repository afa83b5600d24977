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
    "docs_per_s", "output_tokens_per_s", "prompt_tokens_mean", "output_tokens_mean", "wall_s", "engine_s",
    "overhead_fraction", "peak_rss_mb",
}  # fmt: skip
SUMMARY_KEYS = {
    "speedup_vs_baseline", "baseline_spread", "warm_rerun_speedup", "overhead_fraction", "scores_max_abs_diff",
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
    assert [v["variant"] for v in variants] == ["baseline", "rank1_eval", "rank1_eval_warm", "baseline_again"]
    for v in variants:
        assert v.keys() >= VARIANT_KEYS
    (summary,) = [line for line in lines if line.get("summary")]
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["scores_max_abs_diff"] <= 1e-4
