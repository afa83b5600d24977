"""The fault catalogue (issues 14 and 20): every fault rank1_eval is tried against, ONE list read by both
``tests/test_faults.py`` (each case must end ``clear``, ``flagged`` or ``handled``) and ``tools/fault_matrix.py``
(the table, before and after a change). Bad flags and inputs, flags that another flag overrides, unwritable and
full disks, corrupted or foreign stores, broken, empty or foreign result folders, odd inputs, misbehaving servers,
kills and SIGTERM, and the README's first hour.

Every case runs the real CLI in a subprocess (``PYTHONPATH=CODE``, cwd ``CODE``, ``HF_HUB_OFFLINE=1``) on the
micro rank1 and the demo task that CODE bundles (transformers engine, 2 queries x top-4 = 8 pairs), and sorts
the outcome into one of:

* ``clear``      non-zero exit and one line that names the problem (and, where there is one, the fix);
* ``flagged``    the run goes on, correctly, and says what it did about the fault;
* ``handled``    nothing to say and nothing lost (resume after ``kill -9``, two writers on one folder);
* ``late``       one clear line, but only after the compute was spent or with the result folder left broken;
* ``misleading`` one line, about something else;
* ``traceback``  a Python stack trace;
* ``silent``     exit 0 with a wrong or unsaid outcome, or a hang the harness had to kill.

Cases that need a small tmpfs or a read-only mount need root (CI runs as root); elsewhere they are skipped
with the reason. The fake servers are ``tests/fake_vllm_server.py`` of *this* checkout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cli_fork_server import ForkServer, Proc  # noqa: E402 -- tools/ is on sys.path: beside this file

HERE = Path(__file__).resolve().parents[1]
FAKE_SERVER = HERE / "tests" / "fake_vllm_server.py"
TRACEBACK = "Traceback (most recent call last)"
WORK: list[str] = []  # the scratch folder of this matrix (paths in messages are not evidence)
CATEGORIES = ("clear", "flagged", "handled", "late", "misleading", "traceback", "silent", "skipped")


@dataclass
class Row:
    name: str
    group: str
    fault: str
    category: str = "skipped"
    message: str = ""
    rc: int | None = None
    kept: str = ""
    note: str = ""
    wall_s: float = 0.0


@dataclass
class Case:
    name: str
    group: str
    fault: str
    fn: Callable[[Ctx, Row], None]
    needs_root: bool = False
    tags: set[str] = field(default_factory=set)


CASES: list[Case] = []


def case(name: str, group: str, fault: str, *, needs_root: bool = False) -> Callable:
    def deco(fn: Callable[[Ctx, Row], None]) -> Callable[[Ctx, Row], None]:
        CASES.append(Case(name, group, fault, fn, needs_root))
        return fn

    return deco


# --------------------------------------------------------------------------------------------------- context


class Skip(Exception):
    """The case cannot run here (no root, no mount); the reason goes in the table."""


class Ctx:
    """Where the code under test lives, a scratch folder, and helpers to run its CLI."""

    def __init__(self, code: Path, work: Path, verbose: bool = False) -> None:
        self.code = code
        self.work = work
        self.verbose = verbose
        self.micro = code / "rank1_eval" / "data" / "micro-rank1"
        self.demo = code / "rank1_eval" / "data" / "run_files" / "demo" / "dl19-mini"
        self.env = dict(
            os.environ,
            PYTHONPATH=str(code),
            HF_HUB_OFFLINE="1",
            VLLM_ENABLE_V1_MULTIPROCESSING="0",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        self.env.pop("HOST", None)  # serve.sh reads it
        self._baselines: dict[int, tuple[Path, Path]] = {}
        self._counter = 0
        self.fork_server: ForkServer | None = None  # set: CLI runs without extra variables are forks of it

    def tmp(self, name: str) -> Path:
        self._counter += 1
        path = self.work / f"{self._counter:02d}-{name}"
        path.mkdir(parents=True)
        return path

    def cmd(self, *args: object) -> list[str]:
        return [sys.executable, "-m", "rank1_eval.cli", *map(str, args)]

    def run(self, argv: list[str], *, timeout: float = 600, env: dict[str, str] | None = None) -> Proc:
        cli = self.cmd()
        if self.fork_server is not None and not env and argv[: len(cli)] == cli:
            p = self.fork_server.run([str(a) for a in argv[len(cli) :]], cwd=self.code, env=self.env, timeout=timeout)
            self._show(argv, p)
            return p
        started = time.monotonic()
        with subprocess.Popen(
            argv,
            cwd=self.code,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                timed_out = True
        p = Proc(None if timed_out else proc.returncode, out, err, timed_out, time.monotonic() - started)
        self._show(argv, p)
        return p

    def _show(self, argv: list[str], p: Proc) -> None:
        if self.verbose:
            print(
                f"    $ {' '.join(argv[2:])}\n    rc={p.rc} {p.wall_s:.0f}s\n"
                + textwrap.indent(p.err[-1500:], "    | ")
            )

    def cli(self, *args: object, timeout: float = 600, env: dict[str, str] | None = None) -> Proc:
        return self.run(self.cmd(*args), timeout=timeout, env=env)

    def python(self, code: str, *, timeout: float = 300) -> Proc:
        return self.run([sys.executable, "-c", code], timeout=timeout)

    def run_args(
        self,
        out: Path,
        *extra: object,
        queries: int = 2,
        top_k: int = 4,
        task: Path | None = None,
        run_file: Path | None = None,
        engine: str = "transformers",
    ) -> list[object]:
        args: list[object] = [
            "run",
            "--task",
            task or self.demo,
            "--model",
            self.micro,
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--max-output-tokens",
            64,
            "--context-size",
            1024,
            "--output-dir",
            out,
            "--limit-queries",
            queries,
            "--top-k",
            top_k,
            "--no-progress",
        ]
        if engine:
            args += ["--engine", engine]
        if engine == "openai" or "--server-url" in map(str, extra):  # a server loaded the model its own way
            del args[args.index("--device") : args.index("--device") + 2]
        if run_file is not False:
            args += ["--run-file", run_file or self.demo / "bm25s_top20.trec"]
        return [*args, *extra]

    def baseline(self, queries: int = 2) -> tuple[Path, Path]:
        """A good run (result folder, store) made once per matrix; cases copy it."""
        if queries not in self._baselines:
            out = self.work / f"baseline-{queries}q"
            p = self.cli(*self.run_args(out, "--store", self.work / "baseline-store.sqlite", queries=queries))
            if p.rc != 0:
                raise RuntimeError(f"baseline run failed (rc {p.rc}):\n{p.err[-3000:]}")
            folder = result_folder(out)
            self._baselines[queries] = (folder, self.work / "baseline-store.sqlite")
        return self._baselines[queries]

    def copy_baseline(self, dest: Path, queries: int = 2) -> Path:
        """A copy of the baseline result tree under ``dest``; returns the result folder."""
        folder, _ = self.baseline(queries)
        target = dest / folder.relative_to(self.work / f"baseline-{queries}q")  # the same layout below dest
        shutil.copytree(folder, target)
        return target

    def copy_store(self, dest: Path) -> Path:
        _, store = self.baseline()
        con = sqlite3.connect(store)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        shutil.copy2(store, dest)
        return dest

    def mini_task(
        self, name: str, queries: dict[str, str], docs: dict[str, str], qrels: dict[str, dict[str, int]]
    ) -> Path:
        folder = self.tmp(name)
        with (folder / "corpus.jsonl").open("w") as f:
            for docid, text in docs.items():
                f.write(json.dumps({"_id": docid, "title": "", "text": text}) + "\n")
        with (folder / "queries.jsonl").open("w") as f:
            for qid, text in queries.items():
                f.write(json.dumps({"_id": qid, "text": text}) + "\n")
        (folder / "qrels").mkdir()
        with (folder / "qrels" / "test.tsv").open("w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, rels in qrels.items():
                for docid, rel in rels.items():
                    f.write(f"{qid}\t{docid}\t{rel}\n")
        return folder

    def demo_docs(self, n: int) -> list[tuple[str, str]]:
        out = []
        with (self.demo / "corpus.jsonl").open() as f:
            for line in f:
                d = json.loads(line)
                out.append((str(d["_id"]), d["text"]))
                if len(out) == n:
                    break
        return out


def cli_source(ctx: Ctx) -> str:
    """The checkout's CLI source: ``rank1_eval/cli.py``, or every module of the ``rank1_eval/cli/`` package since
    issue 21 (so a flag check works on old and new checkouts alike)."""
    package = ctx.code / "rank1_eval" / "cli"
    if package.is_dir():
        return "\n".join(f.read_text(encoding="utf-8") for f in sorted(package.glob("*.py")))
    return (ctx.code / "rank1_eval" / "cli.py").read_text(encoding="utf-8")


def per_pair(ctx: Ctx) -> list[object]:
    """Flags for one commit per pair: chunks of one under chunked scheduling (where the checkout has it)."""
    sources = (ctx.code / "rank1_eval").rglob("*.py")
    if any("--scheduling" in f.read_text(encoding="utf-8") for f in sources):
        return ["--scheduling", "chunked", "--chunk-size", 1]
    return ["--chunk-size", 1]


def result_folders(out: Path) -> list[Path]:
    """Result folders under ``out`` (``<model>/<Task>/`` or, since issue 11, ``<model>/<Task>/<run>/``)."""
    return sorted(
        {p.parent for p in out.rglob("summary.json") if not any(x.startswith(".") for x in p.relative_to(out).parts)}
    )


def result_folder(out: Path) -> Path:
    folders = result_folders(out)
    if len(folders) != 1:
        raise RuntimeError(f"expected one result folder under {out}, found {folders}")
    return folders[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def count_rows(store: Path) -> int | None:
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
        try:
            return int(con.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, readonly: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        raise Skip(f"cannot mount a tmpfs ({p.stderr.strip() or 'mount failed'}); run as root")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """A folder even root cannot write into or rename (chattr +i), else a read-only bind mount."""
    p = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if p.returncode == 0:
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        return
    b = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
    r = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True)
    if b.returncode or r.returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)
        raise Skip(f"neither chattr +i nor a read-only bind mount works here ({p.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def fake_server(ctx: Ctx, mode: str) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_SERVER), "--mode", mode, "--model", str(ctx.micro)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ctx.env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("READY"):
            raise RuntimeError(f"fake server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}/v1"
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------------- judging

_PROGRESS = re.compile(r"(\d+/\d+ \[|it/s|pair/s|^judging:)")


def lines(text: str) -> list[str]:
    out = []
    for raw in text.splitlines():
        seg = raw.split("\r")[-1].strip()
        if seg and not _PROGRESS.search(seg):
            out.append(seg)
    return out


def error_line(p: Proc) -> str:
    err = lines(p.err)
    if TRACEBACK in p.err:
        return err[-1] if err else "(traceback)"
    marked = [ln for ln in err if re.search(r"error|refus|cannot|FAILED", ln, re.I)]
    return (marked or err or lines(p.out) or ["(no output)"])[-1]


def flag_line(p: Proc, flag: str) -> str | None:
    """The first warning line that says ``flag`` (status lines and scratch paths do not count)."""
    for ln in lines(p.err) + lines(p.out):
        said = re.sub(r"/tmp/\S+", "PATH", ln)
        if not ln.endswith("…") and re.search(flag, said, re.I):
            return ln
    return None


def judge(row: Row, p: Proc, *, mention: str, flag: str | None = None, correct: bool | None = None) -> None:
    """The generic verdict; ``mention``: what a clear message names; ``flag``: a warning line for exit-0 cases."""
    row.rc, row.wall_s = p.rc, p.wall_s
    if p.timed_out:
        hit = flag_line(p, flag) if flag else None
        row.category = "flagged" if hit else "silent"
        row.message = (hit + " … " if hit else "") + f"(no end after {p.wall_s:.0f}s: killed by the harness)"
        return
    if TRACEBACK in p.err:
        row.category, row.message = "traceback", error_line(p)
        return
    if p.rc != 0:
        row.message = error_line(p)
        # the scratch folder's names (e.g. "store-full") must not pass for what the message says
        said = re.sub(r"/tmp/\S+|" + re.escape(WORK[0]) + r"\S*", "PATH", row.message) if WORK else row.message
        row.category = "clear" if re.search(mention, said, re.I) else "misleading"
        return
    hit = flag_line(p, flag) if flag else None
    if hit and correct is not False:
        row.category, row.message = "flagged", hit
    elif correct is True and flag is None:
        row.category, row.message = "handled", "(exit 0, outcome correct)"
    else:
        row.category = "silent"
        row.message = "(exit 0" + (", outcome wrong" if correct is False else "") + ", nothing said)"


def tail_summary(p: Proc) -> str:
    m = re.search(r"pairs \d+: scored \d+, from store \d+[^|]*", p.out)
    return m.group(0).strip() if m else ""


# --------------------------------------------------------------------------------------------------- cases: flags


def _flag_case(name: str, flags: list[object], mention: str, fault: str) -> None:
    def fn(ctx: Ctx, row: Row) -> None:
        out = ctx.tmp(name)
        p = ctx.cli(*ctx.run_args(out / "results", *flags))
        judge(row, p, mention=mention)
        if p.rc == 0:
            row.note = tail_summary(p)

    case(name, "flags", fault)(fn)


_flag_case("failed_score_abc", ["--failed-score", "abc"], r"failed.score", "--failed-score abc")
_flag_case("failed_score_nan", ["--failed-score", "nan"], r"failed.score", "--failed-score nan")
_flag_case("max_output_tokens_0", ["--max-output-tokens", 0], r"max.output.tokens", "--max-output-tokens 0")
_flag_case(
    "context_below_output", ["--context-size", 32], r"context.size", "--context-size 32 (< --max-output-tokens 64)"
)
_flag_case("num_gpus_0", ["--num-gpus", 0], r"num.gpus", "--num-gpus 0")
_flag_case("num_gpus_negative", ["--num-gpus", -1], r"num.gpus", "--num-gpus -1")
_flag_case("chunk_size_0", ["--chunk-size", 0], r"chunk.size", "--chunk-size 0")
_flag_case("gpu_memory_1_5", ["--gpu-memory-utilization", 1.5], r"gpu.memory", "--gpu-memory-utilization 1.5")
_flag_case("top_k_0", ["--top-k", 0], r"top.k", "--top-k 0")
_flag_case("limit_queries_0", ["--limit-queries", 0], r"limit.queries", "--limit-queries 0 (after the default 2)")


@case("run_file_and_bm25", "flags", "--run-file F together with --first-stage bm25")
def _run_file_and_bm25(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("both-first-stages")
    p = ctx.cli(*ctx.run_args(out / "results", "--first-stage", "bm25"))
    judge(row, p, mention=r"first.stage|run.file")
    if p.rc == 0:
        row.note = "bm25 ignored; " + tail_summary(p)


# --------------------------------------------------------------------------------------------------- cases: inputs


@case("query_over_budget", "inputs", "a query longer than the whole prompt budget")
def _query_over_budget(ctx: Ctx, row: Row) -> None:
    docs = dict(ctx.demo_docs(3))
    task = ctx.mini_task(
        "long-query",
        {"q1": "why " * 400, "q2": "short query"},
        docs,
        {"q1": {next(iter(docs)): 1}, "q2": {next(iter(docs)): 1}},
    )
    run = task / "run.json"
    run.write_text(json.dumps({q: {d: float(i) for i, d in enumerate(docs)} for q in ("q1", "q2")}))
    out = ctx.tmp("long-query-out")
    p = ctx.cli(*ctx.run_args(out, "--context-size", 256, task=task, run_file=run))
    judge(row, p, mention=r"budget|too long|query")


@case("docid_whitespace", "inputs", "doc ids containing whitespace (JSON run + BEIR folder)")
def _docid_whitespace(ctx: Ctx, row: Row) -> None:
    docs = {f"d {i}": text for i, (_, text) in enumerate(ctx.demo_docs(3), start=1)}
    task = ctx.mini_task("ws-ids", {"q1": "who is robert gray"}, docs, {"q1": {"d 1": 1}})
    run = task / "run.json"
    run.write_text(json.dumps({"q1": {"d 1": 3.0, "d 2": 2.0, "d 3": 1.0}}))
    out = ctx.tmp("ws-ids-out")
    p = ctx.cli(*ctx.run_args(out, task=task, run_file=run))
    folders = result_folders(out)
    files = sorted(x.name for x in folders[0].iterdir()) if folders else []
    complete = {"summary.json", "traces.jsonl", "run.trec", "predictions.json", "mteb_result.json"} <= set(files)
    judge(row, p, mention=r"whitespace|trec", flag=r"whitespace", correct=complete)
    scored = "scored" in p.out or "scored" in p.err
    if p.rc != 0 and re.search(r"whitespace", row.message):
        row.category = "late"
    row.kept = f"result folder: {len(files)} files" + ("" if complete else " (incomplete)")
    row.note = "error after the pairs were scored" if p.rc and not scored else tail_summary(p)


@case("rank_only_trec", "inputs", "a rank-only TREC run (all scores equal) cut at top-k")
def _rank_only(ctx: Ctx, row: Row) -> None:
    docs = ctx.demo_docs(12)
    by_id = sorted(d for d, _ in docs)  # rank 1..12 = ascending doc id: the opposite of the tie order
    task = ctx.mini_task("rank-only", {"q1": "who is robert gray"}, dict(docs), {"q1": {by_id[0]: 1}})
    run = task / "run.trec"
    run.write_text("".join(f"q1 Q0 {d} {r} 1.0 rankonly\n" for r, d in enumerate(by_id, start=1)))
    out = ctx.tmp("rank-only-out")
    p = ctx.cli(*ctx.run_args(out, task=task, run_file=run))
    kept: set[str] = set()
    with contextlib.suppress(Exception):
        kept = {json.loads(x)["docid"] for x in (result_folder(out) / "traces.jsonl").read_text().splitlines()}
    correct = kept == set(by_id[:4])
    judge(row, p, mention=r"rank", flag=r"rank column|equal scores|rank-only", correct=correct)
    row.kept = f"kept ranks {sorted(by_id.index(d) + 1 for d in kept)}" if kept else ""


@case("unknown_docs_below_cut", "inputs", "doc ids not in the corpus below the top-k cut")
def _unknown_below_cut(ctx: Ctx, row: Row) -> None:
    docs = ctx.demo_docs(6)
    task = ctx.mini_task("unknown-below", {"q1": "who is robert gray"}, dict(docs), {"q1": {docs[0][0]: 1}})
    run = task / "run.json"
    scores = {d: float(10 - i) for i, (d, _) in enumerate(docs)}
    scores.update({"ghost-1": 0.5, "ghost-2": 0.4})
    run.write_text(json.dumps({"q1": scores}))
    out = ctx.tmp("unknown-below-out")
    p = ctx.cli(*ctx.run_args(out, task=task, run_file=run))
    judge(row, p, mention=r"corpus", flag=r"not in the corpus")


@case("missing_model_folder", "inputs", "--model ./models/no-such-rank1 (a local folder that does not exist)")
def _missing_model(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("missing-model")
    args = ctx.run_args(out)
    args[args.index("--model") + 1] = "./models/no-such-rank1"
    p = ctx.cli(*args)
    judge(row, p, mention=r"does not exist|not found|no such")


@case("foreign_sqlite_store", "inputs", "--store pointed at another application's SQLite file (with a meta table)")
def _foreign_store(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("foreign-store")
    db = out / "notes.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "INSERT INTO meta VALUES ('app', 'notes');"
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
        "INSERT INTO notes (body) VALUES ('keep me');"
    )
    con.close()
    before, mtime = sha(db), db.stat().st_mtime_ns
    p = ctx.cli(*ctx.run_args(out / "results", "--store", db))
    changed = sha(db) != before or db.stat().st_mtime_ns != mtime or Path(str(db) + "-wal").exists()
    judge(row, p, mention=r"not a rank1_eval|store", correct=not changed)
    if p.rc == 0 and changed:
        row.category = "silent"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    tables = sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    row.kept = "file unchanged" if not changed else f"file modified (tables now {tables}, journal {mode})"


@case("not_sqlite_store", "inputs", "--store pointed at a text file (control)")
def _text_store(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("text-store")
    f = out / "store.sqlite"
    f.write_text("not a database\n")
    p = ctx.cli(*ctx.run_args(out / "results", "--store", f))
    judge(row, p, mention=r"not a SQLite|store")


@case("unknown_task", "inputs", "--task NoSuchTask (control)")
def _unknown_task(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("unknown-task")
    args = ctx.run_args(out)
    args[args.index("--task") + 1] = "NoSuchTask"
    p = ctx.cli(*args)
    judge(row, p, mention=r"NoSuchTask|unknown|task")


@case("malformed_run_file", "inputs", "a TREC run line with 5 columns (control)")
def _malformed_run(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("bad-run")
    run = out / "run.trec"
    run.write_text("1037798 Q0 3641634 1 7.2 bm25\n1037798 Q0 3641640 2 5.7\n")
    p = ctx.cli(*ctx.run_args(out / "results", run_file=run))
    judge(row, p, mention=r"line 2")


@case("table_local_prefix", "inputs", "table --model local__micro-rank1 when that folder is absent")
def _table_prefix(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("table-prefix")
    (out / "results" / "jhu-clsp__rank1-7b").mkdir(parents=True)
    p = ctx.cli("table", "bright", "--results", out / "results", "--model", "local__micro-rank1")
    judge(row, p, mention=r"(?<!local__)local__micro-rank1/")
    if "local__local__" in row.message:
        row.category = "misleading"


# --------------------------------------------------------------------------------------------------- cases: disk


@case("output_dir_readonly", "disk", "--output-dir on a read-only file system (store elsewhere)", needs_root=True)
def _ro_output(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("ro-out")
    with tmpfs(out / "ro", "1m", readonly=True) as ro:
        p = ctx.cli(*ctx.run_args(ro, "--store", out / "store.sqlite"))
    judge(row, p, mention=r"writ|read-only|permission")
    row.note = f"ended after {p.wall_s:.0f}s"


@case("output_dir_readonly_store", "disk", "--output-dir on a read-only file system (store inside it)", needs_root=True)
def _ro_output_store(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("ro-out-store")
    with tmpfs(out / "ro", "1m", readonly=True) as ro:
        p = ctx.cli(*ctx.run_args(ro))
    judge(row, p, mention=r"writ|read-only|permission|open")


@case("output_dir_is_file", "disk", "--output-dir names an existing file")
def _out_is_file(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("out-file")
    f = out / "results"
    f.write_text("x")
    p = ctx.cli(*ctx.run_args(f, "--store", out / "store.sqlite"))
    judge(row, p, mention=r"not a (folder|directory)|file")


@case(
    "result_folder_readonly",
    "disk",
    "the result subfolder of an earlier run exists and is not writable",
    needs_root=True,
)
def _ro_result(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("ro-result")
    folder = ctx.copy_baseline(out / "results")
    store = ctx.copy_store(out / "store.sqlite")
    before = {f.name: sha(f) for f in folder.iterdir()}
    with immutable(folder):
        p = ctx.cli(*ctx.run_args(out / "results", "--store", store))
    judge(row, p, mention=r"writ|read-only|permission|not permitted")
    intact = {f.name: sha(f) for f in folder.iterdir()} == before
    row.kept = "earlier result folder intact" if intact else "earlier result folder changed"
    if p.rc != 0 and "scored" in p.out:
        row.note = "after scoring"


@case("store_disk_full", "disk", "the disk under the store fills up during the run (tmpfs)", needs_root=True)
def _store_full(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("store-full")
    with tmpfs(out / "small", "256k") as small:
        # ~48 KiB left: past the pre-flight, full before the 8 pairs are stored (a store, WAL and -shm need more)
        (small / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(small).free - 48 * 1024))
        # one commit per pair: the chunked path where the checkout streams (its commits are batched by time)
        p = ctx.cli(*ctx.run_args(out / "results", "--store", small / "store.sqlite", *per_pair(ctx)))
        shutil.copytree(small, out / "copy")  # store + WAL as the process left them
    judge(row, p, mention=r"disk|space|full")
    kept = count_rows(out / "copy" / "store.sqlite")
    rerun = ctx.cli(*ctx.run_args(out / "results2", "--store", out / "copy" / "store.sqlite"))
    m = re.search(r"scored (\d+), from store (\d+)", rerun.out)
    if m:
        row.kept = f"{kept} committed, all {m.group(2)} found by the rerun (which scored {m.group(1)})"
    else:
        row.kept = f"{kept} in the store; rerun rc {rerun.rc}: {error_line(rerun)[:80]}"


@case("outputs_disk_full", "disk", "the disk under the result folder has ~8 KB free (tmpfs)", needs_root=True)
def _outputs_full(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("outputs-full")
    store = ctx.copy_store(out / "store.sqlite")
    with tmpfs(out / "small", "64k") as small:
        with contextlib.suppress(OSError), (small / "filler").open("wb") as f:
            f.write(b"\0" * (56 * 1024))
        p = ctx.cli(*ctx.run_args(small, "--store", store))
        left = sorted(str(x.relative_to(small)) for x in small.rglob("*") if x.is_file() and x.name != "filler")
    judge(row, p, mention=r"space|disk|full")
    row.kept = f"store intact ({count_rows(store)} judgements); files left: {len(left)}"
    if p.rc != 0 and "scored" in p.out:
        row.note = "after scoring"


def _corrupt_store(ctx: Ctx, path: Path, extra: int = 600) -> int:
    """The baseline store plus ``extra`` filler judgements, checkpointed, then pages in the middle overwritten."""
    ctx.copy_store(path)
    con = sqlite3.connect(path)
    (value,) = con.execute("SELECT value FROM judgements LIMIT 1").fetchone()
    rows = [(hashlib.sha256(f"filler-{i}".encode()).hexdigest(), value, time.time()) for i in range(extra)]
    con.executemany("INSERT INTO judgements (key, value, created_at) VALUES (?, ?, ?)", rows)
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = con.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
    page = con.execute("PRAGMA page_size").fetchone()[0]
    n_pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    rng = random.Random(14)
    with path.open("r+b") as f:  # header (page 1) intact; a run of pages in the middle broken
        for p in range(n_pages // 3, n_pages // 3 + max(2, n_pages // 8)):
            f.seek(p * page + 16)
            f.write(bytes(rng.getrandbits(8) for _ in range(page - 32)))
    return int(total)


@case("corrupted_store_run", "store", "a store whose pages are corrupted, header intact: `run`")
def _corrupt_run(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("corrupt-run")
    store = out / "store.sqlite"
    total = _corrupt_store(ctx, store)
    digest = sha(store)
    p = ctx.cli(*ctx.run_args(out / "results", "--store", store))
    judge(row, p, mention=r"corrupt|malformed|salvage")
    row.note = f"ended after {p.wall_s:.0f}s" + (
        "; store bytes unchanged" if sha(store) == digest else "; store changed"
    )
    salvage = ctx.cli("store", "salvage", store, "--into", out / "salvaged.sqlite")
    if salvage.rc == 0:
        row.kept = f"salvage: {count_rows(out / 'salvaged.sqlite')} of {total} judgements copied"
    else:
        row.kept = "no salvage command"


@case("corrupted_store_merge", "store", "a store whose pages are corrupted, header intact: `merge`")
def _corrupt_merge(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("corrupt-merge")
    store = out / "shard.sqlite"
    _corrupt_store(ctx, store)
    p = ctx.cli("merge", "--into", out / "merged.sqlite", store)
    judge(row, p, mention=r"corrupt|malformed|salvage")
    if p.rc == 0:
        row.kept = f"merged {count_rows(out / 'merged.sqlite')} judgements, corruption unsaid"


# --------------------------------------------------------------------------------------------------- cases: readers


def _table_manifest(ctx: Ctx, where: Path) -> Path:
    manifest = {
        "name": "faults",
        "title": "fault matrix",
        "defaults": {"split": "test", "metric": "ndcg_at_10", "scale": 100, "decimals": 1, "top_k": 4},
        "columns": [{"key": "demo", "label": "demo", "task": str(ctx.demo)}],
        "rows": [{"key": "micro", "label": "micro", "checkpoint": str(ctx.micro), "paper": {"demo": 50.0}}],
    }
    path = where / "faults-table.json"
    path.write_text(json.dumps(manifest))
    return path


def _reader(ctx: Ctx, row: Row, reader: str, folder: Path) -> None:
    results = next(p for p in folder.parents if p.name == "results")  # the --results root in either layout
    if reader == "report":
        p = ctx.cli("report", folder, "-o", results.parent / "report.html")
    elif reader == "compare":
        p = ctx.cli("compare", folder)
    else:
        # the baseline is a --limit-queries run: since issue 11 tables use such runs only when told to
        partial = ["--allow-partial"] if "--allow-partial" in cli_source(ctx) else []
        p = ctx.cli("table", _table_manifest(ctx, results.parent), "--results", results, "--model", ctx.micro, *partial)
    judge(row, p, mention=r"truncat|mixed|rebuild|incomplete|invalid|not valid|does not match|damaged")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


for _reader_name in ("report", "compare", "table"):
    for _file in ("summary.json", "traces.jsonl"):
        if _reader_name == "table" and _file == "traces.jsonl":
            continue

        def _fn(ctx: Ctx, row: Row, reader: str = _reader_name, file: str = _file) -> None:
            out = ctx.tmp(f"trunc-{reader}")
            folder = ctx.copy_baseline(out / "results")
            _truncate(folder / file)
            _reader(ctx, row, reader, folder)

        case(
            f"truncated_{_file.split('.')[0]}_{_reader_name}",
            "readers",
            f"a truncated {_file} given to `{_reader_name}`",
        )(_fn)

    def _mixed(ctx: Ctx, row: Row, reader: str = _reader_name) -> None:
        out = ctx.tmp(f"mixed-{reader}")
        folder = ctx.copy_baseline(out / "results", queries=2)
        other, _ = ctx.baseline(queries=3)
        for name in ("predictions.json", "run.trec", "traces.jsonl"):
            shutil.copy2(other / name, folder / name)
        _reader(ctx, row, reader, folder)
        if row.category == "silent":
            row.note = "summary of 2 queries, predictions and traces of 3"

    case(f"mixed_folder_{_reader_name}", "readers", f"a folder mixing two runs given to `{_reader_name}`")(_mixed)


_TWO_WRITERS = r"""
import json, sys, threading, traceback
from pathlib import Path
from rank1_eval import outputs

class TaskResult:
    def __init__(self, tag): self.tag = tag
    def to_disk(self, path): Path(path).write_text(json.dumps({"tag": self.tag, "pad": "x" * 200000}))

class Model:
    engine_name, model_name_or_path = "fake", "fake"

class J:
    def __init__(self, s): self.score = s
    def to_dict(self): return {"score": self.score, "path": "pass1"}

out = Path(sys.argv[1]) / "m" / "T_default"
errors = []

def writer(tag):
    try:
        for i in range(40):
            n = 300 + tag * 50
            traces = [({"task": "T", "subset": "default", "split": "test", "qids": [f"q{k}" for k in range(n)],
                        "docids": [f"d{k}" for k in range(n)]}, [J(float(tag)) for _ in range(n)])]
            preds = {f"q{k}": {f"d{k}": float(tag)} for k in range(n)}
            outputs.write_run_folder(out, task_result=TaskResult(tag), predictions=preds, traces=traces,
                                     first_stage={}, ranks={}, summary={"tag": tag, "i": i, "pad": "y" * 100000},
                                     model=Model(), qrels={"q0": {"d0": 1}})
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")

threads = [threading.Thread(target=writer, args=(t,)) for t in (1, 2)]
[t.start() for t in threads]
[t.join() for t in threads]
state = {"errors": errors[:3]}
try:
    summary = json.loads((out / "summary.json").read_text())
    preds = json.loads((out / "predictions.json").read_text())
    result = json.loads((out / "mteb_result.json").read_text())
    tags = {summary["tag"], result["tag"], int(next(iter(next(iter(preds.values())).values())))}
    state["consistent"] = len(tags) == 1
    state["tags"] = sorted(tags)
except Exception as exc:
    state["unreadable"] = f"{type(exc).__name__}: {exc}"
print("STATE " + json.dumps(state))
"""


@case("two_writers", "readers", "two writers on one result folder at once (threads)")
def _two_writers(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("two-writers")
    p = ctx.python(_TWO_WRITERS.replace("sys.argv[1]", repr(str(out))))
    m = re.search(r"STATE (.*)", p.out)
    row.rc, row.wall_s = p.rc, p.wall_s
    if not m:
        row.category, row.message = "traceback", error_line(p)
        return
    state = json.loads(m.group(1))
    if state.get("errors"):
        row.category, row.message = "traceback", state["errors"][0][:160]
    elif state.get("unreadable") or not state.get("consistent"):
        row.category = "silent"
        row.message = state.get("unreadable") or f"files from different writers {state.get('tags')}"
    else:
        row.category, row.message = "handled", "(both writers finished; the folder is one writer's, complete)"
    row.note = "; ".join(
        filter(None, [state.get("unreadable"), f"tags {state.get('tags')}" if "tags" in state else None])
    )


# --------------------------------------------------------------------------------------------------- cases: servers


def _server_args(ctx: Ctx, out: Path, url: str, *extra: object) -> list[object]:
    return [*ctx.run_args(out, "--server-url", url, *extra, engine="openai")]


@case("nan_server", "servers", "a server whose logprobs are NaN (every pair fails)")
def _nan(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("nan")
    with fake_server(ctx, "nan") as url:
        p = ctx.cli(*_server_args(ctx, out / "results", url))
        judge(row, p, mention=r"fail")
        rerun = ctx.cli(*_server_args(ctx, out / "results", url))
    row.note = tail_summary(p)
    if p.rc == 0:
        mrr = re.search(r"mrr_at_10\s+(\S+)", p.out)
        row.message = f"(exit 0, prints mrr_at_10 {mrr.group(1) if mrr else '?'}; failures only in the cost line)"
    ctx.nan_rerun = rerun  # type: ignore[attr-defined]


@case("failed_pairs_rerun", "servers", "the same run again: failed pairs now come from the store")
def _nan_rerun(ctx: Ctx, row: Row) -> None:
    rerun: Proc | None = getattr(ctx, "nan_rerun", None)
    if rerun is None:
        raise Skip("needs nan_server")
    judge(row, rerun, mention=r"fail")
    row.note = tail_summary(rerun)
    if rerun.rc == 0:
        row.message = "(exit 0; " + (tail_summary(rerun) or "counts lost") + ")"


@case("stall_server", "servers", "a server that accepts requests and never answers")
def _stall(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("stall")
    with fake_server(ctx, "stall") as url:
        p = ctx.cli(*_server_args(ctx, out / "results", url, "--max-retries", 0), timeout=240)
    judge(row, p, mention=r"time|stall|answer", flag=r"stall|no judgement|no request")
    row.note = f"{p.wall_s:.0f}s" + (" (harness limit)" if p.timed_out else "")


@case("html_models", "servers", "/v1/models answers an HTML page (a proxy in front of the server)")
def _html(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("html")
    with fake_server(ctx, "html") as url:
        p = ctx.cli(*_server_args(ctx, out / "results", url))
        port = url.split(":")[2].split("/")[0]
    judge(row, p, mention=rf"127\.0\.0\.1:{port}.*(HTML|JSON)|(HTML|JSON).*127\.0\.0\.1:{port}")


@case("unreachable_server", "servers", "--server-url of a port nobody listens on (control)")
def _unreachable(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("unreachable")
    p = ctx.cli(*_server_args(ctx, out / "results", "http://127.0.0.1:9/v1"))
    judge(row, p, mention=r"unreachable|127\.0\.0\.1:9")


@case("serve_sh_bind", "servers", "scripts/serve.sh with no HOST: which interface does it bind?")
def _serve_bind(ctx: Ctx, row: Row) -> None:
    p = ctx.run(
        ["bash", str(ctx.code / "scripts" / "serve.sh"), str(ctx.micro), "8123"], env={"RANK1_SERVE_DRY_RUN": "1"}
    )
    host = re.search(r"--host (\S+)", p.out)
    said = next((ln for ln in lines(p.err) if re.search(r"listen|bind|interface", ln, re.I)), None)
    row.rc, row.wall_s = p.rc, p.wall_s
    if host and host.group(1) == "127.0.0.1" and said:
        row.category, row.message = "flagged", said
    elif host and host.group(1) == "127.0.0.1":
        row.category, row.message = "handled", "--host 127.0.0.1"
    else:
        row.category = "silent"
        row.message = f"(binds --host {host.group(1) if host else '?'} without a word; no API key required)"


# --------------------------------------------------------------------------------------------------- cases: kills


@case("kill9_random", "kills", "kill -9 at random moments while judging (3 kills, then a rerun)")
def _kill9(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("kill9")
    store = out / "store.sqlite"
    args = ctx.run_args(out / "results", "--store", store, *per_pair(ctx), queries=3)
    rng = random.Random(9)
    counts: list[int] = []
    for _ in range(3):
        proc = subprocess.Popen(
            ctx.cmd(*args),
            cwd=ctx.code,
            env=ctx.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        target = (count_rows(store) or 0) + rng.randint(1, 3)
        while time.monotonic() < deadline and proc.poll() is None and (count_rows(store) or 0) < target:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.0, 1.5))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        counts.append(count_rows(store) or 0)
    final = ctx.cli(*args)
    m = re.search(r"scored (\d+), from store (\d+)", final.out)
    row.rc, row.wall_s = final.rc, final.wall_s
    monotone = all(a <= b for a, b in zip(counts, counts[1:], strict=False))
    if final.rc == 0 and m and int(m.group(2)) == counts[-1] and monotone:
        row.category, row.message = "handled", f"rerun: {tail_summary(final)}"
    else:
        judge(row, final, mention=r"$^")
    row.kept = f"store after each kill {counts}; rerun found all {m.group(2) if m else '?'}"


@case("sigint", "kills", "Ctrl-C (SIGINT) while judging")
def _sigint(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("sigint")
    store = out / "store.sqlite"
    args = ctx.run_args(out / "results", "--store", store, *per_pair(ctx), queries=3)
    started = time.monotonic()
    # a shell's background job ignores SIGINT and its children inherit that: give the run the default back
    proc = subprocess.Popen(
        ctx.cmd(*args),
        cwd=ctx.code,
        env=ctx.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and (count_rows(store) or 0) < 2:
        time.sleep(0.2)
    if proc.poll() is not None:
        proc.communicate()
        raise Skip("harness: the run ended before the signal could be sent")
    proc.send_signal(signal.SIGINT)
    out_text, err_text = proc.communicate(timeout=120)
    p = Proc(proc.returncode, out_text, err_text, False, time.monotonic() - started)
    judge(row, p, mention=r"interrupt")
    row.kept = f"{count_rows(store)} judgements in the store"


# --------------------------------------------------------------------------------------------------- issue 20
# Commands that disagree with each other, settings overridden or ignored without a word, and the README's first
# hour. A small complete task (2 queries x 4 passages of the demo) so that task folders hold complete runs.


def small_task(
    ctx: Ctx,
    name: str = "small",
    *,
    queries: dict[str, str] | None = None,
    docs: dict[str, str] | None = None,
    trec: str | None = None,
) -> tuple[Path, Path]:
    """A BEIR folder of 2 demo-like queries x 4 demo passages and its TREC run (or ``trec``): 8 pairs."""
    docs = docs or dict(ctx.demo_docs(4))
    queries = queries or {"q1": "what is a cat", "q2": "how do plants grow"}
    ids = list(docs)
    task = ctx.mini_task(name, queries, docs, {q: {ids[i]: 1} for i, q in enumerate(queries)})
    run = task / "run.trec"
    run.write_text(
        trec or "".join(f"{q} Q0 {d} {r} {10 - r} bm25\n" for q in queries for r, d in enumerate(ids, start=1))
    )
    return task, run


def small_args(ctx: Ctx, out: Path, task: Path, run: Path, *extra: object) -> list[object]:
    return [
        "run",
        "--task",
        task,
        "--run-file",
        run,
        "--model",
        ctx.micro,
        "--engine",
        "transformers",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--max-output-tokens",
        64,
        "--context-size",
        1024,
        "--top-k",
        4,
        "--output-dir",
        out,
        "--no-progress",
        *extra,
    ]


def small_run(ctx: Ctx, name: str, *extra: object) -> tuple[Path, Path, Proc]:
    """A complete run on the small task: (its --output-dir, its task folder <model>/<Task>_default, the run)."""
    task, run = small_task(ctx, name)
    out = ctx.tmp(f"{name}-out") / "results"
    p = ctx.cli(*small_args(ctx, out, task, run, *extra))
    if p.rc != 0:
        raise RuntimeError(f"small run failed (rc {p.rc}): {error_line(p)}")
    folders = result_folders(out)
    return out, folders[0].parent, p


def _override_case(name: str, flags: list[object], mention: str, fault: str) -> None:
    def fn(ctx: Ctx, row: Row) -> None:
        task, run = small_task(ctx, name)
        out = ctx.tmp(f"{name}-out") / "results"
        p = ctx.cli(*small_args(ctx, out, task, run, *flags))
        judge(row, p, mention=mention)
        if p.rc == 0:
            row.note = "ran anyway: " + (", ".join(f.name for f in result_folders(out)) or "no folder")

    case(name, "overrides", fault)(fn)


_override_case(
    "max_tokens_below_budgets",
    ["--max-output-tokens", 32, "--budgets", "8,64"],
    r"max.output.tokens.*budgets|budgets.*max.output.tokens",
    "run --max-output-tokens 32 --budgets 8,64",
)
_override_case(
    "ngram_with_transformers",
    ["--ngram-speculation", 4],
    r"ngram.speculation.*transformers",
    "run --engine transformers --ngram-speculation 4",
)
_override_case(
    "server_flag_without_servers",
    ["--max-concurrency", 2],
    r"max.concurrency.*server",
    "run --engine transformers --max-concurrency 2 (a server-only flag)",
)
_override_case(
    "vllm_flag_with_transformers",
    ["--gpu-memory-utilization", 0.5],
    r"gpu.memory.*transformers",
    "run --engine transformers --gpu-memory-utilization 0.5 (a vLLM-only flag)",
)
_override_case(
    "chunk_size_while_streaming",
    ["--chunk-size", 8],
    r"chunk.size.*scheduling",
    "run --chunk-size 8 without --scheduling chunked",
)
_override_case(
    "prompt_key_with_skip_prompt",
    ["--skip-prompt", "--prompt-key", "SciFact"],
    r"prompt.key.*skip.prompt",
    "run --skip-prompt --prompt-key SciFact",
)


@case("export_mixed_allow_partial", "readers", "`export --mteb DIR --allow-partial` on a folder mixing two runs")
def _export_mixed(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("export-mixed")
    folder = ctx.copy_baseline(out / "results", queries=2)
    other, _ = ctx.baseline(queries=3)
    for name in ("predictions.json", "run.trec", "traces.jsonl"):
        shutil.copy2(other / name, folder / name)
    p = ctx.cli("export", "--mteb", out / "results", "--allow-partial", "--to", out / "cache")
    judge(row, p, mention=r"mixed|truncat|rebuild")


@case("export_only_partial", "readers", "`export --mteb DIR` where the only run is partial")
def _export_partial(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("export-partial")
    ctx.copy_baseline(out / "results", queries=2)
    p = ctx.cli("export", "--mteb", out / "results", "--to", out / "cache")
    judge(row, p, mention=r"allow.partial")
    if p.rc == 0:
        row.note = (lines(p.out) or [""])[-1][:120]


def _empty_summary(ctx: Ctx, name: str) -> Path:
    out = ctx.tmp(name)
    folder = ctx.copy_baseline(out / "results", queries=2)
    (folder / "summary.json").write_text("{}")
    return folder


@case("report_empty_summary", "readers", "`report DIR` with summary.json = `{}`")
def _report_empty(ctx: Ctx, row: Row) -> None:
    folder = _empty_summary(ctx, "report-empty")
    p = ctx.cli("report", folder, "--allow-partial", "-o", folder.parent / "r.html")
    judge(row, p, mention=r"not a rank1_eval summary|empty")


@case("compare_empty_summary", "readers", "`compare DIR` with summary.json = `{}`")
def _compare_empty(ctx: Ctx, row: Row) -> None:
    folder = _empty_summary(ctx, "compare-empty")
    p = ctx.cli("compare", folder, "--allow-partial")
    judge(row, p, mention=r"not a rank1_eval summary|empty")


@case("table_empty_folder", "readers", "`table …` on an empty results folder")
def _table_empty(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("table-empty")
    (out / "results" / "local__micro-rank1").mkdir(parents=True)
    p = ctx.cli("table", _table_manifest(ctx, out), "--results", out / "results", "--model", ctx.micro)
    judge(row, p, mention=r"no rank1_eval result|no result")


@case("table_foreign_files", "readers", "`table …` on a folder of another tool's files")
def _table_foreign(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("table-foreign")
    task = out / "results" / "local__micro-rank1" / "Dl19MiniLocal_default" / "run"
    task.mkdir(parents=True)
    (task / "summary.json").write_text(json.dumps({"task_name": "SciFact", "scores": {"test": []}}))
    p = ctx.cli("table", _table_manifest(ctx, out), "--results", out / "results", "--model", ctx.micro)
    judge(row, p, mention=r"not a rank1_eval summary|no rank1_eval result")


@case("salvage_other_app", "store", "`store salvage OTHER_APP.db --into NEW`")
def _salvage_other(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("salvage-other")
    other = out / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()
    p = ctx.cli("store", "salvage", other, "--into", out / "new.sqlite")
    judge(row, p, mention=r"not a rank1_eval|another")
    if (out / "new.sqlite").exists():
        row.kept = "a new store was created"


@case("drop_failed_empty_file", "store", "`store drop-failed EMPTY_FILE` (0 bytes)")
def _drop_empty(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("drop-empty")
    empty = out / "empty.sqlite"
    empty.write_bytes(b"")
    p = ctx.cli("store", "drop-failed", empty)
    judge(row, p, mention=r"empty|not a SQLite|not a judgement store")
    row.kept = f"the file is {empty.stat().st_size} bytes afterwards"


@case("store_check_leaves_files", "store", "`store check` on a store: files left beside it")
def _check_files(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("check-files")
    store = ctx.copy_store(out / "store.sqlite")
    before = sorted(p.name for p in out.iterdir())
    p = ctx.cli("store", "check", store)
    after = sorted(p.name for p in out.iterdir())
    judge(row, p, mention=r"$^", correct=after == before)
    row.note = f"files after: {', '.join(after)}"


def _odd_run(
    ctx: Ctx,
    row: Row,
    name: str,
    trec: str | None = None,
    queries: dict[str, str] | None = None,
    docs: dict[str, str] | None = None,
    flag: str = "",
) -> None:
    task, run = small_task(ctx, name, queries=queries, docs=docs, trec=trec)
    out = ctx.tmp(f"{name}-out") / "results"
    p = ctx.cli(*small_args(ctx, out, task, run))
    recorded = []
    if p.rc == 0:
        summary = json.loads((result_folders(out)[0] / "summary.json").read_text())
        recorded = [w for w in summary.get("run_warnings") or [] if re.search(flag, w, re.I)]
    judge(row, p, mention=r"$^", flag=flag, correct=True if recorded else None)
    row.note = "recorded in run_warnings" if recorded else "not in run_warnings"


def _trec(docs: list[str], ranks: Callable[[int], int]) -> str:
    return "".join(f"{q} Q0 {d} {ranks(i)} {10 - i} bm25\n" for q in ("q1", "q2") for i, d in enumerate(docs, 1))


@case("ranks_all_negative", "inputs", "a TREC run whose rank column is all negative")
def _ranks_negative(ctx: Ctx, row: Row) -> None:
    docs = dict(ctx.demo_docs(4))
    _odd_run(ctx, row, "odd-a", trec=_trec(list(docs), lambda i: -i), docs=docs, flag=r"rank.*negative")


@case("ranks_contradict_scores", "inputs", "a TREC run whose rank column contradicts its scores")
def _ranks_contradict(ctx: Ctx, row: Row) -> None:
    docs = dict(ctx.demo_docs(4))
    _odd_run(ctx, row, "odd-b", trec=_trec(list(docs), lambda i: 5 - i), docs=docs, flag=r"rank column.*contradict")


@case("nul_in_texts", "inputs", "a query and a passage containing NUL characters")
def _nul_texts(ctx: Ctx, row: Row) -> None:
    docs = dict(ctx.demo_docs(4))
    first = next(iter(docs))
    docs[first] = docs[first][:40] + "\x00\x00" + docs[first][40:]
    _odd_run(
        ctx,
        row,
        "odd-c",
        queries={"q1": "what is\x00 a cat", "q2": "how do plants grow"},
        docs=docs,
        flag=r"NUL|control char",
    )


@case("sigterm", "kills", "SIGTERM (scancel, preemption) while judging")
def _sigterm(ctx: Ctx, row: Row) -> None:
    out = ctx.tmp("sigterm")
    store = out / "store.sqlite"
    args = ctx.run_args(out / "results", "--store", store, *per_pair(ctx), queries=3)
    started = time.monotonic()
    proc = subprocess.Popen(
        ctx.cmd(*args), cwd=ctx.code, env=ctx.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and (count_rows(store) or 0) < 2:
        time.sleep(0.2)
    if proc.poll() is not None:
        proc.communicate()
        raise Skip("harness: the run ended before the signal could be sent")
    proc.send_signal(signal.SIGTERM)
    out_text, err_text = proc.communicate(timeout=120)
    p = Proc(proc.returncode, out_text, err_text, False, time.monotonic() - started)
    kept = count_rows(store)
    m = re.search(r"(\d+) judgements kept", err_text)
    judge(row, p, mention=r"SIGTERM")
    if p.rc is not None and p.rc < 0:  # killed by the signal itself: nothing flushed, nothing said
        row.category, row.message = "silent", f"(killed by signal {-p.rc}, nothing said)"
    if row.category == "clear" and (p.rc != 143 or not m or int(m.group(1)) != kept or result_folders(out)):
        row.category = "late"  # said, but the count, the exit code or the result folder is off
    row.kept = f"{kept} judgements in the store" + (f", the line says {m.group(1)}" if m else "")


@case("sweep_rates", "sweep", "`run --budgets …`: derived pairs counted as decoded (pairs_scored, docs/s)")
def _sweep_rates(ctx: Ctx, row: Row) -> None:
    out, task_dir, p = small_run(ctx, "sweep-rates", "--max-output-tokens", 24, "--budgets", "8,24")
    derived = [
        json.loads((f / "summary.json").read_text())
        for f in result_folders(out)
        if "derived_from" in json.loads((f / "summary.json").read_text())
    ]
    honest = bool(derived) and all(s["pairs_scored"] == 0 and not s["this_run"].get("docs_per_s") for s in derived)
    judge(row, p, mention=r"$^", correct=honest)
    row.note = "; ".join(
        f"budget {s['derived_from'].get('max_output_tokens')}->: pairs_scored {s['pairs_scored']}, "
        f"docs/s {s['this_run'].get('docs_per_s')}"
        for s in derived
    )[:200]


def _readme_sweep(ctx: Ctx, name: str) -> tuple[Path, Path, Proc]:
    """The README's demo order: a plain run, then `run --keep-token-ids && sweep TASK_FOLDER --budgets 4,8,16,32`."""
    task, run = small_task(ctx, name)
    out = ctx.tmp(f"{name}-out") / "results"
    first = ctx.cli(*small_args(ctx, out, task, run))
    again = ctx.cli(*small_args(ctx, out, task, run, "--keep-token-ids"))
    if first.rc or again.rc:
        raise RuntimeError(f"README runs failed: {error_line(first if first.rc else again)}")
    task_dir = result_folders(out)[0].parent
    return out, task_dir, ctx.cli("sweep", task_dir, "--budgets", "4,8,16,32", "--no-progress")


@case("readme_sweep_labels", "first hour", "README: run, run --keep-token-ids, sweep --budgets 4,8,16,32")
def _readme_sweep_labels(ctx: Ctx, row: Row) -> None:
    out, task_dir, p = _readme_sweep(ctx, "readme-sweep")
    sweep = next(
        (json.loads((f / "sweep.json").read_text()) for f in result_folders(out) if (f / "sweep.json").is_file()),
        {"budgets": []},
    )
    rows = [r for r in sweep["budgets"] if "sweep_run" in r]
    honest = bool(rows) and all((r["source"] == "derived") == (r["sweep_run"] == 0) for r in rows)
    derived = bool(rows) and all(r["sweep_run"] == 0 for r in rows)
    judge(row, p, mention=r"$^", correct=honest and derived)
    row.note = "; ".join(f"{r['budget']}: {r['source']} (run {r['sweep_run']})" for r in rows)


@case(
    "readme_task_folder_readers",
    "first hour",
    "README: load_traces, report, compare on the task folder after the sweep",
)
def _readme_readers(ctx: Ctx, row: Row) -> None:
    out, task_dir, sweep = _readme_sweep(ctx, "readme-readers")
    probes = [
        ctx.python(f"from rank1_eval import load_traces; print(len(load_traces({str(task_dir)!r})))"),
        ctx.cli("report", task_dir, "-o", out.parent / "r.html"),
        ctx.cli("compare", task_dir, "--no-per-query"),
    ]
    bad = next((q for q in probes if q.rc != 0), None)
    judge(row, bad or probes[-1], mention=r"$^", correct=bad is None)


@case("metric_labels", "first hour", "the run's metric table and `compare`: labels say what they are")
def _metric_labels(ctx: Ctx, row: Row) -> None:
    out, task_dir, p = small_run(ctx, "labels")
    c = ctx.cli("compare", task_dir, "--no-per-query")
    ok = "main:Judged@10" not in p.out and "ndcg_at_10" in c.out
    judge(row, p, mention=r"$^", correct=ok)
    row.note = next((ln for ln in p.out.splitlines() if "Judged@10" in ln), "")


@case("offline_default_model", "first hour", "`run --task FOLDER` without --model, offline (HF_HUB_OFFLINE=1)")
def _offline_model(ctx: Ctx, row: Row) -> None:
    task, run = small_task(ctx, "offline")
    out = ctx.tmp("offline-out")
    p = ctx.cli(
        "run",
        "--task",
        task,
        "--run-file",
        run,
        "--engine",
        "transformers",
        "--output-dir",
        out,
        "--no-progress",
        env={"HF_HUB_CACHE": str(out / "empty-hub-cache")},
    )
    judge(row, p, mention=r"--model")
    if row.category == "clear" and p.wall_s > 20:
        row.category = "late"
    row.note = f"{p.wall_s:.0f}s"


@case("python_api_stdout", "first hour", "the README's Python block: library logs on stdout")
def _api_stdout(ctx: Ctx, row: Row) -> None:
    code = (
        "from rank1_eval import MICRO_RANK1, rank1\n"
        "model = rank1(model_name_or_path=MICRO_RANK1, device='cpu', context_size=1024, max_output_tokens=64)\n"
        "print(model.predict([('what is a cat', 'Cats are small felines.')]))\n"
    )
    p = ctx.python(code, timeout=900)
    noise = [ln for ln in p.out.splitlines() if re.search(r"\bINFO\b|\bWARNING\b|config", ln)]
    judge(row, p, mention=r"$^", correct=not noise)
    row.note = f"{len(p.out.splitlines())} stdout lines, {len(noise)} of them library logs"


@case("bm25_debug_and_eta", "first hour", "`run --first-stage bm25`: DEBUG lines at default verbosity")
def _bm25_debug(ctx: Ctx, row: Row) -> None:
    task, _ = small_task(ctx, "bm25")
    out = ctx.tmp("bm25-out")
    p = ctx.cli(
        "run",
        "--task",
        task,
        "--first-stage",
        "bm25",
        "--model",
        ctx.micro,
        "--engine",
        "transformers",
        "--top-k",
        4,
        "--max-output-tokens",
        64,
        "--context-size",
        1024,
        "--output-dir",
        out,
    )
    debug = [ln for ln in p.err.splitlines() if "DEBUG" in ln]
    judge(row, p, mention=r"$^", correct=not debug)
    row.note = (debug or [""])[0][:120]


@case("report_budget_section", "first hour", "`report` after a sweep: the budget section's headers and cost line")
def _report_budget(ctx: Ctx, row: Row) -> None:
    out, task_dir, p = small_run(ctx, "report-budget", "--max-output-tokens", 24, "--budgets", "8,24")
    rerun = ctx.cli("report", task_dir, "-o", out.parent / "r.html")
    page = (out.parent / "r.html").read_text() if (out.parent / "r.html").is_file() else ""
    raw = re.findall(r"<th>(sweep_\w+|reasoning_tokens_\w+)</th>", page)
    judge(row, rerun, mention=r"$^", correct=bool(page) and not raw)
    row.note = f"raw JSON headers: {', '.join(raw[:4])}" if raw else ""


@case("export_without_mteb", "first hour", "`export DIR` without --mteb (the only format)")
def _export_plain(ctx: Ctx, row: Row) -> None:
    out, _, _ = small_run(ctx, "export-plain")
    p = ctx.cli("export", out, "--to", out.parent / "cache")
    judge(row, p, mention=r"$^", correct=p.rc == 0)


@case("readme_lists_store", "first hour", "the README's list of subcommands names `store`")
def _readme_store(ctx: Ctx, row: Row) -> None:
    text = (ctx.code / "README.md").read_text(encoding="utf-8")
    listed = re.search(r"has the subcommands (.*?);", text, re.S)
    ok = bool(listed and "`store`" in listed.group(1))
    row.rc, row.category = 0, "handled" if ok else "silent"
    row.message = "(store listed)" if ok else "(store missing from the list)"
