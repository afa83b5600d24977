"""What a run shows while it works: a status line while things load, then a bar that moves per judgement.

The model reports events through the small :class:`Progress` interface (``status``, ``engine_ready``,
``from_store``, ``judged``); :class:`ProgressDisplay` draws them on stderr for the CLI, :class:`Progress`
itself ignores them (library use, tests). Rates count only this run's work from the moment the engine is
ready: pairs found in the store move the bar but are neither counted as judged nor as generated tokens, so
pairs/s, generated tokens/s and the ETA describe the engine, not the cache.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any

from rank1_eval.records import Judgement


class Progress:
    """The events a judging run reports; every method is a no-op here."""

    def status(self, text: str) -> None:
        """A loading phase began (task data, prompts, store lookup, model weights)."""

    def engine_ready(self) -> None:
        """The engine can take requests: rates are measured from now."""

    def from_store(self, pairs: int) -> None:
        """``pairs`` judgements came from the store (no engine work)."""

    def judged(self, judgement: Judgement, pairs: int = 1, generated_tokens: int | None = None) -> None:
        """A judgement became final; it answers ``pairs`` pairs (exact duplicates share one)."""

    def derived(self, judgement: Judgement, pairs: int = 1) -> None:
        """A judgement was derived from a stored run (a budget sweep): final, but not decoded now."""

    def close(self) -> None:
        """The run ended (or failed)."""


def _own_stderr() -> IO[str]:
    """A duplicate of the terminal's stderr, so the display stays visible while the engine's output is sent
    to a log file (``rank1_eval.logs.native_output`` redirects descriptor 2 while an engine loads)."""
    global _STDERR_COPY
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stream (tests, notebooks)
        return sys.stderr
    if _STDERR_COPY is None or _STDERR_COPY.closed:
        _STDERR_COPY = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None))
    return _STDERR_COPY


_STDERR_COPY: IO[str] | None = None


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressDisplay(Progress):
    """The CLI's display on stderr: a ticking status line, then a tqdm bar with honest rates and counts."""

    def __init__(
        self,
        total: int,
        *,
        enabled: bool = True,
        status: bool | None = None,
        prefix: str = "",
        stream: IO[str] | None = None,
        started: float | None = None,
    ) -> None:
        self.total = total
        self.enabled = enabled  # the bar
        self.show_status = enabled if status is None else status  # the status lines
        self.prefix = prefix
        self.stream = stream or _own_stderr()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = started if started is not None else time.perf_counter()
        self.ready_at: float | None = None
        self.judged_pairs = 0
        self.from_store_pairs = 0
        self.derived_pairs = 0  # a sweep's judgements cut from a stored run: on the bar, never in the rates
        self.first_at: float | None = None
        self.tokens = 0
        self.counts = {"pass2": 0, "failed": 0, "truncated": 0}
        self.bar: Any = None
        self._status: str | None = None
        self._status_since = self.started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._last_postfix = 0.0

    # ----------------------------------------------------------------- status line
    def status(self, text: str) -> None:
        if not self.show_status or self.bar is not None:
            return
        with self._lock:
            self._status, self._status_since = text, time.perf_counter()
        if not self.tty:  # a log file: one line per phase, no ticking
            elapsed = _clock(time.perf_counter() - self.started)
            print(f"{self.prefix}{text}… [{elapsed}]", file=self.stream, flush=True)
            return
        self._draw_status()
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="rank1-status", daemon=True)
            self._ticker.start()

    def _draw_status(self) -> None:
        with self._lock:
            if self._status is None or self.bar is not None:
                return
            now = time.perf_counter()
            line = f"{self.prefix}{self._status}… {now - self._status_since:.0f}s [{_clock(now - self.started)}]"
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw_status()

    def _end_status(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        self._ticker, self._stop = None, threading.Event()
        with self._lock:
            if self.tty and self._status is not None:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            self._status = None

    # ----------------------------------------------------------------- the bar
    def _ensure_bar(self) -> None:
        if self.bar is not None or not self.enabled:
            return
        self._end_status()
        from tqdm.auto import tqdm

        # a new bar (the next budget of a sweep, the next cell of a table) counts its own pairs from zero
        self.judged_pairs = self.from_store_pairs = self.derived_pairs = self.tokens = 0
        self.first_at = None
        self.counts = dict.fromkeys(self.counts, 0)

        self.bar = tqdm(
            total=self.total or None,
            unit="pair",
            desc="judging",
            file=self.stream,
            dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
            mininterval=0.2,
        )

    def engine_ready(self) -> None:
        self.ready_at = time.perf_counter()
        self._ensure_bar()
        self._refresh(force=True)

    def from_store(self, pairs: int) -> None:
        if pairs <= 0:
            return
        self.from_store_pairs += pairs
        self._ensure_bar()
        if self.bar is not None:
            self.bar.update(pairs)
        self._refresh(force=True)

    def judged(self, judgement: Judgement, pairs: int = 1, generated_tokens: int | None = None) -> None:
        if self.first_at is None:  # the ETA's clock starts after the engine's warm-up (the first judgement)
            self.first_at = time.perf_counter()
        self.judged_pairs += pairs
        self.tokens += (
            judgement.output_tokens + (judgement.path != "pass1") if generated_tokens is None else generated_tokens
        )
        for name in ("pass2", "failed"):
            self.counts[name] += pairs * (judgement.path == name)
        self.counts["truncated"] += pairs * judgement.truncated
        self._ensure_bar()
        if self.bar is not None:
            self.bar.update(pairs)
        self._refresh()

    def derived(self, judgement: Judgement, pairs: int = 1) -> None:
        self.derived_pairs += pairs
        for name in ("pass2", "failed"):
            self.counts[name] += pairs * (judgement.path == name)
        self.counts["truncated"] += pairs * judgement.truncated
        self._ensure_bar()
        if self.bar is not None:
            self.bar.update(pairs)
        self._refresh()

    def postfix(self) -> str:
        """Rates since the engine was ready (this run's judgements only), ETA, and the live counts."""
        now = time.perf_counter()
        since = now - (self.ready_at if self.ready_at is not None else self.started)
        rate = self.judged_pairs / since if since > 0 else 0.0
        done = self.judged_pairs + self.from_store_pairs + self.derived_pairs
        left = max(0, self.total - done) if self.total else None
        # the first judgements carry the engine's warm-up: no ETA until a share of the work is done
        warm = self.judged_pairs >= max(3, 0.05 * max(0, self.total - self.from_store_pairs - self.derived_pairs))
        steady = (self.judged_pairs - 1) / (now - self.first_at) if self.first_at and now > self.first_at else 0.0
        eta = _clock(left / steady) if steady > 0 and left is not None and warm else "?"
        parts = [f"<{eta}", f"{rate:.2f} pairs/s", f"{self.tokens / since if since > 0 else 0.0:.1f} gen tok/s"]
        if self.from_store_pairs:
            parts.append(f"store {self.from_store_pairs}")
        if self.derived_pairs:
            parts.append(f"derived {self.derived_pairs}")
        parts += [f"{name} {n}" for name, n in self.counts.items()]
        return ", ".join(parts)

    def _refresh(self, force: bool = False) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        if force or now - self._last_postfix >= 0.2:
            self._last_postfix = now
            self.bar.set_postfix_str(self.postfix(), refresh=True)

    def close(self) -> None:
        self._end_status()
        if self.bar is not None:
            self._refresh(force=True)
            self.bar.close()
            self.bar = None
