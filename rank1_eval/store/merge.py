"""Merging stores (shards' stores into one, or several runs') and migrating a store of an older key scheme."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rank1_eval.records import Judgement
from rank1_eval.store.repair import check_store
from rank1_eval.store.sqlite import (
    _CHUNK,
    LEGACY_KEY_SCHEME,
    SQLiteStore,
    StoreConflictError,
    StoreCorruptError,
    StoreError,
    StoreKeySchemeError,
    salvage_hint,
    store_error,
)


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
