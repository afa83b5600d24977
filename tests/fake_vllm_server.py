"""A misbehaving vLLM OpenAI-compatible server on a real socket, for fault tests and tools/fault_matrix.py.

No real vLLM can be made to return NaN logprobs or to hang on purpose, so this stdlib HTTP server plays one:
it answers ``/v1/models``, ``/version`` and the client's processed-logprobs probe correctly (so the client's
pre-flight checks pass), and then misbehaves on real requests according to ``mode``:

* ``nan``   every completion stops on ``</think> true`` with NaN answer logprobs, and every forced answer
            has NaN logprobs: each pair ends ``failed``.
* ``stall`` every real completion request is accepted and never answered (a hung server).
* ``html``  ``/v1/models`` answers 200 with an HTML page (a proxy or login page in front of the server).

Run as ``python tests/fake_vllm_server.py --mode nan --model DIR --port 0``: it prints ``READY <port>`` once
it listens. ``DIR`` is the local model folder (its tokenizer.json gives the answer token ids).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def answer_ids(model_dir: str) -> tuple[int, int]:
    """The ids of ``" true"`` and ``" false"`` in the model's tokenizer (the tokenizers library, no torch)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    return tok.encode(" true", add_special_tokens=False).ids[0], tok.encode(" false", add_special_tokens=False).ids[0]


def _choice(text: str, tokens: list[int], tops: list[dict[str, float]], finish: str, stop: str | None) -> dict:
    return {
        "choices": [
            {
                "text": text,
                "finish_reason": finish,
                "stop_reason": stop,
                "logprobs": {"tokens": [f"token_id:{t}" for t in tokens], "top_logprobs": tops},
            }
        ],
        "usage": {"prompt_tokens": 7},
    }


def make_handler(mode: str, model: str, true_id: int, false_id: int, max_model_len: int = 1024) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, obj: object) -> None:
            self._send(200, json.dumps(obj, allow_nan=True).encode())

        def do_GET(self) -> None:  # noqa: N802 -- http.server's name
            if self.path.endswith("/models"):
                if mode == "html":
                    page = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>proxy login</body></html>"
                    return self._send(200, page, "text/html; charset=utf-8")
                return self._json({"data": [{"id": model, "root": model, "max_model_len": max_model_len}]})
            if self.path.endswith("/version"):
                return self._json({"version": "0.0-fake"})
            if self.path.endswith("/health"):
                return self._send(200, b"")
            return self._send(404, b'{"error": {"message": "not found"}}')

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            allowed = body.get("allowed_token_ids")
            if body.get("prompt") == "Hello" and allowed:  # the client's processed-logprobs probe: answer right
                lp = math.log(1.0 / len(allowed))
                return self._json(_choice("x", [allowed[0]], [{f"token_id:{t}": lp for t in allowed}], "length", None))
            if mode == "stall":
                time.sleep(10**6)  # accepted, never answered
                return None
            if allowed:  # forced answer
                return self._json(
                    _choice("x", [allowed[0]], [{f"token_id:{t}": math.nan for t in allowed}], "length", None)
                )
            top = {f"token_id:{true_id}": math.nan, f"token_id:{false_id}": math.nan}
            return self._json(_choice(" It is relevant.\n", [11, true_id], [{}, top], "stop", "</think> true"))

    return Handler


class FakeVLLMServer:
    """The server on a daemon thread (tests): ``with FakeVLLMServer("nan", model_dir) as s: s.url``."""

    def __init__(self, mode: str, model_dir: str, *, model: str | None = None, port: int = 0) -> None:
        true_id, false_id = answer_ids(model_dir)
        handler = make_handler(mode, model or model_dir, true_id, false_id)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeVLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["nan", "stall", "html"], required=True)
    p.add_argument("--model", required=True, help="local model folder (tokenizer.json); also the served name")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = FakeVLLMServer(args.mode, args.model, port=args.port)
    print(f"READY {server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
