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
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from rank1_eval.records import Judgement

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "AsyncWriter",
    "MemoryStore",
    "MergeReport",
    "SQLiteStore",
    "SalvageReport",
    "SourceMergeCounts",
    "Store",
    "StoreCheck",
    "StoreConflictError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreSchemaError",
    "check_store",
    "drop_failed",
    "judgement_key",
    "key_scheme_of",
    "merge_stores",
    "migrate_store",
    "salvage_store",
    "take_writer_failure",
]

SCHEMA_VERSION = 1
"""Version of the on-disk layout written by this code; a store with a newer version is refused."""

KEY_SCHEME = 2
"""How the keys of a store were made, kept in its ``meta`` table (``key_scheme``). 2: the exact pass-1 request, the
rule version, the model's identity and its numerics (``rank1_eval.judge.Judge.key``). A store without the marker
that holds judgements was keyed by the previous scheme (1: a hand-picked settings list; rank1_eval before
RULE_VERSION); it is refused for runs, and ``rank1-eval store migrate`` re-keys it."""
LEGACY_KEY_SCHEME = 1

APPLICATION_ID = int.from_bytes(b"rk1e", "big")
"""SQLite ``application_id`` stamped into every store this code creates (older stores carry 0)."""

_SQLITE_HEADER = b"SQLite format 3\x00"
_CHUNK = 500  # keys per ``IN (...)`` query, well below SQLite's host-parameter limit
_PAGE = 1000  # rows per page when iterating keys/items


class StoreError(RuntimeError):
    """A store cannot be opened or used (bad path, not a store, closed, undecodable row...)."""


class StoreSchemaError(StoreError):
    """The store was written with a schema this code does not understand."""


class StoreKeySchemeError(StoreError):
    """A store whose keys were made by another scheme: its judgements would never be found (or be stale)."""


class StoreFullError(StoreError):
    """The disk under the store is full: committed judgements are kept, a rerun resumes once there is room."""


class StoreCorruptError(StoreError):
    """SQLite reports the store's pages as damaged; ``rank1-eval store salvage`` copies what is readable."""


def salvage_hint(path: Path) -> str:
    return (
        f"`rank1-eval store salvage {path} --into NEW.sqlite` copies every readable judgement into a new store; "
        "then rerun with --store NEW.sqlite (only the lost pairs are scored again)"
    )


def store_error(path: Path, exc: sqlite3.Error, action: str) -> StoreError:
    """One line naming the store, what failed and the fix, for any SQLite error (full, corrupt, read-only...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    base = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    if base == sqlite3.SQLITE_IOERR or "disk I/O" in text:  # a full disk shows as I/O when -shm cannot grow
        try:
            nearly_full = shutil.disk_usage(path.parent).free < 1 << 20
        except OSError:
            nearly_full = False
        if nearly_full:
            text = f"{text}; {shutil.disk_usage(path.parent).free // 1024} KiB free"
            base = sqlite3.SQLITE_FULL
    if base == sqlite3.SQLITE_FULL or "disk is full" in text:
        return StoreFullError(
            f"no space left for judgement store {path} while {action} ({text}): free disk space or move the store "
            "(--store), then rerun: every judgement committed so far is kept and is not scored again"
        )
    if base in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in text:
        return StoreCorruptError(f"judgement store {path} is corrupted ({text}) while {action}: {salvage_hint(path)}")
    if base == sqlite3.SQLITE_READONLY or "readonly" in text:
        return StoreError(
            f"judgement store {path} is read-only ({text}) while {action}: make it and its folder writable, "
            "or pass another --store"
        )
    if base == sqlite3.SQLITE_CANTOPEN or "unable to open" in text:
        return StoreError(
            f"cannot open judgement store {path} ({text}): its folder must exist and be writable (SQLite adds "
            "-wal and -shm files beside it)"
        )
    if base == sqlite3.SQLITE_IOERR or "disk I/O" in text:
        return StoreError(f"disk I/O error on judgement store {path} while {action} ({text}): check the disk")
    return StoreError(f"judgement store {path}: {action} failed ({text})")


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite already rolled back after SQLITE_FULL or IOERR)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


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
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / Infinity
        raise ValueError(f"judgement_key() parts must be finite JSON values: {exc}") from exc
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------------- seam


@runtime_checkable
class Store(Protocol):
    """Where judgements live, addressed by :func:`judgement_key`. Insert-only: first writer wins (except that a
    judgement stored without pass 1's token ids takes them from a later write: ``--keep-token-ids``)."""

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


_IDS_LIKE = '%"token_ids":[%'  # a stored judgement that kept pass 1's token ids (_encode omits them when None)


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
                old = self._data.setdefault(key, value)
                if old.token_ids is None and value.token_ids is not None:  # as SQLiteStore: ids may be added
                    self._data[key] = value

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

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 60.0, create: bool = True, legacy_ok: bool = False
    ):
        self.path = Path(path)
        self.legacy_ok = legacy_ok  # open a store of the previous key scheme (migrate, drop-failed) instead of refusing
        self.key_scheme = KEY_SCHEME
        self.timeout = float(timeout)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._check_path(create)
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, "opening") from exc
        try:
            self._setup(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise store_error(self.path, exc, "opening") from exc
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
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            if "malformed" in str(exc):
                msg = f"judgement store {self.path} is corrupted ({exc}): {salvage_hint(self.path)}"
                raise StoreCorruptError(msg) from exc
            raise StoreError(f"{self.path} is not a SQLite database ({exc})") from exc
        if tables:  # an existing database: prove it is ours before anything is written (WAL switch included)
            self._check_ours(conn, tables)
        self._enable_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        version = self._read_version(conn) if tables else None
        if version is None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, value TEXT NOT NULL, created_at REAL)"
                )
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                version = self._read_version(conn)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
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
        self._check_key_scheme(conn)

    def _check_key_scheme(self, conn: sqlite3.Connection) -> None:
        """Mark a new (empty) store with :data:`KEY_SCHEME`; refuse one keyed by another scheme, in one line."""
        scheme = key_scheme_of(conn)
        if scheme is None:  # empty and unmarked: ours from now on
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_scheme', ?)", (str(KEY_SCHEME),))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            scheme = key_scheme_of(conn)
        self.key_scheme = scheme or KEY_SCHEME
        if self.key_scheme == KEY_SCHEME or self.legacy_ok:
            return
        n = conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
        if self.key_scheme > KEY_SCHEME:
            raise StoreKeySchemeError(
                f"judgement store {self.path} is keyed by scheme {self.key_scheme}, newer than this rank1_eval's "
                f"({KEY_SCHEME}): upgrade rank1_eval or pass another --store"
            )
        raise StoreKeySchemeError(
            f"judgement store {self.path} holds {n} judgements keyed by the previous key scheme (settings, not the "
            f"exact request): none would be found. Re-key them with `rank1-eval store migrate {self.path} --into "
            "NEW.sqlite` plus the flags of the runs that made them, then use --store NEW.sqlite (or pass a new --store)"
        )

    def _check_ours(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        """Refuse, without writing a byte, a SQLite file of another application (even one with a ``meta`` table)."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        problem = None
        if app_id not in (0, APPLICATION_ID):
            problem = f"application_id {app_id:#x}"
        elif not {"meta", "judgements"} <= tables:
            problem = f"tables: {', '.join(sorted(tables))}"
        else:
            try:
                columns = {row[1] for row in conn.execute("PRAGMA table_info(judgements)")}
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.OperationalError as exc:
                problem = str(exc)
            else:
                if not {"key", "value"} <= columns or row is None:
                    problem = "no rank1_eval schema version"
        if problem:
            raise StoreError(
                f"{self.path} is a SQLite database but not a rank1_eval judgement store ({problem}); left untouched "
                "— pass another --store path"
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
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    @staticmethod
    def _select(conn: sqlite3.Connection, keys: list[str]) -> dict[str, Judgement]:
        found: dict[str, Judgement] = {}
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, value in conn.execute(f"SELECT key, value FROM judgements WHERE key IN ({marks})", chunk):
                found[key] = _decode(key, value)
        return found

    @staticmethod
    def _insert(conn: sqlite3.Connection, items: list[tuple[str, Judgement]]) -> None:
        now = time.time()
        conn.executemany(  # first writer wins; the one exception: the same judgement with its token ids added
            "INSERT INTO judgements (key, value, created_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = "
            f"excluded.value WHERE judgements.value NOT LIKE '{_IDS_LIKE}' AND excluded.value LIKE '{_IDS_LIKE}'",
            [(key, _encode(value), now) for key, value in items],
        )

    # ---- the Store API

    def get_many(self, keys: Sequence[str]) -> dict[str, Judgement]:
        wanted = _check_keys(keys)
        with self._lock:
            conn = self._connection()
            if not wanted:
                return {}
            try:
                conn.execute("BEGIN")  # one read snapshot across all chunks
                try:
                    return self._select(conn, wanted)
                finally:
                    _rollback(conn)  # a read-only transaction: ending it is all a COMMIT would do
            except sqlite3.Error as exc:
                raise store_error(self.path, exc, "reading judgements") from exc

    def put_many(self, items: Sequence[tuple[str, Judgement]]) -> None:
        checked = _check_items(items)
        if not checked:
            with self._lock:
                self._connection()
            return
        try:
            with self._write_txn() as conn:
                self._insert(conn, checked)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, f"writing {len(checked)} judgements") from exc

    def _pages(self, columns: str) -> Iterator[tuple[Any, ...]]:
        last = ""
        while True:
            with self._lock:
                try:
                    rows = (
                        self._connection()
                        .execute(f"SELECT {columns} FROM judgements WHERE key > ? ORDER BY key LIMIT ?", (last, _PAGE))
                        .fetchall()
                    )
                except sqlite3.Error as exc:
                    raise store_error(self.path, exc, "reading judgements") from exc
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


def key_scheme_of(conn: sqlite3.Connection) -> int | None:
    """The key scheme a store's ``meta`` names; :data:`LEGACY_KEY_SCHEME` for an unmarked store with judgements,
    None for an unmarked empty one."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'key_scheme'").fetchone()
    if row is not None:
        try:
            return int(row[0])
        except ValueError:
            raise StoreSchemaError(f"unreadable key scheme {row[0]!r}") from None
    has_rows = conn.execute("SELECT 1 FROM judgements LIMIT 1").fetchone() is not None
    return LEGACY_KEY_SCHEME if has_rows else None


@dataclass(frozen=True)
class MigrateReport:
    """What :func:`migrate_store` did: judgements read, re-keyed, already there, and not re-keyable."""

    source: Path
    into: Path
    read: int
    rekeyed: int
    already: int
    not_rekeyable: int

    def message(self) -> str:
        return (
            f"store migrate {self.source} -> {self.into}: {self.read} judgements read, {self.rekeyed} re-keyed, "
            f"{self.already} already there, {self.not_rekeyable} not re-keyable with these flags (no prompt of "
            "this run has their old key: migrate again with the flags of the runs that made them)"
        )


def migrate_store(
    source: str | os.PathLike[str], into: str | os.PathLike[str], mapping: Mapping[str, str]
) -> MigrateReport:
    """Copy the judgements of a previous-scheme store whose old key ``mapping`` knows into ``into`` under their
    new keys (``mapping``: old key -> new key, made from the run's prompts and settings). The source is only
    read. Exact: a judgement moves only when its old key is recomputed from a prompt and settings that made it.
    """
    src, dst = Path(source), Path(into)
    if dst.exists() and dst.resolve() == src.resolve():
        raise StoreError(f"migrate needs another store: --into {dst} is the source itself")
    read = rekeyed = already = 0
    with SQLiteStore(src, create=False, legacy_ok=True) as old, SQLiteStore(dst) as target:
        if old.key_scheme != LEGACY_KEY_SCHEME:
            raise StoreKeySchemeError(
                f"{src} is keyed by scheme {old.key_scheme}, not the previous one: nothing to migrate"
            )
        for key, value in old.items():
            read += 1
            new = mapping.get(key)
            if new is None:
                continue
            if new in target.get_many([new]):
                already += 1
                continue
            target.put_many([(new, value)])
            rekeyed += 1
    return MigrateReport(src, dst, read, rekeyed, already, read - rekeyed - already)


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
    for src in source_paths:  # a damaged source is named before anything is written
        check = check_store(src)
        if not check.ok:
            raise StoreCorruptError(f"merge source {src} is corrupted ({check.problems[0]}): {salvage_hint(src)}")
    try:
        return _merge(into_path, source_paths, atol)
    except sqlite3.Error as exc:
        raise store_error(into_path, exc, "merging") from exc


def _merge(into_path: Path, source_paths: list[Path], atol: float) -> MergeReport:
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


# --------------------------------------------------------------------------------------------------- repair


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _open_readonly(path: Path) -> sqlite3.Connection:
    """THE opener of an existing store for ``store check|salvage|drop-failed`` and the pre-flight: read-only, and
    it writes nothing beside ``path`` either (no ``-wal``/``-shm`` files appear where there were none).

    Refuses, in one line each and for every command alike, a missing path, a folder, an empty (0-byte) file, a
    file that is not SQLite, and a SQLite database of another application. A store whose schema cannot even be
    read is let through: that is damage, which ``check`` reports and ``salvage`` reads around.
    """
    from urllib.parse import quote

    if path.is_dir():
        raise StoreError(f"judgement store path {path} is a directory, expected a SQLite file")
    if not path.is_file():
        raise StoreError(f"judgement store {path} does not exist")
    with path.open("rb") as fh:
        header = fh.read(len(_SQLITE_HEADER))
    if not header:
        raise StoreError(f"{path} is an empty file (0 bytes), not a judgement store: pass another --store path")
    if header != _SQLITE_HEADER:
        raise StoreError(f"{path} is not a SQLite database (unexpected file header): pass another --store path")
    uri = f"file:{quote(str(path.resolve()))}"
    live = Path(f"{path}-wal").exists()  # a writer has it open (or crashed): read its WAL, whose files exist
    try:  # immutable: with no -wal file there is nothing beyond the main file to read, and nothing is created
        conn = sqlite3.connect(f"{uri}?mode=ro{'' if live else '&immutable=1'}", uri=True, check_same_thread=False)
    except sqlite3.Error:  # e.g. a read-only folder without the -shm file: read the main file as it is
        conn = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        _refuse_foreign(path, conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _refuse_foreign(path: Path, conn: sqlite3.Connection) -> None:
    """A SQLite file of another application is refused before anything reads (or writes) it as a store."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError:
        return  # damaged: check reports it, salvage reads around it
    problem = None
    if app_id not in (0, APPLICATION_ID):
        problem = f"application_id {app_id:#x}"
    elif tables and not {"meta", "judgements"} <= tables:
        problem = f"tables: {', '.join(sorted(tables))}"
    if problem:
        raise StoreError(
            f"{path} is a SQLite database but not a rank1_eval judgement store ({problem}); left untouched — pass "
            "another --store path"
        )


@dataclass(frozen=True)
class StoreCheck:
    """What :func:`check_store` found; ``ok`` means SQLite sees no damage and the layout is a rank1_eval store."""

    path: Path
    ok: bool
    problems: tuple[str, ...]
    judgements: int | None
    failed: int | None

    def message(self) -> str:
        if self.ok:
            return f"{self.path}: ok, {self.judgements} judgements ({self.failed} failed)"
        shown = "; ".join(self.problems[:3]) + (
            f"; ... ({len(self.problems)} problems)" if len(self.problems) > 3 else ""
        )
        return f"{self.path}: damaged ({shown}): {salvage_hint(self.path)}"


_FAILED_LIKE = '%"path":"failed"%'  # _encode: sorted keys, compact separators; quotes in text are escaped


def check_store(path: str | os.PathLike[str], *, full: bool = False) -> StoreCheck:
    """SQLite's own consistency check (``quick_check``, or ``integrity_check`` with ``full``), read-only.

    Cheap enough to run before a model loads (it reads every page once), so a damaged store is reported with
    the way to salvage it before any compute is spent, not hours later in the middle of a run.
    """
    path = Path(path)
    conn = _open_readonly(path)
    try:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            rows = conn.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}(20)").fetchall()
        except sqlite3.DatabaseError as exc:
            error = store_error(path, exc, "checking it")
            if not isinstance(error, StoreCorruptError):  # a full disk or an unreadable file is not a damaged store
                raise error from None
            return StoreCheck(path, False, (str(exc),), None, None)
        problems = tuple(
            line.strip()
            for r in rows
            for line in str(r[0]).splitlines()
            if line.strip() not in ("ok", "") and not line.startswith("***")
        )
        if problems or not tables:
            return StoreCheck(path, not problems, problems, 0 if not tables else None, 0 if not tables else None)
        try:
            total = conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
            failed = conn.execute("SELECT COUNT(*) FROM judgements WHERE value LIKE ?", (_FAILED_LIKE,)).fetchone()[0]
        except sqlite3.DatabaseError as exc:
            return StoreCheck(path, False, (str(exc),), None, None)
        return StoreCheck(path, True, (), int(total), int(failed))
    finally:
        conn.close()


@dataclass(frozen=True)
class SalvageReport:
    """What :func:`salvage_store` copied into ``into``; ``lost`` estimates the rows it could not read back."""

    source: Path
    into: Path
    copied: int
    duplicates: int
    from_pages: int  # found only by reading leaf pages directly (their b-tree path was damaged)
    lost: int  # rowids up to the highest one seen that were not recovered (insert-only stores have no gaps)
    max_rowid: int

    def message(self) -> str:
        total = self.copied + self.duplicates + self.lost
        return (
            f"salvaged {self.copied + self.duplicates} of ~{total} judgements from {self.source} into {self.into} "
            f"({self.from_pages} read directly from damaged pages, {self.lost} lost, {self.duplicates} already "
            f"there); rerun with --store {self.into}: only the lost pairs are scored again"
        )


def _max_rowid(conn: sqlite3.Connection) -> int:
    for sql in (
        "SELECT max(rowid) FROM judgements",
        "SELECT max(rowid) FROM judgements INDEXED BY sqlite_autoindex_judgements_1",
    ):
        with contextlib.suppress(sqlite3.DatabaseError):
            value = conn.execute(sql).fetchone()[0]
            if value is not None:
                return int(value)
    return 0


def _btree_rows(conn: sqlite3.Connection, lo: int, hi: int, out: dict[str, tuple[int, str]]) -> None:
    """Rows with rowid in [lo, hi] through SQLite; a range it cannot read is halved down to single rows."""
    try:
        rows = conn.execute("SELECT rowid, key, value FROM judgements WHERE rowid BETWEEN ? AND ?", (lo, hi)).fetchall()
    except sqlite3.DatabaseError:
        if lo < hi:
            mid = (lo + hi) // 2
            _btree_rows(conn, lo, mid, out)
            _btree_rows(conn, mid + 1, hi, out)
        return
    for rowid, key, value in rows:
        if isinstance(key, str) and isinstance(value, str):
            out.setdefault(key, (int(rowid), value))


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = 0
    for n in range(9):
        b = buf[i + n]
        if n == 8:
            return (value << 8) | b, i + 9
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, i + n + 1
    raise ValueError("bad varint")  # pragma: no cover


def _page_rows(data: bytes) -> Iterator[tuple[int, str, str]]:
    """``(rowid, key, value)`` of every judgements row on an intact table-leaf page of a SQLite file.

    Reads the file format directly (pages, cells, overflow chains, records), so rows stay reachable when a
    damaged interior page cuts them off from the b-tree. Anything that does not parse as a 3-column
    (key, value, created_at) row with a 64-hex key is skipped.
    """
    if len(data) < 100:
        return
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    usable = page_size - data[20]
    n_pages = len(data) // page_size
    for number in range(1, n_pages + 1):
        start = (number - 1) * page_size
        head = start + (100 if number == 1 else 0)
        if data[head] != 0x0D:  # not a table leaf page
            continue
        cells = int.from_bytes(data[head + 3 : head + 5], "big")
        for c in range(cells):
            try:
                ptr = start + int.from_bytes(data[head + 8 + 2 * c : head + 10 + 2 * c], "big")
                size, i = _varint(data, ptr)
                rowid, i = _varint(data, i)
                payload = _payload(data, i, size, usable, page_size, start)
                row = _record(payload)
            except (IndexError, ValueError, UnicodeDecodeError):
                continue
            if len(row) == 3 and isinstance(row[0], str) and len(row[0]) == 64 and isinstance(row[1], str):
                yield rowid, row[0], row[1]


def _payload(data: bytes, i: int, size: int, usable: int, page_size: int, page_start: int) -> bytes:
    max_local = usable - 35
    if size <= max_local:
        return data[i : i + size]
    min_local = (usable - 12) * 32 // 255 - 23
    local = min_local + (size - min_local) % (usable - 4)
    local = local if local <= max_local else min_local
    parts = [data[i : i + local]]
    if i + local + 4 > page_start + page_size:
        raise ValueError("cell runs off its page")
    nxt = int.from_bytes(data[i + local : i + local + 4], "big")
    have, seen = local, set()
    while have < size:
        if nxt < 1 or nxt in seen or nxt * page_size > len(data):
            raise ValueError("broken overflow chain")
        seen.add(nxt)
        off = (nxt - 1) * page_size
        chunk = data[off + 4 : off + usable][: size - have]
        parts.append(chunk)
        have += len(chunk)
        nxt = int.from_bytes(data[off : off + 4], "big")
    return b"".join(parts)


def _record(payload: bytes) -> list[Any]:
    header_size, i = _varint(payload, 0)
    types = []
    while i < header_size:
        t, i = _varint(payload, i)
        types.append(t)
    values: list[Any] = []
    pos = header_size
    widths = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8, 7: 8}
    for t in types:
        if t in (0, 8, 9):
            values.append(None if t == 0 else t - 8)
        elif t in widths:
            raw = payload[pos : pos + widths[t]]
            pos += widths[t]
            values.append(raw if t == 7 else int.from_bytes(raw, "big", signed=True))
        elif t >= 12:
            n = (t - 12) // 2
            raw = payload[pos : pos + n]
            if len(raw) != n:
                raise ValueError("record runs off its payload")
            pos += n
            values.append(raw.decode("utf-8") if t % 2 else raw)
        else:
            raise ValueError(f"serial type {t}")
    return values


def salvage_store(source: str | os.PathLike[str], into: str | os.PathLike[str], *, chunk: int = 256) -> SalvageReport:
    """Copy every readable judgement of a damaged store into ``into`` (a new store, or an existing one).

    The source is only read (opened read-only; never modified). Two passes: through SQLite by rowid ranges
    (a range that hits a damaged page is halved down to single rows; this pass also sees committed pages
    still in the WAL), then straight from the file's table-leaf pages for rows whose b-tree path is broken.
    Every value is decoded before it is copied; a row that does not decode is not copied.
    """
    src, dst = Path(source), Path(into)
    if dst.exists() and dst.resolve() == src.resolve():
        raise StoreError(f"salvage needs a new store: --into {dst} is the damaged store itself")
    found: dict[str, tuple[int, str]] = {}
    conn = _open_readonly(src)
    try:
        top = _max_rowid(conn)
        for lo in range(1, top + 1, chunk):
            _btree_rows(conn, lo, lo + chunk - 1, found)
    finally:
        conn.close()
    n_btree = len(found)
    for rowid, key, value in _page_rows(src.read_bytes()):
        found.setdefault(key, (rowid, value))
    top = max([top, *(r for r, _ in found.values())])
    good: list[tuple[str, Judgement]] = []
    for key, (_, value) in found.items():
        with contextlib.suppress(StoreError):
            good.append((key, _decode(key, value)))
    conn = _open_readonly(src)
    try:
        scheme = key_scheme_of(conn) if {"meta", "judgements"} <= _tables(conn) else None
    except sqlite3.Error:  # a damaged meta table: the rows themselves tell nothing either way
        scheme = None
    finally:
        conn.close()
    copied = duplicates = 0
    if scheme == LEGACY_KEY_SCHEME and not dst.exists():  # keep the source's keys' meaning: still to migrate
        with SQLiteStore(dst) as fresh, fresh._write_txn() as wconn:
            wconn.execute("UPDATE meta SET value = ? WHERE key = 'key_scheme'", (str(LEGACY_KEY_SCHEME),))
    with SQLiteStore(dst, legacy_ok=scheme == LEGACY_KEY_SCHEME) as target:
        if target.key_scheme != (scheme or KEY_SCHEME):
            raise StoreKeySchemeError(
                f"salvage {src} (key scheme {scheme}) into {dst} (key scheme {target.key_scheme}) would mix keys of "
                "two schemes: salvage into a new store"
            )
        for start in range(0, len(good), _CHUNK):
            page = good[start : start + _CHUNK]
            present = target.get_many([k for k, _ in page])
            target.put_many([(k, j) for k, j in page if k not in present])
            copied += sum(k not in present for k, _ in page)
            duplicates += len(present)
    lost = max(0, top - len(good))
    return SalvageReport(src, dst, copied, duplicates, len(found) - n_btree, lost, top)


def drop_failed(path: str | os.PathLike[str]) -> int:
    """Delete the ``failed`` judgements of a store so that a rerun scores those pairs again; returns how many.

    The store is otherwise insert-only (first writer wins); this is the one deliberate exception, for failures
    whose cause was outside the model (a server answering NaN, an engine bug) and has been fixed.
    """
    _open_readonly(Path(path)).close()  # the same refusals as `store check` (empty file, not SQLite, not ours)
    with SQLiteStore(path, create=False, legacy_ok=True) as store:
        try:
            store._connection().execute(
                "PRAGMA secure_delete = ON"
            )  # deleted rows are zeroed: salvage never revives them
            with store._write_txn() as conn:
                return int(conn.execute("DELETE FROM judgements WHERE value LIKE ?", (_FAILED_LIKE,)).rowcount)
        except sqlite3.Error as exc:
            raise store_error(store.path, exc, "deleting failed judgements") from exc


# --------------------------------------------------------------------------------------------------- writer


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
