"""Budget sweeps (rank1_eval.sweep) and budget forcing (force_rethink), on the micro rank1 with both real engines.

The exactness proof: the judgement a sweep derives at budget b from one run at a larger budget equals a real
run at b — same path, reasoning and forced text, scores within 1e-6 — in float32 on CPU, for budgets below,
at and above each pair's own reasoning length, and for a pair whose budget the context shortens (length rule).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import MICRO_RANK1, demo_pairs

from rank1_eval.engines.base import Request
from rank1_eval.model import rank1
from rank1_eval.prompts import format_prompt
from rank1_eval.records import Judgement
from rank1_eval.scoring import STOP_STRINGS, THINK_END, WAIT, ScoringConfig
from rank1_eval.store import MemoryStore
from rank1_eval.sweep import Deriver, SweepError, check_budgets, parse_budgets, verify

CONTEXT = 1024
TOP = 24  # the max-budget run; the micro rank1 reasons 16-18 tokens before "</think> true/false"


@dataclass
class Recording:
    """A real engine that records every request submitted to it (the prompt sequence of budget forcing)."""

    inner: object
    requests: list[Request] = field(default_factory=list)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def submit(self, requests):
        self.requests.extend(requests)
        self.inner.submit(requests)


def _model(engine, **kw) -> rank1:
    """A rank1 on the session's engine (no reload): the fixture's micro rank1, float32, context 1024."""
    kind = "transformers" if engine.kind == "transformers" else "vllm"
    m = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        context_size=CONTEXT,
        engine=kind,
        dataset_prompt=False,
        **kw,
    )
    m._engine = engine
    return m


def _pairs(tokenizer) -> list[tuple[str, str]]:
    """Demo pairs (answers true and false, 16-18 tokens of reasoning) plus one whose prompt leaves the context
    only ~19 tokens, so its generation budget is min(b, context - prompt) (the length rule)."""
    demo = demo_pairs(2, 8)
    pairs = [demo[0], demo[7], demo[8]]  # "true" after 17 tokens, "false" after 18, another query
    query, doc = pairs[0]
    words = doc.split()
    long_doc = " ".join(words * (1 + 1000 // max(1, len(words))))
    ids = tokenizer(long_doc, add_special_tokens=False).input_ids
    base = len(tokenizer(format_prompt(query, "")).input_ids)
    keep = CONTEXT - 19 - base
    pairs.append((query, tokenizer.decode(ids[:keep], clean_up_tokenization_spaces=False)))
    return pairs


def _same(derived: Judgement, real: Judgement) -> None:
    assert (derived.path, derived.reasoning, derived.forced_reasoning) == (
        real.path,
        real.reasoning,
        real.forced_reasoning,
    )
    assert (derived.output_tokens, derived.finish_reason, derived.stop_reason) == (
        real.output_tokens,
        real.finish_reason,
        real.stop_reason,
    )
    assert abs(derived.score - real.score) <= 1e-6


def test_sweep_equals_real_runs_at_every_budget(engine, micro_tokenizer):
    pairs = _pairs(micro_tokenizer)
    store = MemoryStore()
    source = _model(engine, max_output_tokens=TOP, keep_token_ids=True, store=store)
    top = source.judge(pairs)
    lengths = sorted({j.output_tokens for j in top})
    # the long pair: its budget is what the context leaves (length rule), not TOP, and it used all of it
    assert top[-1].prompt_tokens > CONTEXT - TOP
    assert (top[-1].finish_reason, top[-1].output_tokens) == ("length", CONTEXT - top[-1].prompt_tokens)
    budgets = sorted({8, *lengths})  # below all, exactly at each length (between some, at or above others)
    counts = {}
    for b in budgets:
        variant = source.with_scoring(max_output_tokens=b)
        deriver = Deriver(source, store)
        with variant.session(store=store, missing=deriver):
            derived = variant.judge(pairs)
        real = _model(engine, max_output_tokens=b).judge(pairs)
        # marked: derived from the run at TOP, not decoded at b; a pair whose request at b is the one it had at TOP
        # (the long pair once b >= what its context leaves) is the run's own judgement, found under its own key
        marks = [j.derived_from for j in derived]
        assert set(marks) <= {TOP, None} and marks.count(TOP) == deriver.cost.kept + deriver.cost.cut
        for d, r in zip(derived, real, strict=True):
            _same(d, r)
        assert deriver.cost.run == 0  # everything derived, nothing re-decoded
        assert deriver.cost.prefill_requests == deriver.cost.cut
        counts[b] = (deriver.cost.kept, deriver.cost.cut)
        # stored under the key a real run at b has: a later real run at b is all store hits
        again = _model(engine, max_output_tokens=b, store=store)
        assert [j.score for j in again.judge(pairs)] == [j.score for j in derived]
        assert again.stats.pairs_from_store == len(pairs) and again.stats.pairs_scored == 0
        assert again.stats.derived_from_store == marks.count(TOP) == again.stats.summary()["derived"]
    # at the longest length the long pair's request is the run's own (its budget is what the context leaves)
    assert counts[8] == (0, len(pairs)) and counts[lengths[-1]] == (len(pairs) - 1, 0)
    assert any(k and c for k, c in counts.values())  # a budget between the pairs' lengths mixes both
    print(f"\n{engine.kind}: budgets {budgets}, (kept, cut) {counts}")


def test_a_real_run_at_b_is_reused_by_the_sweep_and_verify_agrees(hf_engine, micro_tokenizer):
    pairs = demo_pairs(1, 3)
    store = MemoryStore()
    source = _model(hf_engine, max_output_tokens=TOP, keep_token_ids=True, store=store)
    source.judge(pairs)
    real = _model(hf_engine, max_output_tokens=9, store=store).judge(pairs)  # the real run first
    variant = source.with_scoring(max_output_tokens=9)
    deriver = Deriver(source, store)
    with variant.session(store=store, missing=deriver):
        assert [j.score for j in variant.judge(pairs)] == [j.score for j in real]
    assert variant.stats.pairs_from_store == 3 and deriver.cost.cut == 0  # nothing derived again
    assert variant.stats.derived_from_store == 0  # real judgements: no mark
    with variant.session(store=MemoryStore(), missing=deriver):  # now derive for real, then --verify re-runs them
        assert [j.path for j in variant.judge(pairs)] == ["pass2"] * 3 and deriver.cost.cut == 3
    check = verify(variant, deriver, 2)
    assert (check["pairs"], check["cut_pairs"], check["same_path"], check["same_reasoning"]) == (2, 2, 2, 2)
    assert check["max_abs_score_diff"] <= 1e-6 and check["mismatches"] == []


def test_keep_token_ids_decodes_again_what_was_stored_without_them(hf_engine):
    """The README's order: a plain run, then `run --keep-token-ids`: the ids are decoded and stored, so the sweep
    that follows derives every budget instead of judging it for real."""
    pairs = demo_pairs(1, 3)
    store = MemoryStore()
    _model(hf_engine, max_output_tokens=TOP, store=store).judge(pairs)
    assert all(j.token_ids is None for j in store.get_many(list(store.keys())).values())
    again = _model(hf_engine, max_output_tokens=TOP, keep_token_ids=True, store=store)
    judged = again.judge(pairs)
    assert again.stats.pairs_scored == 3 and again.stats.pairs_from_store == 0
    stored = store.get_many(list(store.keys()))
    assert len(stored) == 3 and all(j.token_ids is not None for j in stored.values())
    assert all(j.token_ids is not None for j in judged)
    third = _model(hf_engine, max_output_tokens=TOP, keep_token_ids=True, store=store)
    third.judge(pairs)
    assert third.stats.pairs_from_store == 3  # now they are hits


def test_kept_pairs_need_no_engine(hf_engine):
    pairs = demo_pairs(1, 2)
    store = MemoryStore()
    _model(hf_engine, max_output_tokens=TOP, keep_token_ids=True, store=store).judge(pairs)
    source = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        context_size=CONTEXT,
        engine="transformers",
        dataset_prompt=False,
        max_output_tokens=TOP,
        store=store,
    )
    variant = source.with_scoring(max_output_tokens=20)  # above both pairs' 17 tokens: every pair kept
    deriver = Deriver(source, store)
    with variant.session(store=store, missing=deriver):
        assert [j.path for j in variant.judge(pairs)] == ["pass1", "pass1"] and deriver.cost.kept == 2
    assert variant._engine is None and source._engine is None  # the tokenizer alone did it


def test_pairs_without_token_ids_are_run_for_real(hf_engine):
    pairs = demo_pairs(1, 2)
    store = MemoryStore()
    source = _model(hf_engine, max_output_tokens=TOP, store=store)  # keep_token_ids off: nothing to cut
    source.judge(pairs)
    variant = source.with_scoring(max_output_tokens=6)
    deriver = Deriver(source, store)
    with variant.session(store=store, missing=deriver):
        derived = variant.judge(pairs)
    assert {j.derived_from for j in derived} == {None}  # decoded for real: not marked
    # decoded for real: 6 pass-1 tokens per pair, plus its forced answer's one
    assert (deriver.cost.run, deriver.cost.cut, deriver.cost.run_generated_tokens) == (2, 0, 2 * (6 + 1))
    for d, r in zip(derived, _model(hf_engine, max_output_tokens=6).judge(pairs), strict=True):
        _same(d, r)


def test_force_rethink_prompt_sequence(engine, micro_tokenizer):
    """Hand-checked: round 1 stops at "</think>" with the plain run's reasoning; each closing becomes "\\nWait"
    and decoding continues from prompt + text; the last round stops on the answer as usual."""
    pair = demo_pairs(1, 1)
    plain = _model(engine, max_output_tokens=64).judge(pair)[0]
    recording = Recording(engine)
    forced = _model(recording, max_output_tokens=64, force_rethink=2)
    j = forced.judge(pair)[0]
    prompt = forced.prepare([pair[0][0]], [pair[0][1]])[0]
    r0, r1, r2 = (r["text"] for r in j.rounds)
    assert r0 == plain.reasoning  # the plain run's text, stopped at the closing instead of the answer
    expected = [
        (prompt.prompt, 64, (THINK_END,)),
        (prompt.prompt + r0 + WAIT, 64 - j.rounds[0]["output_tokens"], (THINK_END,)),
        (
            prompt.prompt + r0 + WAIT + r1 + WAIT,
            64 - j.rounds[0]["output_tokens"] - j.rounds[1]["output_tokens"],
            STOP_STRINGS,
        ),
    ]
    assert [(r.prompt, r.max_tokens, r.stop) for r in recording.requests] == expected
    assert [r["stop_reason"] for r in j.rounds] == [THINK_END, THINK_END, plain.stop_reason]
    assert j.path == "pass1" and j.reasoning == r0 + WAIT + r1 + WAIT + r2
    assert j.output_tokens == sum(r["output_tokens"] for r in j.rounds)
    assert forced.judgement_key(prompt.prompt) != _model(engine, max_output_tokens=64).judgement_key(prompt.prompt)
    assert forced.provenance()["force_rethink"] == 2 and forced.provenance()["sampling"]["force_rethink"] == 2
    assert Judgement.from_dict(json.loads(json.dumps(j.to_dict()))) == j  # rounds survive the store and traces


def test_force_rethink_within_the_budget_ends_in_pass2(hf_engine):
    pair = demo_pairs(1, 1)
    recording = Recording(hf_engine)
    j = _model(recording, max_output_tokens=20, force_rethink=3).judge(pair)[0]
    n0 = j.rounds[0]["output_tokens"]
    assert [r.max_tokens for r in recording.requests if not r.forced] == [20, 20 - n0]  # the rounds share it
    assert j.rounds[1]["finish_reason"] == "length" and j.output_tokens == 20
    assert j.path == "pass2" and recording.requests[-1].forced
    assert recording.requests[-1].prompt.endswith("\n" + j.forced_reasoning + "\n</think>")
    assert j.reasoning.startswith(j.rounds[0]["text"] + WAIT)


def test_sweep_forced_prompt_with_a_cleanup_tokenizer_is_a_real_runs(tmp_path):
    """A tokenizer that enables ``clean_up_tokenization_spaces``: the text a sweep rebuilds from stored ids for a
    cut pass 1 is the tokens' own bytes (what vLLM's detokenizer and the Transformers engine give a real run),
    so its forced prompt is the real run's. The micro rank1 never writes " ." itself: the ids are built here."""
    import shutil

    from rank1_eval.engines import EngineConfig, load_engine
    from rank1_eval.scoring import forced_prompt

    model = tmp_path / "micro-rank1"
    shutil.copytree(MICRO_RANK1, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.update(
        clean_up_tokenization_spaces=True,  # 5.x applies it to BPE only with the second key (4.x always)
        clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output=True,
    )
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    engine = load_engine("transformers", EngineConfig(str(model), device="cpu", dtype="float32", context_size=CONTEXT))
    tok = engine.tokenizer
    assert tok.clean_up_tokenization_spaces  # tests/test_greedy.py shows its plain decode() rewrites " ."
    head = " The query is a question . The passage is short , it 's fine ?"  # pass 1 at budget b: these tokens
    ids_head = tok(head, add_special_tokens=False).input_ids
    ids = ids_head + tok(" It looks relevant .", add_special_tokens=False).input_ids  # the stored run at B
    store = MemoryStore()
    source = rank1(
        str(model),
        device="cpu",
        fp_options="float32",
        context_size=CONTEXT,
        engine="transformers",
        dataset_prompt=False,
        max_output_tokens=len(ids),
        keep_token_ids=True,
        store=store,
    )
    source._engine = engine
    pair = demo_pairs(1, 1)
    p = source.prepare([pair[0][0]], [pair[0][1]])[0]
    stored = Judgement(
        score=0.5,
        reasoning=head + " It looks relevant .",
        path="pass2",
        prompt_tokens=p.prompt_tokens,
        output_tokens=len(ids),
        finish_reason="length",
        token_ids=tuple(ids),
    )
    store.put_many([(source.judgement_key(p), stored)])
    variant = source.with_scoring(max_output_tokens=len(ids_head))
    deriver = Deriver(source, store)
    recording = Recording(engine)
    variant.use_engine(recording)
    with variant.session(store=store, missing=deriver):
        (derived,) = variant.judge(pair)
    assert deriver.cost.cut == 1 and derived.path == "pass2"
    assert derived.reasoning == head  # the bytes, not "...question. The passage is short, it's fine?"
    (request,) = recording.requests
    assert request.prompt == forced_prompt(p.prompt, head)
    # the real run's side: the Transformers engine's text for the same ids cut by the budget is the same bytes
    import torch

    n = len(ids_head)
    real = engine._completion(ids_head, torch.zeros(n, 2), torch.zeros(n, 2, dtype=torch.long), STOP_STRINGS, n, 1)
    assert (real.text, real.finish_reason) == (head, "length")
    engine.close()


def test_settings_and_errors():
    assert parse_budgets("512, 256,256") == [256, 512]
    for bad in ("", "0,4", "a,b"):
        with pytest.raises(SweepError):
            parse_budgets(bad)
    assert "force_rethink" not in ScoringConfig().sampling()  # plain judgements keep the keys they had
    assert ScoringConfig(force_rethink=1).sampling()["force_rethink"] == 1
    check_budgets([8, 16], 24)
    with pytest.raises(SweepError, match="answer_rule"):  # a cut pass 1 may score from logprobs never stored
        check_budgets([8, 16], 24, answer_rule="reference")
    with pytest.raises(ValueError, match="force_rethink"):
        ScoringConfig(force_rethink=-1)


def test_cli_refuses_before_loading_anything(tmp_path, capsys):
    from rank1_eval.cli import main

    assert main(["run", "--verify", "3", "-q"]) == 2
    assert main(["run", "--budgets", "4,x", "-q"]) == 2
    assert main(["run", "--budgets", "4", "--shard", "0/2", "-q"]) == 2
    assert main(["sweep", str(tmp_path), "--budgets", "4", "-q"]) == 2  # not a result folder
    err = capsys.readouterr().err
    assert "pass --budgets too" in err and "comma-separated integers" in err and "merge the shards" in err
    assert "holds no run to sweep" in err


@pytest.mark.slow
def test_cli_run_budgets_then_sweep(tmp_path, capsys, monkeypatch, reuse_engines):
    """End to end (the CLI in this process, on the session's engine): `run --budgets` writes the sweep; `sweep` on
    its folder finds earlier budgets in the store."""
    from rank1_eval.cli import main

    monkeypatch.chdir(tmp_path)  # nothing is written next to the caller
    out = tmp_path / "results"
    common = ["--engine", "transformers", "--limit-queries", "2", "--top-k", "4", "--no-progress", "-q"]
    argv = ["run", "--max-output-tokens", "24", "--budgets", "8,16", "--verify", "2", "--output-dir", str(out), *common]
    monkeypatch.setattr(sys, "argv", ["rank1-eval", *argv])  # the run's recorded command line, which sweep re-reads
    code = main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    assert reuse_engines == ["hf_engine"]  # the demo's settings are the session engine's: no second load
    folder = Path(stdout.strip().splitlines()[-1].removeprefix("results: "))
    sweep = json.loads((folder / "sweep.json").read_text())
    assert [r["budget"] for r in sweep["budgets"]] == [8, 16, 24]
    assert [r["source"] for r in sweep["budgets"]] == ["derived", "derived", "run"]
    assert all(c["max_abs_score_diff"] <= 1e-6 and not c["mismatches"] for c in sweep["verify"])
    assert (folder / "sweep.png").stat().st_size > 1000
    b8 = folder.parent / sweep["budgets"][0]["folder"]  # where a real run at 8 would write: the layout's folder
    assert "-out8-" in b8.name and (b8 / "traces.jsonl").is_file()
    b8_summary = json.loads((b8 / "summary.json").read_text())
    assert b8_summary["derived_from"]["max_output_tokens"] == 24
    # derived pairs are counted as derived, never as decoded: no pairs_scored, no docs/s for them
    assert b8_summary["pairs_scored"] == 0 and b8_summary["pairs_derived"] == b8_summary["pairs_total"]
    assert b8_summary["this_run"]["docs_per_s"] is None
    summary = json.loads((folder / "summary.json").read_text())
    assert [r["budget"] for r in summary["budget_sweep"]] == [8, 16, 24]
    from rank1_eval.report.data import read_sweep

    assert [r["budget"] for r in read_sweep(folder)["rows"]] == [8, 16, 24]  # the report's contract
    # the task folder now holds the run and the budgets' folders: sweep finds the run no sweep derived
    assert main(["sweep", str(folder.parent), "--budgets", "8,12", "--no-progress", "-q"]) == 0, capsys.readouterr()
    rows = {r["budget"]: r for r in json.loads((folder / "sweep.json").read_text())["budgets"]}
    assert rows[8]["sweep_from_store"] == rows[8]["pairs"] and rows[8]["sweep_cut"] == 0  # stored by the run
    assert rows[12]["sweep_cut"] + rows[12]["sweep_kept"] == rows[12]["pairs"]
    capsys.readouterr()
    assert main(["sweep", str(folder), "--budgets", "48"]) == 2
    assert "exceed the run's max_output_tokens 24" in capsys.readouterr().err
    assert set(reuse_engines) == {"hf_engine"}  # the sweeps loaded no engine of their own
