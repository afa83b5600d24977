"""The judgement store: judgements by content hash, for resume and dedup.

The seam is :class:`Store` — ``get_many(keys)`` / ``put_many(items)`` / ``close()``. :class:`SQLiteStore` is
the real implementation (stdlib :mod:`sqlite3`), :class:`MemoryStore` a dict-backed one for unit tests and for
runs that want no persistence. This package is the only place in the project that knows SQL.

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

The package: :mod:`.sqlite` (the errors, keys, the seam, :class:`MemoryStore`, :class:`SQLiteStore` and its
``meta``), :mod:`.writer` (:class:`AsyncWriter`), :mod:`.merge` (merge and key-scheme migration) and
:mod:`.repair` (``store check|salvage|drop-failed`` and the read-only opener).
"""

from rank1_eval.store.merge import MergeReport, MigrateReport, SourceMergeCounts, merge_stores, migrate_store
from rank1_eval.store.repair import (
    SalvageReport,
    StoreCheck,
    _btree_rows,
    _max_rowid,
    _open_readonly,
    _page_rows,
    check_store,
    drop_failed,
    salvage_store,
)
from rank1_eval.store.sqlite import (
    _SQLITE_HEADER,
    APPLICATION_ID,
    KEY_SCHEME,
    LEGACY_KEY_SCHEME,
    SCHEMA_VERSION,
    MemoryStore,
    SQLiteStore,
    Store,
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    StoreKeySchemeError,
    StoreSchemaError,
    _decode,
    _encode,
    judgement_key,
    key_scheme_of,
    salvage_hint,
    store_error,
)
from rank1_eval.store.writer import AsyncWriter, judgements_written, take_writer_failure

__all__ = [
    "APPLICATION_ID",
    "AsyncWriter",
    "KEY_SCHEME",
    "LEGACY_KEY_SCHEME",
    "MemoryStore",
    "MergeReport",
    "MigrateReport",
    "SCHEMA_VERSION",
    "SQLiteStore",
    "SalvageReport",
    "SourceMergeCounts",
    "Store",
    "StoreCheck",
    "StoreConflictError",
    "StoreCorruptError",
    "StoreError",
    "StoreFullError",
    "StoreKeySchemeError",
    "StoreSchemaError",
    "_SQLITE_HEADER",
    "_btree_rows",
    "_decode",
    "_encode",
    "_max_rowid",
    "_open_readonly",
    "_page_rows",
    "check_store",
    "drop_failed",
    "judgement_key",
    "judgements_written",
    "key_scheme_of",
    "merge_stores",
    "migrate_store",
    "salvage_hint",
    "salvage_store",
    "store_error",
    "take_writer_failure",
]
