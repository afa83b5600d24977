"""The judgement store: judgements by content hash, for resume and dedup.

The seam is :class:`Store` — ``get_many(keys)`` / ``put_many(items)`` / ``close()``. :class:`SQLiteStore` is
the real implementation (stdlib :mod:`sqlite3`), :class:`MemoryStore` a dict-backed one for unit tests and for
runs that want no persistence. This module is the only place in the project that knows SQL.

Keys come from :func:`judgement_key`: the sha256 of a canonical JSON of the judgement's identity (the exact pass-1
request, ``RULE_VERSION``, the model's identity and the numerics; see :mod:`rank1_eval.judge`). The store is
content-addressed and insert-only: the first value written under a key wins (``INSERT OR IGNORE``); the one update
is a stored judgement gaining the token ids it was stored without (``run --keep-token-ids``).

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
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

from rank1_eval.records import Judgement

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
