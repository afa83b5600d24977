"""The engine seam: requests stream in, completions stream out, in any order.

An engine knows nothing about true/false semantics. Its unit of work is a :class:`Request`: one greedy
generation of a prompt with its *own* budget (``max_tokens``), stop strings, and top-k logprobs of the last
generated position (``top_logprobs=0``: none at all, the generated token ids only); ``continuation`` appends
token ids to the tokenized prompt (a read of the position after tokens generated earlier, served by the prefix
cache); with ``allowed_token_ids`` the next token is restricted to those ids and the returned
logprobs are renormalised over them (the forced answer). ``submit`` hands requests over, ``collect`` advances
the engine and returns the ones that finished, whatever their order, so a caller (``rank1_eval.scheduler``)
can keep the engine's batch full and chain a pair's next request on its last one.

How each backend schedules: vLLM in-process keeps its own continuous batch (``LLMEngine.add_request``/``step``),
the server engine keeps a bounded window of requests in flight per server, and Transformers runs static
batches (``generate`` over ``batch_size`` prompts of similar length; a batch finishes together).

``complete`` and ``forced_logprobs`` are the batch form of the same two questions (submit all, collect all, in
input order) for callers that want one synchronous call; :class:`BatchCalls` provides them to every engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from rank1_eval.records import Completion

DEFAULT_API_KEY_ENV = "RANK1_API_KEY"  # unset = no key; any other name that is unset is an error
DEFAULT_MAX_CONCURRENCY = 256  # per server: vLLM's default max_num_seqs on a GPU, so a user's server runs full


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
    kv_cache_memory_bytes: int | None = None  # CPU: cap the KV cache (docs/rule.md §10); None = engine default
    batch_size: int = 16  # transformers engine only: sequences per generate() call
    # server engine ("openai") and data parallel (vLLM servers launched by rank1_eval.servers)
    server_urls: tuple[str, ...] = ()  # base URLs of vLLM OpenAI-compatible servers, e.g. http://host:8000/v1
    api_key_env: str = DEFAULT_API_KEY_ENV  # environment variable holding the servers' API key (never logged)
    # requests in flight per server: the ceiling of the window sized from the server's /metrics (or the fixed window
    # of a server without /metrics); None = DEFAULT_MAX_CONCURRENCY, sized for a GPU server (vLLM's max_num_seqs)
    max_concurrency: int | None = None
    request_timeout: float | None = None  # seconds per request; None: scaled to the request's max_tokens
    stall_warning_s: float | None = None  # warn when no request has finished for this long; None: scaled (servers)
    max_retries: int = 5  # failed backoff rounds before a server is dropped
    data_parallel: int = 1  # vLLM replicas (each num_gpus GPUs) started as local servers
    load_stats: bool = False  # sample running/waiting sequences from the engine (vLLM: turns its stats on)
    ngram_speculation: int = 0  # vLLM prompt-lookup (n-gram) speculative tokens per step; 0 = off
    quiet: bool = False  # no progress bars of the engine's own while it loads (the CLI shows its status line)


@dataclass(frozen=True)
class Request:
    """One greedy generation: the engine's unit of work. It carries its own budget (per-pair lengths)."""

    prompt: str
    max_tokens: int
    stop: tuple[str, ...] = ()
    top_logprobs: int = 20  # 0: no logprobs (the engine returns the generated token ids only)
    allowed_token_ids: tuple[int, ...] | None = None  # restrict the next token(s); logprobs renormalised over them
    continuation: tuple[int, ...] = ()  # token ids after the tokenized prompt (exact: never re-tokenized from text)
    id: int = 0  # set by whoever submits it; unique among the requests in flight
    priority: int = 0  # lower runs first among waiting requests (a pair's follow-up before new pairs)

    @property
    def forced(self) -> bool:
        return self.allowed_token_ids is not None


@dataclass(frozen=True)
class EngineLoad:
    """What the engine is doing now, for occupancy figures: sequences running, waiting, and its capacity."""

    running: int
    waiting: int
    capacity: int


@runtime_checkable
class Engine(Protocol):
    """A loaded model that runs streamed generation requests (and their batch form)."""

    kind: str  # registry name, e.g. "vllm"
    config: EngineConfig

    @property
    def tokenizer(self) -> Any:  # a transformers PreTrainedTokenizerBase
        """The model's tokenizer (for answer token ids, prompt lengths and passage truncation)."""
        ...

    @property
    def window(self) -> int:
        """How many unfinished requests a caller should keep submitted so the engine never runs dry."""
        ...

    def submit(self, requests: Sequence[Request]) -> None:
        """Queue requests (ids unique among those in flight); returns at once."""
        ...

    def collect(self) -> list[tuple[int, Completion]]:
        """Advance the engine until at least one request finished; ``(id, completion)`` of those, any order.

        Returns ``[]`` only when nothing is in flight. Raises on an engine failure (the caller then cancels)."""
        ...

    def cancel(self) -> None:
        """Drop every request in flight (after an error), so the engine can be used again."""
        ...

    def load(self) -> EngineLoad | None:
        """Running/waiting sequences now, or None when the engine does not report them."""
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


def run_requests(engine: Engine, requests: Sequence[Request]) -> list[Completion]:
    """Submit ``requests`` at once and wait for all of them: completions in input order (the batch form)."""
    if not requests:
        return []
    numbered = [replace(r, id=i) for i, r in enumerate(requests)]
    results: list[Completion | None] = [None] * len(numbered)
    engine.submit(numbered)
    try:
        remaining = len(numbered)
        while remaining:
            done = engine.collect()
            if not done:
                raise RuntimeError(f"engine {engine.kind} lost {remaining} request(s) in flight")
            for rid, completion in done:
                results[rid] = completion
                remaining -= 1
    except BaseException:
        engine.cancel()
        raise
    return [r for r in results if r is not None]


class BatchCalls:
    """``complete`` and ``forced_logprobs`` for any streaming engine: one batch of requests, results in order."""

    def complete(
        self, prompts: Sequence[str], *, max_tokens: int, stop: Sequence[str], top_logprobs: int = 20
    ) -> list[Completion]:
        """Greedy completion of each prompt, special tokens kept in the text, stopping on any stop string."""
        reqs = [Request(p, max_tokens, tuple(stop), top_logprobs) for p in prompts]
        return run_requests(self, reqs)  # type: ignore[arg-type]

    def forced_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[dict[int, float]]:
        """Logprobs of each candidate token at the next position, restricted to (renormalised over) candidates."""
        cands = tuple(int(c) for c in candidates)
        reqs = [Request(p, 1, (), len(cands), cands) for p in prompts]
        wanted = set(cands)
        return [
            {t: lp for t, lp in c.last_logprobs.items() if t in wanted}
            for c in run_requests(self, reqs)  # type: ignore[arg-type]
        ]


class OccupancyMeter:
    """Time-weighted running/waiting sequences, fed by the engine at every scheduler step.

    Occupancy = running sequences / capacity (vLLM's ``max_num_seqs``), averaged over time since ``reset``
    (``mean_occupancy``) and over scheduler steps (``step_occupancy``): the share of the engine's batch slots
    that did work, the figure that carries over from CPU to GPU.
    """

    def __init__(self, capacity: int, *, source: str | None = None) -> None:
        import threading

        self.capacity = max(1, capacity)
        self.source = source  # where the counts come from, when not the engine's own scheduler (servers: /metrics)
        self.capacity_source: str | None = None
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        import time

        with self._lock:
            self._start = self._last = time.perf_counter()
            self._running = self._waiting = 0
            self._area_running = self._area_waiting = 0.0
            self._sum_running = 0
            self._backlog = False  # the caller still had requests queued that the engine had not taken yet
            self._area_backlog_running = self._backlog_s = 0.0
            self.max_running = 0
            self.steps = 0
            self.spec = {"drafts": 0, "draft_tokens": 0, "accepted_tokens": 0}

    def record(self, running: int, waiting: int, backlog: bool | None = None) -> None:
        """One sample; ``backlog``: work remained that had not reached the engine (occupancy "while work remains")."""
        import time

        with self._lock:
            now = time.perf_counter()
            self._advance(now)
            self._running, self._waiting = running, waiting
            if backlog is not None:
                self._backlog = backlog
            self.max_running = max(self.max_running, running)
            self._sum_running += running
            self.steps += 1

    def _advance(self, now: float) -> None:
        dt = now - self._last
        self._area_running += self._running * dt
        self._area_waiting += self._waiting * dt
        if self._backlog:
            self._area_backlog_running += self._running * dt
            self._backlog_s += dt
        self._last = now

    def summary(self) -> dict[str, Any]:
        import time

        with self._lock:
            self._advance(time.perf_counter())
            seconds = self._last - self._start
            mean_running = self._area_running / seconds if seconds > 0 else 0.0
            spec = dict(self.spec)
            drafted = spec["draft_tokens"]
            return {
                "capacity": self.capacity,
                "seconds": round(seconds, 3),
                "steps": self.steps,
                "mean_running": round(mean_running, 3),
                "mean_waiting": round(self._area_waiting / seconds, 3) if seconds > 0 else 0.0,
                "max_running": self.max_running,
                "mean_occupancy": round(mean_running / self.capacity, 4),
                # per scheduler step rather than per second: the same batching figure, insensitive to how long
                # each step took (a shared CPU's load changes step times, a GPU's decode steps are near-constant)
                "step_occupancy": round(self._sum_running / self.steps / self.capacity, 4) if self.steps else 0.0,
                **(
                    {"spec_decode": {**spec, "acceptance_rate": round(spec["accepted_tokens"] / drafted, 4)}}
                    if drafted
                    else {}
                ),
                # while work remained queued on the caller's side (the tail excluded): is the engine kept full?
                **(
                    {
                        "backlog_seconds": round(self._backlog_s, 3),
                        "backlog_mean_running": round(self._area_backlog_running / self._backlog_s, 3),
                        "backlog_occupancy": round(self._area_backlog_running / self._backlog_s / self.capacity, 4),
                    }
                    if self._backlog_s > 0
                    else {}
                ),
                **({"source": self.source} if self.source else {}),
                **({"capacity_source": self.capacity_source} if self.capacity_source else {}),
            }
