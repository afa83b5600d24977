"""Why ``store salvage`` keeps its page parser: judgements recovered by rowid ranges alone vs with the parser.

For each corrupted store (the corrupted-store cases of tests/test_faults.py and scripts/fault_matrix.py, then
random damage to a 5,000-judgement store with realistic reasoning lengths): ``rowid only`` = rows read through
SQLite by rowid ranges, a range that errors halved down to single rows (salvage's first pass, i.e. salvage
without the parser); ``+ parser`` = with the rows the leaf-page parser adds. Only rows whose value equals the
original judgement count. About a minute; the figures are in the README (The store and resuming).

    python scripts/measure_salvage.py
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

from rank1_eval.records import Judgement
from rank1_eval.store import SQLiteStore, StoreError, _btree_rows, _decode, _max_rowid, _open_readonly, _page_rows


def key(i: int, tag: str = "pair") -> str:
    return hashlib.sha256(f"{tag}-{i}".encode()).hexdigest()


def judgement(i: int, reasoning_chars: int, path: str = "pass1") -> Judgement:
    return Judgement(
        score=(i % 997) / 997,
        reasoning=f"reasoning {i} " + "r" * reasoning_chars,
        path=path,
        prompt_tokens=40,
        output_tokens=12,
        finish_reason="stop",
        error="no logprobs" if path == "failed" else None,
    )


def build(path: Path, originals: dict[str, Judgement]) -> tuple[int, int]:
    with SQLiteStore(path) as store:
        store.put_many(list(originals.items()))
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page, pages = con.execute("PRAGMA page_size").fetchone()[0], con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    return page, pages


def overwrite(path: Path, page: int, numbers: list[int], rng: random.Random, *, whole: bool = False) -> None:
    """Overwrite 0-based page ``numbers`` with random bytes (like the tests: bytes 16..page-16, or the whole page)."""
    with path.open("r+b") as f:
        for p in numbers:
            if whole:
                f.seek(p * page)
                f.write(rng.randbytes(page))
            else:
                f.seek(p * page + 16)
                f.write(rng.randbytes(page - 32))


def measure(path: Path, originals: dict[str, Judgement]) -> tuple[int, int, int]:
    """(total, recovered by rowid ranges alone, recovered by rowid ranges + page parser); correct rows only."""
    found: dict[str, tuple[int, str]] = {}
    conn = _open_readonly(path)
    try:
        top = _max_rowid(conn)
        for lo in range(1, top + 1, 256):
            _btree_rows(conn, lo, lo + 255, found)
    finally:
        conn.close()
    by_rowid = dict(found)
    for rowid, k, v in _page_rows(path.read_bytes()):
        found.setdefault(k, (rowid, v))

    def good(rows: dict[str, tuple[int, str]]) -> int:
        n = 0
        for k, (_, v) in rows.items():
            with contextlib.suppress(StoreError):  # a row that does not decode is not recovered (salvage skips it)
                n += k in originals and _decode(k, v) == originals[k]
        return n

    return len(originals), good(by_rowid), good(found)


def interior_pages(path: Path) -> tuple[list[int], int]:
    """0-based numbers of the judgements table's interior pages, and its root (0-based)."""
    con = sqlite3.connect(path)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'judgements'").fetchone()[0]
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = path.read_bytes()
    out, todo = [], [root]
    while todo:
        n = todo.pop()
        start = (n - 1) * page
        head = start + (100 if n == 1 else 0)
        if data[head] != 0x05:
            continue
        out.append(n - 1)
        cells = int.from_bytes(data[head + 3 : head + 5], "big")
        for c in range(cells):
            ptr = start + int.from_bytes(data[head + 12 + 2 * c : head + 14 + 2 * c], "big")
            todo.append(int.from_bytes(data[ptr : ptr + 4], "big"))
        todo.append(int.from_bytes(data[head + 8 : head + 12], "big"))
    return out, root - 1


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="salvage-measure-"))
    rows: list[tuple[str, int, int, int]] = []

    # 1. tests/test_faults.py::_corrupted_store (600 judgements, a run of pages in the middle overwritten)
    orig = {key(i): judgement(i, 200 + i % 600, "failed" if i % 9 == 0 else "pass1") for i in range(600)}
    p = tmp / "t1.sqlite"
    page, pages = build(p, orig)
    overwrite(p, page, list(range(pages // 3, pages // 3 + pages // 8)), random.Random(14))
    rows.append(("test_faults: run of pages n/3..n/3+n/8 (600 rows)", *measure(p, orig)))

    # 2. tests/test_faults.py::test_salvage_reads_rows_cut_off_by_a_broken_interior_page (root page = 0xff)
    orig = {key(i): judgement(i, 200 + i % 600) for i in range(400)}
    p = tmp / "t2.sqlite"
    page, pages = build(p, orig)
    _, root = interior_pages(p)
    with p.open("r+b") as f:
        f.seek(root * page)
        f.write(b"\xff" * page)
    rows.append(("test_faults: the table's root interior page (400 rows)", *measure(p, orig)))

    # 3. scripts/fault_matrix.py::_corrupt_store shape: +600 copies of one value, run of max(2, n/8) pages
    orig = {key(i, "filler"): judgement(7, 900) for i in range(600)}
    p = tmp / "t3.sqlite"
    page, pages = build(p, orig)
    rng = random.Random(14)
    overwrite(p, page, list(range(pages // 3, pages // 3 + max(2, pages // 8))), rng)
    rows.append(("fault_matrix: run of max(2, n/8) pages (600 rows)", *measure(p, orig)))

    # 4. a larger store with realistic reasoning lengths (200-6000 chars: overflow pages), random damage
    sizes = random.Random(1)
    big = {key(i, "big"): judgement(i, sizes.randint(200, 6000)) for i in range(5000)}
    base = tmp / "big.sqlite"
    page, pages = build(base, big)
    inner, root = interior_pages(base)
    for label, pick in (
        ("1 random page", lambda r: [r.randrange(1, pages)]),
        ("a run of 16 pages", lambda r: (lambda s: list(range(s, min(pages, s + 16))))(r.randrange(1, pages))),
        ("1% of pages scattered", lambda r: r.sample(range(1, pages), max(1, pages // 100))),
        ("1 interior page of the table", lambda r: [r.choice(inner)]),
    ):
        tot = rid = par = 0
        for seed in range(10):
            p = tmp / "big-damaged.sqlite"
            p.write_bytes(base.read_bytes())
            r = random.Random(seed)
            overwrite(p, page, pick(r), r)
            t, a, b = measure(p, big)
            tot, rid, par = tot + t, rid + a, par + b
        rows.append((f"5000 rows ({pages} pages, {len(inner)} interior): {label}, 10 seeds summed", tot, rid, par))

    w = max(len(r[0]) for r in rows)
    print(f"{'case':<{w}}  {'rows':>6}  {'rowid only':>10}  {'+ parser':>9}  {'parser adds':>11}")
    for label, tot, rid, par in rows:
        print(f"{label:<{w}}  {tot:>6}  {rid:>10}  {par:>9}  {par - rid:>11}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
