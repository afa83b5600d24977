"""Write synthetic result folders shaped exactly like the driver's, at the scale of a real BRIGHT run.

    python scripts/make_synthetic_results.py OUT [--queries 103] [--per-query 100] [--seed 0] [--second]

``OUT/synthetic__rank1-7b/BrightBiologyLike_default`` gets what ``rank1-eval run`` writes — ``summary.json``
(metrics, cost counters, test against the first stage, provenance), ``traces.jsonl`` (one line per pair with
reasoning, path, tokens, truncation), ``qrels.tsv``, ``run.trec``, ``predictions.json``, ``texts.jsonl.gz`` —
plus a ``sweep.json`` in the format ``rank1-eval report`` reads. ``--second`` also writes a second model's
folder over the same candidates (``synthetic__rank1-14b``) for two-run pages. 103 queries × 100 candidates is
BRIGHT biology's size at top-100 (10,300 pairs).

The texts are sentences of the bundled demo corpus (MS MARCO passages; see its README for terms) drawn at
random, so pages and files compress like real English; reasoning lengths are heavy-tailed like rank1's.
Scores depend on the labels (relevant pairs score higher) so every chart has something to show. The numbers
mean nothing about any model: this exists to test and measure the report at scale.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rank1_eval.compare import against_first_stage, per_query  # noqa: E402
from rank1_eval.outputs import write_qrels  # noqa: E402
from rank1_eval.runs import ranked, write_trec  # noqa: E402
from rank1_eval.texts import write_texts  # noqa: E402

DEMO = ROOT / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"
TASK = "BrightBiologyLike"


@functools.cache
def _sentences() -> list[str]:
    out = []
    with (DEMO / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"]
            out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 20]
    return out


def _text(rng: random.Random, sentences: list[str], chars: int) -> str:
    parts, n = [], 0
    while n < chars:
        s = rng.choice(sentences)
        parts.append(s)
        n += len(s) + 1
    return " ".join(parts)


def build(
    out: str | Path,
    *,
    queries: int = 103,
    per_query: int = 100,
    seed: int = 0,
    second: bool = False,
    sweep: bool = True,
) -> dict[str, Path]:
    """Write the folder(s); returns ``{"a": folder, "b": folder (with second)}``."""
    rng = random.Random(seed)
    sentences = _sentences()
    qids = [f"bio-{i:03d}" for i in range(queries)]
    qtexts = {q: _text(rng, sentences, rng.randint(120, 600)) for q in qids}
    first_stage: dict[str, dict[str, float]] = {}
    qrels: dict[str, dict[str, int]] = {}
    docs: dict[str, str] = {}
    for qi, q in enumerate(qids):
        cands = [f"d{qi:03d}-{j:03d}" for j in range(per_query)]
        first_stage[q] = {d: round(30.0 - j * 0.2 + rng.random() * 0.1, 4) for j, d in enumerate(cands)}
        n_rel = rng.randint(1, 8)
        # the first stage puts relevant passages near the top more often than not
        rel_pos = sorted({int(per_query * rng.random() ** 2.5) for _ in range(max(1, int(n_rel * 0.7)))})
        qrels[q] = {cands[j]: rng.choice((1, 1, 2)) for j in rel_pos}
        for k in range(n_rel - len(rel_pos)):  # relevant passages the first stage missed
            qrels[q][f"m{qi:03d}-{k}"] = 1
        for j in rng.sample(range(per_query), min(per_query, 10)):  # judged not relevant
            qrels[q].setdefault(cands[j], 0)
        for d in [*cands, *[d for d in qrels[q] if d.startswith("m")]]:
            docs[d] = _text(rng, sentences, int(rng.lognormvariate(math.log(900), 0.6)))
    folders = {"a": _write_model(Path(out), "synthetic/rank1-7b", qids, qtexts, first_stage, qrels, docs, rng, sweep)}
    if second:
        folders["b"] = _write_model(
            Path(out), "synthetic/rank1-14b", qids, qtexts, first_stage, qrels, docs, random.Random(seed + 1), False
        )
    return folders


def _write_model(
    out: Path,
    model: str,
    qids: list[str],
    qtexts: dict[str, str],
    first_stage: dict[str, dict[str, float]],
    qrels: dict[str, dict[str, int]],
    docs: dict[str, str],
    rng: random.Random,
    sweep: bool,
) -> Path:
    sentences = _sentences()
    folder = out / model.replace("/", "__") / f"{TASK}_default"
    folder.mkdir(parents=True, exist_ok=True)
    traces: list[dict[str, Any]] = []
    predictions: dict[str, dict[str, float]] = {}
    for q in qids:
        ranks = {d: i for i, (d, _) in enumerate(ranked(first_stage[q]), start=1)}
        for d, fs in first_stage[q].items():
            rel = qrels[q].get(d, 0) > 0
            tokens = min(8192, max(12, int(rng.lognormvariate(math.log(320), 0.7))))
            truncated = rng.random() < 0.02
            u = rng.random()
            path = "failed" if u < 0.004 else "pass2" if u < 0.08 or tokens == 8192 else "pass1"
            # relevant pairs score higher; long reasoning is a little less reliable
            lean = (1.6 if rel else -1.4) * (1.0 if tokens < 600 else 0.5) + rng.gauss(0, 1.3)
            score = 0.5 if path == "failed" else 1 / (1 + math.exp(-lean))
            reasoning = _text(rng, sentences, tokens * 4)
            answer = "true" if score >= 0.5 else "false"
            traces.append(
                {
                    "task": TASK,
                    "subset": "default",
                    "split": "standard",
                    "qid": q,
                    "docid": d,
                    "first_stage_rank": ranks[d],
                    "first_stage_score": fs,
                    "score": score,
                    "reasoning": reasoning,
                    "path": path,
                    "prompt_tokens": 400 + len(docs[d]) // 4,
                    "output_tokens": tokens,
                    "finish_reason": "length" if path != "pass1" else "stop",
                    "truncated": truncated,
                    "stop_reason": f"</think> {answer}" if path == "pass1" else None,
                    "logprob_true": math.log(max(score, 1e-9)),
                    "logprob_false": math.log(max(1 - score, 1e-9)),
                    "forced_reasoning": reasoning.rsplit(".", 1)[0] + "." if path == "pass2" else None,
                    "error": "no answer in either pass" if path == "failed" else None,
                    "model": model,
                    "engine": "vllm",
                }
            )
            predictions.setdefault(q, {})[d] = score
    with (folder / "traces.jsonl").open("w", encoding="utf-8") as f:
        for t in traces:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    write_qrels(folder / "qrels.tsv", qrels)
    write_trec(predictions, folder / "run.trec", tag=model.replace("/", "__"))
    (folder / "predictions.json").write_text(
        json.dumps({q: dict(ranked(predictions[q])) for q in sorted(predictions)}), encoding="utf-8"
    )
    judged_docs = {d for q in qids for d in first_stage[q]} | {d for q in qids for d in qrels[q] if qrels[q][d] > 0}
    write_texts(
        folder / "texts.jsonl.gz",
        [{"id": q, "text": qtexts[q]} for q in qids],
        [{"id": d, "text": docs[d]} for d in sorted(judged_docs)],
        {"task": f"{TASK}_default", "source": "synthetic", "split": "standard", "subset": "default"},
    )
    ndcg = per_query(predictions, qrels, "ndcg_cut_10")
    tokens = sorted(t["output_tokens"] for t in traces)
    counts = {p: sum(t["path"] == p for t in traces) for p in ("pass1", "pass2", "failed")}
    summary = {
        "task": f"{TASK}_default",
        "main_metric": "ndcg_at_10",
        "main_score": sum(ndcg.values()) / len(ndcg),
        "pairs_total": len(traces),
        "pairs_scored": len(traces),
        "pairs_from_store": 0,
        "pass2": counts["pass2"],
        "failed": counts["failed"],
        "truncated": sum(t["truncated"] for t in traces),
        "docs_per_s": 11.5,
        "output_tokens_mean": round(sum(tokens) / len(tokens), 2),
        "output_tokens_p50": tokens[len(tokens) // 2],
        "output_tokens_p95": tokens[int(len(tokens) * 0.95)],
        "queries": len(qids),
        "metrics": {"ndcg_at_10": sum(ndcg.values()) / len(ndcg)},
        "vs_first_stage": against_first_stage(predictions, first_stage, qrels),
        "provenance": {
            "model": model,
            "engine": "vllm",
            "dtype": "float16",
            "prompt_set": "code",
            "sampling": {"max_output_tokens": 8192, "context_size": 16000},
            "task": TASK,
            "subtask": None,
            "subset": "default",
            "split": "standard",
            "task_source": "synthetic",
            "run_file": "synthetic bm25",
            "top_k": 100,
            "limit_queries": None,
            "command_line": ["scripts/make_synthetic_results.py"],
        },
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if sweep:
        base = summary["main_score"]
        rows = []
        for b in (128, 256, 512, 1024, 2048, 4096, 8192):
            capped = sorted(min(t, b) for t in tokens)
            rows.append(
                {
                    "budget": b,
                    "metrics": {"ndcg_at_10": base - 0.09 * math.exp(-b / 700)},
                    "reasoning_tokens_mean": round(sum(capped) / len(capped), 1),
                    "reasoning_tokens_p95": capped[int(len(capped) * 0.95)],
                    "pass2_share": round(sum(t >= b for t in tokens) / len(tokens), 4),
                }
            )
        (folder / "sweep.json").write_text(json.dumps({"metric": "ndcg_at_10", "budgets": rows}, indent=2))
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--queries", type=int, default=103)
    p.add_argument("--per-query", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--second", action="store_true", help="also a second model over the same candidates")
    args = p.parse_args(argv)
    folders = build(args.out, queries=args.queries, per_query=args.per_query, seed=args.seed, second=args.second)
    for name, folder in folders.items():
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
