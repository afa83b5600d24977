"""The driver: task + first-stage run + model -> mteb.evaluate -> result folder.

Order matters: the task and the run file are loaded and validated first (fail fast, before a model costs
anything), then the model judges every (query, candidate) pair through the store (resume at pair
granularity), then mteb computes its metrics from those scores, and the outputs are written.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rank1_eval import layout, outputs
from rank1_eval.layout import safe_name
from rank1_eval.runs import Run, RunFileError, RunReport, file_sha256, ranked, top_k, validate_run
from rank1_eval.tasks import NEEDS_RUN_FILE, LoadedTask, TaskError, load_task, odd_text_warning

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Driver settings; the CLI flags mirror these one to one."""

    task: str
    subtask: str | None = None
    run_file: str | None = None
    first_stage: str | None = None  # "bm25": build the top-k with bm25s when no run file exists
    top_k: int = 100
    split: str | None = None
    dataset_path: str | None = None
    data_root: str | None = None  # local Hub copies by repo id (<root>/mteb/scifact); else $RANK1_DATA_ROOT
    main_metric: str | None = None
    qrels: Mapping[str, str] = field(default_factory=dict)
    output_dir: Path = Path("results")
    store: Path | None = None
    limit_queries: int | None = None
    dry_run: bool = False
    progress: bool = True
    verbose: bool = False  # engine logs on screen instead of <result folder>/engine.log
    command_line: Sequence[str] = field(default_factory=lambda: list(sys.argv))


@dataclass
class Prepared:
    """A task whose candidates are fixed: what the model will see, decided before it loads."""

    task: LoadedTask
    first_stage: Run  # qid -> docid -> first-stage score of the kept top-k ({} for the task's own candidates)
    run_source: str
    run_sha256: str | None
    report: RunReport | None
    extra_qrels: dict[str, dict[str, dict[str, int]]]
    notes: list[str] = field(default_factory=list)  # warnings about the first stage beyond the run report
    first_stage_files: dict[str, str] = field(default_factory=dict)  # built first stages, written with the outputs
    excluded: dict[str, Any] | None = None  # BRIGHT v1.1 excluded_ids removed from the first stage (counts)
    limited_to: int | None = None  # queries kept by --limit-queries (groups whole)

    @property
    def warnings(self) -> list[str]:
        return [*(self.report.warnings if self.report else ()), *self.notes]

    @property
    def n_pairs(self) -> int:
        return sum(len(v) for v in (self.task.top_ranked or {}).values())


__all__ = [
    "Prepared",
    "RunOptions",
    "evaluate",
    "export_results",
    "prepare",
    "reranking_task",
    "run_folder",
    "run_settings",
    "safe_name",
]

BM25_FILE = "first_stage.bm25.trec"


def _first_stage_kind(opts: RunOptions) -> str:
    """``default`` (the task's own candidates or its rank1 run file), ``bm25``, or ``file`` (--run-file)."""
    if opts.run_file:
        return "file"
    return opts.first_stage or "default"


def run_settings(model: Any, prepared: Prepared, opts: RunOptions) -> dict[str, Any]:
    """Everything that determines what a run's folder holds: the model's settings and the run's (hashed into
    the folder name by :func:`rank1_eval.layout.run_folder`)."""
    task = prepared.task
    return {
        **model.outcome_settings(),
        "task": task.name,
        "subtask": task.subtask,
        "subset": task.subset,
        "split": task.split,
        "dataset_revision": task.dataset_revision,
        "first_stage": _first_stage_kind(opts),
        "run_sha256": prepared.run_sha256,
        "top_k": opts.top_k,
        "limit_queries": opts.limit_queries,
        "main_metric": opts.main_metric,
        "extra_qrels": {name: file_sha256(path) for name, path in sorted(opts.qrels.items())},
    }


def run_folder(model: Any, prepared: Prepared, opts: RunOptions) -> Path:
    """The result folder of this run (same settings, same folder: a rerun resumes and rewrites it)."""
    settings = run_settings(model, prepared, opts)
    return layout.run_folder(opts.output_dir, model.mteb_model_meta.name, prepared.task.label, settings)


def _first_stage_run(task: LoadedTask, opts: RunOptions) -> tuple[Run | None, str, str | None]:
    """The run to rerank: an explicit file, the rank1 run-file dataset, bm25s, or the task's own candidates."""
    from rank1_eval.runs import fetch_run_file, read_run

    if opts.run_file and opts.first_stage:
        raise RunFileError(f"--run-file and --first-stage {opts.first_stage} both name a first stage: pass one")
    if opts.run_file:
        path = Path(opts.run_file)
        if not path.exists():
            raise RunFileError(f"run file {path} does not exist")
        return read_run(path, subset=task.subset, split=task.split), str(path), file_sha256(path)
    if opts.first_stage == "bm25":
        return None, "bm25", None
    from rank1_eval.prompts import BRIGHT_DOMAIN_TASKS

    seed_name, subtask = task.name, task.subtask
    if seed_name in BRIGHT_DOMAIN_TASKS:  # mteb 2.x per-domain BRIGHT tasks use BrightRetrieval's run files
        seed_name, subtask = "BrightRetrieval", BRIGHT_DOMAIN_TASKS[seed_name]
    if task.source == "mteb" and seed_name in NEEDS_RUN_FILE:
        path = fetch_run_file(seed_name, subtask)
        return read_run(path, subset=task.subset, split=task.split), str(path), file_sha256(path)
    if task.top_ranked:
        return None, "task top_ranked", None
    raise RunFileError(
        f"{task.label} has no candidates to rerank: pass --run-file (rank1 JSON, TREC run or mteb predictions) "
        "or --first-stage bm25"
    )


BM25_FILE = "first_stage.bm25.trec"


def _bm25(task: LoadedTask, k: int) -> Run:
    from rank1_eval.runs import bm25_run
    from rank1_eval.tasks import mteb_doc_text

    data = task.data
    corpus = data["corpus"]
    titles = corpus["title"] if "title" in corpus.column_names else [None] * len(corpus)
    docs = {i: mteb_doc_text(t, x) for i, t, x in zip(corpus["id"], titles, corpus["text"], strict=True)}
    queries = dict(zip(data["queries"]["id"], data["queries"]["text"], strict=True))
    return bm25_run(docs, queries, k=k)


def _read_with_notes(reader: Any, notes: list[str]) -> Any:
    """Call a run reader, collecting its :class:`RunFileWarning` messages into ``notes``."""
    import warnings

    from rank1_eval.runs import RunFileWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RunFileWarning)
        result = reader()
    for w in caught:
        if issubclass(w.category, RunFileWarning):
            notes.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def _trec_text(run: Run, tag: str) -> tuple[str, str]:
    """A built first stage as TREC text (ids with whitespace escaped) and its sha256, written with the outputs."""
    import hashlib

    from rank1_eval.runs import run_to_lines

    text = "".join(line + "\n" for line in run_to_lines(run, tag, escape_whitespace=True))
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


def prepare(opts: RunOptions, model_name: str | None = None) -> Prepared:
    """Load the task and its first stage, validate, drop excluded docs, keep the top-k, apply --limit-queries.

    Everything that can be wrong with the input is found here, before a model loads: unknown ids, judged
    queries without candidates, and groups of queries (NevIR pairs, mFollowIR og/changed) left incomplete.
    ``model_name`` is not needed (the result folder is named after the run's settings, see :func:`run_folder`);
    it is accepted for callers that pass it.
    """
    from rank1_eval.beir import read_qrels
    from rank1_eval.runs import drop_excluded

    if opts.top_k < 1:
        raise RunFileError(f"--top-k must be >= 1, got {opts.top_k}")
    task = load_task(
        opts.task,
        opts.subtask,
        split=opts.split,
        dataset_path=opts.dataset_path,
        data_root=opts.data_root,
        main_metric=opts.main_metric,
    )
    extra_qrels = {}
    for name, path in opts.qrels.items():
        extra_qrels[name] = read_qrels(path)
    notes: list[str] = []
    run, source, sha = _read_with_notes(lambda: _first_stage_run(task, opts), notes)
    files: dict[str, str] = {}
    if source == "bm25":  # enough candidates that k remain after the task's exclusions
        run = _bm25(task, opts.top_k + max((len(v) for v in task.excluded.values()), default=0))
    report = None
    excluded = None
    if run is not None:
        from rank1_eval.runs import unknown_below_cut

        if task.excluded:
            run, n_pairs, n_queries = drop_excluded(run, task.excluded)
            excluded = {
                "queries_with_exclusions": len(task.excluded),
                "pairs_removed": n_pairs,
                "queries_affected": n_queries,
            }
            if n_pairs:
                log.info("%s: removed %d excluded (query, doc) entries of %d queries", source, n_pairs, n_queries)
        kept = top_k(run, opts.top_k)
        if source == "bm25":  # the exact candidates reranked, written beside the results with the outputs
            files[BM25_FILE], sha = _trec_text(kept, "bm25s")
            source = f"bm25s ({BM25_FILE} in the result folder)"
        corpus_ids = set(task.corpus_ids())
        report = validate_run(kept, task.query_ids(), corpus_ids, task.qrels, k=opts.top_k)
        below = unknown_below_cut(run, kept, corpus_ids)
        if below:
            notes.append(below)
        for warning in [*report.warnings, *notes]:
            log.warning("%s: %s", source, warning)
        task.set_candidates({qid: [d for d, _ in ranked(docs)] for qid, docs in kept.items() if docs})
        first_stage = kept
    else:
        # the task's own candidates (NevIR): no first-stage score; the rank is the position in top_ranked
        first_stage = {}
        if opts.top_k:
            task.set_candidates({q: docs[: opts.top_k] for q, docs in (task.top_ranked or {}).items()})
    limited_to = None
    if opts.limit_queries is not None:
        if opts.limit_queries < 1:
            raise TaskError(f"--limit-queries must be >= 1, got {opts.limit_queries}")
        limited_to = task.limit_queries(opts.limit_queries)
        if limited_to != opts.limit_queries:
            log.warning(
                "--limit-queries %d kept %d queries (groups scored together stay whole)", opts.limit_queries, limited_to
            )
    task.check_groups()
    odd = odd_text_warning(task.pairs())  # NUL/control characters: counted, shown, recorded in run_warnings
    if odd:
        log.warning("%s", odd)
        notes.append(odd)
    return Prepared(task, first_stage, source, sha, report, extra_qrels, notes, files, excluded, limited_to)


def reranking_task(
    task: str,
    subtask: str | None = None,
    *,
    run_file: str | os.PathLike[str] | None = None,
    first_stage: str | None = None,
    top_k: int = 100,
    split: str | None = None,
    dataset_path: str | None = None,
    data_root: str | None = None,
    limit_queries: int | None = None,
    output_dir: str | Path = "results",
) -> Any:
    """The mteb task exactly as ``rank1-eval run`` reranks it, for ``mteb.evaluate(model, [task])`` or ``MTEB().run``.

    mteb cannot rerank ``BrightRetrieval`` with a cross-encoder on its own (no candidates, and its
    ``convert_to_reranking`` fails on a v1 task); this does what ``rank1-eval run`` does before judging: mteb's
    loader (v1 data converted), the paper's first stage (or ``run_file`` / ``first_stage="bm25"``), BRIGHT v1.1's
    excluded ids removed, the top-k kept, ``limit_queries`` with groups whole, everything validated.
    """
    opts = RunOptions(
        task=task,
        subtask=subtask,
        run_file=None if run_file is None else str(run_file),
        first_stage=first_stage,
        top_k=top_k,
        split=split,
        dataset_path=dataset_path,
        data_root=data_root,
        limit_queries=limit_queries,
        output_dir=Path(output_dir),
    )
    return prepare(opts).task.task


def dry_run_report(prepared: Prepared, model: Any) -> dict[str, Any]:
    """Pairs and prompt tokens, and the passages each length rule would cut, with only the tokenizer."""
    from rank1_eval.prompts import doc_text, format_prompt
    from rank1_eval.scoring import LENGTH_RULES, forced_reserve, rule_budget

    pairs = prepared.task.pairs()
    info: dict[str, Any] = {
        "task": prepared.task.label,
        "queries": len({p.qid for p in pairs}),
        "queries_evaluated": len(prepared.task.eval_qrels()),
        "pairs": len(pairs),
        "run_file": prepared.run_source,
        "run_sha256": prepared.run_sha256,
        "eval_rules": prepared.task.eval_rules.to_dict(),
    }
    if prepared.excluded is not None:
        info["excluded_ids"] = prepared.excluded
    info["prompt_template"] = model.template_info(prepared.task.name, prepared.task.subset)
    if getattr(model, "kind", "rank1") != "rank1":  # a baseline: no prompt, no length rule, nothing to count
        info["model"] = model.provenance()
        return info
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model.model_name_or_path, revision=model.revision)
    except (OSError, ValueError) as exc:
        info["prompt_tokens"] = None
        info["note"] = f"tokenizer of {model.model_name_or_path} unavailable ({str(exc).splitlines()[0]})"
        return info
    final = model.final_queries(
        [p.query for p in pairs], [p.instruction for p in pairs], prepared.task.name, prepared.task.subset
    )
    prompts = [format_prompt(q, doc_text(p.doc)) for q, p in zip(final, pairs, strict=True)]
    lengths = [len(ids) for ids in tok(prompts).input_ids] if prompts else []
    reserve = forced_reserve(tok)
    scoring = model.scoring
    info["prompt_tokens"] = int(sum(lengths))
    info["prompt_tokens_mean"] = round(sum(lengths) / len(lengths), 1) if lengths else 0.0
    info["prompt_tokens_max"] = max(lengths, default=0)
    info["length_rule"] = scoring.length_rule
    cut = {}
    for rule in LENGTH_RULES:
        budget = rule_budget(rule, scoring.context_size, scoring.max_output_tokens, reserve)
        cut[rule] = {"prompt_budget": budget, "passages_cut": sum(n > budget for n in lengths)}
    info["passages_cut_by_rule"] = cut
    info["prompts_over_budget"] = cut[scoring.length_rule]["passages_cut"]
    # pass-1 budgets under the rule in force: pairs whose reasoning budget the context shortens
    budgets = [scoring.generation_budget(min(n, cut[scoring.length_rule]["prompt_budget"])) for n in lengths]
    info["pairs_with_shortened_budget"] = sum(b < scoring.max_output_tokens for b in budgets)
    return info


def evaluate(
    model: Any, prepared: Prepared, opts: RunOptions, progress: Any = None, *, missing: Any = None
) -> dict[str, Any]:
    """Judge every pair (resuming through the store), let mteb score, write the result folder.

    ``progress`` is a :class:`rank1_eval.progress.Progress` (the CLI passes its display, already showing the
    task's loading); without one a display is made here when ``opts.progress``. ``missing`` judges what the
    store lacks instead of the engine (:class:`rank1_eval.sweep.Deriver`).
    """
    from rank1_eval import mteb_compat
    from rank1_eval.logs import library_logs
    from rank1_eval.preflight import check_run
    from rank1_eval.progress import ProgressDisplay
    from rank1_eval.store import SQLiteStore

    task = prepared.task
    settings = run_settings(model, prepared, opts)
    out = layout.run_folder(opts.output_dir, model.mteb_model_meta.name, task.label, settings)
    store_path = store_path_of(opts)
    # everything the run will write is checked now, before a weight loads (fail fast, one line)
    preflight = check_run(model, prepared, opts, out=out, store_path=store_path)
    for warning in preflight:
        log.warning("%s", warning)
    out.mkdir(parents=True, exist_ok=True)  # engine.log is written during the run; the results atomically after
    judged = task.eval_qrels()  # the queries mteb evaluates, judged queries without candidates included
    traces: list[tuple[dict[str, Any], list[Any]]] = []
    if progress is None:
        progress = ProgressDisplay(prepared.n_pairs, enabled=opts.progress)
    else:
        progress.total = prepared.n_pairs
    engine_log = None if opts.verbose else out / "engine.log"
    if opts.verbose:
        from rank1_eval.logs import show_engine_logs

        show_engine_logs()  # -v: the engine's own output on screen, also where no result folder has a log
    store = SQLiteStore(store_path)
    started = time.perf_counter()

    def sink(context: dict[str, Any], judgements: list[Any]) -> None:
        traces.append((context, judgements))

    try:
        with model.session(store=store, progress=progress, engine_log=engine_log, traces=sink, missing=missing):
            progress.status(f"mteb: evaluating {task.label}")
            with library_logs(engine_log, verbose=opts.verbose):
                result = mteb_compat.evaluate(model, [task.task], batch_size=1024)
    finally:
        progress.close()
        store.close()
    wall = time.perf_counter() - started
    task_result = result.task_results[0]
    scores = task_result.scores[task.split][0]
    predictions = outputs.predictions_from_traces(traces)
    summary = outputs.build_summary(
        model=model,
        prepared=prepared,
        opts=opts,
        scores=scores,
        stats=model.stats,
        wall_s=wall,
        store_path=store_path,
    )
    summary.update(outputs.path_counts(traces))  # every pair of the folder, from the store or scored now
    summary["preflight_warnings"] = preflight
    if getattr(model, "kind", "rank1") != "rank1":  # a baseline: the folder says it holds no reasoning
        summary["model_kind"] = model.kind
        summary["reasoning_traces"] = False
        summary["traces_note"] = (
            "a baseline reranker: traces.jsonl holds each pair's score and first-stage rank, no reasoning"
        )
    summary["settings"] = settings
    summary["settings_hash"] = layout.settings_hash(settings)
    summary["extra_qrels"] = outputs.extra_metrics(
        predictions, judged, prepared.extra_qrels, rules=task.eval_rules, query_ids=list(judged)
    )
    if prepared.first_stage:
        from rank1_eval.compare import against_first_stage

        summary["vs_first_stage"] = against_first_stage(
            predictions, prepared.first_stage, judged, rules=task.eval_rules
        )
    meta = _mteb_meta(model, settings)
    mteb_path = layout.mteb_result_path(opts.output_dir, meta, task_result.task_name)
    summary["mteb"] = {
        "result": str(mteb_path),
        "name": meta.name,
        "revision": meta.revision,
        "experiment_kwargs": dict(meta.experiment_kwargs or {}),
    }
    summary = outputs.write_run_folder(
        out,
        task_result=task_result,
        predictions=predictions,
        traces=traces,
        first_stage=prepared.first_stage,
        ranks=task.top_ranked or {},
        summary=summary,
        model=model,
        qrels=judged,
        run_tag=layout.run_tag(model.mteb_model_meta.name, _first_stage_label(prepared), opts.top_k, settings),
        extra_files=prepared.first_stage_files,
        texts=outputs.judged_texts(task, predictions),
    )
    layout.export_to_mteb(opts.output_dir, task_result, meta)
    summary["output_dir"] = str(out)
    return summary


def store_path_of(opts: RunOptions) -> Path:
    """The judgement store of a run: ``--store``, else ``OUTPUT_DIR/store.sqlite``."""
    return Path(opts.store) if opts.store else Path(opts.output_dir) / "store.sqlite"


def _mteb_meta(model: Any, settings: dict[str, Any]) -> Any:
    """The model's ModelMeta with this run's experiment kwargs: where mteb's layout files the result."""
    kwargs = layout.experiment_kwargs(settings, model.experiment_kwargs())
    if kwargs.get("first_stage") == "file":  # which file: its checksum, not a path that means nothing elsewhere
        kwargs["first_stage"] = f"file-{(settings.get('run_sha256') or '')[:12]}"
    return model.mteb_model_meta.model_copy(update={"experiment_kwargs": kwargs or None})


def _first_stage_label(prepared: Prepared) -> str:
    """A short name of the first stage for run tags: the run file's stem, bm25s, or the task's own."""
    source = prepared.run_source
    if source.startswith("bm25s"):
        return "bm25s"
    if source == "task top_ranked":
        return "task-candidates"
    name = Path(source).name
    for suffix in (".json", ".trec", ".txt", ".tsv", ".run", ".gz"):
        name = name.removesuffix(suffix)
    return name or "first-stage"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def metric_table(summary: Mapping[str, Any]) -> str:
    """The metric lines the CLI prints at the end of a run."""
    metrics = summary["metrics"]
    names = [summary["main_metric"]] + [
        m for m in ("ndcg_at_10", "ndcg_at_20", "map_at_100", "mrr_at_10", "recall_at_100") if m in metrics
    ]
    lines = [f"{'metric':<24}{'value':>10}"]
    for name in dict.fromkeys(names):
        lines.append(f"{name:<24}{_fmt(metrics.get(name)):>10}")
    for qname, values in summary.get("extra_qrels", {}).items():
        for m, v in values.items():  # the task's own qrels ("main") only give Judged@10: say what it is
            label = f"{m} (task's qrels)" if qname == "main" else f"{m} (qrels {qname})"
            lines.append(f"{label:<24}{_fmt(v):>10}")
    return "\n".join(lines)


def cost_line(summary: Mapping[str, Any]) -> str:
    """The result (all its judgements), then what this invocation did itself."""
    c = summary
    run = c.get("this_run", {})
    if c.get("model_kind"):  # a baseline: scores, no reasoning tokens or passes
        rate = f"{run['docs_per_s']:.1f} docs/s" if run.get("docs_per_s") else "nothing scored"
        return (
            f"pairs {c['pairs_total']}: scored {c['pairs_scored']}, from store {c['pairs_from_store']} | this run: "
            f"{rate} ({run.get('engine_s', 0.0):.1f}s in the model, {run.get('engine_load_s', 0.0):.1f}s loading "
            "it)"
        )
    if run.get("docs_per_s"):
        rate = f"{run['docs_per_s']:.2f} docs/s, {run['generated_tokens_per_s']:.1f} gen tok/s"
    elif run.get("pairs_derived"):
        rate = f"{run['pairs_derived']} pairs derived from a stored run, nothing decoded for them"
    elif c.get("pairs_from_store"):  # a rerun: the judging was done (and costed) by an earlier invocation
        rate = f"nothing generated, all {c['pairs_from_store']} judged pairs came from the store"
    else:
        rate = "nothing generated"
    derived = run.get("derived_from_store") or 0
    derived_note = f" ({derived} of them derived by a budget sweep)" if derived else ""
    return (
        f"pairs {c['pairs_total']}: scored {c['pairs_scored']}, from store {c['pairs_from_store']}{derived_note}, "
        f"pass2 {c['pass2']}, failed {c['failed']}, truncated {c['truncated']} | output tokens mean "
        f"{c['output_tokens_mean']}, p50 {c['output_tokens_p50']}, p95 {c['output_tokens_p95']} | this run: "
        f"{rate} ({run.get('engine_s', 0.0):.1f}s in the engine)"
    )


def export_results(
    results_dir: str | Path, root: str | Path | None = None, *, allow_partial: bool = False
) -> list[tuple[Path, Path]]:
    """Copy every run under ``results_dir`` into mteb's ResultCache layout at ``root`` (default: the same root).

    Runs do this themselves as they finish; this is for another root (a shared cache, mteb's own
    ``~/.cache/mteb``) or after moving folders. Partial runs go too with ``allow_partial`` (as experiments, as
    always). Returns (run folder, mteb result file) pairs.
    """
    from rank1_eval.model import load_rank1
    from rank1_eval.mteb_compat import task_result_class
    from rank1_eval.registry import model_meta_for

    results = Path(results_dir)
    target = Path(root) if root is not None else results
    runs = layout.find_runs(results)  # none: an error, as wherever a result is expected
    done: list[tuple[Path, Path]] = []
    partial: list[layout.RunFolder] = []
    for run in runs:
        outputs.check_result_folder(run.path)  # the same check as report/compare/table: whole, not mixed
        info = run.summary.get("mteb")
        if not isinstance(info, dict) or not (run.path / outputs.RESULT_FILE).is_file():
            log.warning("%s: no mteb record (written by an older rank1_eval?); skipped", run.path)
            continue
        if run.partial and not allow_partial:
            partial.append(run)
            continue
        if run.summary.get("model_kind"):  # a baseline: mteb's own meta of it, as its run exported it
            from rank1_eval.mteb_compat import baseline_meta

            meta = baseline_meta(info["name"], info.get("revision"))
        else:
            meta = model_meta_for(info["name"], info.get("revision"), loader=load_rank1)
        meta = meta.model_copy(update={"experiment_kwargs": info.get("experiment_kwargs") or None})
        task_result = task_result_class().from_disk(run.path / outputs.RESULT_FILE)
        done.append((run.path, layout.export_to_mteb(target, task_result, meta)))
    if partial and not done:
        listed = ", ".join(r.describe() for r in partial[:3])
        raise layout.ResultsError(f"{results} holds only partial runs ({listed}): pass --allow-partial to export them")
    if partial:
        log.warning(
            "%d partial run(s) not exported (pass --allow-partial): %s",
            len(partial),
            ", ".join(r.describe() for r in partial[:3]),
        )
    return done
