"""The judgement store: judgements by the exact engine request they answer, for resume, dedup and sharing.

The seam is :class:`Store` (``get_many(keys)`` / ``put_many(items)`` / ``close()``); this package is the only place
in the project that knows SQL. Its rooms: :mod:`.sqlite` (the errors, keys, the seam, :class:`MemoryStore`,
:class:`SQLiteStore` and its ``meta``, durability and concurrency), :mod:`.writer` (:class:`AsyncWriter`, the
background commits), :mod:`.merge` (merge and key-scheme migration) and :mod:`.repair` (``store
check|salvage|drop-failed`` and the read-only opener).
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
