"""One settings model: every setting has one flag, one keyword argument and declared roles; the judgement key is
the exact request plus the rule version, the model's identity and the numerics (nothing else, nothing less)."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import FIXTURES, MICRO_RANK1, demo_pairs

from rank1_eval import scoring
from rank1_eval import settings as S
from rank1_eval.judge import ModelIdentityError, hub_commit
from rank1_eval.model import rank1
from rank1_eval.records import Judgement
from rank1_eval.scoring import PreparedPrompt, ScoringConfig, ScoringError
from rank1_eval.store import MemoryStore

# ---------------------------------------------------------------------------------------------------- one model

# A non-default value for each setting whose role is checked by behaviour below (choices and flags are derived).
SAMPLES = {
    "model_name_or_path": "other/model",
    "revision": "a" * 40,
    "device": "cuda",
    "fp_options": "bfloat16",
    "engine": "vllm",
    "context_size": 2048,
    "max_output_tokens": 32,
    "failed_score": 0.0,
    "dataset_prompt": False,
    "prompt_file": None,  # needs a file: its role is checked by the folder-hash test of prompt_set_sha256
    "prompt_key": "SciFact",
    "server_urls": ("http://localhost:1/v1",),
    "stall_warning_s": 5.0,
    "request_timeout": 9.0,
    "gpu_memory_utilization": 0.5,
    "api_key_env": "OTHER_KEY",
    "data_parallel": 2,
}


def _sample(name: str):
    if name in SAMPLES:
        return SAMPLES[name]
    role, value = S.role(name), S.default(name)
    if role.choices:
        return next(c for c in role.choices if c != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value is None and role.kind.startswith("int"):
        return 7
    raise AssertionError(f"setting {name}: add a non-default sample value to SAMPLES")


def _parser_options() -> dict[str, tuple[str, str]]:
    """option string -> (dest, group title) of the real `rank1-eval run` parser."""
    from rank1_eval.cli import build_parser

    parser = build_parser()
    run = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "run")[1]
    out = {}
    for group in run._action_groups:
        for action in group._group_actions:
            for opt in action.option_strings:
                out[opt] = (action.dest, group.title)
    return out


def test_every_setting_has_a_flag_a_keyword_and_roles():
    from rank1_eval.cli import MODEL_GROUPS

    options = _parser_options()
    flags = {S.role(n).flag: n for n in S.names()}
    for name in S.names():
        role = S.role(name)
        assert role.flag in options, f"setting {name}: no {role.flag} in `rank1-eval run`"
        assert options[role.flag][0] == S.cli_dest(name), f"setting {name}: {role.flag} lands elsewhere"
        assert role.group in S.GROUPS and (role.key in S.KEY_ROLES or role.key.startswith("no: ")), name
    # nothing in the model flags that is not a setting
    in_model_groups = {o for o, (_, title) in options.items() if title in MODEL_GROUPS.values() and o.startswith("--")}
    assert in_model_groups == set(flags), f"model flags outside the settings: {in_model_groups - set(flags)}"
    # rank1's own parameters: the settings (the seed's positional ones among them) and the declared non-settings
    params = inspect.signature(rank1.__init__).parameters
    explicit = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD and n != "self"}
    assert explicit <= set(S.names()) | set(S.NOT_SETTINGS), explicit - set(S.names()) - set(S.NOT_SETTINGS)
    assert list(params)[1:11] == [
        "model_name_or_path",
        "num_gpus",
        "device",
        "context_size",
        "max_output_tokens",
        "fp_options",
        "engine",
        "dataset_prompt",
        "prompt_set",
        "prompt_file",
    ]  # the seed's
    with pytest.raises(TypeError, match="unknown argument"):
        rank1("jhu-clsp/rank1-7b", temprature=0.5)


def test_every_rule_field_is_a_setting_and_every_engine_field_is_filled():
    from rank1_eval.engines.base import EngineConfig

    internal = {"top_logprobs"}  # part of the request, fixed by the rule (both answer tokens in the top 20)
    missing = {f.name for f in dataclasses.fields(ScoringConfig)} - set(S.names()) - internal
    assert not missing, f"ScoringConfig fields that are no setting (add one line to rank1_eval/settings.py): {missing}"
    for f in dataclasses.fields(ScoringConfig):
        if f.name not in internal:
            assert S.role(f.name).group == "rule", f.name
    for f in dataclasses.fields(EngineConfig):
        target = S.ENGINE_RENAMES.get(f.name, f.name)
        assert f.name in S.ENGINE_INTERNAL or target in S.names(), f"EngineConfig.{f.name}: filled by no setting"


def _model(**kw):
    base = dict(
        model_name_or_path=str(MICRO_RANK1),
        device="cpu",
        engine="transformers",
        context_size=1024,
        max_output_tokens=64,
    )
    return rank1(**{**base, **kw})


def _prepared(m) -> list[PreparedPrompt]:
    pairs = demo_pairs(1, 3)
    return m.prepare(m.final_queries([q for q, _ in pairs], [None] * 3, None, None), [d for _, d in pairs])


@pytest.mark.parametrize("name", S.names())
def test_each_role_is_what_the_setting_does(name, micro_tokenizer):
    """Changed alone, a setting changes the key iff its role says so, the folder hash iff it is hashed, and
    mteb's experiment kwargs iff it is an experiment setting; it is always in the provenance."""
    value = _sample(name)
    if value is None:
        pytest.skip(f"{name}: checked elsewhere")
    base = _model()
    kw = {name: value}
    if name == "data_parallel":
        kw["engine"] = "vllm"
        base = _model(engine="vllm")
    if name == "server_urls":
        kw["engine"] = "openai"
    try:
        other = _model(**kw)
    except ImportError as exc:  # pragma: no cover -- an engine not installed
        pytest.skip(str(exc))
    role = S.role(name)
    assert other.provenance()["settings"][name] == (list(value) if isinstance(value, tuple) else value)
    if role.hash is not None:
        assert other.outcome_settings() != base.outcome_settings(), f"{name}: not in the folder hash"
    elif name not in ("device", "num_gpus", "server_urls"):
        assert other.outcome_settings() == base.outcome_settings(), f"{name}: operational, yet in the folder hash"
    if role.experiment:
        assert other.experiment_kwargs() != base.experiment_kwargs(), f"{name}: not an experiment kwarg"
    if name in ("model_name_or_path", "revision", "server_urls"):
        return  # the model's identity and servers: see the identity tests
    a = [base.core.key(p) for p in _prepared(base)]
    b = [other.core.key(p) for p in _prepared(other)]
    if role.key in ("value", "numerics"):
        assert a != b, f"{name}: role {role.key!r}, yet the key does not change"
    elif role.key.startswith("no: "):
        assert a == b, f"{name}: declared not to change a judgement, yet the key changes"
    # "request" settings change the key only through the prompt or budget they make: see the rerun tests


# ---------------------------------------------------------------------------------------------------- rule version

RULE_PINS = {  # RULE_VERSION -> digests of rank1_eval/scoring.py's code (docstrings and formatting ignored)
    2: {"c4e93b3291291c7607feebe9ce8ec2119321239c17173c2dbf356bc297b16c20"},
    3: {
        "c03e5ba8a9d7d2d1206c9121d72f22fb34c7620b52f55468c5807dc221ca1add",  # + answer_rule, greedy engines
        "2d7fe275bb41f5e7b0f36e2d425c4709a51ea6fc56582594f363148ed93c65ce",
    },  # + answer_logprobs (off by default)
}


def _code_digest(path: Path) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # drop docstrings: documentation is not the rule
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()


def test_rule_version_is_pinned_to_the_rule_code():
    digest = _code_digest(Path(scoring.__file__))
    assert digest in RULE_PINS.get(scoring.RULE_VERSION, set()), (
        f"rank1_eval/scoring.py's code changed (digest {digest}): if any judgement of the same request can change, "
        f"bump RULE_VERSION and update the pin (RULE_PINS in tests/test_settings.py, and the golden set); if none "
        f"can (a refactor, an option off by default), add the digest to the pins of version {scoring.RULE_VERSION}"
    )


GOLDEN = FIXTURES / "golden-micro-rank1.json"


def _golden_run(hf_engine) -> list[dict]:
    out = []
    for budget in (64, 8):  # pass 1 answers at 64; at 8 every pair goes through the forced answer
        m = _model(max_output_tokens=budget, fp_options="float32", dataset_prompt=False)
        m.use_engine(hf_engine)
        for j in m.judge(demo_pairs(2, 3)):
            out.append(
                {
                    "budget": budget,
                    "path": j.path,
                    "score": j.score,
                    "reasoning": j.reasoning,
                    "forced_reasoning": j.forced_reasoning,
                }
            )
    return out


def test_golden_judgements_of_the_micro_rank1(hf_engine):
    """The rule and the Transformers engine's decoding, end to end: a change here needs a new RULE_VERSION."""
    got = _golden_run(hf_engine)
    if os.environ.get("RANK1_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"rule_version": scoring.RULE_VERSION, "judgements": got}, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    message = "the golden judgements changed: bump RULE_VERSION and update the pin (RANK1_WRITE_GOLDEN=1 rewrites)"
    assert want["rule_version"] == scoring.RULE_VERSION, message
    assert [(g["path"], g["reasoning"], g["forced_reasoning"]) for g in got] == [
        (w["path"], w["reasoning"], w["forced_reasoning"]) for w in want["judgements"]
    ], message
    assert all(abs(g["score"] - w["score"]) <= 1e-6 for g, w in zip(got, want["judgements"], strict=True)), message
    assert {g["path"] for g in got} == {"pass1", "pass2"}


# ---------------------------------------------------------------------------------------------------- the key


def _keys(m) -> list[str]:
    return [m.core.key(p) for p in _prepared(m)]


def test_reruns_that_change_no_request_are_store_hits(micro_tokenizer):
    """--context-size x2 with the budget unchanged, another --failed-score, the other length rule (same prompts),
    the same weights in another folder: the same keys. Not: dtype, force_rethink, tensor parallel size."""
    base = _keys(_model())
    assert _keys(_model(context_size=2048)) == base
    assert _keys(_model(failed_score=0.0)) == _keys(_model(failed_score="raise")) == base
    assert _keys(_model(length_rule="reserve_output")) == base
    assert _keys(_model(scheduling="chunked", batch_size=2, keep_token_ids=True)) == base
    for changed in (
        dict(fp_options="bfloat16"),
        dict(force_rethink=1),
        dict(max_output_tokens=32),
        dict(num_gpus=2),
        dict(device="cuda"),
    ):
        assert not set(_keys(_model(**changed))) & set(base), changed


def test_data_parallel_replicas_share_the_numerics(micro_tokenizer):
    one = _model(engine="vllm")
    four = _model(engine="vllm", data_parallel=4)
    assert _keys(one) == _keys(four)
    assert _keys(_model(engine="vllm", num_gpus=2)) != _keys(one)


def test_a_new_rule_version_changes_every_key(micro_tokenizer, monkeypatch):
    base = _keys(_model())
    monkeypatch.setattr("rank1_eval.judge.RULE_VERSION", scoring.RULE_VERSION + 1)
    assert not set(_keys(_model())) & set(base)


def test_weights_identity_follows_the_bytes(tmp_path, micro_tokenizer):
    copy = tmp_path / "copy"
    shutil.copytree(MICRO_RANK1, copy)
    base = _keys(_model())
    assert _keys(rank1(str(copy), device="cpu", engine="transformers", context_size=1024, max_output_tokens=64)) == base
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 1  # one bit in the middle of the tensors
    weights.write_bytes(bytes(data))
    edited = rank1(str(copy), device="cpu", engine="transformers", context_size=1024, max_output_tokens=64)
    assert not set(_keys(edited)) & set(base)


def test_context_enters_the_key_only_when_pass_2_may_not_fit(micro_tokenizer):
    m = _model(context_size=1024, max_output_tokens=64)
    rule = m.core.rule
    short = _prepared(m)[0]
    near = PreparedPrompt(short.prompt + " x", 1024 - 64, False)  # prompt + budget leave no room for pass 2
    assert rule.request_identity(short)["pass2_context"] is None
    assert rule.request_identity(near)["pass2_context"] == 1024
    wider = _model(context_size=2048, max_output_tokens=64)
    assert wider.core.key(short) == m.core.key(short) and wider.core.key(near) != m.core.key(near)


def test_a_stored_failure_takes_the_runs_failed_score(micro_tokenizer):
    store = MemoryStore()
    m = _model(failed_score=0.5, store=store)
    prepared = _prepared(m)[:1]
    failed = Judgement(
        score=0.5,
        reasoning="r",
        path="failed",
        prompt_tokens=5,
        output_tokens=1,
        finish_reason="length",
        error="no answer",
    )
    store.put_many([(m.core.key(prepared[0]), failed)])
    assert [j.score for j in _model(failed_score=0.0, store=store).judge_prompts(prepared)] == [0.0]
    assert [j.score for j in m.judge_prompts(prepared)] == [0.5]
    with pytest.raises(ScoringError, match="stored pair failed"):
        _model(failed_score="raise", store=store).judge_prompts(prepared)


def test_hub_identity_is_the_resolved_commit(tmp_path, monkeypatch):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert hub_commit("org/model", sha) == sha
    snap = tmp_path / "models--org--model" / "snapshots" / sha
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text(sha)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_commit("org/model", None) == sha  # no revision: what the cache's main points to
    with pytest.raises(ModelIdentityError, match=r"cannot identify model org/absent: .*--revision") as info:
        hub_commit("org/absent", None)
    assert "\n" not in str(info.value)
