"""The scoring benchmark runs (``--smoke``) and its figures mean what BENCHMARKS.md says they mean.

Timings are never compared with a threshold (they depend on the machine), but every reported number is checked
against the others it is derived from: a rate is its count over the wall time, a speed-up is the ratio of the
two wall times it names, the overhead is the share of the wall time outside the engine, the warm rerun
generates nothing, the length histogram counts every pair. A figure computed from the wrong quantity fails.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["reference", "chunked", "stream", "stream_warm", "reference_again"]


def _derived(value: float, decimals: int, f: Callable[..., float], *inputs: tuple[float, int]) -> bool:
    """``value`` (printed to ``decimals`` places) is ``f`` of ``inputs``, each ``(printed value, its decimals)``.

    The printed inputs are rounded too, so ``f`` is evaluated at the corners of their rounding intervals."""
    corners = [f(*xs) for xs in itertools.product(*[(x - 0.5 * 10**-d, x + 0.5 * 10**-d) for x, d in inputs])]
    slack = 0.5 * 10**-decimals + 1e-9
    return min(corners) - slack <= value <= max(corners) + slack


def check_smoke(lines: list[dict[str, Any]]) -> None:
    """Every figure of a ``--smoke`` run against the figures it is derived from."""
    (setup,) = [line["setup"] for line in lines if "setup" in line]
    variants = [line for line in lines if "variant" in line]
    assert [v["variant"] for v in variants] == VARIANTS
    by = {v["variant"]: v for v in variants}
    pairs = setup["pairs"]
    assert pairs == setup["queries"] * setup["top_k"] > 0
    rss = 0.0
    for v in variants:
        name, wall, engine_s = v["variant"], v["wall_s"], v["engine_s"]
        assert v["pairs"] == pairs, name
        assert 0 <= engine_s <= wall, name
        assert _derived(v["docs_per_s"], 3, lambda w: pairs / w, (wall, 4)), name
        assert _derived(v["generated_tokens_per_s"], 2, lambda n, w: n / w, (v["generated_tokens"], 9), (wall, 4)), name
        assert _derived(v["overhead_fraction"], 4, lambda e, w: 1 - e / w, (engine_s, 4), (wall, 4)), name
        assert v["pass2"] + v["failed"] <= pairs and v["failed"] == 0, name
        # every prompt is the same text in every variant (the reference's are counted after its timed region)
        assert abs(v["prompt_tokens_mean"] - setup["prompt_tokens_mean"]) <= 0.1, name
        assert 0 < v["output_tokens_mean"] <= setup["max_output_tokens"], name
        assert v["peak_rss_mb"] >= rss > 0 or rss == 0, name  # a peak never falls within one process
        rss = v["peak_rss_mb"]
        start, peak = v["rss_start_mb"], v["rss_peak_mb"]  # resident memory during this variant alone
        assert 0 < start <= peak <= v["peak_rss_mb"] + 0.1, name  # the process's peak bounds the variant's
        assert _derived(v["rss_growth_mb"], 1, lambda p, s: p - s, (peak, 1), (start, 1)), name
        if name == "stream_warm":  # the store holds every judgement: the engine is never asked
            assert v["generated_tokens"] == 0 and v["mean_occupancy"] in (0, None), v
        else:
            # pass-1 tokens of every pair plus one token per forced answer
            assert v["generated_tokens"] == round(v["output_tokens_mean"] * pairs) + v["pass2"], name
            assert 0 < v["mean_occupancy"] <= 1, name
    # the judgements do not depend on the path that produced them
    outputs = [by[n][k] for n in VARIANTS for k in ("pass2", "output_tokens_mean")]
    assert outputs == [by["stream"]["pass2"], by["stream"]["output_tokens_mean"]] * len(VARIANTS)

    (summary,) = [line for line in lines if line.get("summary")]
    stream = by["stream"]
    ref, again, chunked = ((by[n]["wall_s"], 4) for n in ("reference", "reference_again", "chunked"))
    s, warm = (stream["wall_s"], 4), (by["stream_warm"]["wall_s"], 4)
    assert _derived(summary["stream_vs_reference"], 4, lambda a, b, w: (a + b) / 2 / w, ref, again, s)
    assert _derived(summary["stream_vs_chunked"], 4, lambda c, w: c / w, chunked, s)
    assert _derived(summary["chunked_vs_reference"], 4, lambda a, b, c: (a + b) / 2 / c, ref, again, chunked)
    assert _derived(summary["reference_spread"], 4, lambda a, b: abs(a - b) / ((a + b) / 2), ref, again)
    assert _derived(summary["warm_rerun_speedup"], 2, lambda w, x: w / x, s, warm)
    assert summary["overhead_fraction"] == stream["overhead_fraction"]
    assert summary["occupancy"] == {n: by[n]["mean_occupancy"] for n in VARIANTS}
    for key in ("stream_vs_chunked_outputs", "stream_vs_reference_outputs"):
        assert summary[key]["same_paths"] and summary[key]["same_reasoning"], key
    assert summary["scores_max_abs_diff"] <= 1e-6 and summary["warm_equals_stream"]

    (lengths,) = [line["output_lengths"] for line in lines if "output_lengths" in line]
    assert lengths["budget"] == setup["max_output_tokens"]
    assert lengths["min"] <= lengths["p10"] <= lengths["p50"] <= lengths["p90"] <= lengths["max"] <= lengths["budget"]
    assert sum(lengths["histogram"].values()) == pairs
    assert abs(lengths["mean"] - stream["output_tokens_mean"]) <= 0.05 + 1e-9


def test_bench_smoke_figures_agree_with_each_other():
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_scoring.py", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,  # a hang guard
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    check_smoke([json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")])


def test_bench_answers_workload_times_every_path_and_the_prefill_read():
    """``--answers``: pairs answer in pass 1 and reach the budget (pass 2); stream_prefill judges as stream."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", VLLM_ENABLE_V1_MULTIPROCESSING="0")
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/bench_scoring.py",
            "--answers",
            "--queries",
            "3",
            "--top-k",
            "8",
            "--variants",
            "stream,stream_prefill",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
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
