"""Is a user's vLLM server kept full? One real vLLM server with a small ``--max-num-seqs``, the openai engine with
its default window (sized from the server's /metrics), and the server's own /metrics sampled independently
every 0.1 s while the pairs run.

Reported: the server's mean running sequences ÷ ``max_num_seqs`` "until the last pairs" (samples taken while
more pairs were left than the server's batch holds), its mean waiting queue, the share of samples in which a
full batch was available (running + waiting >= max_num_seqs), and the engine's own occupancy meter (what
``summary.json`` records as ``engine_occupancy``).

    python benchmarks/bench_server_window.py                       # micro rank1, max_num_seqs 8, budget 256
    python benchmarks/bench_server_window.py --url http://127.0.0.1:8000/v1 --max-num-seqs 8   # a running server
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MICRO = Path(os.environ.get("RANK1_MICRO_MODEL", ROOT / "rank1_eval" / "data" / "micro-rank1"))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="a running server (default: start one on loopback)")
    parser.add_argument("--max-num-seqs", type=int, default=8)
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--max-concurrency", type=int, default=None, help="the window's ceiling (default 256)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import httpx

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_scoring import bench_pairs

    from rank1_eval.engines.base import EngineConfig
    from rank1_eval.engines.openai_engine import OpenAIEngine, parse_metrics
    from rank1_eval.scheduler import Scheduler
    from rank1_eval.scoring import Rule, ScoringConfig

    group = None
    url = args.url
    if url is None:
        from rank1_eval.servers import launch_servers

        config = EngineConfig(
            str(MICRO), device="cpu", dtype="float32", context_size=1024, max_num_seqs=args.max_num_seqs
        )
        group = launch_servers(config, 1, on_cpu=True)
        url = group.urls[0]
    try:
        engine = OpenAIEngine(
            EngineConfig(str(MICRO), context_size=1024, server_urls=(url,), max_concurrency=args.max_concurrency),
            api_key=group.api_key if group else None,
        )
        rule = Rule(engine.tokenizer, ScoringConfig(max_output_tokens=args.max_output_tokens, context_size=1024))
        _, queries, docs = bench_pairs(args.queries, args.top_k)
        prepared = rule.prepare(queries, docs)
        left = [len(prepared)]
        samples: list[tuple[float, int, int, int]] = []
        stop = threading.Event()
        headers = {"Authorization": f"Bearer {group.api_key}"} if group and group.api_key else {}

        def sample() -> None:
            while not stop.is_set():
                text = httpx.get(url.removesuffix("/v1") + "/metrics", headers=headers, timeout=5).text
                running, waiting = parse_metrics(text) or (0, 0)
                samples.append((time.perf_counter(), running, waiting, left[0]))
                time.sleep(0.1)

        def final(i: int, judgement: object) -> None:
            left[0] -= 1

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        engine.meter.reset()
        t0 = time.perf_counter()
        judged = Scheduler(engine, rule, on_final=final).run(prepared)
        wall = time.perf_counter() - t0
        stop.set()
        thread.join()
        n = args.max_num_seqs
        body = [s for s in samples if s[3] > n] or samples  # until the last pairs
        mean_running = sum(s[1] for s in body) / len(body)
        result = {
            "pairs": len(judged),
            "paths": {p: sum(j.path == p for j in judged) for p in ("pass1", "pass2", "failed")},
            "mean_output_tokens": round(sum(j.output_tokens for j in judged) / len(judged), 1),
            "wall_s": round(wall, 2),
            "max_num_seqs": n,
            "samples_until_last_pairs": len(body),
            "mean_running_until_last_pairs": round(mean_running, 3),
            "running_vs_max_num_seqs": round(mean_running / n, 3),
            "mean_waiting_until_last_pairs": round(sum(s[2] for s in body) / len(body), 2),
            "share_with_a_full_batch_available": round(sum(s[1] + s[2] >= n for s in body) / len(body), 3),
            "engine_occupancy": engine.meter.summary(),
            "window": engine.info()["servers"][0]["window"],
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
        engine.close()
    finally:
        if group is not None:
            group.shutdown()
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
