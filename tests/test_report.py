"""The static HTML report: parsed with html.parser (every query and pair present), escaped, and screenshotted."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import DEMO, MICRO_RANK1, only_run

from rank1_eval.cli import main
from rank1_eval.report import render_report, write_report

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A result folder of a real driver run: the micro rank1 on 2 demo queries x their bm25s top-20."""
    if not (MICRO_RANK1 / "model.safetensors").exists():
        pytest.skip("micro rank1 fixture not built")
    out = tmp_path_factory.mktemp("report-run")
    cmd = [
        sys.executable, "-m", "rank1_eval.cli", "run", "--task", str(DEMO),
        "--run-file", str(DEMO / "bm25s_top20.trec"), "--model", str(MICRO_RANK1), "--engine", "transformers",
        "--device", "cpu", "--dtype", "float32",
        "--max-output-tokens", "64", "--context-size", "1024", "--limit-queries", "2", "--top-k", "20",
        "--no-progress", "--output-dir", str(out),
    ]  # fmt: skip
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return only_run(out)


class _Page(HTMLParser):
    """Collects what a reader of the page sees: query sections, pair rows, details, images, scripts, links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pairs: dict[str, list[str]] = {}
        self.query: str | None = None
        self.details = 0
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "section" and "data-qid" in a:
            self.query = a["data-qid"]
            self.pairs[self.query] = []
        if tag == "tr" and "data-docid" in a:
            self.pairs[self.query].append(a["data-docid"])
        if tag == "details":
            self.details += 1
        if tag == "img":
            self.images.append(a["src"])
        for key in ("src", "href"):
            if key in a and not a[key].startswith(("data:", "#")):
                self.urls.append(a[key])

    def handle_endtag(self, tag):
        if tag == "section":
            self.query = None

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_every_query_and_pair_is_in_the_page(run_folder):
    traces = [json.loads(line) for line in (run_folder / "traces.jsonl").read_text().splitlines()]
    page = _parse(render_report(run_folder))
    expected: dict[str, list[str]] = {}
    for t in traces:
        expected.setdefault(t["qid"], []).append(t["docid"])
    assert set(page.pairs) == set(expected) and len(expected) == 2
    for qid, docs in expected.items():
        assert sorted(page.pairs[qid]) == sorted(docs) and len(docs) == 20
    # the new order is the evaluator's (score descending) and the reasoning of each pair is a <details>
    by_q = {q: {t["docid"]: t["score"] for t in traces if t["qid"] == q} for q in expected}
    for qid, docs in page.pairs.items():
        scores = [by_q[qid][d] for d in docs]
        assert scores == sorted(scores, reverse=True)
    assert page.details >= len(traces)
    assert "script" not in page.tags and page.urls == []  # nothing to run, nothing fetched
    assert len(page.images) == 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")
    text = " ".join(page.text)
    summary = json.loads((run_folder / "summary.json").read_text())
    assert "ndcg_at_10" in text and f"{summary['metrics']['ndcg_at_10']:.4f}" in text
    assert f"pairs {summary['pairs_total']}: scored" in text  # the cost line
    assert "Against the first stage" in text
    assert traces[0]["reasoning"].strip() in text


def test_the_run_folder_records_qrels_and_the_first_stage_test(run_folder):
    from rank1_eval.beir import read_qrels

    summary = json.loads((run_folder / "summary.json").read_text())
    qrels = read_qrels(run_folder / "qrels.tsv")
    traces = [json.loads(line) for line in (run_folder / "traces.jsonl").read_text().splitlines()]
    assert set(qrels) == {t["qid"] for t in traces}
    vs = summary["vs_first_stage"]
    assert vs["metric"] == "ndcg_cut_10" and vs["n_queries"] == 2
    assert vs["mean_a"] == pytest.approx(summary["metrics"]["ndcg_at_10"], abs=5e-6)  # pytrec_eval = mteb
    assert vs["randomization"]["exact"] and vs["randomization"]["n_permutations"] == 4
    assert vs["wins"] + vs["ties"] + vs["losses"] == 2


def test_text_is_escaped(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    summary = {"task": "T<b>_default", "main_metric": "ndcg_at_10", "metrics": {"ndcg_at_10": 0.5},
               "provenance": {"model": "m&m", "command_line": ["rank1-eval", "run", "--task", "<x>"]}}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    traces = [
        {"qid": 'q"1', "docid": "d<1>", "score": 0.9, "first_stage_rank": 2, "path": "pass1", "output_tokens": 5,
         "reasoning": "<script>alert(1)</script> & more", "stop_reason": "</think> true"},
        {"qid": 'q"1', "docid": "d2", "score": 0.1, "first_stage_rank": 1, "path": "failed", "output_tokens": 64,
         "reasoning": "", "error": "budget <hit>"},
    ]  # fmt: skip
    (folder / "traces.jsonl").write_text("".join(json.dumps(t) + "\n" for t in traces))
    (folder / "qrels.tsv").write_text('query-id\tcorpus-id\tscore\nq"1\td<1>\t2\n')
    html = render_report(folder)
    page = _parse(html)
    assert "script" not in page.tags and "b" not in page.tags
    assert page.pairs == {'q"1': ["d<1>", "d2"]}
    text = " ".join(page.text)
    assert "<script>alert(1)</script> & more" in text and "budget <hit>" in text and "m&m" in text
    assert "&lt;script&gt;" in html
    assert "cost counters missing" in text  # a summary without counters still renders


def test_cli_writes_the_page(run_folder, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(run_folder), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert write_report(run_folder) == run_folder / "report.html"
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a result folder" in capsys.readouterr().err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary (CI installs Debian's chromium)")
def test_headless_screenshot_is_not_blank(run_folder, tmp_path):
    import numpy as np
    from matplotlib import image

    page = write_report(run_folder, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1200,900", page.resolve().as_uri(),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (900, 1200)
    colours = np.unique(pixels[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) > 10  # text, tables and histograms, not a blank page
    assert (pixels[..., :3] < 0.5).any(axis=-1).mean() > 0.005  # some dark ink (text) on the page
