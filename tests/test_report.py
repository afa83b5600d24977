"""The report pages: every query, pair and text of a real run is in the page, everything is escaped, and in a real
browser (headless Chromium through Selenium) the pages render, sort, filter, page and open queries — for the demo
run, a synthetic 10,300-pair run and two runs side by side."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser import chromium_driver, first_paint_ms, missing_reason, wait_for
from conftest import DEMO, MICRO_RANK1, only_run

from rank1_eval.cli import main
from rank1_eval.report import render_comparison, render_report, unblob, write_comparison, write_report
from rank1_eval.texts import read_texts

ROOT = Path(__file__).resolve().parents[1]
SHOTS = os.environ.get("RANK1_SCREENSHOTS")  # keep the screenshots (CI artifacts) when set


@pytest.fixture
def run_folder(demo_result) -> Path:
    """The session's demo result folder (tests/conftest.py): a real driver run of the micro rank1 on 2 demo
    queries x their bm25s top-20 (so the tests using it are `slow`). Tests only read it (pages are written
    elsewhere or into a copy)."""
    return demo_result


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


class _Page(HTMLParser):
    """What the page holds: index rows, data blobs, scripts, links, SVG charts and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[str] = []
        self.blobs: dict[str, str] = {}
        self.scripts = 0
        self.urls: list[str] = []
        self.svgs = 0
        self.tags: set[str] = set()
        self.text: list[str] = []
        self._blob: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "tr" and "data-qid" in a:
            self.rows.append(a["data-qid"])
        if tag == "script":
            self.scripts += 1
            self._blob = a.get("data-qid")
        if tag == "svg":
            self.svgs += 1
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")) and a.get("xmlns") is None:
                self.urls.append(a[key])

    def handle_endtag(self, tag):
        if tag == "script":
            self._blob = None

    def handle_data(self, data):
        if self._blob is not None:
            self.blobs[self._blob] = data
        elif data.strip():
            self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_every_query_pair_and_text_is_in_the_page(run_folder):
    traces = _jsonl(run_folder / "traces.jsonl")
    page = _parse(render_report(run_folder))
    qids = list(dict.fromkeys(t["qid"] for t in traces))
    assert page.rows == qids and set(page.blobs) == set(qids) and len(qids) == 2
    queries = {q["_id"]: q["text"] for q in _jsonl(DEMO / "queries.jsonl")}
    corpus = {d["_id"]: d["text"] for d in _jsonl(DEMO / "corpus.jsonl")}
    for qid in qids:
        data = unblob(page.blobs[qid])
        mine = {t["docid"]: t for t in traces if t["qid"] == qid}
        assert [p["d"] for p in data["pairs"]] and {p["d"] for p in data["pairs"]} == set(mine) and len(mine) == 20
        assert [p["r"] for p in data["pairs"]] == list(range(1, 21))
        scores = [p["s"] for p in data["pairs"]]
        assert scores == sorted(scores, reverse=True)  # the evaluator's order
        for p in data["pairs"]:
            t = mine[p["d"]]
            assert (p["s"], p["re"], p["p"], p["t"], p["f"]) == (
                t["score"],
                t["reasoning"],
                t["path"],
                t["output_tokens"],
                t["first_stage_rank"],
            )
            assert p["x"] == corpus[p["d"]][:2000]  # the passage text, from the folder's texts.jsonl.gz
        assert data["query"] == queries[qid]
        assert all(m["l"] > 0 and m["x"] for m in data["missed"])  # relevant passages the first stage missed
    assert page.scripts == len(qids) + 1 and page.urls == []  # data blobs + one script; nothing fetched
    assert page.svgs >= 5  # Δ bars, P(true) by label, calibration, length vs correctness, paths by label
    text = " ".join(page.text)
    summary = json.loads((run_folder / "summary.json").read_text())
    assert f"{summary['metrics']['ndcg_at_10']:.4f}" in text and f"pairs {summary['pairs_total']}: scored" in text
    assert "Against the first stage" in text and "texts: texts.jsonl.gz" in text
    for qid in qids:  # the index shows each query's text
        assert queries[qid][:40] in text


def test_the_run_folder_keeps_texts_qrels_and_the_first_stage_test(run_folder):
    from rank1_eval.beir import read_qrels

    traces = _jsonl(run_folder / "traces.jsonl")
    texts = read_texts(run_folder)
    queries = {q["_id"]: q["text"] for q in _jsonl(DEMO / "queries.jsonl")}
    corpus = {d["_id"]: d["text"] for d in _jsonl(DEMO / "corpus.jsonl")}
    qrels = read_qrels(run_folder / "qrels.tsv")
    judged = {t["docid"] for t in traces}
    missed = {d for q in {t["qid"] for t in traces} for d, r in qrels[q].items() if r > 0} - judged
    assert texts.queries == {q: queries[q] for q in {t["qid"] for t in traces}}
    assert set(texts.docs) == judged | missed and missed  # every judged passage once, and the missed relevant ones
    assert all(texts.docs[d] == corpus[d].strip() for d in texts.docs)
    assert texts.meta["queries"] == 2 and texts.meta["docs"] == len(texts.docs)
    summary = json.loads((run_folder / "summary.json").read_text())
    vs = summary["vs_first_stage"]
    assert vs["metric"] == "ndcg_cut_10" and vs["n_queries"] == 2
    assert vs["mean_a"] == pytest.approx(summary["metrics"]["ndcg_at_10"], abs=5e-6)  # pytrec_eval = mteb
    assert vs["randomization"]["exact"] and vs["randomization"]["n_permutations"] == 4


def test_against_its_first_stage_matches_the_run_s_own_test(run_folder):
    page = _parse(render_comparison(run_folder, "first-stage"))
    text = " ".join(page.text)
    vs = json.loads((run_folder / "summary.json").read_text())["vs_first_stage"]
    assert f"{vs['mean_a']:.4f}" in text and f"{vs['mean_b']:.4f}" in text
    assert f"{vs['wins']} wins, {vs['ties']} ties, {vs['losses']} losses" in text
    data = unblob(next(iter(page.blobs.values())))
    assert all("reb" not in p for p in data["pairs"])  # the first stage has no reasoning, and says so


def _escape_folder(root: Path) -> Path:
    folder = root / "run"
    folder.mkdir()
    summary = {
        "task": "T<marquee>_default",
        "main_metric": "ndcg_at_10",
        "metrics": {"ndcg_at_10": 0.5},
        "provenance": {"model": "m&m", "command_line": ["rank1-eval", "run", "--task", "<x>"]},
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    traces = [
        {
            "qid": 'q"1',
            "docid": "d<1>",
            "score": 0.9,
            "first_stage_rank": 2,
            "path": "pass1",
            "output_tokens": 5,
            "reasoning": '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & more',
            "stop_reason": "</think> true",
        },
        {
            "qid": 'q"1',
            "docid": "d2",
            "score": 0.1,
            "first_stage_rank": 1,
            "path": "failed",
            "output_tokens": 64,
            "reasoning": "",
            "error": "budget <hit>",
        },
    ]
    (folder / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    (folder / "qrels.tsv").write_text('query-id\tcorpus-id\tscore\nq"1\td<1>\t2\n')
    return folder


def test_text_is_escaped(tmp_path):
    folder = _escape_folder(tmp_path)
    html = render_report(folder)
    static = html[: html.index('<div id="data"')]
    page = _parse(html)
    assert "marquee" not in page.tags and "img" not in page.tags and page.rows == ['q"1']
    assert "<script>" not in static.replace("<script>(() =>", "")  # no script before the data section
    text = " ".join(page.text)
    assert "m&m" in text and "T<marquee>_default" in text and "<x>" in text
    data = unblob(page.blobs['q"1'])
    assert data["pairs"][0]["re"].startswith("<img src=x") and data["pairs"][1]["e"] == "budget <hit>"
    assert "cost counters missing" in text  # a summary without counters still renders
    assert "No texts in this folder" in text  # and says why passages show ids only


def test_cli_writes_the_pages(run_folder, tmp_path, capsys):
    run_folder = Path(shutil.copytree(run_folder, tmp_path / "run"))  # the pages land in the folder: a copy
    out = tmp_path / "page.html"
    assert main(["report", str(run_folder), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert write_report(run_folder) == run_folder / "report.html"
    assert main(["report", str(run_folder), "first-stage"]) == 0
    assert capsys.readouterr().out.strip() == str(run_folder / "report-vs-first-stage.html")
    assert main(["report", str(run_folder), str(DEMO / "bm25s_top20.trec"), "-o", str(tmp_path / "vs.html")]) == 0
    assert "<h1>" in (tmp_path / "vs.html").read_text()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a result folder" in capsys.readouterr().err
    assert main(["report", str(run_folder), str(tmp_path / "nothing")]) == 2
    assert "neither a result folder, a run file nor 'first-stage'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------
# In a real browser
# ----------------------------------------------------------------------------------------------------

needs_browser = pytest.mark.skipif(missing_reason() is not None, reason=missing_reason() or "")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if missing_reason():
        pytest.skip(missing_reason())
    with chromium_driver(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _open(driver, page: Path, fragment: str = "") -> None:
    driver.get(page.resolve().as_uri() + fragment)
    wait_for(driver, "document.body.dataset.ready === '1'")


def _visible_rows(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('table.index tbody tr')).filter(r => !r.hidden)"
        ".map(r => r.dataset.qid)"
    )


def _shot(driver, path: Path, name: str) -> Path:
    import numpy as np
    from matplotlib import image

    shot = path / f"{name}.png"
    driver.save_screenshot(str(shot))
    pixels = image.imread(shot)
    assert len(np.unique(pixels[..., :3].reshape(-1, 3), axis=0)) > 10  # text, tables and charts, not blank
    assert (pixels[..., :3] < 0.5).any(axis=-1).mean() > 0.005  # some dark ink
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SHOTS) / shot.name).write_bytes(shot.read_bytes())
    return shot


def _click(driver, selector: str, *, native: bool = False) -> None:
    """A click: through the WebDriver (as a user's pointer, scrolled into view) or dispatched by script."""
    if native:
        from selenium.webdriver.common.by import By

        driver.find_element(By.CSS_SELECTOR, selector).click()
    else:
        driver.execute_script("document.querySelector(arguments[0]).click()", selector)


def _open_query(driver, qid: str, link: str | None = None) -> int:
    """Open a query by clicking its index link (or ``link``, with the pointer); the number of pair rows rendered."""
    _click(driver, link or f'table.index tr[data-qid="{qid}"] a', native=link is not None)
    wait_for(driver, f"document.querySelector('#detail').dataset.qid === {json.dumps(qid)}")
    return driver.execute_script("return document.querySelectorAll('#detail tr.pair').length")


@needs_browser
def test_demo_report_in_chromium(browser, run_folder, tmp_path):
    traces = _jsonl(run_folder / "traces.jsonl")
    qids = list(dict.fromkeys(t["qid"] for t in traces))
    page = write_report(run_folder, tmp_path / "demo.html")
    _open(browser, page)
    _shot(browser, tmp_path, "report-demo")
    assert _visible_rows(browser) == qids
    # sorting: Δ descending, then ascending
    order = "return Array.from(document.querySelectorAll('table.index tbody tr')).map(r => Number(r.dataset.delta))"
    _click(browser, "table.index th:nth-child(7)")
    deltas = browser.execute_script(order)
    assert deltas == sorted(deltas, reverse=True) and len(deltas) == 2
    _click(browser, "table.index th:nth-child(7)")
    assert browser.execute_script(order) == sorted(deltas)
    # open a query: its 20 pairs, the query and passage texts, a reasoning chain on demand
    first = qids[0]
    assert _open_query(browser, first) == 20
    detail = browser.execute_script("return document.querySelector('#detail').innerText")
    queries = {q["_id"]: q["text"] for q in _jsonl(DEMO / "queries.jsonl")}
    assert queries[first] in detail
    top = max((t for t in traces if t["qid"] == first), key=lambda t: (t["score"], t["docid"]))
    row = f'#detail tr.pair[data-docid="{top["docid"]}"]'
    assert browser.execute_script(f"return document.querySelector('{row}').rowIndex") == 1  # best first
    assert read_texts(run_folder).docs[top["docid"]][:60] in detail
    _click(browser, f"{row} td:last-child summary")
    shown = wait_for(browser, f"document.querySelector('{row} pre.reasoning')?.textContent")
    assert shown == (top["reasoning"] or "(no reasoning text)")
    _shot(browser, tmp_path, "report-demo-query")
    # filters: Δ losses only, then a search that matches nothing
    select = "var s = document.getElementById('f-delta'); s.value = arguments[0]; s.dispatchEvent(new Event('input'))"
    browser.execute_script(select, "loss")
    delta_of = browser.execute_script(
        "return Object.fromEntries(Array.from(document.querySelectorAll('table.index tbody tr'))"
        ".map(r => [r.dataset.qid, Number(r.dataset.delta)]))"
    )
    assert set(_visible_rows(browser)) == {q for q, d in delta_of.items() if d < -1e-9}
    browser.execute_script(select, "all")
    search = "var s = document.getElementById('f-search'); s.value = arguments[0]; s.dispatchEvent(new Event('input'))"
    browser.execute_script(search, "zzzz no such query")
    assert _visible_rows(browser) == []
    assert "of 0" in browser.execute_script("return document.getElementById('pager-info').textContent")


@needs_browser
def test_model_output_stays_text_in_the_browser(browser, tmp_path):
    page = write_report(_escape_folder(tmp_path), tmp_path / "escape.html")
    _open(browser, page, "#q=" + "q%221")
    wait_for(browser, "document.querySelector('#detail').dataset.qid === 'q\"1'")
    browser.execute_script("document.querySelectorAll('#detail details summary').forEach(s => s.click())")
    text = wait_for(browser, "document.querySelector('#detail pre.reasoning')?.textContent")
    assert text.startswith("<img src=x") and "budget <hit>" in browser.execute_script(
        "return document.querySelector('#detail').innerText"
    )
    assert browser.execute_script(
        "return [window.pwned, document.querySelectorAll('#detail img, #detail script').length]"
    ) == [None, 0]


def _synthetic(root: Path, **kwargs) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_synthetic_results import build

    return build(root, **kwargs)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """BRIGHT biology's size: 103 queries x 100 candidates = 10,300 pairs with reasoning, texts and a sweep."""
    return _synthetic(tmp_path_factory.mktemp("synthetic"), queries=103, per_query=100)["a"]


@needs_browser
def test_10k_pair_report_in_chromium(browser, synthetic, tmp_path):
    folder = synthetic
    traces = _jsonl(folder / "traces.jsonl")
    assert len(traces) == 10_300
    page = write_report(folder, tmp_path / "10k.html")
    html = page.read_text(encoding="utf-8")
    first_page = html.index('<div id="data"')
    print(
        f"\n10k-pair page: {page.stat().st_size / 2**20:.1f} MiB, of which {first_page / 2**10:.0f} KiB before the data"
    )
    assert first_page < 600 * 2**10  # what paints first does not grow with the pairs (their data comes after it)
    _open(browser, page)
    print(f"first contentful paint {first_paint_ms(browser):.0f} ms (measured, not asserted)")
    _shot(browser, tmp_path, "report-10k")
    assert len(_visible_rows(browser)) == 100  # page 1 of the index
    info = "return document.getElementById('pager-info').textContent"
    assert browser.execute_script(info) == "queries 1–100 of 103"
    _click(browser, "#pager-next")
    assert len(_visible_rows(browser)) == 3 and browser.execute_script(info) == "queries 101–103 of 103"
    _click(browser, "#pager-prev")
    # sort by Δ ascending (two clicks): the worst regression first
    _click(browser, "table.index th:nth-child(7)")
    _click(browser, "table.index th:nth-child(7)")
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.index tbody tr'))"
        ".map(r => [r.dataset.qid, r.dataset.delta])"
    )
    deltas = [float(d) for _, d in rows]
    assert deltas == sorted(deltas)
    worst = rows[0][0]
    # the Δ chart's bars link to their queries: the last bar is the worst regression
    bars = browser.execute_script("return Array.from(document.querySelectorAll('svg.bars a')).map(a => a.dataset.key)")
    assert len(bars) == 103 and bars[-1] == worst
    n = _open_query(browser, worst, link=f'svg.bars a[data-key="{worst}"] rect:not(.hit)')
    assert n == 100
    by_doc = {t["docid"]: t for t in traces if t["qid"] == worst}
    scores = browser.execute_script(
        "return Array.from(document.querySelectorAll('#detail tr.pair')).map(r => [r.dataset.docid, "
        "Number(r.cells[4].dataset.s)])"
    )
    assert [s for _, s in scores] == sorted((t["score"] for t in by_doc.values()), reverse=True)
    # the pairs' own filter: relevant only
    browser.execute_script(
        "var s = document.querySelector('#detail select'); s.value = 'relevant'; s.dispatchEvent(new Event('input'))"
    )
    groups = browser.execute_script(
        "return Array.from(document.querySelectorAll('#detail tr.pair')).filter(r => !r.hidden)"
        ".map(r => r.dataset.group)"
    )
    assert groups and set(groups) == {"relevant"}
    # the next query follows the index's order
    _click(browser, "#q-next")
    wait_for(browser, f"document.querySelector('#detail').dataset.qid === {json.dumps(rows[1][0])}")
    _shot(browser, tmp_path, "report-10k-query")
    assert "Reasoning budget" in browser.execute_script("return document.body.innerText")  # sweep.json drawn


@needs_browser
def test_two_runs_side_by_side_in_chromium(browser, tmp_path):
    from rank1_eval.compare import per_query
    from rank1_eval.report.data import load_run

    runs = _synthetic(tmp_path / "two", queries=24, per_query=40, second=True, sweep=False)
    a, b = runs["a"], runs["b"]
    page = write_comparison(a, b, tmp_path / "two.html")
    print(f"\ntwo-run page: {page.stat().st_size / 2**20:.1f} MiB")
    _open(browser, page)
    _shot(browser, tmp_path, "report-two-runs")
    view = load_run(a)
    mb = per_query(load_run(b).run(), view.qrels, "ndcg_cut_10")
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.index tbody tr')).map(r => "
        "[r.dataset.qid, Number(r.cells[4].dataset.s), Number(r.cells[5].dataset.s)])"
    )
    assert len(cells) == 24
    for qid, va, vb in cells:
        assert (va, vb) == (pytest.approx(view.per_query[qid]), pytest.approx(mb[qid]))
    qid = cells[0][0]
    assert _open_query(browser, qid) == 40
    shifts = browser.execute_script(
        "return Array.from(document.querySelectorAll('#detail tr.pair')).map(r => r.cells[0].dataset.s)"
    )
    numbers = [int(s) for s in shifts if s != ""]
    assert numbers == sorted(numbers, reverse=True)  # furthest apart first
    top = browser.execute_script("return document.querySelector('#detail tr.pair').dataset.docid")
    _click(browser, "#detail tr.sub details.chains summary")
    pres = wait_for(
        browser, "Array.from(document.querySelectorAll('#detail tr.sub .two pre.reasoning')).map(p => p.textContent)"
    )
    ta = next(t for t in _jsonl(a / "traces.jsonl") if t["qid"] == qid and t["docid"] == top)
    tb = next(t for t in _jsonl(b / "traces.jsonl") if t["qid"] == qid and t["docid"] == top)
    assert pres == [ta["reasoning"], tb["reasoning"]]  # both chains, next to each other
    _shot(browser, tmp_path, "report-two-runs-query")


@needs_browser
def test_rank1_against_a_baseline_side_by_side_in_chromium(browser, run_folder, tmp_path):
    """Issue 22: the micro rank1 (A) against the micro CrossEncoder baseline (B) on the same candidates: both
    metrics and scores per query, A's reasoning on demand, B said to be a ranking without reasoning."""
    from rank1_eval.report.data import load_run

    micro_ce = ROOT / "rank1_eval" / "data" / "micro-crossencoder"
    out = tmp_path / "baseline"
    assert (
        main(
            [
                "run",
                "--model",
                str(micro_ce),
                "--output-dir",
                str(out),
                "--task",
                str(DEMO),
                "--run-file",
                str(DEMO / "bm25s_top20.trec"),
                "--limit-queries",
                "2",
                "--top-k",
                "20",
                "--no-progress",
            ]
        )
        == 0
    )
    base = only_run(out, "local__micro-crossencoder")
    page = write_comparison(run_folder, base, tmp_path / "rank1-vs-baseline.html")
    _open(browser, page)
    _shot(browser, tmp_path, "report-rank1-vs-baseline")
    a, b = load_run(run_folder), load_run(base)
    assert b.reasoning is False and a.reasoning is True
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.index tbody tr')).map(r => "
        "[r.dataset.qid, Number(r.cells[4].dataset.s), Number(r.cells[5].dataset.s)])"
    )
    assert len(cells) == 2
    for qid, va, vb in cells:
        assert (va, vb) == (pytest.approx(a.per_query[qid]), pytest.approx(b.per_query[qid]))
    qid = cells[0][0]
    assert _open_query(browser, qid) == 20
    top = browser.execute_script("return document.querySelector('#detail tr.pair').dataset.docid")
    _click(browser, "#detail tr.sub details.chains summary")
    pres = wait_for(
        browser, "Array.from(document.querySelectorAll('#detail tr.sub .two pre.reasoning')).map(p => p.textContent)"
    )
    ta = next(t for t in _jsonl(run_folder / "traces.jsonl") if t["qid"] == qid and t["docid"] == top)
    assert pres == [ta["reasoning"] or "(empty)", "(no reasoning: not a rank1 run)"]
    detail = browser.execute_script("return document.querySelector('#detail').innerText")
    tb = next(t for t in _jsonl(base / "traces.jsonl") if t["qid"] == qid and t["docid"] == top)
    assert f"{tb['score']:.4f}" in detail  # B's score of that passage is on the page
    _shot(browser, tmp_path, "report-rank1-vs-baseline-query")


def test_an_mteb_task_s_texts_reach_the_report(hf_engine, tmp_path):
    """NevIR through mteb's own class (a Hub-shaped local copy) and the driver: the folder keeps its texts, the page
    shows them (in-process, on the session's micro rank1 engine)."""
    from hub_nevir import PAIRS, build

    from rank1_eval.evaluate import RunOptions, evaluate, prepare
    from rank1_eval.model import rank1

    model = rank1(
        str(MICRO_RANK1),
        device="cpu",
        fp_options="float32",
        engine="transformers",
        context_size=1024,
        max_output_tokens=64,
    )
    model._engine = hf_engine
    opts = RunOptions(
        task="NevIR",
        dataset_path=str(build(tmp_path)),
        output_dir=tmp_path / "out",
        progress=False,
        command_line=["rank1-eval", "run", "--task", "NevIR"],
    )
    folder = Path(evaluate(model, prepare(opts, model.mteb_model_meta.name), opts)["output_dir"])
    texts = read_texts(folder)
    assert texts.meta["source"] == "mteb" and len(texts.queries) == 4 and len(texts.docs) == 4
    assert texts.queries["0_q2"] == PAIRS[0][3] and texts.docs["0_doc1"] == f"Pair 0 {PAIRS[0][0]}"
    html = render_report(folder)
    data = unblob(_parse(html).blobs["1_q1"])
    assert data["query"] == PAIRS[1][2]
    assert {p["x"] for p in data["pairs"]} == {f"Pair 1 {PAIRS[1][0]}", PAIRS[1][1]}
    assert re.search(r"texts: texts\.jsonl\.gz", html)
