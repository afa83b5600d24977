"""Where the engines' own output goes: a log file in the result folder, unless ``-v`` asks for it on screen.

vLLM logs dozens of INFO/WARNING lines while it loads (its config, kernels, Triton, NUMA binding) and C++
extensions print straight to the process's stderr. A run's screen should show our status line, the bar and
the result; the rest is kept, complete, in ``<result folder>/engine.log`` for when something goes wrong.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

LIBRARY_LOGGERS = ("vllm", "py.warnings")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ENGINE_LOG_ENV = "RANK1_ENGINE_LOG"  # the one switch: unset = a log file, "-" = on screen, a path = that file
_screen = False
_api_log: Path | None = None


def show_engine_logs(on: bool = True) -> None:
    """Engines' own output (vLLM's INFO lines, its config dump) on screen instead of a log file (the CLI's
    ``-v``; in Python, this or ``RANK1_ENGINE_LOG=-``)."""
    global _screen
    _screen = on


def api_engine_log() -> Path | None:
    """Where the engine's own output goes when no result folder has an ``engine.log`` (the Python API): a file,
    named once on our logger at INFO, so that a script's stdout holds what the script prints, as in the CLI.

    Returns the file (for :func:`native_output`), or None when the user asked to see the engine's output.
    """
    global _api_log
    wanted = os.environ.get(ENGINE_LOG_ENV, "")
    if _screen or wanted == "-":
        return None
    if _api_log is None:
        import tempfile

        _api_log = Path(wanted) if wanted else Path(tempfile.gettempdir()) / f"rank1_eval-engine-{os.getpid()}.log"
        if "vllm" not in sys.modules:
            os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # else vLLM adds its own stdout handler at import
        _api_log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(_api_log, encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        vllm_logger = logging.getLogger("vllm")
        vllm_logger.handlers = [handler]
        vllm_logger.setLevel(logging.INFO)
        vllm_logger.propagate = False
        logging.getLogger(__name__).info(
            "the engine's own log goes to %s (%s=- or rank1_eval.logs.show_engine_logs() shows it)",
            _api_log,
            ENGINE_LOG_ENV,
        )
    return _api_log


@contextlib.contextmanager
def library_logs(path: Path | None, *, verbose: bool = False) -> Iterator[None]:
    """Route vLLM's logger and Python warnings to ``path`` (INFO and up) for the duration; no-op if verbose."""
    if verbose or path is None:
        yield
        return
    if "vllm" not in sys.modules:
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM would install its own stderr handler at import
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    was_capturing = getattr(logging, "_warnings_showwarning", None) is not None
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(was_capturing)
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()


@contextlib.contextmanager
def native_output(path: Path | None) -> Iterator[None]:
    """Send what C/C++ code writes to file descriptors 1 and 2 to ``path`` for the duration (engine loading).

    Python's ``sys.stdout``/``sys.stderr`` write to the same descriptors, so they go to the file too; a display
    that must stay visible writes to its own duplicate of the terminal (see ``ProgressDisplay``).
    """
    if path is None:
        yield
        return
    try:
        fds = [sys.stdout.fileno(), sys.stderr.fileno()]
    except (AttributeError, OSError, ValueError):  # captured streams (tests, notebooks): nothing to redirect
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(fd) for fd in fds]
    with path.open("ab") as target:
        try:
            for fd in fds:
                os.dup2(target.fileno(), fd)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for fd, copy in zip(fds, saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
