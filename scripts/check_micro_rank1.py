"""Check that the micro rank1 fixture writes rank1's output format, in vLLM (CPU) and in transformers.

For DL19 queries x held-out DL19 passages (corpus line index % 5 == 0, never used in training), greedy
pass 1 as in SPEC §1.3: max 64 tokens, top-20 logprobs, stop strings ``</think> true|false``, special
tokens kept. Reports per engine: share of prompts that stop on a stop string, share with both answer
tokens in the answer position's top 20, and the spread of P(true); then the agreement between engines.
Also a pass-2 probe (SPEC §1.4): reasoning cut at a budget of 10 tokens, trimmed after its last sentence,
forced prompt ``prompt + "\n" + t + "\n</think>"``, top-20 logprobs of the next token.

    python scripts/check_micro_rank1.py [--model DIR] [--engines vllm,hf] [--json OUT.json]

Pairs: for each of the 50 queries, the held-out passage with the most query words in common, and one
random held-out passage (fixed seed) -> 100 pairs. Not a test; BUILD.md quotes its output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import time
from pathlib import Path

from rank1_eval.prompts import format_prompt  # the verbatim rank1 prompt (SPEC §1.2), not a copy

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "rank1_eval" / "data" / "micro-rank1"
DATA = Path("/work/shared/data/trec-dl19-subset")
if not DATA.exists():
    DATA = ROOT.parent / "shared" / "data" / "trec-dl19-subset"
STOPS = ["</think> true", "</think> false"]
MAX_TOKENS = 64
TOP = 20
FORCED_BUDGET = 10


def forced_prompt(prompt: str, text: str) -> str:
    """SPEC §1.4: keep the reasoning up to its last complete sentence, then close the think block."""
    t = text.rstrip()
    if not t.endswith((".", "!", "?")):
        cut = max(t.rfind(c) for c in ".!?")
        if cut >= 0:
            t = t[: cut + 1]
    return prompt + "\n" + t.strip() + "\n</think>"


def summarize_forced(name: str, scores: list[float | None], texts: list[str]) -> dict:
    ok = [x for x in scores if x is not None]
    out = {"engine": name, "forced_prompts": len(scores), "forced_both_in_top20": len(ok) / len(scores)}
    if ok:
        out.update(forced_score_mean=statistics.mean(ok), forced_score_std=statistics.pstdev(ok))
    out["forced_reasoning_examples"] = sorted(set(texts))[:3]
    return out


def eval_pairs(seed: int = 0) -> list[tuple[str, str]]:
    corpus = [json.loads(line)["text"] for line in (DATA / "corpus.jsonl").open(encoding="utf-8")]
    held_out = [t for i, t in enumerate(corpus) if i % 5 == 0]
    queries = [json.loads(line)["text"] for line in (DATA / "queries.jsonl").open(encoding="utf-8")]

    def words(s: str) -> set[str]:
        return {w for w in re.findall(r"[a-z0-9]+", s.lower()) if len(w) >= 3}

    rng = random.Random(seed)
    pairs = []
    for q in queries:
        qw = words(q)
        best = max(held_out, key=lambda t: len(qw & words(t)))
        pairs.append((q, best))
        pairs.append((q, rng.choice(held_out)))
    return pairs


def cue_accuracy(pairs: list[tuple[str, str]], rows: list[dict]) -> dict:
    """How often the generated reasoning states the two cues of build_micro_rank1's label rule correctly."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_micro_rank1 import features

    q_ok = p_ok = 0
    for (query, passage), row in zip(pairs, rows, strict=True):
        question, numbers = features(query, passage)
        q_ok += ("a question" in row["text"]) == question
        p_ok += ("has numbers" in row["text"]) == numbers
    return {"reasoning_query_cue_correct": q_ok / len(rows), "reasoning_passage_cue_correct": p_ok / len(rows)}


def summarize(name: str, rows: list[dict]) -> dict:
    n = len(rows)
    stopped = [r for r in rows if r["stop"] is not None]
    answered = [r for r in stopped if r["score"] is not None]
    scores = [r["score"] for r in answered]
    out = {
        "engine": name,
        "pairs": n,
        "stopped_on_stop_string": len(stopped) / n,
        "both_answer_tokens_in_top20": len(answered) / n,
        "answered_true": sum(r["stop"] == STOPS[0] for r in answered),
        "answered_false": sum(r["stop"] == STOPS[1] for r in answered),
        "gen_tokens_mean": statistics.mean(r["n_tokens"] for r in rows),
    }
    if scores:
        out.update(
            score_mean=statistics.mean(scores),
            score_std=statistics.pstdev(scores),
            score_min=min(scores),
            score_max=max(scores),
            score_share_between_0_05_and_0_95=sum(0.05 < s < 0.95 for s in scores) / len(scores),
        )
    out["distinct_reasoning_texts"] = len({r["text"] for r in rows})
    return out


def score_from(lps: dict[int, float], t_id: int, f_id: int) -> float | None:
    if t_id in lps and f_id in lps:
        return 1.0 / (1.0 + math.exp(lps[f_id] - lps[t_id]))
    return None


def run_vllm(model: str, prompts: list[str], t_id: int, f_id: int) -> list[dict]:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=model, dtype="float32", enforce_eager=True, kv_cache_memory_bytes=256 * 2**20, max_model_len=2048, seed=0
    )
    sp = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, logprobs=TOP, stop=STOPS, skip_special_tokens=False)
    rows = []
    for out in llm.generate(prompts, sp):
        c = out.outputs[0]
        stop = c.stop_reason if c.finish_reason == "stop" and c.stop_reason in STOPS else None
        lps = {tid: lp.logprob for tid, lp in c.logprobs[-1].items()} if c.logprobs else {}
        rows.append(
            {
                "text": c.text,
                "finish_reason": c.finish_reason,
                "stop": stop,
                "n_tokens": len(c.token_ids),
                "token_ids": list(c.token_ids),
                "score": score_from(lps, t_id, f_id) if stop else None,
            }
        )
    # Pass-2 probe: a real budget-limited generation, then the forced prompt.
    cut = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=FORCED_BUDGET, skip_special_tokens=False))
    texts = [o.outputs[0].text for o in cut]
    forced = llm.generate(
        [forced_prompt(p, t) for p, t in zip(prompts, texts, strict=True)],
        SamplingParams(temperature=0, max_tokens=1, logprobs=TOP),
    )
    f_scores = [score_from({i: lp.logprob for i, lp in o.outputs[0].logprobs[0].items()}, t_id, f_id) for o in forced]
    # Quirk probe: the default skip_special_tokens=True drops </think>, so the stop strings cannot match.
    skip = llm.generate(prompts[:10], SamplingParams(temperature=0, max_tokens=MAX_TOKENS, stop=STOPS))
    quirks = [(o.outputs[0].finish_reason, o.outputs[0].stop_reason, o.outputs[0].text[-40:]) for o in skip]
    return rows, (f_scores, texts), quirks


def run_hf(model: str, prompts: list[str], t_id: int, f_id: int, tok) -> list[dict]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    rows = []
    for prompt in prompts:
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            g = lm.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=MAX_TOKENS,
                do_sample=False,
                output_logits=True,
                return_dict_in_generate=True,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.eos_token_id,
            )
        new = g.sequences[0, ids.shape[1] :].tolist()
        stop, end = None, len(new)
        for k in range(len(new)):  # earliest position whose text completes a stop string
            text = tok.decode(new[: k + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            hit = [s for s in STOPS if s in text]
            if hit:
                stop, end = hit[0], k + 1
                break
        score = None
        if stop:
            lp = torch.log_softmax(g.logits[end - 1][0].float(), dim=-1)
            top = torch.topk(lp, TOP).indices.tolist()
            lps = {i: lp[i].item() for i in top}
            score = score_from(lps, t_id, f_id)
        text = tok.decode(new[:end], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if stop:
            text = text[: text.index(stop)]
        rows.append(
            {
                "text": text,
                "finish_reason": "stop" if stop else "length/eos",
                "stop": stop,
                "n_tokens": end,
                "token_ids": new[:end],
                "score": score,
            }
        )
    f_scores, texts = [], []
    for prompt, row in zip(prompts, rows, strict=True):
        text = tok.decode(
            row["token_ids"][:FORCED_BUDGET], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        ids = tok(forced_prompt(prompt, text), add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            lp = torch.log_softmax(lm(ids).logits[0, -1].float(), dim=-1)
        f_scores.append(score_from({i: lp[i].item() for i in torch.topk(lp, TOP).indices.tolist()}, t_id, f_id))
        texts.append(text)
    return rows, (f_scores, texts), None


def main() -> None:
    ap = argparse.ArgumentParser(description="Check the micro rank1 fixture in vLLM-CPU and transformers.")
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--engines", default="vllm,hf")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--show", type=int, default=4, help="print this many generations per engine")
    args = ap.parse_args()

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    t_id = tok(" true", add_special_tokens=False).input_ids[0]
    f_id = tok(" false", add_special_tokens=False).input_ids[0]
    pairs = eval_pairs()
    prompts = [format_prompt(q, p) for q, p in pairs]
    results, summaries = {}, []
    for engine in args.engines.split(","):
        t0 = time.time()
        rows, (f_scores, f_texts), quirks = (run_vllm if engine == "vllm" else run_hf)(
            args.model, prompts, t_id, f_id, *([] if engine == "vllm" else [tok])
        )
        s = summarize(engine, rows)
        s.update(cue_accuracy(pairs, rows))
        s["seconds"] = round(time.time() - t0, 1)
        s.update(summarize_forced(engine, f_scores, f_texts))
        if quirks:
            s["skip_special_tokens_true_first10"] = quirks
        results[engine] = rows
        summaries.append(s)
        print(json.dumps(s, indent=1))
        for r in rows[: args.show]:
            print(f"  {r['finish_reason']!s:10} {r['stop']!s:15} score={r['score']} text={r['text']!r}")
        bad = [r for r in rows if r["stop"] is None or r["score"] is None]
        for r in bad[:5]:
            print(f"  NOT ANSWERED: {r['finish_reason']} {r['text']!r}")
    if "vllm" in results and "hf" in results:
        a, b = results["vllm"], results["hf"]
        same_text = sum(x["text"] == y["text"] for x, y in zip(a, b, strict=True)) / len(a)
        diffs = [
            abs(x["score"] - y["score"])
            for x, y in zip(a, b, strict=True)
            if x["score"] is not None and y["score"] is not None
        ]
        agree = {"same_text": same_text, "max_abs_score_diff": max(diffs) if diffs else None}
        print(json.dumps(agree))
        summaries.append(agree)
    if args.json:
        args.json.write_text(json.dumps({"summaries": summaries, "rows": results}, indent=1))


if __name__ == "__main__":
    main()
