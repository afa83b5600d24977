"""The engine seam: the only two questions the rank1 rule asks of a language model.

An engine knows nothing about true/false semantics. It (1) completes prompts greedily with stop strings and
returns the text, token counts, finish/stop reason and the top-k logprobs of the last generated position, and
(2) gives the logprobs of exactly the given candidate tokens at the next position after each prompt, with
generation restricted to those candidates (the distribution *reflects the restriction*: it is renormalised
over the candidates). In-process engines (vLLM, Transformers) and a server engine fit the same Protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from rank1_eval.records import Completion


class EngineError(RuntimeError):
    """An engine that cannot be chosen or loaded; the message says what to do instead."""


@dataclass(frozen=True)
class EngineConfig:
    """Everything an engine needs to load a model; mirrors the public ``rank1`` constructor."""

    model: str
    revision: str | None = None
    num_gpus: int = 1
    device: str = "cuda"
    context_size: int = 16000
    dtype: str = "float16"
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = False
    max_num_seqs: int | None = None
    trust_remote_code: bool = False
    enable_prefix_caching: bool = True
    kv_cache_memory_bytes: int | None = None  # CPU: cap the KV cache (SPEC §7); None = engine default
    batch_size: int = 16  # transformers engine only: sequences per generate() call
    # server engine ("openai") and data parallel (vLLM servers launched by rank1_eval.servers)
    server_urls: tuple[str, ...] = ()  # base URLs of vLLM OpenAI-compatible servers, e.g. http://host:8000/v1
    api_key_env: str = "RANK1_API_KEY"  # environment variable holding the servers' API key (never logged)
    max_concurrency: int = 8  # requests in flight per server
    request_timeout: float | None = None  # seconds per request; None: scaled to the request's max_tokens
    stall_warning_s: float = 300.0  # warn when no request has finished for this long (servers)
    max_retries: int = 5  # failed backoff rounds before a server is dropped
    data_parallel: int = 1  # vLLM replicas (each num_gpus GPUs) started as local servers


@runtime_checkable
class Engine(Protocol):
    """A loaded model that can answer the rule's two questions."""

    kind: str  # registry name, e.g. "vllm"
    config: EngineConfig

    @property
    def tokenizer(self) -> Any:  # a transformers PreTrainedTokenizerBase
        """The model's tokenizer (for answer token ids, prompt lengths and passage truncation)."""
        ...

    def complete(
        self,
        prompts: Sequence[str],
        *,
        max_tokens: int,
        stop: Sequence[str],
        top_logprobs: int = 20,
    ) -> list[Completion]:
        """Greedy completion of each prompt, special tokens kept in the text, stopping on any stop string."""
        ...

    def forced_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[dict[int, float]]:
        """Logprobs of each candidate token at the next position, restricted to (renormalised over) candidates."""
        ...

    def info(self) -> dict[str, Any]:
        """Provenance: engine name and version, dtype, device, model id and revision."""
        ...

    def close(self) -> None:
        """Release the model (GPU memory, worker processes)."""
        ...
