"""The public class: seed constructor, input validation, lazy loading, store reuse (scripted engine)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from fakes import FAKE_COMMIT, ScriptedEngine

from rank1_eval import Rank1, rank1
from rank1_eval.engines import EngineError
from rank1_eval.records import Completion
from rank1_eval.store import MemoryStore

T, F = 830, 895


def _scripted(tokenizer, calls=None):
    """Relevance = the passage mentions 'cat': a readable stand-in for a model."""

    def complete(prompt):
        passage = prompt.split("Passage: ")[1]
        yes = "cat" in passage
        return Completion(
            text="It mentions cats.\n" if yes else "No cats here.\n",
            token_ids=(1, 2, 3, T if yes else F),
            finish_reason="stop",
            stop_reason="</think> true" if yes else "</think> false",
            last_logprobs={T: math.log(0.9 if yes else 0.2), F: math.log(0.1 if yes else 0.8)},
        )

    return ScriptedEngine(tokenizer, complete)


def _model(tokenizer, **kwargs):
    m = rank1("fake/model", revision=FAKE_COMMIT, device="cpu", fp_options="float32", engine="transformers", **kwargs)
    m._engine = _scripted(tokenizer)
    return m


def test_seed_constructor_is_cheap_and_offline():
    m = rank1(
        model_name_or_path="jhu-clsp/rank1-7b",
        num_gpus=1,
        device="cuda",
        context_size=16000,
        max_output_tokens=8192,
        fp_options="float16",
    )
    assert m._engine is None
    assert m.mteb_model_meta.name == "jhu-clsp/rank1-7b"
    assert Rank1 is rank1


def test_import_does_not_pull_torch_or_vllm():
    code = "import sys, rank1_eval; print('torch' in sys.modules, 'vllm' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_predict_and_judge_in_input_order(qwen25_tokenizer):
    m = _model(qwen25_tokenizer)
    pairs = [("q", "a cat sat"), ("q", "a dog sat"), ("q", {"title": "Cat", "text": "a cat"})]
    assert m.predict(pairs) == pytest.approx([0.9, 0.2, 0.9])
    judged = m.judge(pairs)
    assert [j.path for j in judged] == ["pass1"] * 3
    assert judged[1].reasoning == "No cats here.\n"


def test_three_tuples_merge_the_instruction(qwen25_tokenizer):
    m = _model(qwen25_tokenizer)
    m.judge([("find pets", "a cat", "Only cats count.")])
    assert "Query: find pets Only cats count.\nPassage: a cat\n<think>" in m._engine.complete_calls[0][0]


def test_dataset_prompt_string_and_false(qwen25_tokenizer):
    m = _model(qwen25_tokenizer, dataset_prompt="Claim: FILL_QUERY_HERE")
    m.judge([("x", "a cat")])
    assert "Query: Claim: x\n" in m._engine.complete_calls[0][0]
    m2 = _model(qwen25_tokenizer, dataset_prompt=False)
    assert m2.template_for("SciFact", "default") is None
    m3 = _model(qwen25_tokenizer)
    assert m3.template_for("SciFact", "default").startswith("Claim:")


def test_empty_input_returns_empty_without_loading():
    m = rank1("jhu-clsp/rank1-7b")
    assert m.predict([]) == []
    assert m.judge([]) == []
    assert m._engine is None


@pytest.mark.parametrize(
    ("pairs", "error", "match"),
    [
        ([("only one",)], ValueError, "expected \\(query, doc\\)"),
        ([("q", "d", "i", "extra")], ValueError, "got 4 items"),
        (["not a tuple"], ValueError, "got str"),
        ([(1, "d")], TypeError, "query must be a str"),
        ([("q", 3.5)], TypeError, "doc must be a str"),
        ([("q", "d", 7)], TypeError, "instruction must be a str"),
        ([("q", {"title": "no text"})], TypeError, "'text' key"),
        ("a string", TypeError, "list of"),
    ],
)
def test_bad_input(pairs, error, match):
    with pytest.raises(error, match=match):
        rank1("jhu-clsp/rank1-7b").predict(pairs)


def test_unknown_engine_name():
    with pytest.raises(EngineError, match="auto, openai, transformers, vllm"):
        rank1("jhu-clsp/rank1-7b", engine="tensorrt")


def test_unknown_argument():
    with pytest.raises(TypeError, match="unknown argument"):
        rank1("jhu-clsp/rank1-7b", temprature=0.5)


def test_store_hits_and_duplicates(qwen25_tokenizer):
    store = MemoryStore()
    m = _model(qwen25_tokenizer, store=store)
    pairs = [("q", "a cat"), ("q", "a dog"), ("q", "a cat")]
    first = m.judge(pairs)
    assert m.stats.pairs_scored == 2 and m.stats.duplicates == 1
    assert len(m._engine.complete_calls[0]) == 2
    m2 = _model(qwen25_tokenizer, store=store)
    again = m2.judge(pairs)
    assert m2._engine.complete_calls == []
    assert m2.stats.pairs_from_store == 3
    assert again == first


def test_store_key_depends_on_settings(qwen25_tokenizer):
    a = _model(qwen25_tokenizer)
    b = _model(qwen25_tokenizer, max_output_tokens=64, context_size=512)
    c = rank1("fake/model", revision=FAKE_COMMIT, device="cpu", fp_options="bfloat16", engine="transformers")
    c.use_engine(_scripted(qwen25_tokenizer))
    keys = {x.judgement_key("same prompt") for x in (a, b, c)}
    assert len(keys) == 3
    assert a.judgement_key("p") == _model(qwen25_tokenizer).judgement_key("p")


def test_missing_model_fails_with_name(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = rank1(str(tmp_path / "nowhere" / "model"), device="cpu", fp_options="float32", engine="transformers")
    with pytest.raises(Exception, match="nowhere/model"):
        m.predict([("q", "d")])


def test_length_rule_is_provenance_not_identity(qwen25_tokenizer):
    """A prompt gets the same budget under both rules, so a stored judgement serves either; both are named."""
    ref = _model(qwen25_tokenizer)
    old = _model(qwen25_tokenizer, length_rule="reserve_output")
    assert ref.judgement_key("same prompt") == old.judgement_key("same prompt")
    prov = ref.provenance()
    assert prov["length_rule"] == "reference" and old.provenance()["length_rule"] == "reserve_output"
    assert set(prov["length_rules"]) == {"reference", "reserve_output"}
    assert prov["batch_policy"]["scheduling"] == "stream"
    with pytest.raises(ValueError, match="scheduling"):
        rank1("jhu-clsp/rank1-7b", scheduling="sometimes")
    with pytest.raises(ValueError, match="length_rule"):
        rank1("jhu-clsp/rank1-7b", length_rule="whatever")


def test_default_dtype_follows_the_device(qwen25_tokenizer):
    """The API's own default, not only the CLI's: float32 on CPU (float16 is refused there), float16 on CUDA."""
    cpu = rank1("fake/model", revision=FAKE_COMMIT, device="cpu", engine="transformers")
    cuda = rank1("fake/model", revision=FAKE_COMMIT, device="cuda", engine="transformers")
    chosen = rank1("fake/model", revision=FAKE_COMMIT, device="cpu", fp_options="bfloat16", engine="transformers")
    same = rank1("fake/model", revision=FAKE_COMMIT, device="cpu", fp_options="float32", engine="transformers")
    for m in (cpu, chosen, same):
        m.use_engine(_scripted(qwen25_tokenizer))
    assert (cpu.dtype, cuda.dtype, chosen.dtype) == ("float32", "float16", "bfloat16")
    assert cpu.provenance()["dtype"] == "float32" and cpu.outcome_settings()["dtype"] == "float32"
    assert cpu.judgement_key("p") == same.judgement_key("p")
    assert cpu.judgement_key("p") != chosen.judgement_key("p")
    auto = rank1("fake/model", revision=FAKE_COMMIT, device=None, engine="transformers")  # decided with the device
    assert auto.engine_config.device == "auto" and auto.dtype == "float32"


def test_settings_off_the_defaults_are_mteb_experiment_kwargs():
    assert rank1("jhu-clsp/rank1-7b", device="cpu").experiment_kwargs() == {}
    assert rank1("jhu-clsp/rank1-7b", device="cuda", fp_options="float16").experiment_kwargs() == {}
    m = rank1(
        "jhu-clsp/rank1-7b",
        device="cpu",
        fp_options="bfloat16",
        engine="transformers",
        max_output_tokens=64,
        dataset_prompt=False,
        prompt_set="paper",
    )
    expected = {
        "max_output_tokens": 64,
        "dataset_prompt": False,
        "prompt_set": "paper",
        "fp_options": "bfloat16",
        "engine": "transformers",
    }
    assert m.experiment_kwargs() == expected
    # mteb's own cache then files these results apart from default-setting ones, as mteb.get_model(**kwargs) does
    assert dict(m.mteb_model_meta.experiment_kwargs) == expected
    assert (
        m.mteb_model_meta.experiment_name == "dataset_prompt_False__engine_transformers__fp_options_bfloat16__"
        "max_output_tokens_64__prompt_set_paper"
    )


def test_answer_rule_is_identity_and_reaches_the_engine_context(qwen25_tokenizer):
    """answer_rule='reference' is a rule setting: its own judgement keys, an mteb experiment, and an engine context
    one token longer (vLLM 0.7.2's length cap); the CLI flag and the keyword reach the same place."""
    from rank1_eval.cli import build_model, build_parser

    plain = rank1("jhu-clsp/rank1-7b", device="cpu", context_size=1000)
    ref = rank1("jhu-clsp/rank1-7b", device="cpu", context_size=1000, answer_rule="reference")
    keyed = [_model(qwen25_tokenizer, context_size=1000, answer_rule=rule) for rule in ("rank1", "reference")]
    assert keyed[0].judgement_key("p") != keyed[1].judgement_key("p")
    assert (plain.engine_config.context_size, ref.engine_config.context_size) == (1000, 1001)
    assert ref.experiment_kwargs() == {"context_size": 1000, "answer_rule": "reference"}
    assert ref.provenance()["sampling"]["answer_rule"] == "reference"
    assert "answer_rule" not in plain.provenance()["sampling"]
    args = build_parser().parse_args(["run", "--device", "cpu", "--answer-rule", "reference"])
    assert build_model(args).scoring.answer_rule == "reference"
    args = build_parser().parse_args(["reproduce", "bright", "--device", "cpu", "--answer-rule", "reference"])
    assert build_model(args).scoring.answer_rule == "reference"
    with pytest.raises(ValueError, match="answer_rule"):
        rank1("jhu-clsp/rank1-7b", answer_rule="paper")
