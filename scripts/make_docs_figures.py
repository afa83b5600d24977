"""Regenerate the pictures in ``docs/``: the three report pages and the two table plots.

    python scripts/make_docs_figures.py --demo RESULT_FOLDER [--work DIR] [--out docs]

``--demo`` is a result folder of the bundled demo (``rank1-eval run`` with the micro rank1 writes one); the
10k-pair and two-run pages come from ``scripts/make_synthetic_results.py``; the table plots from result folders
made up here for Tables 1 and 3 (values near the paper's, one BRIGHT cell left missing on purpose, so the
plots show what a partial reproduction looks like). Screenshots are taken in headless Chromium through
Selenium (Debian's ``chromium`` and ``chromium-driver``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "tests")]

from browser import chromium_driver  # noqa: E402  (tests/browser.py)
from make_synthetic_results import build  # noqa: E402

from rank1_eval.paper import load_table, result_label, table_from_results, write_table_files  # noqa: E402
from rank1_eval.report import write_comparison, write_report  # noqa: E402


def table_folders(root: Path, table_name: str, seed: int = 0, skip: tuple[str, ...] = ()) -> Path:
    """Result folders of every checkpoint of a table, metric values near the paper's (made up)."""
    rng = random.Random(seed)
    table = load_table(table_name)
    for row in table.rows:
        if not row.checkpoint:
            continue
        for column in table.columns:
            label = result_label(column, {})
            if not column.metric or label is None or column.key in skip or row.paper.get(column.key) is None:
                continue
            folder = root / row.checkpoint.replace("/", "__") / label
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "summary.json"
            summary = (
                json.loads(path.read_text())
                if path.is_file()
                else {"task": label, "metrics": {}, "provenance": {"split": column.split, "top_k": 100, "subset": None}}
            )
            value = (row.paper[column.key] + rng.gauss(0, 1.5 if column.scale == 100 else 0.015)) / column.scale
            head, _, tail = column.metric.rpartition(".")
            (summary.setdefault(head, {}) if head else summary["metrics"])[tail] = value
            path.write_text(json.dumps(summary))
    return root


def shoot(driver, page: Path, out: Path, *, height: int = 1400, query: str | None = None, full: bool = False) -> None:
    driver.set_window_size(1280, height)
    driver.get(page.resolve().as_uri() + (f"#q={query}" if query else ""))
    time.sleep(1.0)
    if query:
        driver.execute_script(
            "document.querySelector('#detail details.chains summary, #detail td:last-child details summary')?.click()"
        )
        driver.execute_script("document.querySelector('#detail').scrollIntoView()")
        time.sleep(0.3)
    if full:
        h = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1280, min(h + 30, 4200))
        time.sleep(0.3)
    driver.save_screenshot(str(out))
    print(f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", required=True, help="a result folder of the bundled demo")
    p.add_argument("--work", default=None, help="where the synthetic folders go (default: a temporary folder)")
    p.add_argument("--out", default=str(ROOT / "docs"))
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or tempfile.mkdtemp(prefix="rank1-docs-"))
    for name, skip in (("bright", ("pony",)), ("mfollowir-crosslingual", ())):
        root = table_folders(work / f"tables-{name}", name, skip=skip)
        files = write_table_files(table_from_results(name, root), work / "tables", name)
        for key, suffix in (("png", "bars"), ("delta_png", "delta")):
            target = out / f"table-{name}-{suffix}.png"
            target.write_bytes(files[key].read_bytes())
            print(f"wrote {target}")
    syn = build(work / "synthetic", second=True)
    single = write_report(syn["a"])
    pair = write_comparison(syn["a"], syn["b"])
    demo = write_report(args.demo, work / "demo.html")
    demo_vs = write_comparison(args.demo, "first-stage", work / "demo-vs-first-stage.html")
    with chromium_driver(work / "profile") as driver:
        shoot(driver, demo, out / "report-demo.png", full=True)
        first = json.loads((Path(args.demo) / "traces.jsonl").open().readline())["qid"]
        shoot(driver, demo, out / "report-demo-query.png", query=first, height=1100)
        shoot(driver, single, out / "report-10k.png", full=True)
        shoot(driver, single, out / "report-10k-query.png", query="bio-007", height=1100)
        shoot(driver, pair, out / "report-two-runs.png", full=True)
        shoot(driver, pair, out / "report-two-runs-query.png", query="bio-007", height=1100)
        shoot(driver, demo_vs, out / "report-demo-vs-first-stage.png", height=1400)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
