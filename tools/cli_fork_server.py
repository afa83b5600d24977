"""A fork server for CLI runs: each run is a fresh process that skips the ~8 s of imports every run repeats.

Used by the slow tests that run the CLI many times (the fault catalogue, the README's first hour); not part of
the package.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Proc:
    rc: int | None
    out: str
    err: str
    timed_out: bool
    wall_s: float


_FORK_SERVER = r"""
import atexit, json, os, runpy, signal, sys, threading, traceback
import datasets, mteb, torch, transformers  # what every `rank1-eval run` imports: paid once, here
import rank1_eval.cli
replies = os.fdopen(os.dup(1), "w", buffering=1)
print(json.dumps({"ready": os.getpid()}), file=replies)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:  # the child is `python -m rank1_eval.cli ARGS` from here on, in its own session
        os.setsid()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path in ((0, os.devnull), (1, request["out"]), (2, request["err"])):
            flags = os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            opened = os.open(path, flags, 0o644)
            os.dup2(opened, fd)
            os.close(opened)
        replies.close()
        sys.argv = [request["module"], *request["args"]]
        try:
            runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code
        except KeyboardInterrupt:
            traceback.print_exc()
            code = "SIGINT"
        except BaseException:
            traceback.print_exc()
            code = 1
        # the interpreter's exit, less tearing down the modules this server imported (~2 s a run): wait for
        # non-daemon threads, run the atexit handlers, flush; a SIGINT ends the process by SIGINT, as Python's
        if code is None:
            code = 0
        elif not isinstance(code, int):
            if code != "SIGINT":
                print(code, file=sys.stderr)
                code = 1
        threading._shutdown()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        if code == "SIGINT":
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code & 0xFF)
    print(json.dumps({"pid": pid}), file=replies)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), file=replies)
"""


class ForkServer:
    """Runs ``python -m rank1_eval.cli ARGS`` (or another module) as a fork of one process that has already
    imported what a run imports (mteb, torch, transformers, datasets: ~8 s of a ~9 s run of the micro rank1 on
    2 cores).

    Each run is still its own process — own session, cwd, environment, stdout/stderr, exit code, signals,
    tracebacks — only the imports are shared. An environment variable read at import time (``HF_HUB_CACHE``)
    would not take effect, so :meth:`Ctx.run` sends runs with extra variables to a fresh interpreter.
    ``tests/test_faults.py`` and ``tests/test_readme.py`` use it; ``tools/fault_matrix.py`` keeps fresh
    interpreters unless ``--fork-server``.
    """

    def __init__(self, code: Path, env: dict[str, str], work: Path) -> None:
        self.work = work
        self._log = (work / "fork-server.log").open("w")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            cwd=code,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._lock = threading.Lock()
        self._runs = 0
        self._next(timeout=300, key="ready")

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put("")  # the server exited

    def _next(self, timeout: float | None, key: str) -> int:
        line = self._lines.get(timeout=timeout)
        if not line:
            raise RuntimeError(f"the CLI fork server exited: see {self.work / 'fork-server.log'}")
        return json.loads(line)[key]

    def run(
        self, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float, module: str = "rank1_eval.cli"
    ) -> Proc:
        """``python -m MODULE ARGS`` in ``cwd`` with exactly ``env``; killed (``rc=None``) after ``timeout`` s."""
        with self._lock:
            self._runs += 1
            out, err = self.work / f"fork-{self._runs}.out", self.work / f"fork-{self._runs}.err"
            started = time.monotonic()
            request = {"module": module, "args": args, "cwd": str(cwd), "env": env, "out": str(out), "err": str(err)}
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            pid = self._next(timeout=60, key="pid")
            try:
                rc, timed_out = self._next(timeout=timeout, key="rc"), False
            except queue.Empty:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                self._next(timeout=60, key="rc")
                rc, timed_out = None, True
            wall = time.monotonic() - started
            read = lambda f: f.read_text(encoding="utf-8", errors="replace") if f.exists() else ""  # noqa: E731
            return Proc(rc, read(out), read(err), timed_out, wall)

    def close(self) -> None:
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        self._log.close()
