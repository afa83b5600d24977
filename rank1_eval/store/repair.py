"""``store check|salvage|drop-failed``: SQLite's consistency check, a salvage that copies every readable judgement
(by rowid range through the b-tree, then by reading leaf pages directly where the b-tree is damaged) and the
deletion of failed judgements. The read-only opener every store command and the pre-flight share lives here."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank1_eval.records import Judgement
from rank1_eval.store.sqlite import (
    _CHUNK,
    _SQLITE_HEADER,
    APPLICATION_ID,
    KEY_SCHEME,
    LEGACY_KEY_SCHEME,
    SQLiteStore,
    StoreCorruptError,
    StoreError,
    StoreKeySchemeError,
    _decode,
    key_scheme_of,
    salvage_hint,
    store_error,
)


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
