#!/usr/bin/env python
"""Fault matrix: the fault catalogue (``tools/fault_catalogue.py``) run against a rank1_eval checkout, one row
per fault, sorted into the catalogue's outcomes.

    python tools/fault_matrix.py                          # this checkout
    git archive BASE | tar -x -C /tmp/before && python tools/fault_matrix.py --code /tmp/before
    python tools/fault_matrix.py --only nan_server,stall_server --json out.json --markdown out.md
    python tools/fault_matrix.py --render before.json after.json --markdown docs/fault-matrix-table.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fault_catalogue import CASES, CATEGORIES, HERE, WORK, Case, Ctx, ForkServer, Row, Skip  # noqa: E402

# --------------------------------------------------------------------------------------------------- main


def run_cases(ctx: Ctx, selected: list[Case], is_root: bool) -> list[Row]:
    rows = []
    for c in selected:
        row = Row(c.name, c.group, c.fault)
        started = time.monotonic()
        print(f"[{len(rows) + 1}/{len(selected)}] {c.name} ...", flush=True)
        try:
            if c.needs_root and not is_root:
                raise Skip("needs root (tmpfs / read-only mounts)")
            c.fn(ctx, row)
        except Skip as exc:
            row.category, row.message = "skipped", str(exc)
        except Exception as exc:  # a broken case must not end the matrix
            row.category, row.message = "skipped", f"harness error: {type(exc).__name__}: {exc}"[:300]
        row.wall_s = row.wall_s or time.monotonic() - started
        print(f"    -> {row.category}: {row.message[:150]}", flush=True)
        rows.append(row)
    return rows


def counts(rows: list[Row]) -> dict[str, int]:
    out = {"tried": sum(r.category != "skipped" for r in rows)}
    out.update({c: sum(r.category == c for r in rows) for c in CATEGORIES})
    return out


def markdown(rows: list[Row], title: str) -> str:
    c = counts(rows)
    head = " / ".join(
        f"{k} {v}" for k, v in c.items() if v or k in ("tried", "clear", "flagged", "traceback", "silent")
    )
    out = [
        f"### {title}",
        "",
        head,
        "",
        "| # | fault | outcome | exit | message the user sees | judgements kept / notes |",
        "|--:|:--|:--|--:|:--|:--|",
    ]
    for i, r in enumerate(rows, start=1):
        msg = r.message.replace("|", "\\|")[:220]
        notes = "; ".join(x for x in (r.kept, r.note) if x).replace("|", "\\|")
        out.append(
            f"| {i} | {r.fault.replace('|', '/')} | {r.category} | {r.rc if r.rc is not None else '—'} | "
            f"{msg} | {notes} |"
        )
    return "\n".join(out) + "\n"


def side_by_side(before: dict, after: dict) -> str:
    """One table of two matrix runs (``--json`` files): the counts, then per fault both outcomes."""
    cols = ("tried", "clear", "flagged", "handled", "late", "misleading", "traceback", "silent")
    out = ["| | " + " | ".join(cols) + " |", "|:--|" + "--:|" * len(cols)]
    for label, run in (("before", before), ("after", after)):
        out.append(f"| {label} | " + " | ".join(str(run["counts"].get(c, 0)) for c in cols) + " |")
    out += [
        "",
        "| # | fault | before (exit) | after (exit) | what the user sees now | kept / notes (after) |",
        "|--:|:--|:--|:--|:--|:--|",
    ]
    old = {r["name"]: r for r in before["rows"]}
    for i, r in enumerate(after["rows"], start=1):
        b = old.get(r["name"], {})
        cell = lambda row: f"{row.get('category', '—')} ({row.get('rc') if row.get('rc') is not None else '—'})"  # noqa: E731
        notes = "; ".join(x for x in (r["kept"], r["note"]) if x).replace("|", "\\|")
        msg = r["message"].replace("|", "\\|")[:240]
        out.append(f"| {i} | {r['fault'].replace('|', '/')} | {cell(b)} | {cell(r)} | {msg} | {notes} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--code", type=Path, default=HERE, help="the rank1_eval checkout to test (default: this one)")
    p.add_argument("--only", default=None, help="comma-separated case names")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--title", default=None)
    p.add_argument("--list", action="store_true")
    p.add_argument(
        "--render",
        nargs=2,
        type=Path,
        metavar=("BEFORE.json", "AFTER.json"),
        help="print one side-by-side table of two earlier runs (their --json files) and exit",
    )
    p.add_argument(
        "--fork-server",
        action="store_true",
        help="run the CLI as forks of one process that imported mteb and torch once (as tests/test_faults.py "
        "does; each run still its own process), instead of a fresh interpreter per run",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.render:
        table = side_by_side(*(json.loads(path.read_text()) for path in args.render))
        print(table, end="")
        if args.markdown:
            args.markdown.write_text(table)
        return 0
    if args.list:
        for c in CASES:
            print(f"{c.name:32} {c.group:8} {c.fault}")
        return 0
    selected = CASES
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        unknown = names - {c.name for c in CASES}
        if unknown:
            p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
        selected = [c for c in CASES if c.name in names]
        if "failed_pairs_rerun" in names and "nan_server" not in names:
            selected = [c for c in CASES if c.name == "nan_server"] + selected
    code = args.code.resolve()
    work = args.work or Path(tempfile.mkdtemp(prefix="rank1-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(code, work, args.verbose)
    WORK.append(str(work))
    started = time.monotonic()
    try:
        if args.fork_server:
            ctx.fork_server = ForkServer(code, ctx.env, work)
        rows = run_cases(ctx, selected, os.geteuid() == 0)
    finally:
        if ctx.fork_server is not None:
            ctx.fork_server.close()
        if args.work is None:
            subprocess.run(["chattr", "-R", "-i", str(work)], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    title = args.title or f"rank1_eval at {code}"
    md = markdown(rows, title)
    print()
    print(md)
    print(f"({time.monotonic() - started:.0f}s)")
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        args.json.write_text(
            json.dumps({"code": str(code), "counts": counts(rows), "rows": [asdict(r) for r in rows]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
