"""The judgement store: judgements by content hash, for resume and dedup.

The seam is :class:`Store` — ``get_many(keys)`` / ``put_many(items)`` / ``close()``. :class:`SQLiteStore` is
the real implementation (stdlib :mod:`sqlite3`), :class:`MemoryStore` a dict-backed one for unit tests and for
runs that want no persistence. This module is the only place in the project that knows SQL.

Keys come from :func:`judgement_key`: the sha256 of a canonical JSON of *everything that determines a
judgement*. The store is content-addressed and insert-only: the first value written under a key wins
(``INSERT OR IGNORE``) and is never updated.

Durability and concurrency (SQLite):

* WAL journal mode, ``synchronous=NORMAL``: each ``put_many`` is one transaction. A process killed at any
  moment (SIGKILL, OOM killer, pre-emption) leaves the database consistent, with every committed transaction
  present. (A power loss / OS crash may lose the last few committed transactions, never consistency.)
* Several processes may read and write one store at the same time; writers queue on the database lock with a
  ``busy_timeout`` (60 s by default) and every write takes the lock up front (``BEGIN IMMEDIATE``), so callers
  do not see ``database is locked`` under ordinary contention. WAL needs a local file system (not NFS).
* One :class:`SQLiteStore` may be shared between threads (the connection is opened with
  ``check_same_thread=False`` and every use is serialised by a lock), e.g. with :class:`AsyncWriter`'s
  background thread. It must not be shared across ``fork``: each process opens its own store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from rank1_eval.records import Judgement

__all__ = [
    "SCHEMA_VERSION",
    "AsyncWriter",
    "MemoryStore",
    "MergeReport",
    "SQLiteStore",
    "SourceMergeCounts",
    "Store",
    "StoreConflictError",
    "StoreError",
    "StoreSchemaError",
    "judgement_key",
    "merge_stores",
]

SCHEMA_VERSION = 1
"""Version of the on-disk layout written by this code; a store with a newer version is refused."""

_SQLITE_HEADER = b"SQLite format 3\x00"
_CHUNK = 500  # keys per ``IN (...)`` query, well below SQLite's host-parameter limit
_PAGE = 1000  # rows per page when iterating keys/items


class StoreError(RuntimeError):
    """A store cannot be opened or used (bad path, not a store, closed, undecodable row...)."""


class StoreSchemaError(StoreError):
    """The store was written with a schema this code does not understand."""


class StoreConflictError(StoreError):
    """Two different judgements under one key (raised by :func:`merge_stores`)."""

    def __init__(self, key: str, existing: Judgement, incoming: Judgement, source: Path | None = None):
        self.key = key
        self.existing = existing
        self.incoming = incoming
        self.source = source
        where = f" from {source}" if source is not None else ""
        super().__init__(
            f"conflicting judgements for key {key}{where}:\n"
            f"  existing: {_describe(existing)}\n"
            f"  incoming: {_describe(incoming)}"
        )


def _describe(j: Judgement, limit: int = 120) -> str:
    d = j.to_dict()
    for name in ("reasoning", "forced_reasoning", "error"):
        text = d.get(name)
        if isinstance(text, str) and len(text) > limit:
            d[name] = text[:limit] + f"... [{len(text)} chars]"
    return repr(d)


# --------------------------------------------------------------------------------------------------- keys


def judgement_key(**parts: Any) -> str:
    """The store key for a judgement: hex sha256 of a canonical JSON of ``parts``.

    Canonical JSON = sorted keys, no whitespace, ``ensure_ascii=False``, UTF-8, no NaN/Infinity.
    Pass **every** part that can change the judgement — model id *and* revision, the full prompt text (after
    instruction merging and passage truncation), sampling settings (max tokens, stop strings, temperature...),
    the engine kind and its numerics (dtype, ...), the scoring-rule version — otherwise a changed setting
    silently reuses stale judgements. Values must be JSON-serialisable; JSON does not distinguish tuples from
    lists, but does distinguish ``1`` from ``1.0`` and ``None`` from a missing part: normalise types first.
    """
    if not parts:
        raise ValueError("judgement_key() needs at least one part")
    try:
        canonical = json.dumps(
            parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except ValueError as exc:  # NaN / Infinity
        raise ValueError(f"judgement_key() parts must be finite JSON values: {exc}") from exc
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------- seam


@runtime_checkable
class Store(Protocol):
    """Where judgements live, addressed by :func:`judgement_key`. Insert-only: first writer wins."""

    def get_many(self, keys: Sequence[str]) -> dict[str, Judgement]:
        """The stored judgements for those of ``keys`` that are present (missing keys are absent)."""
        ...

    def put_many(self, items: Sequence[tuple[str, Judgement]]) -> None:
        """Store ``(key, judgement)`` pairs atomically; keys already present keep their value."""
        ...

    def close(self) -> None:
        """Release resources; idempotent."""
        ...


def _check_items(items: Iterable[tuple[str, Judgement]]) -> list[tuple[str, Judgement]]:
    checked = []
    for item in items:
        try:
            key, value = item
        except (TypeError, ValueError):
            raise TypeError(f"store items must be (key, Judgement) pairs, got {item!r}") from None
        if not isinstance(key, str) or not key:
            raise TypeError(f"store keys must be non-empty str, got {key!r}")
        if not isinstance(value, Judgement):
            raise TypeError(f"store values must be Judgement, got {type(value).__name__} for key {key}")
        checked.append((key, value))
    return checked


def _check_keys(keys: Iterable[str]) -> list[str]:
    if isinstance(keys, str):
        raise TypeError("get_many() takes a sequence of keys, not a single str")
    unique = list(dict.fromkeys(keys))
    for key in unique:
        if not isinstance(key, str):
            raise TypeError(f"store keys must be str, got {key!r}")
    return unique


def _encode(j: Judgement) -> str:
    return json.dumps(j.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _decode(key: str, value: str) -> Judgement:
    try:
        return Judgement.from_dict(json.loads(value))
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"undecodable judgement under key {key}: {exc}") from exc


# --------------------------------------------------------------------------------------------------- memory


class MemoryStore:
    """A dict-backed :class:`Store` with the same semantics as :class:`SQLiteStore` (thread-safe)."""

    def __init__(self) -> None:
        self._data: dict[str, Judgement] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("MemoryStore is closed")

    def get_many(self, keys: Sequence[str]) -> dict[str, Judgement]:
        wanted = _check_keys(keys)
        with self._lock:
            self._check_open()
            return {k: self._data[k] for k in wanted if k in self._data}

    def put_many(self, items: Sequence[tuple[str, Judgement]]) -> None:
        checked = _check_items(items)
        with self._lock:
            self._check_open()
            for key, value in checked:
                self._data.setdefault(key, value)

    def keys(self) -> Iterator[str]:
        with self._lock:
            self._check_open()
            snapshot = sorted(self._data)
        return iter(snapshot)

    def items(self) -> Iterator[tuple[str, Judgement]]:
        with self._lock:
            self._check_open()
            snapshot = sorted(self._data.items())
        return iter(snapshot)

    def __len__(self) -> int:
        with self._lock:
            self._check_open()
            return len(self._data)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            self._check_open()
            return key in self._data

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._data)} judgements{', closed' if self._closed else ''})"


# --------------------------------------------------------------------------------------------------- sqlite


class SQLiteStore:
    """A :class:`Store` in one SQLite file (WAL, ``busy_timeout``, ``synchronous=NORMAL``).

    ``path``'s parent directories are created. ``create=False`` refuses a missing file instead of creating a
    new store. Raises :class:`StoreError` when ``path`` is not a SQLite database or is a SQLite database that
    is not a rank1_eval store, and :class:`StoreSchemaError` when the store's schema is newer than this code.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0, create: bool = True):
        self.path = Path(path)
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._check_path(create)
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open judgement store {self.path}: {exc}") from exc
        try:
            self._setup(conn)
        except sqlite3.OperationalError as exc:
            conn.close()
            raise StoreError(f"cannot open judgement store {self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database"
            conn.close()
            raise StoreError(f"{self.path} is not a SQLite database ({exc})") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # ---- opening

    def _check_path(self, create: bool) -> None:
        path = self.path
        if path.is_dir():
            raise StoreError(f"judgement store path {path} is a directory, expected a SQLite file")
        if path.exists():
            try:
                with path.open("rb") as fh:
                    header = fh.read(len(_SQLITE_HEADER))
            except OSError as exc:
                raise StoreError(f"cannot read judgement store {path}: {exc}") from exc
            if header and header != _SQLITE_HEADER:
                raise StoreError(f"{path} is not a SQLite database (unexpected file header {header[:16]!r})")
            return
        if not create:
            raise StoreError(f"judgement store {path} does not exist")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for judgement store {path}: {exc}") from exc

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise StoreError(
                f"{self.path} is a SQLite database but not a rank1_eval judgement store "
                f"(tables: {', '.join(sorted(tables))})"
            )
        self._enable_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        version = self._read_version(conn) if tables else None
        if version is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS judgements "
                    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, created_at REAL)"
                )
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                version = self._read_version(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if version is None or version > SCHEMA_VERSION:
            raise StoreSchemaError(
                f"judgement store {self.path} has schema version {version}, newer than the version this "
                f"rank1_eval understands ({SCHEMA_VERSION}); upgrade rank1_eval or use another store"
            )
        if version < SCHEMA_VERSION:  # no older layouts exist yet; kept for when one does
            raise StoreSchemaError(
                f"judgement store {self.path} has old schema version {version} (current {SCHEMA_VERSION})"
            )

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a (new) database to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at once
        # instead of consulting the busy handler when another process opens the same file: retry.
        deadline = time.monotonic() + self.timeout
        delay = 0.001
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        if str(mode).lower() != "wal":
            raise StoreError(f"cannot switch {self.path} to WAL journal mode (got {mode!r})")

    @staticmethod
    def _read_version(conn: sqlite3.Connection) -> int | None:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            return None
        try:
            return int(row[0])
        except ValueError:
            raise StoreSchemaError(f"unreadable schema version {row[0]!r}") from None

    # ---- internals shared with merge_stores

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"judgement store {self.path} is closed")
        if os.getpid() != self._pid:
            raise StoreError("a SQLiteStore cannot be used across fork(); open a new one in each process")
        return self._conn

    @contextlib.contextmanager
    def _write_txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _select(conn: sqlite3.Connection, keys: list[str]) -> dict[str, Judgement]:
        found: dict[str, Judgement] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(
                f"SELECT key, value FROM judgements WHERE key IN ({marks})", chunk
            ):
                found[key] = _decode(key, value)
        return found

    @staticmethod
    def _insert(conn: sqlite3.Connection, items: list[tuple[str, Judgement]]) -> None:
        now = time.time()
        conn.executemany(
            "INSERT OR IGNORE INTO judgements (key, value, created_at) VALUES (?, ?, ?)",
            [(key, _encode(value), now) for key, value in items],
        )

    # ---- the Store API

    def get_many(self, keys: Sequence[str]) -> dict[str, Judgement]:
        wanted = _check_keys(keys)
        with self._lock:
            conn = self._connection()
            if not wanted:
                return {}
            conn.execute("BEGIN")  # one read snapshot across all chunks
            try:
                return self._select(conn, wanted)
            finally:
                conn.execute("COMMIT")

    def put_many(self, items: Sequence[tuple[str, Judgement]]) -> None:
        checked = _check_items(items)
        if not checked:
            with self._lock:
                self._connection()
            return
        with self._write_txn() as conn:
            self._insert(conn, checked)

    def _pages(self, columns: str) -> Iterator[tuple[Any, ...]]:
        last = ""
        while True:
            with self._lock:
                rows = (
                    self._connection()
                    .execute(
                        f"SELECT {columns} FROM judgements WHERE key > ? ORDER BY key LIMIT ?", (last, _PAGE)
                    )
                    .fetchall()
                )
            yield from rows
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def keys(self) -> Iterator[str]:
        """All keys in sorted order, read page by page (rows added meanwhile may or may not appear)."""
        self._connection()
        return (row[0] for row in self._pages("key"))

    def items(self) -> Iterator[tuple[str, Judgement]]:
        """All ``(key, judgement)`` pairs in key order, read page by page."""
        self._connection()
        return ((key, _decode(key, value)) for key, value in self._pages("key, value"))

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM judgements").fetchone()[0]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            row = self._connection().execute("SELECT 1 FROM judgements WHERE key = ?", (key,)).fetchone()
        return row is not None

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and os.getpid() == self._pid:
                conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}{', closed' if self._conn is None else ''})"


# --------------------------------------------------------------------------------------------------- merge


@dataclass(frozen=True)
class SourceMergeCounts:
    """What one source contributed to a merge."""

    path: Path
    read: int
    added: int
    duplicates: int


@dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_stores` did: ``added`` new keys; ``duplicates``: keys already there, equal values."""

    into: Path
    added: int
    duplicates: int
    per_source: tuple[SourceMergeCounts, ...]


def _same_judgement(a: Judgement, b: Judgement, atol: float) -> bool:
    if a.path != b.path:
        return False
    if math.isnan(a.score) or math.isnan(b.score):
        return math.isnan(a.score) and math.isnan(b.score)
    return math.isclose(a.score, b.score, rel_tol=0.0, abs_tol=atol)


def merge_stores(
    into: str | os.PathLike[str], sources: Sequence[str | os.PathLike[str]], *, atol: float = 1e-5
) -> MergeReport:
    """Copy every judgement of ``sources`` into the store at ``into`` (created if missing).

    A key present in ``into`` or in an earlier source is a *duplicate* when the values agree (same ``path``,
    scores within ``atol``; the value already there is kept) and a conflict otherwise: then
    :class:`StoreConflictError` names the key and both values, and ``into`` is left unchanged — the whole
    merge is one transaction (other writers to ``into`` wait for it, up to their ``busy_timeout``).
    Sources must exist.
    """
    into_path = Path(into)
    source_paths = [Path(s) for s in sources]
    for src in source_paths:
        if not src.exists():
            raise StoreError(f"merge source {src} does not exist")
        if into_path.exists() and src.resolve() == into_path.resolve():
            raise ValueError(f"cannot merge store {src} into itself")
    counts: list[SourceMergeCounts] = []
    with SQLiteStore(into_path) as target, target._write_txn() as conn:
        for src in source_paths:
            read = added = duplicates = 0
            with SQLiteStore(src, create=False) as source:
                page: list[tuple[str, Judgement]] = []
                pages = source.items()
                while True:
                    page.clear()
                    for item in pages:
                        page.append(item)
                        if len(page) >= _CHUNK:
                            break
                    if not page:
                        break
                    read += len(page)
                    existing = target._select(conn, [k for k, _ in page])
                    new = []
                    for key, value in page:
                        old = existing.get(key)
                        if old is None:
                            new.append((key, value))
                        elif _same_judgement(old, value, atol):
                            duplicates += 1
                        else:
                            raise StoreConflictError(key, old, value, src)
                    target._insert(conn, new)
                    added += len(new)
            counts.append(SourceMergeCounts(src, read, added, duplicates))
    return MergeReport(
        into=into_path,
        added=sum(c.added for c in counts),
        duplicates=sum(c.duplicates for c in counts),
        per_source=tuple(counts),
    )


# --------------------------------------------------------------------------------------------------- writer


_STOP = object()


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
    """

    def __init__(
        self, store: Store, *, max_pending: int = 10_000, max_batch: int = 5000, commit_interval: float = 0.0
    ):
        self.store = store
        self.max_batch = max_batch
        self.commit_interval = max(0.0, commit_interval)
        self.commits = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._closed = False
        self._submit_lock = threading.Lock()
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
            except BaseException as exc:  # re-raised in the caller's thread
                exc.add_note("raised in AsyncWriter's background thread while writing to the store")
                self._error = exc
            finally:
                for _ in batches:
                    self._queue.task_done()
            if stop:
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
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
        with self._submit_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join()
        self._raise_if_failed()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
