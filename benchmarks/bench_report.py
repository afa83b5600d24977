"""The report at scale: file size, time to write it, and first paint in headless Chromium.

    python benchmarks/bench_report.py [--queries 103] [--per-query 100] [--loads 5] [--before main] [--out DIR]

Builds a synthetic result folder of BRIGHT biology's size (``scripts/make_synthetic_results.py``: 103 queries ×
100 candidates = 10,300 pairs with heavy-tailed reasoning, passage texts, a budget sweep) and a second model over
the same candidates, writes the one-run page and the two-run page, then opens each ``--loads`` times in a fresh
headless Chromium tab (Selenium; Debian's chromium + chromium-driver) and reads the Paint Timing API's
first-contentful-paint (ms after navigation start) and the time until the page's script is ready. ``--before
REF`` also renders the same folder with the ``rank1_eval/report.py`` of a git ref (the page before issue 13: every
pair inline, no script) for the same figures. Timings are wall-clock on a shared machine: compare within one
run, read medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

from browser import chromium_driver, first_paint_ms  # noqa: E402
from make_synthetic_results import build  # noqa: E402

from rank1_eval.report import write_comparison, write_report  # noqa: E402


def _old_report(ref: str, work: Path):
    """``rank1_eval/report.py`` as it was at ``ref`` (a module of its own, beside the package)."""
    source = subprocess.run(
        ["git", "show", f"{ref}:rank1_eval/report.py"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    path = work / f"report_{ref.replace('/', '_')}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _measure(driver, page: Path, loads: int) -> dict[str, object]:
    paints, loaded = [], []
    for _ in range(loads):
        driver.get("about:blank")
        start = time.perf_counter()
        driver.get(page.resolve().as_uri())  # returns at the load event
        loaded.append((time.perf_counter() - start) * 1000)
        paint = first_paint_ms(driver)
        if paint is None:
            raise RuntimeError(f"{page}: no first-contentful-paint entry")
        paints.append(paint)
    return {
        "first_paint_ms_median": round(statistics.median(paints), 1),
        "first_paint_ms_max": round(max(paints), 1),
        "first_paint_ms_all": [round(p) for p in paints],
        "load_ms_median": round(statistics.median(loaded), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=103)
    p.add_argument("--per-query", type=int, default=100)
    p.add_argument("--loads", type=int, default=5)
    p.add_argument("--before", default=None, help="also the report of this git ref (e.g. main before issue 13)")
    p.add_argument("--before-loads", type=int, default=2, help="loads of the --before page (each takes long)")
    p.add_argument("--out", default=None, help="keep the pages here (default: a temporary folder)")
    args = p.parse_args(argv)
    work = Path(args.out or tempfile.mkdtemp(prefix="bench-report-"))
    folders = build(work / "results", queries=args.queries, per_query=args.per_query, second=True)
    pairs = sum(1 for _ in (folders["a"] / "traces.jsonl").open())
    pages: dict[str, Path] = {}
    timings: dict[str, float] = {}
    t = time.perf_counter()
    pages["one run"] = write_report(folders["a"], work / "one-run.html")
    timings["one run"] = time.perf_counter() - t
    t = time.perf_counter()
    pages["two runs"] = write_comparison(folders["a"], folders["b"], work / "two-runs.html")
    timings["two runs"] = time.perf_counter() - t
    if args.before:
        old = _old_report(args.before, work)
        t = time.perf_counter()
        pages[f"one run, report of {args.before}"] = old.write_report(folders["a"], work / "before.html")
        timings[f"one run, report of {args.before}"] = time.perf_counter() - t
    rows = []
    with chromium_driver(work / "profile") as driver:
        driver.get(pages["one run"].resolve().as_uri())  # warm the browser once, untimed
        for name, page in pages.items():
            loads = args.before_loads if name.startswith("one run, report of") else args.loads
            row = {
                "page": name,
                "pairs": pairs,
                "mib": round(page.stat().st_size / 2**20, 2),
                "write_s": round(timings[name], 2),
                "loads": loads,
                **_measure(driver, page, loads),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        "\n| page | pairs | size (MiB) | write (s) | loads | first paint, median (ms) | max (ms) | load, median (ms) |"
    )
    print("|:--|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['page']} | {r['pairs']:,} | {r['mib']} | {r['write_s']} | {r['loads']} | "
            f"{r['first_paint_ms_median']} | {r['first_paint_ms_max']} | {r['load_ms_median']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
