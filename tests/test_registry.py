"""Registration with mteb whatever the import order, while ``import rank1_eval`` itself stays light.

Each order runs in a fresh interpreter (the order of the first imports is the point); the network is refused.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from rank1_eval import registry

ROOT = Path(__file__).resolve().parents[1]
NO_NETWORK = """
import socket
def _refuse(*a, **k):
    raise RuntimeError("network access attempted")
socket.socket.connect = _refuse
socket.create_connection = _refuse
"""


def _start(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


RANK1_EVAL_FIRST = """
    import sys
    import rank1_eval
    assert not {"mteb", "torch", "vllm", "transformers"} & set(sys.modules), "import rank1_eval is not light"
    model = rank1_eval.rank1("jhu-clsp/rank1-14b")  # its meta needs mteb: the first import of mteb
    from mteb.models.model_implementations import MODEL_REGISTRY
    assert MODEL_REGISTRY["jhu-clsp/rank1-14b"] is model.mteb_model_meta  # built once, not twice
    import mteb
    assert mteb.get_model_meta("jhu-clsp/rank1-7b").loader is rank1_eval.load_rank1
    got = mteb.get_model("jhu-clsp/rank1-7b")
    assert isinstance(got, rank1_eval.rank1) and got._engine is None
    got = mteb.get_model("jhu-clsp/rank1-llama3-8b-awq", device="cpu", engine="transformers")
    assert (got.model_name_or_path, got.engine_config.device) == ("jhu-clsp/rank1-llama3-8b-awq", "cpu")
    assert not [f for f in sys.meta_path if type(f).__name__ == "_RegisterAfterMtebImport"]  # one shot
    print("ok")
"""
MTEB_FIRST = """
    import mteb
    import rank1_eval
    model = mteb.get_model("jhu-clsp/rank1-32b")
    assert isinstance(model, rank1_eval.rank1)
    import sys
    assert not [f for f in sys.meta_path if type(f).__name__ == "_RegisterAfterMtebImport"]  # none needed
    print(model.model_name_or_path)
"""


@pytest.fixture(scope="module")
def import_orders() -> dict[str, subprocess.Popen[str]]:
    """Both orders start at once, each in its own fresh interpreter (importing mteb is most of their time)."""
    procs = {"rank1_eval first": _start(RANK1_EVAL_FIRST), "mteb first": _start(MTEB_FIRST)}
    yield procs
    for proc in procs.values():
        proc.kill()
        proc.communicate()


def _output(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_rank1_eval_first_then_a_model_imports_mteb(import_orders):
    """import rank1_eval (light), then a model's constructor imports ``mteb.models`` (a submodule first, the
    registration re-entering the meta cache): registered, with one meta object per checkpoint."""
    assert _output(import_orders["rank1_eval first"]).strip() == "ok"


def test_mteb_first_then_rank1_eval(import_orders):
    assert _output(import_orders["mteb first"]).strip() == "jhu-clsp/rank1-32b"


def test_a_failed_registration_is_said_not_swallowed(monkeypatch):
    """Inside someone else's ``import mteb`` a failure must not break their import, but it warns."""

    def broken(loader):
        raise KeyError("registry moved")

    monkeypatch.setattr(registry, "register", broken)
    with pytest.warns(RuntimeWarning, match="could not register its checkpoints with mteb.*registry moved"):
        registry._register_or_warn(lambda *a, **k: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        monkeypatch.setattr(registry, "register", lambda loader: None)
        registry._register_or_warn(lambda *a, **k: None)


def test_model_meta_as_mteb_users_expect():
    """Languages of the paper's evaluations, the base model's context, memory, AWQ adapted from its rank1 model."""
    import mteb

    import rank1_eval  # noqa: F401 -- registers

    langs = ["eng-Latn", "fas-Arab", "rus-Cyrl", "zho-Hans"]
    expected = {  # name: (max_tokens, adapted_from, memory_usage_mb) -- 16-bit weights: n_parameters * 2 / 2**20
        "jhu-clsp/rank1-0.5b": (32_768, "Qwen/Qwen2.5-0.5B", 942),
        "jhu-clsp/rank1-7b": (131_072, "Qwen/Qwen2.5-7B", 14_515),
        "jhu-clsp/rank1-32b": (131_072, "Qwen/Qwen2.5-32B", 61_989),
        "jhu-clsp/rank1-mistral-2501-24b": (32_768, "mistralai/Mistral-Small-24B-Base-2501", 45_013),
        "jhu-clsp/rank1-llama3-8b": (131_072, "meta-llama/Llama-3.1-8B", 15_316),
        # AWQ: (7.61e9 - 1.09e9 embedding/head) * (0.5 + 2.5/128) bytes + 1.09e9 * 2 bytes = 5,567,335,980 B
        "jhu-clsp/rank1-7b-awq": (131_072, "jhu-clsp/rank1-7b", 5_309),
        "jhu-clsp/rank1-mistral-2501-24b-awq": (32_768, "jhu-clsp/rank1-mistral-2501-24b", 13_588),
    }
    for name, (max_tokens, adapted, memory) in expected.items():
        meta = mteb.get_model_meta(name)
        assert (meta.max_tokens, meta.adapted_from, meta.memory_usage_mb) == (max_tokens, adapted, memory), name
        assert meta.languages == langs and meta.revision is None
    awq = [m for m in registry.all_checkpoints() if m.endswith("-awq")]
    assert len(awq) == 5 and all(mteb.get_model_meta(m).adapted_from == m.removesuffix("-awq") for m in awq)


def test_a_user_revision_is_accepted_and_recorded():
    import mteb
    from mteb.models.model_implementations import MODEL_REGISTRY

    import rank1_eval

    sha = "0123456789abcdef0123456789abcdef01234567"
    name = "jhu-clsp/rank1-7b"
    with pytest.raises(ValueError, match=f"Model revision {sha} not found"):  # mteb: one revision per registry entry
        mteb.get_model(name, revision=sha)
    try:
        rank1_eval.pin_revision(name, sha)
        model = mteb.get_model(name, revision=sha, device="cpu")
        assert model.revision == sha and model.engine_config.revision == sha
        assert model.mteb_model_meta.revision == sha and model.provenance()["revision"] == sha
        assert model.outcome_settings()["revision"] == sha  # part of the result folder's hash
        assert model.core.model_identity() == {"hub": name, "commit": sha}  # what the judgement keys hold
        with pytest.raises(rank1_eval.model.ModelIdentityError, match="not in the local Hub cache"):
            rank1_eval.rank1(name, device="cpu").core.model_identity()  # not cached, offline: said, not guessed
        assert mteb.get_model_meta(name).max_tokens == 131_072  # the facts stay
    finally:
        rank1_eval.pin_revision(name, None)
    assert MODEL_REGISTRY[name].revision is None
    direct = rank1_eval.rank1(name, revision="v1.0", device="cpu")  # the class itself takes any revision
    assert direct.mteb_model_meta.revision == "v1.0" and direct.mteb_model_meta.languages[0] == "eng-Latn"
