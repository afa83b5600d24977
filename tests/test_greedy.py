"""Greedy means greedy on every engine (docs/rule.md §12): no checkpoint default and no text clean-up ever reach a
request.

A copy of the micro rank1 whose ``generation_config.json`` asks for sampling and a strong repetition penalty must
give exactly the plain checkpoint's reasoning and scores on both real engines; a copy whose tokenizer enables
``clean_up_tokenization_spaces`` must give the text vLLM's detokenizer gives (the token bytes, nothing rewritten).
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from conftest import MICRO_RANK1, ROOT, _need_micro, demo_pairs, one_torch_thread

from rank1_eval.records import decode_ids
from rank1_eval.scoring import Scorer, ScoringConfig

HOSTILE = {  # everything transformers (and vLLM's "auto") would take from the file when a caller leaves it unset
    "do_sample": True,
    "temperature": 0.7,
    "top_k": 5,
    "top_p": 0.8,
    "repetition_penalty": 3.0,
}
CLEANUP = {  # transformers 5.x ignores the first for BPE tokenizers unless the second forces it (as 4.x did)
    "clean_up_tokenization_spaces": True,
    "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output": True,
}
FULL = ScoringConfig(max_output_tokens=64, context_size=1024)


def _copy(dst: Path, file: str, changes: dict) -> Path:
    _need_micro()
    shutil.copytree(MICRO_RANK1, dst)
    path = dst / file
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))
    return dst


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory) -> Path:
    """The micro rank1 with a generation_config.json that samples and penalises repetition (eos/pad kept)."""
    return _copy(tmp_path_factory.mktemp("hostile") / "micro-rank1", "generation_config.json", HOSTILE)


@pytest.fixture(scope="module")
def cleanup_model(tmp_path_factory) -> Path:
    """The micro rank1 with a tokenizer that rewrites " ." to "." when decoding (unless told not to)."""
    return _copy(tmp_path_factory.mktemp("cleanup") / "micro-rank1", "tokenizer_config.json", CLEANUP)


def _load(kind: str, model: Path):
    from rank1_eval.engines import EngineConfig, load_engine

    extra = {"enforce_eager": True, "kv_cache_memory_bytes": 256 * 2**20} if kind == "vllm" else {}
    return load_engine(kind, EngineConfig(str(model), device="cpu", dtype="float32", context_size=1024, **extra))


def _score(engine, pairs):
    scorer = Scorer(engine, FULL)
    return scorer.score(scorer.prepare([q for q, _ in pairs], [d for _, d in pairs]))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformers", "vllm"])
def test_checkpoint_generation_config_never_applies(kind, hostile_model, request):
    if kind == "vllm":
        pytest.importorskip("vllm")
    plain = request.getfixturevalue("hf_engine" if kind == "transformers" else "vllm_engine")
    pairs = demo_pairs(4, 20)  # the Transformers engine used to change 10 of these 80 texts
    hostile = _load(kind, hostile_model)
    try:
        with one_torch_thread():
            a, b = _score(plain, pairs), _score(hostile, pairs)
    finally:
        hostile.close()
    differ = sum(x.reasoning != y.reasoning for x, y in zip(a, b, strict=True))
    assert differ == 0, f"{kind}: {differ} of {len(pairs)} reasoning texts differ under the checkpoint's file"
    assert [x.path for x in a] == [y.path for y in b]
    assert [x.output_tokens for x in a] == [y.output_tokens for y in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) <= 1e-6
    # not vacuous: the plain run repeats itself, which a repetition penalty of 3 would not allow unchanged
    assert any(len(set(j.reasoning.split())) < len(j.reasoning.split()) for j in a)
    print(f"\n{kind}: {len(pairs)}/{len(pairs)} reasoning texts identical with the hostile generation_config.json")


@pytest.mark.slow
def test_transformers_engine_keeps_only_the_checkpoints_eos(hostile_model):
    engine = _load("transformers", hostile_model)
    try:
        cfg = engine.model.generation_config
        assert (cfg.do_sample, cfg.temperature, cfg.top_k, cfg.top_p, cfg.repetition_penalty) == (
            False,
            1.0,
            50,
            1.0,
            1.0,
        )
        assert cfg.eos_token_id == [0] and cfg.pad_token_id == 0
    finally:
        engine.close()


def test_decode_ids_never_cleans_up(cleanup_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(cleanup_model)
    text = " The query is a question . The passage is short , it 's fine ?\n</think>"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) != text  # the copy does clean up by default (else this test proves nothing)
    assert decode_ids(tok, ids) == text


@pytest.mark.slow
def test_transformers_engine_text_is_the_token_bytes(cleanup_model):
    """The engine's completion text for ids whose clean-up would differ: the stop string found, nothing rewritten."""
    import torch

    engine = _load("transformers", cleanup_model)
    try:
        tok = engine.tokenizer
        reasoning = " The query is a question . The passage is short , it 's fine ?\n"
        ids = tok(reasoning + "</think> true", add_special_tokens=False).input_ids
        n = len(ids)
        values, indices = torch.zeros(n, 2), torch.tensor([[ids[-1], 1]] * n)
        stop = ("</think> true", "</think> false")
        done = engine._completion(ids, values, indices, stop, 64, 10)
        assert (done.text, done.finish_reason, done.stop_reason) == (reasoning, "stop", "</think> true")
        assert done.token_ids == tuple(ids)
        cut = engine._completion(ids[:6], values, indices, stop, 6, 10)  # budget-cut: the first 6 tokens' bytes
        assert cut.finish_reason == "length" and reasoning.startswith(cut.text) and " ." in cut.text
    finally:
        engine.close()


def _token_decodes(tree: ast.AST) -> list[ast.Call]:
    """``x.decode(ids, ...)`` calls: a first argument that is not a string literal (``bytes.decode("utf-8")``)."""

    def is_token_decode(node: ast.AST) -> bool:
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "decode"):
            return False
        return bool(node.args) and not (isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))

    return [node for node in ast.walk(tree) if is_token_decode(node)]


def test_every_decode_of_token_ids_passes_no_cleanup():
    offenders = []
    for folder in ("rank1_eval", "scripts", "benchmarks", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == Path(__file__).resolve():
                continue  # this file decodes with clean-up on purpose, to show the copy's tokenizer does it
            for call in _token_decodes(ast.parse(path.read_text(), str(path))):
                kw = {k.arg: k.value for k in call.keywords}
                value = kw.get("clean_up_tokenization_spaces")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    offenders.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert offenders == [], "token decodes without clean_up_tokenization_spaces=False: " + ", ".join(offenders)
    sample = ast.parse("tok.decode(ids)\nraw.decode('utf-8')\nb.decode()")
    assert len(_token_decodes(sample)) == 1  # the scan sees a token decode and skips bytes


@pytest.mark.slow
def test_server_ignores_the_checkpoints_generation_config(hostile_model, vllm_engine, monkeypatch):
    """A real vLLM-CPU server on the hostile copy (started as rank1_eval starts servers: ``--generation-config
    vllm``, neutral values in every request) gives the in-process engine's reasoning on the plain checkpoint."""
    import os

    from rank1_eval import rank1, servers
    from rank1_eval.engines import EngineConfig

    pytest.importorskip("vllm")
    cfg = EngineConfig(str(hostile_model), device="cpu", dtype="float32", context_size=1024, enforce_eager=True)
    monkeypatch.setenv("RANK1_API_KEY", "greedy-test")
    group = servers.launch_servers(
        cfg, 1, on_cpu=True, api_key="greedy-test", cores=sorted(os.sched_getaffinity(0))[:1]
    )
    try:
        model = rank1(
            str(hostile_model),
            device="cpu",
            fp_options="float32",
            context_size=1024,
            engine="openai",
            server_urls=list(group.urls),
            max_output_tokens=64,
        )
        pairs = demo_pairs(3, 8)
        served = model.judge(pairs)
    finally:
        group.shutdown()
    plain = _score(vllm_engine, pairs)
    differ = sum(x.reasoning != y.reasoning for x, y in zip(plain, served, strict=True))
    assert differ == 0, f"server: {differ} of {len(pairs)} reasoning texts differ under the checkpoint's file"
    assert max(abs(x.score - y.score) for x, y in zip(plain, served, strict=True)) <= 1e-5
