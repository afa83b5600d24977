"""Server backend: vLLM's OpenAI-compatible ``/v1/completions`` on one or several base URLs.

Same rule semantics as the in-process engines (greedy, stop strings, special tokens kept, top-k logprobs keyed
by token id, forced answer through ``allowed_token_ids``), so a server is just another place the same vLLM
runs. Design choices worth knowing:

* **One prompt per request**, pulled from one shared queue by ``max_concurrency`` workers per server: a fast
  server takes more work, and a prompt is only ever in flight at one server at a time.
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
  as a Bearer token; it never appears in logs, errors, ``info()`` or any output.

The server must run with ``--logprobs-mode processed_logprobs`` (``scripts/serve.sh`` does): vLLM >= 0.8
otherwise returns the logprobs from *before* ``allowed_token_ids`` and the forced answer is wrong (SPEC §1.4).
The tokenizer is loaded locally from the model id/path (answer token ids, prompt lengths, truncation).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rank1_eval.engines.base import EngineConfig, EngineError
from rank1_eval.records import Completion

log = logging.getLogger(__name__)
T = TypeVar("T")

TOKEN_ID_PREFIX = "token_id:"
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
CHECK_TIMEOUT_S = 10.0  # connecting, and /v1/models: an unreachable URL fails within seconds
# The logprobs probe is one completion request: on a loaded server it queues behind the requests in flight, so
# it may take as long as any request (--request-timeout) to be answered, while connecting still fails fast.
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

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    """A ``/v1/completions`` response for one prompt -> :class:`Completion` (vLLM semantics, like the engines)."""
    choice = _one_choice(data)
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

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "model": self.model,
            "completions": self.completions,
            "forced": self.forced,
            "failed_requests": self.failed_requests,
            "dropped": self.dropped,
        }


class OpenAIEngine:
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
        if config.max_concurrency < 1:
            raise EngineError(f"max_concurrency must be >= 1, got {config.max_concurrency}")
        self.config = config
        self._httpx = httpx
        self._transport = transport  # tests: an httpx.MockTransport
        self._backoff_base = backoff_base
        urls = [normalise_url(u) for u in config.server_urls]
        if len(set(urls)) != len(urls):
            raise EngineError(f"server URLs are listed twice: {', '.join(urls)}")
        self.servers = [ServerState(u) for u in urls]
        env_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        self._api_key = api_key if api_key is not None else (env_key or None)
        self._key_source = "given" if api_key is not None else (config.api_key_env if env_key else None)
        self._timeout = httpx.Timeout(config.request_timeout, connect=min(CHECK_TIMEOUT_S, config.request_timeout))
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                config.model, revision=config.revision, trust_remote_code=config.trust_remote_code
            )
        self._tokenizer = tokenizer
        if check:
            self.check_servers()

    # ----------------------------------------------------------------- setup
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def slots(self) -> int:
        """Requests in flight at once over all servers (the model sizes its chunks from this)."""
        return self.config.max_concurrency * len(self.servers)

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

    def _check_one(self, client: Any, server: ServerState) -> None:
        data = self._get(client, server, "/models").json()
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
        read = max(CHECK_TIMEOUT_S, float(self.config.request_timeout or CHECK_TIMEOUT_S))
        timeout = self._httpx.Timeout(read, connect=CHECK_TIMEOUT_S)
        try:
            response = client.post(server.url + "/completions", json=body, timeout=timeout)
        except self._httpx.TimeoutException as exc:
            phase = "connection" if isinstance(exc, self._httpx.ConnectTimeout) else f"answer within {read:g} s"
            raise EngineError(
                f"server {server.url} failed the logprobs probe (no {phase}: {type(exc).__name__}); a busy server "
                "gets --request-timeout seconds to answer it"
            ) from exc
        except self._httpx.HTTPError as exc:
            raise EngineError(f"server {server.url} failed the logprobs probe ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 400:
            raise EngineError(
                f"server {server.url} rejected the logprobs probe ({response.status_code}): {_error_text(response)}"
            )
        lps = parse_forced(response.json(), candidates)
        mass = sum(math.exp(v) for v in lps.values() if math.isfinite(v))
        if len(lps) != len(candidates) or abs(mass - 1.0) > 1e-3:
            raise EngineError(
                f"server {server.url} does not return processed logprobs (restricted tokens carry probability "
                f"{mass:.4f}, not 1): restart it with --logprobs-mode processed_logprobs, or forced answers "
                "would not reflect allowed_token_ids"
            )

    # ----------------------------------------------------------------- the two questions
    def complete(
        self, prompts: Sequence[str], *, max_tokens: int, stop: Sequence[str], top_logprobs: int = 20
    ) -> list[Completion]:
        if not prompts:
            return []
        common = {**NEUTRAL_SAMPLING, "max_tokens": max_tokens, "logprobs": top_logprobs, "stop": list(stop)}
        return self._run([{**common, "prompt": p} for p in prompts], "completions", parse_completion)

    def forced_logprobs(self, prompts: Sequence[str], candidates: Sequence[int]) -> list[dict[int, float]]:
        if not prompts:
            return []
        common = {
            **NEUTRAL_SAMPLING,
            "max_tokens": 1,
            "logprobs": len(candidates),
            "allowed_token_ids": [int(c) for c in candidates],
        }
        return self._run([{**common, "prompt": p} for p in prompts], "forced", lambda r: parse_forced(r, candidates))

    # ----------------------------------------------------------------- dispatch
    def _run(self, bodies: list[dict[str, Any]], counter: str, parse: Callable[[dict[str, Any]], T]) -> list[T]:
        """Run the dispatcher on an event loop: this thread's own, or a helper thread's inside a running loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._dispatch(bodies, counter, parse))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # e.g. called from a notebook
            return pool.submit(asyncio.run, self._dispatch(bodies, counter, parse)).result()

    def _live(self) -> list[ServerState]:
        return [s for s in self.servers if not s.dropped]

    def _all_failed_error(self) -> EngineError:
        detail = "; ".join(f"{s.url}: {s.last_error or 'dropped'}" for s in self.servers)
        return EngineError(f"every server failed, no judgement can be completed ({detail})")

    async def _dispatch(
        self, bodies: list[dict[str, Any]], counter: str, parse: Callable[[dict[str, Any]], T]
    ) -> list[T]:
        """Each body to one server; answers are parsed on arrival (a long generation's per-position logprobs
        are megabytes of JSON: only the parsed record is kept)."""
        httpx = self._httpx
        live = self._live()
        if not live:
            raise self._all_failed_error()
        results: list[T | None] = [None] * len(bodies)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(bodies)):
            queue.put_nowait(i)
        state = {"remaining": len(bodies)}
        finished = asyncio.Event()
        fatal: list[BaseException] = []
        loop = asyncio.get_running_loop()

        async def worker(server: ServerState, client: Any) -> None:
            while not finished.is_set() and not server.dropped:
                wait = server.retry_at - loop.time()
                await asyncio.sleep(max(0.0, wait))  # also lets the other workers in when answers come instantly
                if wait > 0:
                    continue
                i = await queue.get()
                if server.dropped or server.retry_at > loop.time():
                    queue.put_nowait(i)  # another round of backoff began while waiting: let others take it
                    continue
                sent = loop.time()
                try:
                    parsed = parse(await self._post(client, server, bodies[i]))
                except _Retryable as exc:
                    queue.put_nowait(i)
                    self._failed(server, str(exc), sent, loop.time(), exc.retry_after)
                    if not self._live():
                        fatal.append(self._all_failed_error())
                        finished.set()
                    continue
                except Exception as exc:  # a configuration error or a non-vLLM answer: stop everything
                    fatal.append(exc)
                    finished.set()
                    return
                server.rounds_failed = 0
                setattr(server, counter, getattr(server, counter) + 1)
                results[i] = parsed
                state["remaining"] -= 1
                if state["remaining"] == 0:
                    finished.set()

        n_conn = self.config.max_concurrency * len(live)
        limits = httpx.Limits(max_connections=n_conn, max_keepalive_connections=n_conn)
        async with httpx.AsyncClient(
            timeout=self._timeout, limits=limits, headers=self._headers(), transport=self._transport
        ) as client:
            # interleaved, so that the first prompts of a call go round-robin over the servers
            slots = [s for _ in range(self.config.max_concurrency) for s in live]
            tasks = [asyncio.create_task(worker(s, client)) for s in slots]
            waiter = asyncio.create_task(finished.wait())
            try:
                pending = set(tasks)
                while not finished.is_set() and pending:
                    _, pending = await asyncio.wait(pending | {waiter}, return_when=asyncio.FIRST_COMPLETED)
                    pending.discard(waiter)
            finally:
                for task in [*tasks, waiter]:
                    task.cancel()
                await asyncio.gather(*tasks, waiter, return_exceptions=True)
        if fatal:
            raise fatal[0]
        if state["remaining"]:
            raise self._all_failed_error()
        return [r for r in results if r is not None]

    async def _post(self, client: Any, server: ServerState, body: dict[str, Any]) -> dict[str, Any]:
        httpx = self._httpx
        try:
            response = await client.post(server.url + "/completions", json={**body, "model": server.model})
        except httpx.TransportError as exc:  # connect/read/write errors and timeouts
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
                server.url, server.rounds_failed, error, others,
            )  # fmt: skip
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
            "max_concurrency": self.config.max_concurrency,
            "request_timeout": self.config.request_timeout,
            "max_retries": self.config.max_retries,
            "api_key_env": self._key_source if self._key_source != "given" else None,
        }

    def close(self) -> None:
        """Nothing to release: connections live only for one call."""
