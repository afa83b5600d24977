"""The background writer: judgements are stored in batches on a thread so the engines never wait on SQLite."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from rank1_eval.records import Judgement
from rank1_eval.store.sqlite import (
    Store,
    StoreError,
    _check_items,
)

_STOP = object()
_writer_failures: list[BaseException] = []  # failures that interrupted the main thread (see AsyncWriter)
_failures_lock = threading.Lock()


_written = [0]  # judgements the writers of this process have committed (the interrupt line says how many)


def judgements_written() -> int:
    """How many judgements this process's :class:`AsyncWriter` s committed: what an interrupted run kept."""
    return _written[0]


def take_writer_failure() -> BaseException | None:
    """The store failure that interrupted the main thread, if any (the CLI reports it instead of a Ctrl-C)."""
    with _failures_lock:
        return _writer_failures.pop() if _writer_failures else None


class AsyncWriter:
    """Moves ``store.put_many`` off the scoring hot path onto a daemon thread.

    ``submit(items)`` enqueues (blocking when ``max_pending`` submissions are waiting, to bound memory);
    the thread coalesces queued submissions into one ``put_many`` call — one transaction per
    ``commit_interval`` seconds at most (0: whatever is queued when the previous commit ends), so a stream of
    single judgements never makes SQLite throttle the engine, and no judgement waits longer than that to be
    durable. ``flush()`` waits until everything submitted so far is written. ``close()`` flushes and stops the
    thread. If a write fails, the writer stops writing and the original exception is re-raised by the next
    ``submit``/``flush``/``close`` (and by every later one): nothing is swallowed. The wrapped store is not
    closed — its owner closes it.

    With ``interrupt_main=True`` (and the writer made on the main thread) a failure also interrupts the main
    thread at once (``_thread.interrupt_main``), so a run whose judgements can no longer be stored stops now,
    not after the engine call in flight; ``close()`` then raises the store error in place of the interrupt.
    Judgements committed before the failure stay committed.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_pending: int = 10_000,
        max_batch: int = 5000,
        commit_interval: float = 0.0,
        interrupt_main: bool = False,
    ):
        self.store = store
        self.max_batch = max_batch
        self.commit_interval = max(0.0, commit_interval)
        self.commits = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._closed = False
        self._submit_lock = threading.Lock()
        self._interrupt = interrupt_main and threading.current_thread() is threading.main_thread()
        self._interrupted = False
        self._thread = threading.Thread(target=self._run, name="rank1-store-writer", daemon=True)
        self._thread.start()

    def _next(self, deadline: float) -> Any:
        remaining = deadline - time.monotonic()
        return self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            deadline = time.monotonic() + self.commit_interval
            batches = [first]
            size = 0 if first is _STOP else len(first)
            while batches[-1] is not _STOP and size < self.max_batch:
                try:
                    nxt = self._next(deadline)
                except queue.Empty:
                    break
                batches.append(nxt)
                if nxt is not _STOP:
                    size += len(nxt)
            stop = batches[-1] is _STOP
            items = [item for batch in batches if batch is not _STOP for item in batch]
            try:
                if items and self._error is None:
                    self.store.put_many(items)
                    self.commits += 1
                    _written[0] += len(items)
            except BaseException as exc:  # re-raised in the caller's thread
                exc.add_note("raised in AsyncWriter's background thread while writing to the store")
                self._error = exc
                self._interrupt_main(exc)
            finally:
                for _ in batches:
                    self._queue.task_done()
            if stop:
                return

    def _interrupt_main(self, exc: BaseException) -> None:
        import _thread

        with self._submit_lock:
            if not self._interrupt or self._closed or self._interrupted:
                return
            self._interrupted = True
            with _failures_lock:
                _writer_failures.append(exc)
        _thread.interrupt_main()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            with _failures_lock:  # reported here, in the caller's thread: the CLI need not report it again
                if self._error in _writer_failures:
                    _writer_failures.remove(self._error)
            raise self._error

    def submit(self, items: Sequence[tuple[str, Judgement]]) -> None:
        """Queue ``(key, judgement)`` pairs for writing (validated here, in the caller's thread)."""
        checked = _check_items(items)
        with self._submit_lock:
            if self._closed:
                raise StoreError("AsyncWriter is closed")
            self._raise_if_failed()
            if checked:
                self._queue.put(checked)

    def flush(self) -> None:
        """Wait until every submitted item has been written; re-raise a writer failure."""
        self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Flush, stop the thread and re-raise a writer failure. Idempotent (a failure is raised again)."""
        try:
            with self._submit_lock:
                if not self._closed:
                    self._closed = True
                    self._queue.put(_STOP)
            self._thread.join()
        except KeyboardInterrupt:  # the writer's own interrupt may land here: report the failure instead
            self._thread.join()  # a Ctrl-C or SIGTERM: what was submitted is still written before it goes on
            if self._error is None:
                raise
        self._raise_if_failed()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
