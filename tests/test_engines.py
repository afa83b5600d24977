"""Both real engines on the micro rank1: pass 1, pass 2, repeatability and cross-engine agreement (float32)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace

import pytest
from conftest import MICRO_RANK1, demo_pairs

from rank1_eval import rank1
from rank1_eval.engines.base import Request
from rank1_eval.scoring import STOP_STRINGS, Scorer, ScoringConfig

pytestmark = pytest.mark.slow

FULL = ScoringConfig(max_output_tokens=64, context_size=1024)
TINY = ScoringConfig(max_output_tokens=3, context_size=1024)


def _score(engine, config, pairs):
    scorer = Scorer(engine, config)
    return scorer.score(scorer.prepare([q for q, _ in pairs], [d for _, d in pairs]))


@pytest.fixture(scope="module")
def pairs():
    return demo_pairs(3, 6)


def test_full_budget_takes_pass1(engine, pairs):
    judged = _score(engine, FULL, pairs)
    assert [j.path for j in judged] == ["pass1"] * len(pairs)
    assert all(j.stop_reason in ("</think> true", "</think> false") for j in judged)
    assert all(j.reasoning.strip() and "</think>" not in j.reasoning for j in judged)
    scores = [j.score for j in judged]
    assert all(0.0 < s < 1.0 for s in scores)
    assert max(scores) - min(scores) > 0.05, "scores should vary from pair to pair"
    for j in judged:  # the score is the two answer logprobs' softmax
        assert j.score == pytest.approx(1 / (1 + math.exp(j.logprob_false - j.logprob_true)), abs=1e-12)


def test_tiny_budget_takes_pass2(engine, pairs):
    judged = _score(engine, TINY, pairs)
    assert [j.path for j in judged] == ["pass2"] * len(pairs)
    assert all(j.finish_reason == "length" and j.output_tokens == 3 for j in judged)
    for j in judged:  # the forced answer's logprobs reflect the restriction to {true, false}
        assert math.exp(j.logprob_true) + math.exp(j.logprob_false) == pytest.approx(1.0, abs=1e-5)


def test_repeated_runs_agree(engine, pairs):
    a, b = _score(engine, FULL, pairs), _score(engine, FULL, pairs)
    assert [x.path for x in a] == [y.path for y in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) <= 1e-5


@pytest.mark.parametrize("config", [FULL, TINY], ids=["pass1", "pass2"])
def test_engines_agree(hf_engine, vllm_engine, pairs, config):
    a, b = _score(hf_engine, config, pairs), _score(vllm_engine, config, pairs)
    assert [x.path for x in a] == [y.path for y in b]
    assert [x.reasoning for x in a] == [y.reasoning for y in b]
    assert [x.output_tokens for x in a] == [y.output_tokens for y in b]
    assert [x.prompt_tokens for x in a] == [y.prompt_tokens for y in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) <= 1e-4


@pytest.mark.parametrize("rule", ["reference", "reserve_output"])
def test_truncation_with_real_tokenizer(engine, rule):
    config = ScoringConfig(max_output_tokens=32, context_size=160, length_rule=rule)
    long_doc = " ".join(["the passage talks about many things"] * 80)
    judged = _score(engine, config, [("what is it", long_doc), ("what is it", "short passage")])
    assert [j.truncated for j in judged] == [True, False]
    # reference: the prompt keeps all but the forced answer's room, and pass 1 gets what is left of the context
    assert judged[0].prompt_tokens <= (128 if rule == "reserve_output" else 160 - 3)
    assert judged[0].output_tokens <= 160 - judged[0].prompt_tokens
    assert judged[0].path in ("pass1", "pass2")


def test_public_class_on_local_folder(hf_engine, pairs):
    model = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        engine="transformers",
        context_size=1024,
        max_output_tokens=64,
    )
    model._engine = hf_engine  # reuse the session's loaded weights
    scores = model.predict(pairs[:4])
    judged = model.judge(pairs[:4])
    assert scores == [j.score for j in judged]
    assert model.mteb_model_meta.name == f"local/{MICRO_RANK1.name}"


def test_vllm_collect_names_a_request_lost_inside_the_engine(vllm_engine):
    """A request vLLM stops tracking (aborted inside the engine here) must not make collect() spin forever."""
    rs = [Request("Query: a\nPassage: b\n<think>", 24, STOP_STRINGS, 20, id=i) for i in (7, 8, 9)]
    vllm_engine.submit(rs)
    vllm_engine._engine.abort_request(["8"])  # vLLM forgets request 8 without an output
    got: list[int] = []
    with pytest.raises(RuntimeError, match=r"request id\(s\) 8 were lost"):
        while True:
            got += [i for i, _ in vllm_engine.collect()]
    assert sorted(got) == [7, 9]  # the others finished and were handed back first
    vllm_engine.submit([replace(rs[0], id=11)])  # the engine is still usable afterwards
    assert [i for i, _ in vllm_engine.collect()] == [11]


@pytest.mark.parametrize("rule", ["rank1", "reference"])
def test_context_capped_generation_length_per_answer_rule(engine, micro_tokenizer, rule):
    """A prompt that leaves the context ~12 tokens (the micro rank1 reasons 16-18): the rank1 rule generates
    context - prompt tokens; the reference's rule one more, as vLLM 0.7.2's V0 engine did. Context 1023 under the
    reference rule needs max_model_len 1024, the session engines' (ScoringConfig.engine_context_size)."""
    from rank1_eval.prompts import format_prompt

    query, doc = demo_pairs(1, 1)[0]
    words = " ".join(doc.split() * 40)
    ids = micro_tokenizer(words, add_special_tokens=False).input_ids
    base = len(micro_tokenizer(format_prompt(query, "")).input_ids)
    long_doc = micro_tokenizer.decode(ids[: 1023 - 12 - base], clean_up_tokenization_spaces=False)
    config = ScoringConfig(max_output_tokens=64, context_size=1023, answer_rule=rule)
    assert config.engine_context_size() == (1024 if rule == "reference" else 1023)
    (j,) = _score(engine, config, [(query, long_doc)])
    assert 1023 - 16 < j.prompt_tokens < 1023 - 4 and not j.truncated
    assert j.finish_reason == "length"
    assert j.output_tokens == 1023 - j.prompt_tokens + (1 if rule == "reference" else 0)


def test_closing_a_second_vllm_engine_leaves_the_first_working(vllm_engine, pairs):
    """In-process vLLM engines share the process's distributed state: closing one (a sweep variant, another model
    of a script) must not tear it down under the others, whose next step would fail ("pipeline model parallel
    group is not initialized")."""
    import gc

    from rank1_eval.engines import load_engine

    scorer = Scorer(vllm_engine, TINY)
    before = scorer.score(scorer.prepare([q for q, _ in pairs[:2]], [d for _, d in pairs[:2]]))
    with contextlib.suppress(ImportError):  # numba's llvmlite: its wrappers broke vLLM's module scan at every load
        import llvmlite.binding.ffi  # noqa: F401
    second = load_engine("vllm", vllm_engine.config)
    second.close()
    del second
    gc.collect()
    after = scorer.score(scorer.prepare([q for q, _ in pairs[:2]], [d for _, d in pairs[:2]]))
    assert [j.reasoning for j in after] == [j.reasoning for j in before]
