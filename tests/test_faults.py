"""Fault injection (issue 14): every fault ends in one clear line and a known exit code, and nothing finished is lost.

Real files, real SQLite, real tmpfs mounts (root only; skipped with the reason elsewhere), a real HTTP server
that misbehaves (``tests/fake_vllm_server.py``), forked writers killed with SIGKILL. The CLI runs in-process
(``rank1_eval.cli.main``) so a case costs milliseconds where no model is needed; the cases that judge pairs use
the micro rank1 and are marked slow. The fault catalogue (``tools/fault_catalogue.py``) is the one list of faults:
``test_every_fault_of_the_catalogue`` runs each of its cases through the real CLI in subprocesses (as
``tools/fault_matrix.py`` does, before and after a change, to print the table) and requires a clear line, a
recorded warning, or a correct outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DEMO, MICRO_RANK1, model_args
from fake_vllm_server import FakeVLLMServer

from rank1_eval import outputs
from rank1_eval.cli import EXIT_ERROR, EXIT_FAILED_PAIRS, main
from rank1_eval.layout import resolve_run_folder
from rank1_eval.outputs import ResultFolderError, check_result_folder, write_run_folder
from rank1_eval.preflight import OutputError, check_outputs, check_store_file, check_writable
from rank1_eval.records import Judgement
from rank1_eval.store import (
    AsyncWriter,
    MemoryStore,
    SQLiteStore,
    StoreCorruptError,
    StoreError,
    StoreFullError,
    check_store,
    merge_stores,
    salvage_store,
)

ROOT = Path(__file__).resolve().parents[1]


def _key(i: int) -> str:
    return hashlib.sha256(f"pair-{i}".encode()).hexdigest()


def _judgement(i: int, path: str = "pass1") -> Judgement:
    return Judgement(
        score=(i % 997) / 997,
        reasoning=f"reasoning {i} " + "r" * (200 + i % 600),
        path=path,
        prompt_tokens=40,
        output_tokens=12,
        finish_reason="stop",
        error="no logprobs" if path == "failed" else None,
    )


def _one_line(text: str) -> str:
    lines = [  # what is left once log warnings and the CLI's "loading …" status lines are set aside
        ln
        for ln in text.strip().splitlines()
        if ln.strip() and not ln.startswith("WARNING") and not re.search(r"…( \[[\d:]+\])?$", ln)
    ]
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


@contextlib.contextmanager
def _tmpfs(path: Path, size: str, *, readonly: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or 'not root'}); CI runs as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def _immutable(path: Path):
    proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"chattr +i not permitted here ({proc.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


# ------------------------------------------------------------------------------------------------ flags


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--failed-score", "abc"], "--failed-score"),
        (["--failed-score", "nan"], "--failed-score"),
        (["--max-output-tokens", "0"], "--max-output-tokens"),
        (["--num-gpus", "0"], "--num-gpus"),
        (["--num-gpus", "-1"], "--num-gpus"),
        (["--chunk-size", "0"], "--chunk-size"),
        (["--top-k", "0"], "--top-k"),
        (["--limit-queries", "0"], "--limit-queries"),
        (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--request-timeout", "0"], "--request-timeout"),
        (["--run-file", "r.trec", "--first-stage", "bm25"], "--first-stage"),
        (["--allow-failed", "150%"], "--allow-failed"),
    ],
)
def test_bad_flags_are_refused_by_the_parser(flags, named, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", *flags])
    assert info.value.code == 2
    assert named in _one_line(capsys.readouterr().err.splitlines()[-1])


def test_context_below_the_output_budget_is_one_line(capsys):
    flags = ["--context-size", "32", "--max-output-tokens", "64"]
    assert main(["run", *flags, "--length-rule", "reserve_output"]) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "--context-size (32) must exceed --max-output-tokens (64)" in line
    # the reference rule accepts the pair of values; the demo's queries do not fit 32 tokens: the pre-flight says so
    assert main(["run", *flags, "--dry-run"]) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "more prompt tokens than the budget" in line and "raise --context-size" in line


# ------------------------------------------------------------------------------------------------ stores


def test_foreign_sqlite_file_is_refused_untouched(tmp_path):
    db = tmp_path / "notes.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT); INSERT INTO meta VALUES ('app', 'notes');"
        "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');"
    )
    con.close()
    before, mtime = db.read_bytes(), db.stat().st_mtime_ns
    with pytest.raises(StoreError, match="not a rank1_eval judgement store.*left untouched"):
        SQLiteStore(db)
    with pytest.raises(StoreError, match="not a rank1_eval judgement store"):
        check_store_file(db)
    assert db.read_bytes() == before and db.stat().st_mtime_ns == mtime
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-journal").exists()
    # a store of ours carries rank1_eval's application id; an id of another application is refused too
    other = tmp_path / "other.db"
    SQLiteStore(other).close()
    con = sqlite3.connect(other)
    con.execute("PRAGMA application_id = 1234")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="application_id 0x4d2"):
        SQLiteStore(other)


def _corrupted_store(path: Path, n: int = 600) -> tuple[dict[str, Judgement], str]:
    """A checkpointed store of ``n`` judgements with a run of pages in its middle overwritten (header intact)."""
    originals = {_key(i): _judgement(i, "failed" if i % 9 == 0 else "pass1") for i in range(n)}
    with SQLiteStore(path) as store:
        store.put_many(list(originals.items()))
    con = sqlite3.connect(path)
    page, pages = con.execute("PRAGMA page_size").fetchone()[0], con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    rng = random.Random(14)
    with path.open("r+b") as f:
        for p in range(pages // 3, pages // 3 + pages // 8):
            f.seek(p * page + 16)
            f.write(rng.randbytes(page - 32))
    return originals, hashlib.sha256(path.read_bytes()).hexdigest()


def test_corrupted_store_is_named_with_the_salvage_command_and_salvaged(tmp_path, capsys):
    path = tmp_path / "store.sqlite"
    originals, digest = _corrupted_store(path)
    check = check_store(path)
    assert not check.ok and check.problems
    with pytest.raises(StoreCorruptError, match=r"is corrupted .*rank1-eval store salvage"):
        check_store_file(path)  # the run's pre-flight: before a model loads
    with SQLiteStore(path) as store, pytest.raises(StoreCorruptError, match="salvage"):
        store.get_many(list(originals))  # and mid-run, a read that hits a broken page says the same
    assert main(["store", "check", str(path)]) == EXIT_ERROR
    assert "damaged" in _one_line(capsys.readouterr().err)

    assert main(["store", "salvage", str(path), "--into", str(tmp_path / "new.sqlite")]) == 0
    assert "salvaged" in capsys.readouterr().out
    with SQLiteStore(tmp_path / "new.sqlite") as new:
        got = dict(new.items())
    assert 0.75 * len(originals) <= len(got) < len(originals)  # pages of ~4 rows each were overwritten
    assert all(originals[k] == j for k, j in got.items()), "a salvaged judgement differs from the original"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest  # the damaged store is only read
    assert check_store(tmp_path / "new.sqlite").ok

    with pytest.raises(StoreCorruptError, match="merge source .* is corrupted"):
        merge_stores(tmp_path / "merged.sqlite", [path])
    assert not (tmp_path / "merged.sqlite").exists()


def test_salvage_reads_rows_cut_off_by_a_broken_interior_page(tmp_path):
    path = tmp_path / "s.sqlite"
    originals = {_key(i): _judgement(i) for i in range(400)}
    with SQLiteStore(path) as store:
        store.put_many(list(originals.items()))
    con = sqlite3.connect(path)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'judgements'").fetchone()[0]
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    with path.open("r+b") as f:  # the table's root (interior) page: every row is cut off from the b-tree
        f.seek((root - 1) * page)
        f.write(b"\xff" * page)
    report = salvage_store(path, tmp_path / "new.sqlite")
    assert report.copied == len(originals) and report.from_pages == len(originals) and report.lost == 0


def test_drop_failed_lets_a_rerun_score_them_again(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        store.put_many([(_key(i), _judgement(i, "failed" if i < 3 else "pass1")) for i in range(10)])
    assert main(["store", "drop-failed", str(path)]) == 0
    assert "deleted 3 failed" in capsys.readouterr().out
    with SQLiteStore(path) as store:
        assert len(store) == 7 and all(j.path == "pass1" for _, j in store.items())
    report = salvage_store(path, tmp_path / "again.sqlite")  # deleted rows are zeroed: never revived
    assert report.copied == 7


class _FullAfter(MemoryStore):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def put_many(self, items):
        if len(self) + len(items) > self.n:
            raise StoreFullError("no space left for judgement store S (test)")
        super().put_many(items)


def test_writer_failure_stops_the_scoring_loop_at_once():
    store = _FullAfter(30)
    started = time.monotonic()
    steps = 0
    with pytest.raises(StoreFullError, match="no space left"):
        writer = AsyncWriter(store, interrupt_main=True)
        try:
            for i in range(200):  # stands for engine calls that take a while each
                writer.submit([(_key(i * 10 + k), _judgement(i * 10 + k)) for k in range(10)])
                steps += 1
                time.sleep(0.05)
        finally:
            writer.close()
    assert steps < 20 and time.monotonic() - started < 5, "the failure must not wait for the loop to end"
    assert len(store) == 30  # what was committed stays


def test_full_disk_under_the_store_keeps_what_was_committed(tmp_path):
    with _tmpfs(tmp_path / "small", "96k") as small:
        committed = 0
        with SQLiteStore(small / "store.sqlite") as store:
            with pytest.raises(StoreFullError) as info:
                for i in range(200):
                    store.put_many([(_key(i), _judgement(i))])
                    committed += 1
            assert 0 < committed < 200
            line = str(info.value)
            assert "no space left for judgement store" in line and "kept" in line and "\n" not in line
            assert len(store) == committed
        with sqlite3.connect(small / "store.sqlite") as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert con.execute("SELECT COUNT(*) FROM judgements").fetchone()[0] == committed


# ------------------------------------------------------------------------------------------------ outputs


class _TaskResult:
    def __init__(self, tag: int) -> None:
        self.tag = tag

    def to_disk(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"tag": self.tag}))


class _Model:
    engine_name = "fake"
    model_name_or_path = "fake"


def _write(out: Path, tag: int, n: int = 40, **kwargs) -> dict:
    ctx = {
        "task": "T",
        "subset": "default",
        "split": "test",
        "qids": [f"q{i % 4}" for i in range(n)],
        "docids": [f"d{i}" for i in range(n)],
    }
    judged = [_judgement(tag * 1000 + i) for i in range(n)]
    preds = {f"q{i % 4}": {} for i in range(n)}
    for i in range(n):
        preds[f"q{i % 4}"][f"d{i}"] = float(tag)
    return write_run_folder(
        out,
        task_result=_TaskResult(tag),
        predictions=preds,
        traces=[(ctx, judged)],
        first_stage={},
        ranks={},
        summary={"tag": tag, "provenance": {"command_line": ["rank1-eval", "run", "--tag", str(tag)]}},
        model=_Model(),
        qrels={"q0": {"d0": 1}},
        **kwargs,
    )


def _tag_of(folder: Path) -> int:
    summary = check_result_folder(folder)
    tags = {summary["tag"], json.loads((folder / outputs.RESULT_FILE).read_text())["tag"]}
    tags |= {int(s) for d in json.loads((folder / "predictions.json").read_text()).values() for s in d.values()}
    assert len(tags) == 1, f"mixed folder: {tags}"
    return tags.pop()


def test_a_rerun_keeps_the_sweep_derived_from_its_folder(tmp_path):
    """The README's order (sweep, then run again): the sweep's files and budget_sweep stay with the run."""
    out = tmp_path / "m" / "T_default" / "run"
    _write(out, 1)
    (out / "sweep.json").write_text('{"budgets": []}')
    summary = json.loads((out / "summary.json").read_text())
    (out / "summary.json").write_text(json.dumps({**summary, "budget_sweep": [{"budget": 4}]}))
    _write(out, 1)
    assert (out / "sweep.json").read_text() == '{"budgets": []}'
    assert check_result_folder(out)["budget_sweep"] == [{"budget": 4}]  # still whole: sweep files are outside


def test_truncated_or_mixed_folders_are_refused_with_the_rebuild_command(tmp_path):
    a, b = tmp_path / "m" / "A_default", tmp_path / "m" / "B_default"
    _write(a, 1, n=40)
    _write(b, 2, n=48)
    assert _tag_of(a) == 1
    shutil.copy2(b / "predictions.json", a / "predictions.json")  # a folder mixing two runs
    with pytest.raises(ResultFolderError, match=r"predictions.json has \d+ bytes.*rank1-eval run --tag 1"):
        check_result_folder(a)
    _write(a, 1)
    traces = a / "traces.jsonl"
    traces.write_bytes(traces.read_bytes()[:-100])
    with pytest.raises(ResultFolderError, match="traces.jsonl has .* truncated or mixed"):
        check_result_folder(a)
    summary = a / "summary.json"
    summary.write_bytes(summary.read_bytes()[:200])
    with pytest.raises(ResultFolderError, match="summary.json is truncated or not JSON"):
        check_result_folder(a)


def _real_folder(tmp_path: Path) -> Path:
    """A result folder as the driver writes it, from the demo task: what report/compare/table read."""
    from rank1_eval.beir import load_beir_folder

    data = load_beir_folder(DEMO)
    qids = sorted(data.queries)[:2]
    run = {}
    for line in (DEMO / "bm25s_top20.trec").read_text().splitlines():
        q, _, d, rank, score, _ = line.split()
        if q in qids and int(rank) <= 4:
            run.setdefault(q, {})[d] = float(score)
    out = tmp_path / "results" / f"local__{MICRO_RANK1.name}" / "Dl19MiniLocal_default"
    ctx = {
        "task": "Dl19MiniLocal",
        "subset": "default",
        "split": "test",
        "qids": [q for q in run for _ in run[q]],
        "docids": [d for q in run for d in run[q]],
    }
    judged = [_judgement(i) for i in range(len(ctx["qids"]))]
    preds = {q: {d: j.score for d, j in zip(run[q], judged[4 * k : 4 * k + 4], strict=True)} for k, q in enumerate(run)}
    prov = {
        "task": "Dl19MiniLocal",
        "subset": "default",
        "split": "test",
        "task_source": str(DEMO),
        "top_k": 4,
        "command_line": ["rank1-eval", "run", "--demo"],
        "store": "S",
    }
    summary = {
        "task": "Dl19MiniLocal_default",
        "main_metric": "ndcg_at_10",
        "metrics": {"ndcg_at_10": 0.5},
        "provenance": prov,
        "pairs_total": 8,
        "pairs_scored": 8,
        "pairs_from_store": 0,
        "pass2": 0,
        "failed": 0,
        "truncated": 0,
        "docs_per_s": 1.0,
        "output_tokens_mean": 1,
        "output_tokens_p50": 1,
        "output_tokens_p95": 1,
    }
    write_run_folder(
        out,
        task_result=_TaskResult(0),
        predictions=preds,
        traces=[(ctx, judged)],
        first_stage=run,
        ranks={q: list(run[q]) for q in run},
        summary=summary,
        model=_Model(),
        qrels={q: dict(data.qrels.get(q, {})) for q in qids},
    )
    return out


@pytest.mark.parametrize("damage", ["truncated summary", "truncated traces", "mixed"])
@pytest.mark.parametrize("reader", ["report", "compare", "table"])
def test_readers_refuse_a_damaged_folder_in_one_line(tmp_path, capsys, reader, damage):
    folder = _real_folder(tmp_path)
    assert main(["compare", str(folder)]) == 0  # whole: readable
    capsys.readouterr()
    if damage == "mixed":
        other = _real_folder(tmp_path / "other")
        with (other / "traces.jsonl").open("a") as f:
            f.write((other / "traces.jsonl").read_text().splitlines()[0] + "\n")
        shutil.copy2(other / "traces.jsonl", folder / "traces.jsonl")
    else:
        target = folder / ("summary.json" if "summary" in damage else "traces.jsonl")
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    if reader == "report":
        code = main(["report", str(folder), "-o", str(tmp_path / "r.html")])
    elif reader == "compare":
        code = main(["compare", str(folder)])
    else:
        manifest = tmp_path / "t.json"
        manifest.write_text(
            json.dumps(
                {
                    "name": "t",
                    "defaults": {"split": "test", "metric": "ndcg_at_10", "scale": 100, "top_k": 4},
                    "columns": [{"key": "demo", "task": str(DEMO)}],
                    "rows": [{"key": "micro", "checkpoint": str(MICRO_RANK1), "paper": {"demo": 50.0}}],
                }
            )
        )
        code = main(["table", str(manifest), "--results", str(tmp_path / "results"), "--model", str(MICRO_RANK1)])
    assert code == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert str(folder) in line and "rebuild" in line and "nothing is scored again" in line
    assert re.search(r"truncated|mixed", line)


def _writer_loop(out: str, tag: int, rounds: int, written=None) -> None:
    for _ in range(rounds):
        _write(Path(out), tag, n=200 + 40 * tag)
        if written is not None:  # a shared counter: the parent waits for writes, not for a guessed time
            with written.get_lock():
                written.value += 1


def test_two_writers_on_one_folder_never_interleave(tmp_path):
    out = tmp_path / "m" / "T_default"
    threads = [threading.Thread(target=_writer_loop, args=(str(out), t, 15)) for t in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _tag_of(out) in (1, 2)
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer_loop, args=(str(out), t, 15)) for t in (3, 4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    assert _tag_of(out) in (3, 4)
    assert [p.name for p in out.parent.iterdir()] == ["T_default"], "no temporary folder is left behind"


def test_kill_9_while_writing_never_leaves_a_mixed_folder(tmp_path):
    out = tmp_path / "m" / "T_default"
    _write(out, 1)
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(9)
    seen = set()
    for round_ in range(8):
        written = ctx.Value("i", 0)
        proc = ctx.Process(target=_writer_loop, args=(str(out), 2 + round_ % 2, 1000, written))
        proc.start()
        target, deadline = rng.randint(1, 3), time.monotonic() + 60
        while written.value < target:  # the writer is in its loop: the kill lands in the middle of a write
            assert proc.is_alive() and time.monotonic() < deadline, "the writer died or hangs"
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.01))  # a random point within the next write
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        seen.add(_tag_of(out))  # always one writer's complete folder
    assert seen & {2, 3}, "the killed writers never got a folder in: the test proves nothing"
    _write(out, 5)  # the next writer clears the temporary folders of the killed ones
    assert [p.name for p in out.parent.iterdir()] == ["T_default"]


def test_full_disk_while_writing_keeps_the_previous_folder(tmp_path):
    with _tmpfs(tmp_path / "small", "256k") as small:
        out = small / "m" / "T_default"
        _write(out, 1, n=20)
        with pytest.raises(OSError) as info:
            _write(out, 2, n=3000)
        assert info.value.errno == 28  # ENOSPC
        assert _tag_of(out) == 1  # the earlier folder, whole
        assert [p.name for p in out.parent.iterdir()] == ["T_default"]


def test_output_preflight_on_read_only_full_and_immutable_folders(tmp_path):
    with (
        _tmpfs(tmp_path / "ro", "64k", readonly=True) as ro,
        pytest.raises(OutputError, match="not writable .*read-only"),
    ):
        check_writable(ro / "results", "output folder")
    with _tmpfs(tmp_path / "tiny", "64k") as tiny:
        (tiny / "filler").write_bytes(b"\0" * 56 * 1024)
        with pytest.raises(OutputError, match="not enough free space"):
            check_outputs(tiny / "m" / "T_default", tiny, pairs=100, max_output_tokens=64)
    folder = tmp_path / "out" / "m" / "T_default"
    _write(folder, 1)
    with _immutable(folder), pytest.raises(OutputError, match="earlier run .* not writable .*replaces it"):
        check_outputs(folder, tmp_path / "out", pairs=4, max_output_tokens=64)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_writable(tmp_path / "file" / "sub", "output folder")


def test_output_errors_at_the_top_are_one_line(tmp_path, capsys):
    from rank1_eval.cli import _describe

    exc = OSError(28, "No space left on device", str(tmp_path / "x"))
    assert "disk is full" in _describe(exc) and str(tmp_path / "x") in _describe(exc)


# ------------------------------------------------------------------------------------------------ inputs


def test_rank_only_trec_run_is_cut_by_its_rank_column(tmp_path):
    from rank1_eval.runs import RunFileWarning, read_run, top_k

    path = tmp_path / "r.trec"
    path.write_text("".join(f"q Q0 d{i:02d} {i + 1} 1.0 tag\n" for i in range(12)))  # d00 is rank 1
    with pytest.warns(RunFileWarning, match="rank column"):
        run = read_run(path)
    assert sorted(top_k(run, 4)["q"]) == ["d00", "d01", "d02", "d03"]  # not d11..d08 by doc id


def test_unknown_doc_ids_below_the_cut_are_flagged():
    from rank1_eval.runs import top_k, unknown_below_cut

    run = {"q": {"a": 3.0, "b": 2.0, "ghost": 1.0}}
    assert unknown_below_cut(run, top_k(run, 2), {"a", "b"}) is not None
    assert "ghost" in unknown_below_cut(run, top_k(run, 2), {"a", "b"})
    assert unknown_below_cut(run, top_k(run, 3), {"a", "b", "ghost"}) is None


def _mini_task(root: Path, queries: dict[str, str], docs: dict[str, str], rel: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": t}) + "\n" for d, t in docs.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rel.items())
    )
    return root


def _demo_docs(n: int) -> list[str]:
    return [json.loads(line)["text"] for line in (DEMO / "corpus.jsonl").read_text().splitlines()[:n]]


def _run_args(task: Path, out: Path, *extra: str) -> list[str]:
    # a server loaded the model its own way: no engine or device of ours with --server-url
    return [
        "run",
        "--task",
        str(task),
        *model_args(None if "--server-url" in extra else "transformers"),
        "--output-dir",
        str(out),
        "--no-progress",
        *extra,
    ]


def test_query_over_the_budget_stops_before_the_model_loads(tmp_path, capsys):
    docs = dict(zip(["a", "b"], _demo_docs(2), strict=True))
    task = _mini_task(tmp_path / "task", {"q1": "why " * 400, "q2": "short"}, docs, {"q1": "a", "q2": "a"})
    (tmp_path / "run.json").write_text(json.dumps({"q1": {"a": 2, "b": 1}, "q2": {"a": 2, "b": 1}}))
    args = _run_args(task, tmp_path / "out", "--run-file", str(tmp_path / "run.json"), "--context-size", "256")
    assert main(args) == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "1 query needs more prompt tokens than the budget of 252" in line and "q1 (" in line
    assert not (tmp_path / "out").exists()  # nothing written, no model loaded


def test_missing_local_model_folder_says_so(tmp_path):
    from rank1_eval import rank1
    from rank1_eval.model import ModelLoadError

    with pytest.raises(ModelLoadError, match="model folder './models/no-such-rank1' does not exist"):
        rank1("./models/no-such-rank1", device="cpu").tokenizer_only()


def test_serve_sh_binds_loopback_unless_told_and_says_so():
    env = dict(os.environ, RANK1_SERVE_DRY_RUN="1")
    env.pop("HOST", None)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh"), "m", "8000"], capture_output=True, text=True, env=env
    )
    assert "--host 127.0.0.1" in proc.stdout and "listening on 127.0.0.1:8000 only" in proc.stderr
    env["HOST"] = "0.0.0.0"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "serve.sh"), "m", "8000"], capture_output=True, text=True, env=env
    )
    assert "--host 0.0.0.0" in proc.stdout and "WARNING" in proc.stderr and "no API key" in proc.stderr


# ------------------------------------------------------------------------------------------------ servers


@pytest.fixture(scope="module")
def micro_tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(MICRO_RANK1)


def _server_engine(url: str, tok, **config):
    from rank1_eval.engines import EngineConfig
    from rank1_eval.engines.openai_engine import OpenAIEngine

    cfg = EngineConfig(str(MICRO_RANK1), context_size=1024, server_urls=(url,), **config)
    return OpenAIEngine(cfg, tokenizer=tok, backoff_base=0.01)


def test_a_server_that_never_answers_warns_and_times_out(micro_tok, caplog):
    from rank1_eval.engines import EngineError

    with FakeVLLMServer("stall", str(MICRO_RANK1)) as server:
        engine = _server_engine(
            server.url, micro_tok, request_timeout=1.5, max_retries=0, stall_warning_s=0.4, max_concurrency=2
        )
        started = time.monotonic()
        with caplog.at_level(logging.WARNING), pytest.raises(EngineError, match=r"no answer within 2 s"):
            engine.complete(["a prompt", "another"], max_tokens=64, stop=["</think> true"], top_logprobs=20)
    assert time.monotonic() - started < 20
    assert any("stalled? no request has finished" in r.getMessage() for r in caplog.records)


def test_request_timeout_scales_with_the_output_budget(micro_tok):
    with FakeVLLMServer("nan", str(MICRO_RANK1)) as server:
        engine = _server_engine(server.url, micro_tok)
    assert engine.request_timeout(1) == pytest.approx(30.2)
    assert engine.request_timeout(8192) == pytest.approx(30 + 0.2 * 8192)  # 8192 tokens may take ~28 min
    assert engine.request_timeout(8192) > 600  # the old flat limit cut long generations on a busy server


def test_html_instead_of_json_names_the_url(micro_tok):
    from rank1_eval.engines import EngineError

    with FakeVLLMServer("html", str(MICRO_RANK1)) as server:
        match = rf"{re.escape(server.url)} answered /models with text/html, not JSON"
        with pytest.raises(EngineError, match=match):
            _server_engine(server.url, micro_tok)


@pytest.mark.slow
def test_nan_server_fails_loudly_and_the_count_survives_reruns(tmp_path, capsys):
    with FakeVLLMServer("nan", str(MICRO_RANK1)) as server:
        args = _run_args(
            DEMO,
            tmp_path / "out",
            "--run-file",
            str(DEMO / "bm25s_top20.trec"),
            "--server-url",
            server.url,
            "--engine",
            "openai",
            "--limit-queries",
            "2",
            "--top-k",
            "4",
        )
        assert main(args) == EXIT_FAILED_PAIRS
        err = capsys.readouterr().err
        banner = [ln for ln in err.splitlines() if "FAILED PAIRS" in ln]
        assert len(banner) == 1 and "8 of 8 pairs (100.0%)" in banner[0] and "drop-failed" in banner[0]
        (task_folder,) = (tmp_path / "out" / f"local__{MICRO_RANK1.name}").iterdir()
        folder = resolve_run_folder(task_folder, allow_partial=True)
        assert check_result_folder(folder)["failed"] == 8  # the results are written, and say so

        assert main(args) == EXIT_FAILED_PAIRS  # rerun: every pair from the store, still 8 failed
        out = capsys.readouterr()
        assert "scored 0, from store 8" in out.out and "failed 8" in out.out and "FAILED PAIRS" in out.err
        assert main([*args, "--allow-failed"]) == 0  # accepted on purpose: exit 0 (limits: test_failure_banner_counts)
        assert main(["store", "drop-failed", str(tmp_path / "out" / "store.sqlite")]) == 0
        capsys.readouterr()
        assert main(args) == EXIT_FAILED_PAIRS
        assert "scored 8, from store 0" in capsys.readouterr().out  # scored again after drop-failed


@pytest.mark.slow
def test_whitespace_ids_are_escaped_in_run_trec_and_announced(tmp_path, caplog):
    docs = {f"d {i}": f"Robert Gray, part {i}. {t}" for i, t in enumerate(_demo_docs(3), start=1)}
    task = _mini_task(tmp_path / "task", {"q 1": "who is robert gray"}, docs, {"q 1": "d 1"})
    with caplog.at_level(logging.WARNING):
        assert main(_run_args(task, tmp_path / "out", "--first-stage", "bm25", "--top-k", "3")) == 0
    assert any("contain whitespace" in r.getMessage() and "percent-encoded" in r.getMessage() for r in caplog.records)
    (task_folder,) = (tmp_path / "out" / f"local__{MICRO_RANK1.name}").iterdir()
    folder = resolve_run_folder(task_folder)
    summary = check_result_folder(folder)
    assert summary["pairs_total"] == 3
    assert any("whitespace" in w for w in summary["preflight_warnings"])
    assert {line.split()[2] for line in (folder / "run.trec").read_text().splitlines()} == {"d%201", "d%202", "d%203"}
    assert {line.split()[0] for line in (folder / "run.trec").read_text().splitlines()} == {"q%201"}
    assert set(json.loads((folder / "predictions.json").read_text())["q 1"]) == set(docs)  # raw ids in JSON
    assert (folder / "first_stage.bm25.trec").is_file() and "first_stage.bm25.trec" in summary["files"]
    assert main(["compare", str(folder)]) == 0  # the reader uses the exact ids of predictions.json


@pytest.mark.slow
def test_full_disk_under_the_store_stops_the_run_in_one_line_and_resumes(tmp_path, capsys):
    # chunked, one pair per chunk: the store fills part-way (the writer is the same under --scheduling stream)
    args = [
        "--run-file",
        str(DEMO / "bm25s_top20.trec"),
        "--limit-queries",
        "2",
        "--top-k",
        "4",
        "--scheduling",
        "chunked",
        "--chunk-size",
        "1",
    ]
    with _tmpfs(tmp_path / "small", "256k") as small:
        SQLiteStore(small / "store.sqlite").close()  # the store exists; then the disk is filled to ~48 KiB free
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        (small / "filler").write_bytes(b"\0" * max(0, free - 48 * 1024))
        code = main(_run_args(DEMO, tmp_path / "out", *args, "--store", str(small / "store.sqlite")))
        shutil.copytree(small, tmp_path / "copy")
    assert code == EXIT_ERROR
    line = _one_line(capsys.readouterr().err)
    assert "no space left for judgement store" in line and "while writing" in line and "kept" in line
    with sqlite3.connect(tmp_path / "copy" / "store.sqlite") as con:
        kept = con.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
    assert main(_run_args(DEMO, tmp_path / "out2", *args, "--store", str(tmp_path / "copy" / "store.sqlite"))) == 0
    assert f"scored {8 - kept}, from store {kept}" in capsys.readouterr().out  # every committed one was kept


def test_a_store_on_a_full_disk_is_full_not_corrupted(tmp_path):
    """SQLite says "disk I/O error" when it cannot make the -shm file: the pre-flight names the full disk."""
    with _tmpfs(tmp_path / "small", "256k") as small:
        SQLiteStore(small / "store.sqlite").close()
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        (small / "filler").write_bytes(b"\0" * max(0, free - 4 * 1024))
        with pytest.raises(StoreFullError, match="no space left for judgement store .* KiB free"):
            check_store_file(small / "store.sqlite")


def test_failure_banner_counts(tmp_path):
    from rank1_eval.preflight import failure_banner, failure_limit

    assert failure_limit(None, 100) == 0 and math.isinf(failure_limit("all", 100))
    assert failure_limit("5%", 200) == 10 and failure_limit("3", 200) == 3
    line = failure_banner(
        {"failed": 2, "pairs_total": 8, "failed_examples": [{"qid": "q", "docid": "d", "error": "nan"}]}, "S", 0
    )
    assert "2 of 8 pairs (25.0%)" in line and "q/d: nan" in line and "\n" not in line


# ------------------------------------------------------------------------------------------------ SIGTERM


def _store_count(path: Path) -> int:
    if not path.is_file():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


@pytest.mark.slow
def test_sigterm_mid_run_keeps_every_judgement_and_the_rerun_resumes(tmp_path):
    """What scancel and preemption send: the writer flushes, one line, exit 143, no result folder; resume hits."""
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "rank1_eval",
        "run",
        "--engine",
        "transformers",
        "--no-progress",
        "--output-dir",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store = out / "store.sqlite"
    deadline = time.monotonic() + 240
    while _store_count(store) < 10 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        r"rank1-eval: interrupted by SIGTERM: (\d+) judgements kept in the store, rerun to resume", line
    )
    assert match, stderr
    kept = int(match.group(1))
    assert 10 <= kept < 200 and _store_count(store) == kept  # everything judged was flushed, nothing else
    assert not list(out.glob("*/*/*/summary.json")) and "results:" not in stdout  # no result folder written
    rerun = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"from store {kept}," in rerun.stdout and _store_count(store) == 200


# ------------------------------------------------------------------------------------------- odd inputs


@pytest.mark.parametrize("ranks", ["negative", "contradicting"])
def test_odd_rank_columns_and_control_characters_are_flagged_with_counts(tmp_path, ranks):
    """Ranks that cannot mean what the scores say, and NULs in texts: warnings with counts and examples."""
    from rank1_eval.evaluate import RunOptions, prepare

    docs = dict(zip(["a", "b", "c"], _demo_docs(3), strict=True))
    docs["b"] = "a passage\x00with a NUL"
    task = _mini_task(tmp_path / "task", {"q1": "what\x07 is it", "q2": "plain"}, docs, {"q1": "a", "q2": "b"})
    lines = []
    for q in ("q1", "q2"):
        for i, (d, score) in enumerate((("a", 3.0), ("b", 2.0), ("c", 1.0)), start=1):
            rank = -i if ranks == "negative" else (4 - i if q == "q1" else i)
            lines.append(f"{q} Q0 {d} {rank} {score} t")
    (tmp_path / "run.trec").write_text("\n".join(lines) + "\n")
    prepared = prepare(
        RunOptions(task=str(task), run_file=str(tmp_path / "run.trec"), top_k=3, output_dir=tmp_path / "out")
    )
    text = " | ".join(prepared.warnings)
    if ranks == "negative":
        assert "every rank in the rank column is negative (6 lines" in text
    else:
        assert "1 query has a rank column that contradicts the scores (e.g. 'q1': rank 1 'c' scores 1, rank 2" in text
    assert "1 query and 1 passage contain NUL or control characters (1 of them NUL;" in text
    assert "passage 'b': 'a passage\\x00with a NUL'" in text


# ------------------------------------------------------------------------------------------- the catalogue

import fault_catalogue as catalogue  # noqa: E402 -- tools/ (on sys.path: conftest) holds the one list of faults

GOOD = ("clear", "flagged", "handled")


@pytest.fixture(scope="session")  # the catalogue's cases are spread over the workers, between other modules' tests
def fault_ctx(tmp_path_factory) -> Iterator[catalogue.Ctx]:
    """The catalogue's context; its CLI runs are forks of one process that imported mteb and torch once (each
    still its own process: exit code, stderr, signals), as ``tools/fault_matrix.py --fork-server`` runs them."""
    work = tmp_path_factory.mktemp("faults")
    catalogue.WORK[:] = [str(work)]
    ctx = catalogue.Ctx(ROOT, work)
    ctx.fork_server = catalogue.ForkServer(ROOT, ctx.env, work)
    yield ctx
    ctx.fork_server.close()


@pytest.mark.slow
@pytest.mark.parametrize("fault", catalogue.CASES, ids=[c.name for c in catalogue.CASES])
def test_every_fault_of_the_catalogue(fault, fault_ctx):
    """Each fault of the catalogue, through the real CLI in a subprocess, as the fault matrix runs it: it must
    end in one clear line, a recorded warning, or a correct outcome — never a traceback or silence."""
    if fault.needs_root and os.geteuid() != 0:
        pytest.skip("needs root (tmpfs / read-only mounts)")
    if fault.name == "failed_pairs_rerun" and not hasattr(fault_ctx, "nan_rerun"):  # the rerun of nan_server's
        next(c for c in catalogue.CASES if c.name == "nan_server").fn(fault_ctx, catalogue.Row("", "", ""))
    row = catalogue.Row(fault.name, fault.group, fault.fault)
    try:
        fault.fn(fault_ctx, row)
    except catalogue.Skip as exc:
        pytest.skip(str(exc))
    assert row.category in GOOD, f"{fault.fault}: {row.category} (exit {row.rc}): {row.message} {row.note}"
