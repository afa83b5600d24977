"""The rank1 rule on hand-built logprobs: score formula, answered condition, sentence cut, pass 2, failures."""

from __future__ import annotations

import math

import pytest
from fakes import ScriptedEngine

from rank1_eval.records import Completion
from rank1_eval.scoring import (
    AnswerTokens,
    PreparedPrompt,
    Scorer,
    ScoringConfig,
    ScoringError,
    TokenizerError,
    cut_reasoning,
    fit_prompt,
    forced_prompt,
    pass1_answer,
    score_from_logprobs,
)

T, F = 830, 895  # Qwen2.5's " true" / " false", checked below against the real tokenizer


# --------------------------------------------------------------------------- the formula
@pytest.mark.parametrize(
    ("lt", "lf", "expected"),
    [
        (-0.1, -2.4, 1 / (1 + math.exp(-2.3))),  # = 0.908877...
        (-2.4, -0.1, 1 / (1 + math.exp(2.3))),  # = 0.091122...
        (-0.6931471805599453, -0.6931471805599453, 0.5),
        (0.0, -1000.0, 1.0),
        (-1000.0, 0.0, 0.0),
    ],
)
def test_score_formula_by_hand(lt, lf, expected):
    assert score_from_logprobs(lt, lf) == pytest.approx(expected, abs=1e-12)


def test_score_formula_values():
    assert score_from_logprobs(-0.1, -2.4) == pytest.approx(0.908877, abs=1e-6)
    # exp(lt)/(exp(lt)+exp(lf)) with lt=ln 0.3, lf=ln 0.1 -> 0.75, whatever mass the other tokens had
    assert score_from_logprobs(math.log(0.3), math.log(0.1)) == pytest.approx(0.75, abs=1e-12)


# --------------------------------------------------------------------------- the sentence cut
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The passage is about cats. It mentions dogs too", "The passage is about cats."),
        ("Relevant! Maybe not? then some trailing", "Relevant! Maybe not?"),
        ("Ends cleanly.   \n", "Ends cleanly."),
        ("  no sentence end at all  ", "no sentence end at all"),
        ("", ""),
        ("Version 2.5 is discussed and", "Version 2."),
    ],
)
def test_cut_reasoning(text, expected):
    assert cut_reasoning(text) == expected


def test_forced_prompt_layout():
    assert forced_prompt("P<think>", "Cats. Dogs") == "P<think>\nCats.\n</think>"


# --------------------------------------------------------------------------- answer tokens
def test_answer_tokens_from_qwen25(qwen25_tokenizer):
    ans = AnswerTokens.from_tokenizer(qwen25_tokenizer)
    assert (ans.true_id, ans.false_id) == (T, F)


def test_answer_tokens_from_micro_rank1(micro_tokenizer):
    ans = AnswerTokens.from_tokenizer(micro_tokenizer)
    assert len(micro_tokenizer("</think>", add_special_tokens=False).input_ids) == 1
    assert ans.true_id != ans.false_id


def test_multi_token_answer_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(set(" truefalsxyz")))}
    vocab["[UNK]"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    with pytest.raises(TokenizerError, match="single answer token"):
        AnswerTokens.from_tokenizer(fast)


# --------------------------------------------------------------------------- the answered condition
ANS = AnswerTokens(T, F)


def _comp(**kw):
    base = dict(
        text="Short reasoning.\n",
        token_ids=(1, 2, 522, 26865, 29, T),  # multi-token </think> (Qwen2.5 tokenizer), then " true"
        finish_reason="stop",
        stop_reason="</think> true",
        last_logprobs={T: -0.1, F: -2.4, 5: -5.0},
    )
    base.update(kw)
    return Completion(**base)


def test_answered_multi_token_think():
    assert pass1_answer(_comp(), ANS) == (-0.1, -2.4)


def test_answered_single_token_think():
    assert pass1_answer(_comp(token_ids=(7, 8, 151668, F), stop_reason="</think> false"), ANS) == (-0.1, -2.4)


@pytest.mark.parametrize(
    "change",
    [
        {"finish_reason": "length", "stop_reason": None},  # budget hit
        {"stop_reason": None},  # EOS
        {"stop_reason": "</think> maybe"},  # another answer format
        {"last_logprobs": {T: -0.01, 5: -5.0}},  # " false" outside the top 20
        {"last_logprobs": {T: -0.01, F: float("-inf")}},
        {"token_ids": (1, 2, 3)},  # the last position is not the answer token
        {"token_ids": ()},
    ],
)
def test_not_answered(change):
    assert pass1_answer(_comp(**change), ANS) is None


# --------------------------------------------------------------------------- answer_rule="reference"
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, (-0.1, -2.4)),  # answered under both rules
        ({"finish_reason": "length", "stop_reason": None, "token_ids": (1, 2, 3)}, (-0.1, -2.4)),  # budget cut
        ({"stop_reason": None, "token_ids": (1, 2, 0)}, (-0.1, -2.4)),  # EOS: its position's top-20 counts too
        ({"stop_reason": "</think> maybe"}, (-0.1, -2.4)),  # another answer format
        ({"last_logprobs": {T: -0.01, 5: -5.0}}, None),  # " false" outside the top 20: pass 2 under both
        ({"last_logprobs": {T: -0.01, F: float("-inf")}}, None),
        ({"token_ids": (), "last_logprobs": {}}, None),  # nothing generated, no logprobs
    ],
)
def test_reference_answer_rule_reads_any_last_position(change, expected):
    assert pass1_answer(_comp(**change), ANS, "reference") == expected


def test_budget_cut_pair_scores_in_pass1_under_reference_and_pass2_under_rank1(qwen25_tokenizer):
    """Hand-computed: a generation cut by its budget whose last position's top-20 holds " true" at ln 0.3 and
    " false" at ln 0.1 (the rest of the mass elsewhere) scores 0.3 / (0.3 + 0.1) = 0.75 in pass 1 under the
    reference's rule; under rank1's rule it goes to pass 2, whose forced answer gives 0.2 / (0.2 + 0.8) = 0.2."""
    cut = _comp(
        text="It is about X. And then the budget ran o",
        token_ids=(1, 2, 3, 4),
        finish_reason="length",
        stop_reason=None,
        last_logprobs={7: -0.5, T: math.log(0.3), F: math.log(0.1)},
    )

    def judge(rule):
        engine = ScriptedEngine(qwen25_tokenizer, lambda p: cut, lambda p: {T: math.log(0.2), F: math.log(0.8)})
        (j,) = Scorer(engine, ScoringConfig(max_output_tokens=4, context_size=512, answer_rule=rule)).score(_prepared())
        return j, engine

    ref, ref_engine = judge("reference")
    assert (ref.path, ref.finish_reason, ref.output_tokens) == ("pass1", "length", 4)
    assert ref.score == pytest.approx(0.75, abs=1e-12)
    assert (ref.logprob_true, ref.logprob_false) == (math.log(0.3), math.log(0.1))
    assert ref_engine.forced_calls == []  # no forced answer asked
    own, own_engine = judge("rank1")
    assert own.path == "pass2" and own.score == pytest.approx(0.2, abs=1e-12)
    assert own_engine.forced_calls == [[f"{PROMPT}0\nIt is about X.\n</think>"]]


def test_answer_rule_settings():
    plain, ref = (
        ScoringConfig(context_size=1000, max_output_tokens=8192),
        ScoringConfig(context_size=1000, max_output_tokens=8192, answer_rule="reference"),
    )
    assert "answer_rule" not in plain.sampling()  # the keys of every plain judgement stay what they were
    assert ref.sampling()["answer_rule"] == "reference"
    assert ref.provenance()["answer_rule"] == "reference" and plain.provenance()["answer_rule"] == "rank1"
    # vLLM 0.7.2 (V0 StopChecker: stop once prompt + output > max_model_len) let a context-capped pair generate
    # context - prompt + 1 tokens; the rank1 rule keeps max_model_len - prompt (what today's vLLM can produce)
    assert (plain.generation_budget(900), ref.generation_budget(900)) == (100, 101)
    assert (plain.generation_budget(999), ref.generation_budget(999)) == (1, 2)
    assert (plain.engine_context_size(), ref.engine_context_size()) == (1000, 1001)
    small = ScoringConfig(context_size=1000, max_output_tokens=50, answer_rule="reference")
    assert small.generation_budget(900) == 50  # the output budget still wins when it is smaller
    reserve = ScoringConfig(
        context_size=1000, max_output_tokens=50, answer_rule="reference", length_rule="reserve_output"
    )
    assert reserve.engine_context_size() == 1000 and reserve.generation_budget(900) == 50
    with pytest.raises(ValueError, match="answer_rule"):
        ScoringConfig(answer_rule="paper")


# --------------------------------------------------------------------------- pass 1 / pass 2 / failed
PROMPT = "Determine ... Passage: x\n<think>"


def _prepared(n=1):
    return [PreparedPrompt(f"{PROMPT}{i}", 10 + i, False) for i in range(n)]


def test_pass1_judgement(qwen25_tokenizer):
    engine = ScriptedEngine(qwen25_tokenizer, lambda p: _comp())
    (j,) = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=512)).score(_prepared())
    assert j.path == "pass1"
    assert j.score == pytest.approx(0.908877, abs=1e-6)
    assert (j.reasoning, j.output_tokens, j.prompt_tokens, j.finish_reason) == ("Short reasoning.\n", 6, 10, "stop")
    assert engine.forced_calls == []


def test_pass2_uses_cut_reasoning_and_restricted_logprobs(qwen25_tokenizer):
    engine = ScriptedEngine(
        qwen25_tokenizer,
        lambda p: _comp(text="It is about X. And then the budget ran o", finish_reason="length", stop_reason=None),
        lambda p: {T: math.log(0.2), F: math.log(0.8)},
    )
    (j,) = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=512)).score(_prepared())
    assert engine.forced_calls == [[f"{PROMPT}0\nIt is about X.\n</think>"]]
    assert j.path == "pass2"
    assert j.score == pytest.approx(0.2, abs=1e-12)
    assert j.reasoning == "It is about X. And then the budget ran o"  # the pass-1 text is kept
    assert j.forced_reasoning == "It is about X."
    assert j.finish_reason == "length"


def test_mixed_batch_keeps_order(qwen25_tokenizer):
    def complete(p):
        return _comp() if p.endswith(("0", "2")) else _comp(finish_reason="length", stop_reason=None)

    engine = ScriptedEngine(qwen25_tokenizer, complete, lambda p: {T: math.log(0.4), F: math.log(0.6)})
    out = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=512)).score(_prepared(4))
    assert [j.path for j in out] == ["pass1", "pass2", "pass1", "pass2"]
    assert [j.prompt_tokens for j in out] == [10, 11, 12, 13]
    assert len(engine.forced_calls[0]) == 2  # pass 2 batched in one call


def test_failed_pair_is_flagged_not_silent(qwen25_tokenizer, caplog):
    engine = ScriptedEngine(qwen25_tokenizer, lambda p: _comp(finish_reason="length", stop_reason=None))
    (j,) = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=512, failed_score=0.25)).score(_prepared())
    assert j.path == "failed"
    assert j.score == 0.25
    assert "no finite logprobs" in j.error
    assert "pair failed" in caplog.text


def test_failed_pair_can_raise(qwen25_tokenizer):
    engine = ScriptedEngine(qwen25_tokenizer, lambda p: _comp(finish_reason="length", stop_reason=None))
    with pytest.raises(ScoringError):
        Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=512, failed_score="raise")).score(_prepared())


def test_empty_batch_calls_nothing(qwen25_tokenizer):
    engine = ScriptedEngine(qwen25_tokenizer, lambda p: _comp())
    assert Scorer(engine).score([]) == []
    assert engine.complete_calls == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_output_tokens": 100, "context_size": 100, "length_rule": "reserve_output"},
        {"length_rule": "whatever fits"},
        {"context_size": 4},
        {"max_output_tokens": 0},
        {"top_logprobs": 1},
        {"failed_score": "zero"},
    ],
)
def test_bad_scoring_config(kwargs):
    with pytest.raises(ValueError):
        ScoringConfig(**kwargs)


# --------------------------------------------------------------------------- truncation
def test_long_passage_is_truncated_by_tokens(qwen25_tokenizer):
    passage = " ".join(f"word{i}" for i in range(400))
    prep = fit_prompt(qwen25_tokenizer, "what is it?", passage, budget=120)
    assert prep.truncated
    assert prep.prompt_tokens <= 120
    assert prep.prompt_tokens == len(qwen25_tokenizer(prep.prompt).input_ids)
    assert prep.prompt_tokens >= 110  # cut by tokens, not by a crude fraction
    assert prep.prompt.endswith("\n<think>")
    assert "Passage: word0 word1" in prep.prompt


def test_short_prompt_untouched(qwen25_tokenizer):
    prep = fit_prompt(qwen25_tokenizer, "q", "a short passage", budget=120)
    assert not prep.truncated


def test_query_alone_too_long(qwen25_tokenizer):
    with pytest.raises(ValueError, match="query alone"):
        fit_prompt(qwen25_tokenizer, "q " * 300, "p", budget=50)


@pytest.mark.parametrize(("rule", "budget"), [("reserve_output", 200 - 64), ("reference", None)])
def test_scorer_prepare_flags_truncation(qwen25_tokenizer, rule, budget):
    engine = ScriptedEngine(qwen25_tokenizer, lambda p: _comp())
    scorer = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=200, length_rule=rule))
    # the forced answer needs "\n" + "\n</think>" (Qwen2.5: </think> is several tokens) plus the answer token
    reserve = len(qwen25_tokenizer("\n\n</think>", add_special_tokens=False).input_ids) + 1
    budget = budget or 200 - reserve
    assert scorer.rule.prompt_budget == budget
    prepared = scorer.prepare(["q1", "q2"], ["short", "long " * 500])
    assert [p.truncated for p in prepared] == [False, True]
    assert prepared[1].prompt_tokens <= budget and prepared[1].prompt_tokens >= budget - 3
    assert prepared[1].source_tokens > 500
    judged = scorer.score(prepared)
    assert [j.truncated for j in judged] == [False, True]
    # each pair's pass 1 gets min(max_output_tokens, context_size - prompt_tokens)
    budgets = [r.max_tokens for r in engine.requests if not r.forced]
    assert budgets == [64, min(64, 200 - prepared[1].prompt_tokens)]


def test_reference_rule_keeps_passages_the_reserve_rule_cuts(qwen25_tokenizer):
    engine = ScriptedEngine(qwen25_tokenizer, lambda p: _comp())
    passage = " ".join(f"w{i}" for i in range(45))
    ref = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=200)).prepare(["q"], [passage])[0]
    old = Scorer(engine, ScoringConfig(max_output_tokens=64, context_size=200, length_rule="reserve_output"))
    cut = old.prepare(["q"], [passage])[0]
    assert 136 < ref.prompt_tokens < 190 and not ref.truncated  # scored in full, as the reference did
    assert cut.truncated and cut.prompt_tokens <= 136
    assert ref.source_tokens == cut.source_tokens == ref.prompt_tokens
    assert ScoringConfig(max_output_tokens=64, context_size=200).generation_budget(ref.prompt_tokens) == (
        200 - ref.prompt_tokens
    )


def test_forced_prompt_always_fits_and_is_flagged(qwen25_tokenizer):
    """A long prompt plus reasoning up to the context limit: pass 2's reasoning is cut by tokens to fit."""
    reasoning = " ".join(f"Step {i} holds." for i in range(80)) + " And then"
    engine = ScriptedEngine(
        qwen25_tokenizer,
        lambda p: _comp(text=reasoning, finish_reason="length", stop_reason=None),
        lambda p: {T: math.log(0.6), F: math.log(0.4)},
    )
    config = ScoringConfig(max_output_tokens=400, context_size=300)
    scorer = Scorer(engine, config)
    prepared = scorer.prepare(["q", "q"], [" ".join(f"w{i}" for i in range(70)), "short"])
    assert 200 < prepared[0].prompt_tokens < 280 and not prepared[0].truncated
    long_j, short_j = scorer.score(prepared)
    forced = [r.prompt for r in engine.requests if r.forced]
    assert all(len(qwen25_tokenizer(f).input_ids) <= 299 for f in forced)
    assert long_j.path == "pass2" and long_j.reasoning_cut
    assert long_j.forced_reasoning and reasoning.startswith(long_j.forced_reasoning)
    assert long_j.forced_reasoning.endswith(".")  # still cut at a sentence end
    assert forced[0].endswith("\n" + long_j.forced_reasoning + "\n</think>")
    assert not short_j.reasoning_cut or len(short_j.forced_reasoning) < len(cut_reasoning(reasoning))
