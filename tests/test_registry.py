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


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", NO_NETWORK + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_rank1_eval_first_then_a_model_imports_mteb():
    """import rank1_eval (light), then a model's constructor imports ``mteb.models`` (a submodule first, the
    registration re-entering the meta cache): registered, with one meta object per checkpoint."""
    out = _python("""
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
    """)
    assert out.strip() == "ok"


def test_mteb_first_then_rank1_eval():
    out = _python("""
        import mteb
        import rank1_eval
        model = mteb.get_model("jhu-clsp/rank1-32b")
        assert isinstance(model, rank1_eval.rank1)
        import sys
        assert not [f for f in sys.meta_path if type(f).__name__ == "_RegisterAfterMtebImport"]  # none needed
        print(model.model_name_or_path)
    """)
    assert out.strip() == "jhu-clsp/rank1-32b"


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
