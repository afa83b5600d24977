"""Server backend: vLLM's OpenAI-compatible ``/v1/completions`` on one or several base URLs.

Same rule semantics as the in-process engines (greedy, stop strings, special tokens kept, top-k logprobs keyed
by token id, forced answer through ``allowed_token_ids``), so a server is just another place the same vLLM
runs. Design choices worth knowing:

* **Streaming, one prompt per request**: requests are submitted one by one and finish out of order. A
  dispatcher thread keeps a window of requests in flight per server, pulled from one shared queue (by
  ``Request.priority``: a pair's follow-up first): a fast server takes more work, and a prompt is only ever in
  flight at one server at a time. ``request_timeout(request)`` is the per-request timeout (a hook to override).
* **Servers kept full**: the window is sized from the server itself. A vLLM server's Prometheus ``/metrics``
  (``vllm:num_requests_running``, ``vllm:num_requests_waiting``) is read every ``METRICS_POLL_S``; the window
  starts at ``START_WINDOW`` and doubles while the server's waiting queue is (nearly) empty and work remains,
  and gives back what only deepens the queue, so the server runs its ``max_num_seqs`` sequences with a few
  waiting to refill a freed slot at once. The ceiling (``max_concurrency``, default ``DEFAULT_MAX_CONCURRENCY``
  = 256, vLLM's ``max_num_seqs`` on a GPU) bounds what one server holds: the prompts it queues and the answers
  (with their logprobs) it sends back at once. A server without ``/metrics`` gets the ceiling as a fixed window.
  The same samples feed ``meter`` (running/waiting sequences over time: ``engine_occupancy`` in summary.json).
* **A silent server is visible at once**: while no request has come back, a warning names each server with
  the time waited, requests sent and retries (after ``FIRST_ANSWER_NOTICE_S`` or an explicit
  ``stall_warning_s`` if shorter, then at growing intervals);
  once answers come, a stall warning fires when none has come for ``STALL_FACTOR`` times the slowest request
  so far (at least ``STALL_MIN_S``; ``stall_warning_s`` overrides); the first timeout of a server names it and
  the setting to change.
* **Failures**: connection errors, timeouts, 5xx and 429 are retried with exponential backoff; the failed
  prompt goes straight back to the queue, so healthy servers pick it up while the failing one waits. A server
  that fails ``max_retries + 1`` backoff rounds in a row is dropped with a warning; when every server is
  dropped the call stops with an :class:`EngineError` naming each URL and its last error. Other 4xx answers
  (bad request, wrong key) are configuration errors and stop at once.
* **Before anything is scored** every URL is asked for ``/v1/models``: unreachable, refusing the API key,
  serving another model, a ``max_model_len`` below ``context_size``, or logprobs not in
  ``processed_logprobs`` mode (checked with a one-token probe) each fail with a message naming the URL.
* **Neutral sampling** is sent explicitly (penalties off, top-p 1, top-k off): vLLM's server otherwise applies
  the checkpoint's ``generation_config.json`` defaults (e.g. a repetition penalty), which the in-process
  engine never does.
* The **API key** comes from an environment variable (``api_key_env``, default ``RANK1_API_KEY``) and is sent
  as a Bearer token; it never appears in logs, errors, ``info()`` or any output. The default variable unset
  means "no key" (said once at INFO); any other variable named and unset is an error before anything is sent.

The server must run with ``--logprobs-mode processed_logprobs`` (``scripts/serve.sh`` does): vLLM >= 0.8
otherwise returns the logprobs from *before* ``allowed_token_ids`` and the forced answer is wrong (docs/rule.md §5).
The tokenizer is loaded locally from the model id/path (answer token ids, prompt lengths, truncation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rank1_eval.engines.base import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_MAX_CONCURRENCY,
    BatchCalls,
    EngineConfig,
    EngineError,
    EngineLoad,
    OccupancyMeter,
    Request,
)
from rank1_eval.records import Completion

log = logging.getLogger(__name__)

TOKEN_ID_PREFIX = "token_id:"
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
CHECK_TIMEOUT_S = 10.0  # connecting, and /v1/models: an unreachable URL fails within seconds
# The logprobs probe is one completion request: on a loaded server it queues behind the requests in flight, so
# it may take as long as any request (--request-timeout) to be answered, while connecting still fails fast.
# Per-request timeout when none is given: a base (queueing, prefill of a long prompt) plus a floor of 5 output
# tokens/s per sequence, so an 8192-token reasoning request may take ~28 min and a forced answer ~30 s.
TIMEOUT_BASE_S = 30.0
TIMEOUT_PER_TOKEN_S = 0.2
START_WINDOW = 16  # requests in flight per server before its /metrics say how many it takes
METRICS_POLL_S = 0.5  # how often a server's /metrics are read (a ~60 KB text; ~1 ms to parse)
FIRST_ANSWER_NOTICE_S = 10.0  # no answer at all for this long: say so (then at 3x, 6x, 12x ... this)
STALL_MIN_S = 60.0  # the automatic stall warning never fires sooner than this...
STALL_FACTOR = 4.0  # ...nor sooner than this many times the slowest request answered so far
NEUTRAL_SAMPLING = {  # explicit, so the checkpoint's generation_config.json defaults never apply on the server
    "temperature": 0.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "n": 1,
    "skip_special_tokens": False,
    "return_tokens_as_token_ids": True,
}


class ServerResponseError(EngineError):
    """A server answered with something that is not a vLLM completion (missing fields, bad token keys)."""


class _Retryable(Exception):
    """A request failure worth retrying elsewhere or later (connection, timeout, 5xx, 429)."""

    def __init__(self, message: str, retry_after: float | None = None, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.timeout = timeout


# --------------------------------------------------------------------------------------------------- parsing


def token_id(key: str) -> int:
    """``"token_id:830"`` -> 830 (the server's key format with ``return_tokens_as_token_ids``)."""
    if not isinstance(key, str) or not key.startswith(TOKEN_ID_PREFIX):
        raise ServerResponseError(
            f"token key {key!r} is not 'token_id:<int>'; the server ignored return_tokens_as_token_ids "
            "(is it a vLLM server?)"
        )
    try:
        return int(key[len(TOKEN_ID_PREFIX) :])
    except ValueError as exc:
        raise ServerResponseError(f"token key {key!r} is not 'token_id:<int>'") from exc


def _one_choice(data: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = data.get("choices") if isinstance(data, Mapping) else None
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], Mapping):
        raise ServerResponseError(f"expected one choice in the completion response, got {str(data)[:200]}")
    return choices[0]


def _logprobs(choice: Mapping[str, Any]) -> Mapping[str, Any]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping) or not isinstance(logprobs.get("tokens"), list):
        raise ServerResponseError("the completion has no logprobs.tokens (the request asked for logprobs)")
    return logprobs


def _top_logprobs(position: Any) -> dict[int, float]:
    if position is None:
        return {}
    if not isinstance(position, Mapping):
        raise ServerResponseError(f"top_logprobs entry is not an object: {str(position)[:100]}")
    return {token_id(k): float(v) for k, v in position.items() if v is not None}


def parse_completion(data: Mapping[str, Any]) -> Completion:
    """A ``/v1/completions`` response for one prompt -> :class:`Completion` (vLLM semantics, like the engines).

    Without logprobs (a request with ``top_logprobs=0``) the token ids come from ``token_ids``
    (``return_token_ids``)."""
    choice = _one_choice(data)
    if choice.get("logprobs") is None and isinstance(choice.get("token_ids"), list):
        logprobs: Mapping[str, Any] = {}
        tokens = tuple(int(t) for t in choice["token_ids"])
    else:
        logprobs = _logprobs(choice)
        tokens = tuple(token_id(t) for t in logprobs["tokens"])
    tops = logprobs.get("top_logprobs") or []
    last = _top_logprobs(tops[-1]) if tops else {}
    stop_reason = choice.get("stop_reason")
    usage = data.get("usage") or {}
    return Completion(
        text=str(choice.get("text") or ""),
        token_ids=tokens,
        finish_reason=str(choice.get("finish_reason") or "unknown"),
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,  # an int = a stop token id: not ours
        last_logprobs=last,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
    )


def parse_forced(data: Mapping[str, Any], candidates: Sequence[int]) -> dict[int, float]:
    """The first position's logprobs of the candidate tokens (a one-token forced completion)."""
    logprobs = _logprobs(_one_choice(data))
    tops = logprobs.get("top_logprobs") or []
    first = _top_logprobs(tops[0]) if tops else {}
    wanted = set(candidates)
    return {t: lp for t, lp in first.items() if t in wanted}


def parse_metrics(text: str) -> tuple[int, int] | None:
    """Running and waiting requests from vLLM's Prometheus text (summed over its engines), or None if absent."""
    running = waiting = None
    for line in text.splitlines():
        if not line.startswith("vllm:num_requests_"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if name == "vllm:num_requests_running":
            running = (running or 0.0) + value
        elif name == "vllm:num_requests_waiting":
            waiting = (waiting or 0.0) + value
    if running is None or waiting is None:
        return None
    return int(running), int(waiting)


def next_window(limit: int, *, running: int, waiting: int, ours: int, queued: bool, floor: int, ceiling: int) -> int:
    """The next window of one server from its /metrics sample: full batch, a short waiting queue, no more.

    ``want`` requests waiting refill slots freed between two samples. Grow (double) while the server's queue is
    shorter than that, work remains (``queued``), every slot of ours is busy and the server has seen them all
    (``running + waiting >= ours``: a sample taken before our last requests arrived says nothing); give back
    what only lengthens the queue beyond twice ``want``, never below ``floor``. Other clients' requests count
    too: a server shared with others is kept full, not flooded.
    """
    want = max(2, running // 4)
    if queued and waiting < want and ours >= limit and running + waiting >= ours:
        return min(ceiling, max(limit + want, 2 * limit))
    if waiting > 2 * want:
        return max(floor, min(limit, limit - (waiting - want)))
    return limit


_SAID_NO_KEY: set[str] = set()  # default variables already reported unset in this process (said once)


def api_key_from_env(name: str | None) -> str | None:
    """The servers' API key from environment variable ``name``: the default variable unset means no key (said
    once, at INFO); any other variable named and unset is an error before anything is sent."""
    if not name:
        return None
    key = os.environ.get(name)
    if key:
        return key
    if name != DEFAULT_API_KEY_ENV:
        raise EngineError(
            f"--api-key-env {name}: ${name} is not set (or empty); export it, or leave --api-key-env out to send "
            "requests without a key"
        )
    if name not in _SAID_NO_KEY:
        _SAID_NO_KEY.add(name)
        log.info("no API key: $%s is not set, requests are sent without Authorization", name)
    return None


def normalise_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all mean ``.../v1``."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EngineError(f"server URL {url!r} must start with http:// or https://")
    return url if url.endswith("/v1") else url + "/v1"


def _error_text(response: Any) -> str:
    """The server's error message (vLLM: ``{"error": {"message": ...}}``), short and on one line."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, Mapping):
        error = body.get("error", body)
        body = error.get("message", error) if isinstance(error, Mapping) else error
    return " ".join(str(body).split())[:300]


# --------------------------------------------------------------------------------------------------- servers


@dataclass
class ServerState:
    """One base URL: what it serves, what it did, whether it is still used."""

    url: str
    model: str | None = None  # the served model id requests name
    max_model_len: int | None = None
    version: str | None = None
    completions: int = 0  # pass-1 prompts completed here
    forced: int = 0  # forced (pass-2) prompts completed here
    failed_requests: int = 0
    rounds_failed: int = 0  # consecutive backoff rounds that failed
    failure_at: float = float("-inf")  # monotonic time of the last counted failure
    retry_at: float = 0.0
    dropped: bool = False
    last_error: str | None = None
    limit: int = START_WINDOW  # requests in flight allowed now (the window; see next_window)
    peak_limit: int = 0
    metrics: bool | None = None  # /metrics readable (None: not asked yet)
    running: int = 0  # the server's last /metrics sample
    waiting: int = 0
    saturated_at: int = 0  # running sequences seen while requests waited: the server's max_num_seqs (or KV limit)
    sent: int = 0  # requests sent (retries included)
    timeouts: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "model": self.model,
            "completions": self.completions,
            "forced": self.forced,
            "failed_requests": self.failed_requests,
            "dropped": self.dropped,
            "window": {
                "metrics": self.metrics,
                "peak": self.peak_limit,
                **({"server_max_running": self.saturated_at} if self.saturated_at else {}),
            },
        }


class OpenAIEngine(BatchCalls):
    """A client of one or several vLLM OpenAI-compatible servers that all serve ``config.model``."""

    kind = "openai"

    def __init__(
        self,
        config: EngineConfig,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        transport: Any = None,
        backoff_base: float = BACKOFF_BASE_S,
        check: bool = True,
    ) -> None:
        import httpx

        if not config.server_urls:
            raise EngineError("the openai engine needs at least one server URL (--server-url http://host:8000/v1)")
        if config.max_concurrency is not None and config.max_concurrency < 1:
            raise EngineError(f"max_concurrency must be >= 1, got {config.max_concurrency}")
        self.config = config
        self._httpx = httpx
        self._transport = transport  # tests: an httpx.MockTransport
        self._backoff_base = backoff_base
        urls = [normalise_url(u) for u in config.server_urls]
        if len(set(urls)) != len(urls):
            raise EngineError(f"server URLs are listed twice: {', '.join(urls)}")
        self.ceiling = config.max_concurrency or DEFAULT_MAX_CONCURRENCY
        self.servers = [ServerState(u, limit=min(self.ceiling, START_WINDOW)) for u in urls]
        env_key = api_key_from_env(config.api_key_env) if api_key is None else None
        self._api_key = api_key if api_key is not None else (env_key or None)
        self._key_source = "given" if api_key is not None else (config.api_key_env if env_key else None)
        self._last_progress = time.monotonic()  # when a request last finished (stall warnings)
        self._answered = 0  # requests answered since the stream started (silent-server notices)
        self._slowest_s = 0.0  # the longest time a request took to be answered (automatic stall warning)
        capacity = (config.max_num_seqs or 0) * len(urls)
        self.meter = OccupancyMeter(capacity or self.ceiling * len(urls), source="server /metrics")
        if capacity:
            self.meter.capacity_source = "max_num_seqs"
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
            )
        self._tokenizer = tokenizer
        self._stream: _Stream | None = None
        self._inflight: dict[int, Request] = {}
        if check:
            self.check_servers()

    # ----------------------------------------------------------------- setup
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def slots(self) -> int:
        """Requests in flight at once over all servers (the model sizes its chunks from this)."""
        return sum(s.limit for s in self.servers)

    def request_timeout(self, request: Request | int) -> float:
        """Seconds one request may take: ``--request-timeout``, else scaled to the request's output budget."""
        if self.config.request_timeout is not None:
            return float(self.config.request_timeout)
        max_tokens = request if isinstance(request, int) else request.max_tokens
        return TIMEOUT_BASE_S + TIMEOUT_PER_TOKEN_S * max(1, max_tokens)

    def _timeout_rule(self) -> str:
        if self.config.request_timeout is not None:
            return f"--request-timeout {self.config.request_timeout:g}"
        return f"{TIMEOUT_BASE_S:g} s + {TIMEOUT_PER_TOKEN_S:g} s per output token; --request-timeout overrides"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _accepts(self, served: Sequence[str]) -> str | None:
        """The served id to name in requests if the server serves ``config.model``, else None."""
        wanted = {self.config.model}
        if os.path.isdir(self.config.model):
            wanted |= {os.path.abspath(self.config.model), os.path.realpath(self.config.model)}
        for name in served:
            if name in wanted or (os.path.isabs(name) and os.path.realpath(name) in wanted):
                return name
        return None

    def check_servers(self) -> None:
        """Fail before scoring: every URL reachable, serving ``config.model`` with processed logprobs."""
        with self._httpx.Client(timeout=CHECK_TIMEOUT_S, transport=self._transport, headers=self._headers()) as c:
            for server in self.servers:
                self._check_one(c, server)

    def _get(self, client: Any, server: ServerState, path: str, attempts: int = 2) -> Any:
        last: Exception | None = None
        for attempt in range(attempts):
            try:
                response = client.get(server.url + path)
            except self._httpx.HTTPError as exc:
                last = exc
                if attempt + 1 < attempts:
                    time.sleep(1.0)
                continue
            if response.status_code in (401, 403):
                hint = f"set ${self.config.api_key_env}" if not self._api_key else f"check ${self._key_name()}"
                raise EngineError(f"server {server.url} refused the API key ({response.status_code}): {hint}")
            if response.status_code >= 400:
                raise EngineError(
                    f"server {server.url} answered {path} with {response.status_code}: {_error_text(response)}"
                )
            return response
        raise EngineError(
            f"server {server.url} is unreachable ({type(last).__name__}: {last}); is the vLLM server running there?"
        )

    def _key_name(self) -> str:
        return self.config.api_key_env if self._key_source not in (None, "given") else "the API key"

    @staticmethod
    def _json(response: Any, server: ServerState, path: str) -> Any:
        """The JSON body, or one line naming the URL and what came back instead (a proxy's HTML page...)."""
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            start = " ".join(response.text[:80].split())
            raise EngineError(
                f"server {server.url} answered {path} with {kind}, not JSON ({start!r}): is {server.url} the "
                "/v1 address of a vLLM server, not a proxy or login page in front of it?"
            ) from None

    def _check_one(self, client: Any, server: ServerState) -> None:
        data = self._json(self._get(client, server, "/models"), server, "/models")
        entries = [e for e in data.get("data", []) if isinstance(e, Mapping)] if isinstance(data, Mapping) else []
        served = [str(e.get("id")) for e in entries] + [str(e["root"]) for e in entries if e.get("root")]
        name = self._accepts(served)
        if name is None:
            raise EngineError(
                f"server {server.url} serves {sorted({str(e.get('id')) for e in entries})}, not "
                f"{self.config.model!r}: refusing to score with another model (start it with --model "
                f"{self.config.model} or --served-model-name {self.config.model}, or pass the matching --model)"
            )
        server.model = next(str(e.get("id")) for e in entries if name in (e.get("id"), e.get("root")))
        entry = next(e for e in entries if str(e.get("id")) == server.model)
        server.max_model_len = entry.get("max_model_len")
        if isinstance(server.max_model_len, int) and server.max_model_len < self.config.context_size:
            raise EngineError(
                f"server {server.url} runs {server.model} with max_model_len {server.max_model_len} < context_size "
                f"{self.config.context_size}: restart it with --max-model-len {self.config.context_size} or pass "
                f"--context-size {server.max_model_len}"
            )
        try:
            server.version = str(client.get(server.url.removesuffix("/v1") + "/version").json().get("version"))
        except (self._httpx.HTTPError, ValueError, AttributeError):
            server.version = None
        self._probe_processed_logprobs(client, server)

    def _probe_candidates(self) -> list[int]:
        ids = []
        for text in ("a", "b", "c"):
            enc = self._tokenizer(text, add_special_tokens=False).input_ids
            if enc and enc[0] not in ids:
                ids.append(enc[0])
        return ids[:2] if len(ids) >= 2 else [0, 1]

    def _probe_processed_logprobs(self, client: Any, server: ServerState) -> None:
        """One forced token: processed logprobs are renormalised over the allowed ids; raw ones are not."""
        candidates = self._probe_candidates()
        body = {
            **NEUTRAL_SAMPLING,
            "model": server.model,
            "prompt": "Hello",
            "max_tokens": 1,
            "logprobs": len(candidates),
            "allowed_token_ids": candidates,
        }
        read = max(CHECK_TIMEOUT_S, self.request_timeout(1))  # a one-token request's own timeout
        timeout = self._httpx.Timeout(read, connect=CHECK_TIMEOUT_S)
        try:
            response = client.post(server.url + "/completions", json=body, timeout=timeout)
        except self._httpx.TimeoutException as exc:
            phase = "connection" if isinstance(exc, self._httpx.ConnectTimeout) else f"answer within {read:g} s"
            raise EngineError(
                f"server {server.url} failed the logprobs probe (no {phase}: {type(exc).__name__}); a busy server "
                f"gets a one-token request's timeout to answer it ({self._timeout_rule()})"
            ) from exc
        except self._httpx.HTTPError as exc:
            raise EngineError(f"server {server.url} failed the logprobs probe ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 400:
            raise EngineError(
                f"server {server.url} rejected the logprobs probe ({response.status_code}): {_error_text(response)}"
            )
        lps = parse_forced(self._json(response, server, "/completions"), candidates)
        mass = sum(math.exp(v) for v in lps.values() if math.isfinite(v))
        if len(lps) != len(candidates) or abs(mass - 1.0) > 1e-3:
            raise EngineError(
                f"server {server.url} does not return processed logprobs (restricted tokens carry probability "
                f"{mass:.4f}, not 1): restart it with --logprobs-mode processed_logprobs, or forced answers "
                "would not reflect allowed_token_ids"
            )

    # ----------------------------------------------------------------- streaming
    @property
    def window(self) -> int:
        """Every server's window busy, plus half as many queued here so a freed slot is refilled at once, and
        enough queued that a window allowed to grow finds work (read by the scheduler at every step)."""
        live = self._live() or self.servers
        slots = sum(s.limit for s in live)
        return slots + max(8, slots // 2)

    def _body(self, r: Request) -> dict[str, Any]:
        prompt: str | list[int] = r.prompt
        if r.continuation:  # token ids: the server's own tokenization of the prompt text, then the continuation
            prompt = [*self._tokenizer(r.prompt).input_ids, *r.continuation]
        body: dict[str, Any] = {**NEUTRAL_SAMPLING, "prompt": prompt, "max_tokens": r.max_tokens}
        if r.top_logprobs:
            body["logprobs"] = r.top_logprobs
        else:  # no logprobs at all: the generated ids come back as token_ids
            body["return_token_ids"] = True
        if r.stop:
            body["stop"] = list(r.stop)
        if r.allowed_token_ids is not None:
            body["allowed_token_ids"] = [int(t) for t in r.allowed_token_ids]
        return body

    def submit(self, requests: Sequence[Request]) -> None:
        if not requests:
            return
        stream = self._stream or self._start_stream()
        for r in requests:
            if r.id in self._inflight:
                raise ValueError(f"request id {r.id} is already in flight")
            self._inflight[r.id] = r
        # by priority (a pair's follow-up first: one token, its prompt still in the server's prefix cache), then order
        items = [(r.priority, r.id, r) for r in requests]
        stream.loop.call_soon_threadsafe(lambda: [stream.queue.put_nowait(i) for i in items])

    def collect(self) -> list[tuple[int, Completion]]:
        if not self._inflight:
            return []
        stream = self._stream
        assert stream is not None
        while True:  # blocks until one request finished (or the dispatcher failed)
            try:
                items = [stream.results.get(timeout=1.0)]
                break
            except queue.Empty:
                if not stream.thread.is_alive():
                    raise EngineError("the server dispatcher stopped with requests in flight") from None
        while True:
            try:
                items.append(stream.results.get_nowait())
            except queue.Empty:
                break
        done: list[tuple[int, Completion]] = []
        for item in items:
            if isinstance(item, BaseException):
                raise item
            rid, completion = item
            if self._inflight.pop(rid, None) is not None:
                done.append((rid, completion))
        return done

    def cancel(self) -> None:
        """Stop the dispatcher (requests in flight are dropped); the next ``submit`` starts a fresh one."""
        stream, self._stream = self._stream, None
        self._inflight.clear()
        if stream is not None:
            stream.stop()

    def load(self) -> EngineLoad | None:
        stream = self._stream
        if stream is None:
            return EngineLoad(0, 0, self.slots)
        if any(s.metrics for s in self.servers):
            live = self._live()
            return EngineLoad(sum(s.running for s in live), sum(s.waiting for s in live), self.meter.capacity)
        return EngineLoad(stream.busy, max(0, len(self._inflight) - stream.busy), self.slots)

    def _start_stream(self) -> _Stream:
        if not self._live():
            raise self._all_failed_error()
        self._stream = _Stream(self)
        return self._stream

    def _live(self) -> list[ServerState]:
        return [s for s in self.servers if not s.dropped]

    def _all_failed_error(self) -> EngineError:
        detail = "; ".join(f"{s.url}: {s.last_error or 'dropped'}" for s in self.servers)
        return EngineError(f"every server failed, no judgement can be completed ({detail})")

    async def _worker(self, stream: _Stream, server: ServerState, client: Any, slot: int = 0) -> None:
        """One request slot of one server: take the next request, send it, hand the parsed answer back.

        Slot ``slot`` works only while it is inside the server's window (``server.limit``)."""
        loop = asyncio.get_running_loop()
        changed = stream.window_changed[server.url]
        while not server.dropped:
            if slot >= server.limit:
                async with changed:
                    await changed.wait_for(lambda: slot < server.limit or server.dropped)
                continue
            wait = server.retry_at - loop.time()
            await asyncio.sleep(max(0.0, wait))  # also lets the other workers in when answers come instantly
            if wait > 0:
                continue
            item = await stream.queue.get()
            if server.dropped or server.retry_at > loop.time():
                stream.queue.put_nowait(item)  # another round of backoff began while waiting: let others take it
                await asyncio.sleep(0)
                continue
            _, rid, request = item
            sent = loop.time()
            stream.busy += 1
            stream.in_flight[server.url] = stream.in_flight.get(server.url, 0) + 1
            server.sent += 1
            try:
                response = await self._post(client, server, self._body(request), self.request_timeout(request))
                completion = parse_completion(response)
            except _Retryable as exc:
                stream.queue.put_nowait((request.priority - 1, rid, request))  # ahead of its peers: it waited already
                if exc.timeout:
                    self._timed_out(server, str(exc))
                self._failed(server, str(exc), sent, loop.time(), exc.retry_after)
                if not self._live():
                    stream.fail(self._all_failed_error())
                continue
            except Exception as exc:  # a configuration error or a non-vLLM answer: stop everything
                stream.fail(exc)
                return
            finally:
                stream.busy -= 1
                stream.in_flight[server.url] -= 1
            self._last_progress = time.monotonic()
            self._answered += 1
            self._slowest_s = max(self._slowest_s, loop.time() - sent)
            server.rounds_failed = 0
            if request.forced:
                server.forced += 1
            else:
                server.completions += 1
            stream.results.put((rid, completion))

    async def _post(
        self, client: Any, server: ServerState, body: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        httpx = self._httpx
        extra = {} if timeout is None else {"timeout": httpx.Timeout(timeout, connect=min(CHECK_TIMEOUT_S, timeout))}
        try:
            response = await client.post(server.url + "/completions", json={**body, "model": server.model}, **extra)
        except httpx.TimeoutException as exc:
            limit = timeout if timeout is not None else self.request_timeout(int(body.get("max_tokens") or 1))
            raise _Retryable(
                f"no answer within {limit:.0f} s ({type(exc).__name__}; {self._timeout_rule()})", timeout=True
            ) from exc
        except httpx.TransportError as exc:  # connect/read/write errors
            raise _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after = response.headers.get("retry-after")
            delay = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _Retryable(f"HTTP {status}: {_error_text(response)}", delay)
        if status in (401, 403):
            raise EngineError(f"server {server.url} refused the API key ({status}): check ${self._key_name()}")
        if status >= 400:
            raise EngineError(f"server {server.url} rejected a request ({status}): {_error_text(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise _Retryable(f"response is not JSON: {response.text[:100]!r}") from exc

    def _timed_out(self, server: ServerState, error: str) -> None:
        """The first timeout of a server is a warning naming it and the setting to change; later ones are INFO."""
        server.timeouts += 1
        if server.timeouts == 1:
            log.warning(
                "server %s: a request got %s; it is retried. If the server is only slow (a full batch, long "
                "reasoning), raise --request-timeout (request_timeout=); if it hangs, check its log",
                server.url,
                error,
            )

    def stall_period(self) -> float | None:
        """Seconds without any answer before the stall warning: ``stall_warning_s`` if set (0: never), else
        ``STALL_FACTOR`` times the slowest request answered so far, at least ``STALL_MIN_S``."""
        if self.config.stall_warning_s is not None:
            return self.config.stall_warning_s if self.config.stall_warning_s > 0 else None
        return max(STALL_MIN_S, STALL_FACTOR * self._slowest_s)

    def silence(self) -> str:
        """Per live server: requests sent, retries and in flight now (the silent-server notices)."""
        stream = self._stream
        in_flight = stream.in_flight if stream is not None else {}
        return ", ".join(
            f"{s.url} ({s.sent} sent, {s.failed_requests} retried, {in_flight.get(s.url, 0)} in flight)"
            for s in self._live()
        )

    def _failed(self, server: ServerState, error: str, sent: float, now: float, retry_after: float | None) -> None:
        """Count a failed request; requests already in flight when a failure was counted share its round."""
        server.failed_requests += 1
        server.last_error = error
        if sent < server.failure_at or server.dropped:
            return
        server.rounds_failed += 1
        server.failure_at = now
        if server.rounds_failed > self.config.max_retries:
            server.dropped = True
            others = ", ".join(s.url for s in self._live()) or "none left"
            log.warning(
                "server %s dropped after %d failed attempts (last error: %s); its work goes to: %s",
                server.url,
                server.rounds_failed,
                error,
                others,
            )
            return
        delay = min(BACKOFF_MAX_S, self._backoff_base * 2 ** (server.rounds_failed - 1))
        server.retry_at = now + max(delay, retry_after or 0.0)
        log.info("server %s failed (%s); retrying in %.1fs", server.url, error, server.retry_at - now)

    # ----------------------------------------------------------------- provenance
    def info(self) -> dict[str, Any]:
        versions = sorted({s.version for s in self.servers if s.version})
        return {
            "engine": self.kind,
            "engine_version": versions[0] if len(versions) == 1 else versions or None,
            "model": self.config.model,
            "revision": self.config.revision,
            "dtype": self.config.dtype,  # as declared by the client; the servers' own setting is theirs
            "logprobs_mode": "processed_logprobs",  # checked with a probe on every server
            "servers": [s.info() for s in self.servers],
            "max_concurrency": self.ceiling,  # the window's ceiling per server
            "window": "server /metrics" if any(s.metrics for s in self.servers) else "fixed",
            "request_timeout": self.config.request_timeout or f"{TIMEOUT_BASE_S:g}+{TIMEOUT_PER_TOKEN_S:g}/token",
            "max_retries": self.config.max_retries,
            "api_key_env": self._key_source if self._key_source != "given" else None,
        }

    def close(self) -> None:
        """Stop the dispatcher thread and its connections."""
        self.cancel()


class _Stream:
    """The dispatcher: an event loop on a daemon thread with one worker per window slot of each live server.

    Requests wait in one priority queue (forced answers first); a worker of any server takes the next one, so a
    fast server takes more work and a request is in flight at one server at a time. A poller per server reads
    its ``/metrics`` and resizes its window (``next_window``); a watcher reports silence and stalls. Finished
    requests and fatal errors go to ``results``, a thread-safe queue the caller's ``collect`` reads.
    """

    def __init__(self, engine: OpenAIEngine) -> None:
        self.engine = engine
        self.results: queue.Queue[Any] = queue.Queue()
        self.busy = 0  # requests being answered by a server right now
        self.in_flight: dict[str, int] = {}  # the same, per server (stall warnings)
        self.window_changed: dict[str, asyncio.Condition] = {}
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed = False
        self.thread = threading.Thread(target=self._run, name="rank1-openai-dispatch", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # e.g. the HTTP client could not be made: collect() raises it
            self.results.put(exc)
        finally:
            self._ready.set()
            self.loop.close()

    async def _main(self) -> None:
        engine = self.engine
        httpx = engine._httpx
        self.queue: asyncio.PriorityQueue[tuple[int, int, Request]] = asyncio.PriorityQueue()
        self._stop = asyncio.Event()
        live = engine._live()
        self.window_changed = {s.url: asyncio.Condition() for s in live}
        n_conn = (engine.ceiling + 1) * len(live)  # every slot, and one for /metrics
        limits = httpx.Limits(max_connections=n_conn, max_keepalive_connections=n_conn)
        default = engine.request_timeout(1)  # each request passes its own, scaled to its budget
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(default, connect=min(CHECK_TIMEOUT_S, default)),
            limits=limits,
            headers=engine._headers(),
            transport=engine._transport,
        ) as client:
            # interleaved, so that the first requests go round-robin over the servers
            slots = [(s, k) for k in range(engine.ceiling) for s in live]
            tasks = [asyncio.create_task(engine._worker(self, s, client, k)) for s, k in slots]
            tasks += [asyncio.create_task(self._poll_metrics(s, client)) for s in live]
            tasks.append(asyncio.create_task(self._watch()))
            self._ready.set()
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_limit(self, server: ServerState, limit: int) -> None:
        if limit != server.limit:
            server.limit = limit
            server.peak_limit = max(server.peak_limit, limit)
            async with self.window_changed[server.url]:
                self.window_changed[server.url].notify_all()

    async def _poll_metrics(self, server: ServerState, client: Any) -> None:
        """Read the server's /metrics every METRICS_POLL_S: size its window and feed the occupancy meter.

        A server without them (another OpenAI-compatible server, a proxy) gets the ceiling as a fixed window."""
        engine = self.engine
        url = server.url.removesuffix("/v1") + "/metrics"
        floor = min(engine.ceiling, START_WINDOW)
        server.peak_limit = max(server.peak_limit, server.limit)
        while not self._stop.is_set() and not server.dropped:
            sample = None
            reason = ""
            try:
                response = await client.get(url, timeout=CHECK_TIMEOUT_S)
                if response.status_code == 200:
                    sample = parse_metrics(response.text)
                    reason = "no vllm:num_requests_running/waiting in them"
                else:
                    reason = f"HTTP {response.status_code}"
            except Exception as exc:  # noqa: BLE001 -- any failure means: no metrics from this server, said once
                reason = f"{type(exc).__name__}: {exc}"
            if sample is None:
                if server.metrics is None:  # never had them: a fixed window at the ceiling
                    log.info(
                        "server %s has no usable /metrics (%s): %d requests in flight at most (--max-concurrency)",
                        server.url,
                        reason,
                        engine.ceiling,
                    )
                    server.metrics = False
                    await self._set_limit(server, engine.ceiling)
                    return
                await asyncio.sleep(METRICS_POLL_S)  # had them: a passing failure keeps the window as it is
                continue
            server.metrics = True
            server.running, server.waiting = sample
            if server.waiting > 0:
                server.saturated_at = max(server.saturated_at, server.running)
            queued = self.queue.qsize() > 0
            await self._set_limit(
                server,
                next_window(
                    server.limit,
                    running=server.running,
                    waiting=server.waiting,
                    ours=self.in_flight.get(server.url, 0),
                    queued=queued,
                    floor=floor,
                    ceiling=engine.ceiling,
                ),
            )
            self._record(queued)
            await asyncio.sleep(METRICS_POLL_S)

    def _record(self, queued: bool) -> None:
        """The servers' summed counts into the engine's meter; capacity from max_num_seqs or as observed."""
        engine, meter = self.engine, self.engine.meter
        live = [s for s in engine._live() if s.metrics]
        if meter.capacity_source != "max_num_seqs":
            seen = sum(s.saturated_at for s in live)
            if seen:
                meter.capacity, meter.capacity_source = seen, "running while requests waited"
        meter.record(sum(s.running for s in live), sum(s.waiting for s in live), backlog=queued)

    async def _watch(self) -> None:
        """Say so while no request has come back (with what was sent); warn when answers stop coming."""
        engine = self.engine
        started = engine._last_progress = warned_at = time.monotonic()
        explicit = engine.config.stall_warning_s
        notice = FIRST_ANSWER_NOTICE_S if not explicit or explicit <= 0 else min(FIRST_ANSWER_NOTICE_S, explicit)
        tick = min(1.0, notice / 4)
        while not self._stop.is_set():
            await asyncio.sleep(tick)
            now, last = time.monotonic(), engine._last_progress
            busy = {url: n for url, n in self.in_flight.items() if n > 0}
            if not engine._answered:
                if busy and now - started >= notice:
                    notice = max(notice * 2, now - started + FIRST_ANSWER_NOTICE_S)  # then 30 s, 60 s, 120 s...
                    log.warning(
                        "stalled? no request has finished for %.0f s: no answer yet from %s; each request gives "
                        "up after its own timeout (%s)",
                        now - started,
                        engine.silence(),
                        engine._timeout_rule(),
                    )
                continue
            period = engine.stall_period()
            if period and busy and now - last >= period and now - max(warned_at, last) >= period:
                warned_at = now
                log.warning(
                    "stalled? no request has finished for %.0f s on %s; each request gives up after its own "
                    "timeout (%s)",
                    now - last,
                    engine.silence(),
                    engine._timeout_rule(),
                )

    def fail(self, exc: BaseException) -> None:
        """Report a fatal error once (collect raises it); the workers stop taking requests."""
        if not self._failed:
            self._failed = True
            self.results.put(exc)
        self._stop.set()

    def stop(self) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile (it had failed): nothing to stop
                self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join()
