"""The streaming scheduler: same judgements as the synchronous path whatever the completion order, a pair's
forced answer submitted right after its pass 1, a bounded window, cancellation on errors (scripted engine);
then both real engines on the micro rank1 against the former chunked path, float32, within 1e-6."""

from __future__ import annotations

import math
import re

import pytest
from conftest import MICRO_RANK1, demo_pairs
from fakes import FAKE_COMMIT, ScriptedEngine

from rank1_eval import rank1
from rank1_eval.records import Completion, Judgement
from rank1_eval.scheduler import Scheduler
from rank1_eval.scoring import PreparedPrompt, Rule, Scorer, ScoringConfig, ScoringError, all_judged
from rank1_eval.store import MemoryStore

T, F = 830, 895  # Qwen2.5's " true" / " false"
CONFIG = ScoringConfig(max_output_tokens=64, context_size=512)


def _complete(prompt: str) -> Completion:
    """Pass 1 answers for prompts ending in an even digit, runs out of budget for odd ones ('9' never scores)."""
    i = int(re.findall(r"\d", prompt)[-1])  # the pair's number: the last digit of the prompt
    if i % 2 == 0:
        p = 0.1 + 0.08 * i
        return Completion(f"Reason {i}.\n", (5, 6, T), "stop", "</think> true", {T: math.log(p), F: math.log(1 - p)})
    return Completion(f"Partial {i}. and then", (5,) * (10 + i), "length", None, {})


def _forced(prompt: str) -> dict[int, float]:
    return {} if "Partial 9." in prompt else {T: math.log(0.3), F: math.log(0.7)}


def _prepared(n: int = 10) -> list[PreparedPrompt]:
    return [PreparedPrompt(f"Query: q\nPassage: doc {i}\n<think>{i}", 20 + i, i == 3) for i in range(n)]


def _engine(tok, **kwargs):
    return ScriptedEngine(tok, _complete, _forced, **kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_same_judgements_as_the_synchronous_path_in_any_order(qwen25_tokenizer, seed):
    reference = Scorer(_engine(qwen25_tokenizer), CONFIG).score(_prepared())
    engine = _engine(qwen25_tokenizer, window=3, per_collect=1, shuffle_seed=seed)
    finals: list[tuple[int, Judgement]] = []
    scheduler = Scheduler(engine, Rule(qwen25_tokenizer, CONFIG), on_final=lambda i, j: finals.append((i, j)))
    judged = scheduler.run(_prepared())
    assert judged == reference  # every field, in input order
    assert [j.path for j in judged] == ["pass1", "pass2"] * 4 + ["pass1", "failed"]
    assert sorted(i for i, _ in finals) == list(range(10)) and [i for i, _ in finals] != list(range(10))
    assert all(judged[i] == j for i, j in finals)
    assert judged[3].truncated and judged[1].forced_reasoning == "Partial 1."
    stats = scheduler.stats
    assert (stats.pairs, stats.requests, stats.forced) == (10, 15, 5)
    assert stats.generated_tokens == sum(j.output_tokens for j in judged) + 5


def test_forced_answer_follows_its_pass1_at_once_and_the_window_holds(qwen25_tokenizer):
    engine = _engine(qwen25_tokenizer, window=2, per_collect=1)
    Scheduler(engine, Rule(qwen25_tokenizer, CONFIG)).run(_prepared(6))
    order = [(r.prompt[-1] if not r.forced else "forced " + r.prompt.split("Partial ")[1][0]) for r in engine.requests]
    # pair 1's forced answer goes in as soon as its pass 1 ends, before pair 3's pass 1 is even submitted
    assert order.index("forced 1") < order.index("3")
    assert engine.max_queued <= 2


def test_requests_carry_their_own_budget(qwen25_tokenizer):
    engine = _engine(qwen25_tokenizer)
    config = ScoringConfig(max_output_tokens=64, context_size=100)
    prepared = [PreparedPrompt("x\n<think>0", 20, False), PreparedPrompt("y\n<think>2", 60, False)]
    Scheduler(engine, Rule(qwen25_tokenizer, config)).run(prepared)
    assert [r.max_tokens for r in engine.requests] == [64, 40]  # min(max_output_tokens, context - prompt)


def test_token_ids_kept_on_request(qwen25_tokenizer):
    judged = Scheduler(_engine(qwen25_tokenizer), Rule(qwen25_tokenizer, CONFIG), keep_token_ids=True).run(_prepared(2))
    assert judged[0].token_ids == (5, 6, T) and judged[1].token_ids == (5,) * 11
    assert Judgement.from_dict(judged[1].to_dict()) == judged[1]
    assert "token_ids" not in Scorer(_engine(qwen25_tokenizer), CONFIG).score(_prepared(1))[0].to_dict()


def test_error_cancels_what_is_in_flight(qwen25_tokenizer):
    engine = _engine(qwen25_tokenizer, window=4, per_collect=1)
    config = ScoringConfig(max_output_tokens=64, context_size=512, failed_score="raise")
    with pytest.raises(ScoringError):
        Scheduler(engine, Rule(qwen25_tokenizer, config)).run(_prepared(10)[::-1])  # pair 9 fails first
    assert engine.cancelled > 0 and engine.queued == []


class _Losing(ScriptedEngine):
    """Loses pair 4's pass-1 request (``drop``), or hands one completion back under a wrong id (``rename``)."""

    def __init__(self, tok, how: str) -> None:
        super().__init__(tok, _complete, _forced, window=3, per_collect=1)
        self.how = how

    def submit(self, requests):
        lost = [r for r in requests if r.prompt.endswith("<think>4")]
        super().submit([r for r in requests if r not in lost] if self.how == "drop" else requests)

    def collect(self):
        done = super().collect()
        if self.how == "rename":
            return [(rid + 1000 if c.text == "Reason 4.\n" else rid, c) for rid, c in done]
        if self.how == "duplicate":
            return done + done
        return done


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("drop", r"returned nothing with 1 request\(s\) in flight: request id\(s\) \d+ \(pairs 4\) were lost"),
        ("rename", r"returned request id 100\d, which is not in flight"),
        ("duplicate", r"returned request id 0, which is not in flight"),
    ],
)
def test_a_lost_request_stops_the_run_naming_it(qwen25_tokenizer, how, message):
    engine = _Losing(qwen25_tokenizer, how)
    judged: list[int] = []
    scheduler = Scheduler(engine, Rule(qwen25_tokenizer, CONFIG), on_final=lambda i, j: judged.append(i))
    with pytest.raises(RuntimeError, match=message):
        scheduler.run(_prepared(6))
    assert 4 not in judged


def test_a_pair_without_a_judgement_is_an_error_not_a_shorter_list():
    j = Judgement(score=0.5, reasoning="", path="pass1", prompt_tokens=1, output_tokens=1, finish_reason="stop")
    assert all_judged([j, j]) == [j, j]
    with pytest.raises(RuntimeError, match=r"1 of 3 pair\(s\) ended without a judgement: pair\(s\) 1"):
        all_judged([j, None, j])


def test_model_streams_each_judgement_to_the_store(qwen25_tokenizer):
    """judge_prompts: store hits are not re-asked, each new judgement is stored, stats split result/this run."""
    store = MemoryStore()
    model = rank1(
        "fake/model", revision=FAKE_COMMIT, device="cpu", fp_options="float32", engine="transformers", store=store
    )
    model._engine = _engine(qwen25_tokenizer, window=3, per_collect=1, shuffle_seed=4)
    first = model.judge([("q", f"doc {i}") for i in range(4)])
    assert (
        len(store.get_many([model.judgement_key(p) for p in model.prepare(["q"] * 4, [f"doc {i}" for i in range(4)])]))
        == 4
    )
    again = rank1(
        "fake/model", revision=FAKE_COMMIT, device="cpu", fp_options="float32", engine="transformers", store=store
    )
    again._engine = _engine(qwen25_tokenizer)
    assert again.judge([("q", f"doc {i}") for i in range(6)])[:4] == first
    summary = again.stats.summary()
    assert (summary["pairs_from_store"], summary["pairs_scored"]) == (4, 2)
    assert summary["pass1"] + summary["pass2"] + summary["failed"] == 6  # the result: stored ones included
    assert summary["output_tokens_total"] == sum(j.output_tokens for j in first) + sum(
        j.output_tokens for j in again.judge([("q", f"doc {i}") for i in (4, 5)])
    )
    assert summary["this_run"]["pairs_scored"] == 2 and summary["this_run"]["scheduling"] == "stream"


# ------------------------------------------------------------------------------------------ real engines


def _real_model(engine_fixture, scheduling, **kwargs):
    model = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        engine=engine_fixture.kind,
        scheduling=scheduling,
        **kwargs,
    )
    model._engine = engine_fixture
    return model


@pytest.mark.slow
def test_streaming_equals_the_chunked_path_on_real_engines(engine):
    """Micro rank1, float32: a budget that sends part of the pairs to pass 2 and a context that shortens the
    longest prompts' budgets; the streamed run gives the same paths, reasoning and scores as the former path."""
    pairs = demo_pairs(4, 8)
    settings = dict(max_output_tokens=17, context_size=150, chunk_size=1024)
    old = _real_model(engine, "chunked", **settings).judge(pairs)
    streamed_model = _real_model(engine, "stream", **settings)
    new = streamed_model.judge(pairs)
    assert {j.path for j in old} == {"pass1", "pass2"}, "the workload must exercise both passes"
    budgets = {min(17, 150 - j.prompt_tokens) for j in old}
    assert len(budgets) > 1, "per-pair budgets must differ"
    assert [j.path for j in new] == [j.path for j in old]
    assert [j.reasoning for j in new] == [j.reasoning for j in old]
    assert [j.output_tokens for j in new] == [j.output_tokens for j in old]
    assert max(abs(a.score - b.score) for a, b in zip(old, new, strict=True)) <= 1e-6
    assert streamed_model.stats.this_run()["scheduling"] == "stream"
