"""``rank1-eval``: thin argument parsing over the Python API (flags mirror ``rank1(...)`` and ``RunOptions``).

The only module that knows argparse: every subcommand parses its flags here and calls plain functions
(``evaluate``, ``paper.reproduce``, ``compare.compare``, ``report.write_report``, ``store.merge_stores``).
Those are imported inside the ``cmd_*`` functions, so ``--help``, ``table``, ``compare`` and ``report``
never import mteb, torch or vLLM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEMO_TASK = "demo"


def bundled_demo() -> tuple[str, str, str]:
    """(task folder, run file, model folder) of the bundled demo: package data, so a wheel carries it too."""
    from rank1_eval._data import DEMO_RUN_FILE, DEMO_TASK_DIR, MICRO_RANK1_DIR

    return str(DEMO_TASK_DIR), str(DEMO_RUN_FILE), str(MICRO_RANK1_DIR)


def _qrels_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--qrels takes NAME=PATH")
    name, path = value.split("=", 1)
    return name, path


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (mirrors rank1(...))")
    g.add_argument("--model", default=None, help="model id or local folder (default: jhu-clsp/rank1-7b)")
    g.add_argument("--revision", default=None, help="Hub revision (commit, branch or tag) of the model")
    g.add_argument("--num-gpus", type=int, default=1, help="tensor parallel size")
    g.add_argument("--engine", default="auto", choices=["auto", "vllm", "transformers", "openai"],
                   help="openai: vLLM servers at --server-url (auto picks it when URLs are given)")  # fmt: skip
    g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when visible, else cpu)")
    g.add_argument("--dtype", default=None, help="fp_options: float16 (GPU default), bfloat16, float32 (CPU default)")
    g.add_argument("--context-size", type=int, default=16000, help="prompt + output tokens per pair")
    g.add_argument("--max-output-tokens", type=int, default=8192, help="reasoning budget per pair")
    g.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="vLLM's share of GPU memory")
    g.add_argument("--enforce-eager", action="store_true", help="vLLM without CUDA graphs (faster start)")
    g.add_argument("--max-num-seqs", type=int, default=None, help="vLLM sequences in flight (default: vLLM's)")
    g.add_argument("--trust-remote-code", action="store_true", help="run the checkpoint's own model code")
    g.add_argument("--chunk-size", type=int, default=None,
                   help="pairs per engine call, judgements commit per chunk (default 1024; with servers "
                   "4 per request slot, at least 256)")  # fmt: skip
    g.add_argument("--failed-score", default="0.5", help="score of a pair no pass could score, or 'raise'")
    g.add_argument("--skip-prompt", action="store_true", help="no dataset prompt (dataset_prompt=False)")
    g.add_argument("--prompt-set", default="code", choices=["code", "paper"], help="bundled dataset prompts")
    g.add_argument("--prompt-file", default=None, help="JSON {key: template} overriding the bundled prompts")
    s = p.add_argument_group("scaling out (vLLM servers; see README 'Scaling out')")
    s.add_argument(
        "--data-parallel",
        type=int,
        default=1,
        metavar="N",
        help="start N local vLLM server replicas (num_gpus GPUs each) and spread the pairs over them",
    )
    s.add_argument(
        "--server-url",
        dest="server_urls",
        action="append",
        default=[],
        metavar="URL",
        help="a vLLM OpenAI-compatible server, e.g. http://host:8000/v1 (repeatable; engine openai)",
    )
    s.add_argument(
        "--api-key-env",
        default="RANK1_API_KEY",
        metavar="VAR",
        help="environment variable holding the servers' API key (sent as Bearer, never logged)",
    )
    s.add_argument("--max-concurrency", type=int, default=8, help="requests in flight per server")
    s.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request")
    s.add_argument("--max-retries", type=int, default=5, help="failed backoff rounds before a server is dropped")


def build_model(args: argparse.Namespace):
    """The model the flags describe; device and dtype defaults are the API's (float16 on CUDA, float32 on CPU)."""
    from rank1_eval.model import DEFAULT_MODEL, rank1

    failed = args.failed_score if args.failed_score == "raise" else float(args.failed_score)
    return rank1(
        args.model or DEFAULT_MODEL,
        num_gpus=args.num_gpus,
        device=args.device,
        context_size=args.context_size,
        max_output_tokens=args.max_output_tokens,
        fp_options=args.dtype,
        engine=args.engine,
        dataset_prompt=False if args.skip_prompt else None,
        prompt_set=args.prompt_set,
        prompt_file=args.prompt_file,
        revision=args.revision,
        failed_score=failed,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=args.enforce_eager,
        max_num_seqs=args.max_num_seqs,
        trust_remote_code=args.trust_remote_code,
        chunk_size=args.chunk_size,
        server_urls=tuple(args.server_urls),
        api_key_env=args.api_key_env,
        max_concurrency=args.max_concurrency,
        request_timeout=args.request_timeout,
        max_retries=args.max_retries,
        data_parallel=args.data_parallel,
    )


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task and first stage")
    g.add_argument("--task", default=None, help="seed/mteb task name or a BEIR-style folder (default: bundled demo)")
    g.add_argument("--subtask", default=None, help="e.g. biology, fas, eng-zho; 'default' = none")
    g.add_argument("--split", default=None, help="evaluation split (default: the task's)")
    g.add_argument("--dataset-path", default=None, help="local copy of the task's Hub dataset (offline use)")
    g.add_argument("--run-file", default=None, help="first-stage run: rank1 JSON, TREC run or mteb predictions")
    g.add_argument("--first-stage", default=None, choices=["bm25"], help="build the top-k with bm25s")
    g.add_argument("--top-k", type=int, default=100, help="first-stage candidates reranked per query")
    g.add_argument("--main-metric", default=None, help="metric reported first (default: the task's)")
    g.add_argument("--qrels", action="append", type=_qrels_arg, default=[], metavar="NAME=PATH",
                   help="extra judgements to score the run with (repeatable)")  # fmt: skip
    g.add_argument("--limit-queries", type=int, default=None, help="first N queries only (smoke runs)")
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", type=Path, default=Path("results"), help="where result folders go")
    o.add_argument("--store", type=Path, default=None, help="SQLite judgement store (default: OUTPUT_DIR/store.sqlite)")
    o.add_argument("--dry-run", action="store_true", help="validate, count pairs and prompt tokens, load no model")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--shard", type=_shard_arg, default=None, metavar="I/N",
                   help="judge only shard I of N (0-based) into its own store, write no outputs; then "
                   "`rank1-eval merge` and run again with --store")  # fmt: skip


def _shard_arg(value: str) -> tuple[int, int]:
    from rank1_eval.shards import ShardError, parse_shard

    try:
        return parse_shard(value)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def cmd_run(args: argparse.Namespace) -> int:
    from rank1_eval.evaluate import RunOptions, cost_line, dry_run_report, evaluate, metric_table, prepare

    if args.task is None or args.task == DEMO_TASK:
        task, run_file, model = bundled_demo()
        args.task = task
        args.run_file = args.run_file or run_file
        args.model = args.model or model
        # the micro rank1 writes ~12 tokens of reasoning; small budgets keep the CPU demo under a minute
        if args.max_output_tokens == 8192:
            args.max_output_tokens = 64
        if args.context_size == 16000:
            args.context_size = 1024
        if args.top_k == 100:
            args.top_k = 20
        args.enforce_eager = True
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    _status(args, "loading mteb, datasets and transformers")
    _quiet_libraries()
    model = build_model(args)
    opts = RunOptions(
        task=args.task,
        subtask=None if args.subtask in (None, "default") else args.subtask,
        run_file=args.run_file,
        first_stage=args.first_stage,
        top_k=args.top_k,
        split=args.split,
        dataset_path=args.dataset_path,
        main_metric=args.main_metric,
        qrels=dict(args.qrels),
        output_dir=args.output_dir,
        store=args.store,
        limit_queries=args.limit_queries,
        dry_run=args.dry_run,
        progress=not (args.no_progress or args.quiet),
        command_line=["rank1-eval", *sys.argv[1:]],
    )
    _status(args, f"loading task {opts.task}{' ' + opts.subtask if opts.subtask else ''} and its first stage")
    prepared = prepare(opts, model.mteb_model_meta.name)
    if not args.dry_run:
        _status(args, f"{prepared.n_pairs} pairs to judge with {model.model_name_or_path} ({model.engine_name} "
                "engine); the model loads at the first pair the store does not hold")  # fmt: skip
    if args.dry_run:
        print(json.dumps(dry_run_report(prepared, model), indent=2))
        return 0
    try:  # close() stops the vLLM servers of --data-parallel, also on errors
        if args.shard is not None:
            from rank1_eval.shards import run_shard, shard_message

            print(shard_message(run_shard(model, prepared, opts, args.shard)))
            return 0
        summary = evaluate(model, prepared, opts)
    finally:
        model.close()
    print(metric_table(summary))
    print(cost_line(summary))
    print(f"results: {summary['output_dir']}")
    return 0


def _status(args: argparse.Namespace, message: str) -> None:
    """What ``run`` is loading while it loads (seconds to minutes); silent under ``-q``."""
    if not args.quiet:
        print(f"rank1-eval: {message}…", file=sys.stderr, flush=True)


def _quiet_libraries() -> None:
    """Our progress bar is the one that matters: silence the per-step bars of datasets/transformers."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


# ----------------------------------------------------------------------------------------------------
# table / reproduce (rank1_eval.paper)
# ----------------------------------------------------------------------------------------------------


def _set_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--set takes NAME=VALUE")
    name, path = value.split("=", 1)
    return name.strip(), path


def _print(result: Any, fmt_name: str) -> None:
    from rank1_eval.paper import render_csv, render_latex, render_markdown, render_text

    render = {"md": render_markdown, "csv": render_csv, "tex": render_latex, "text": render_text}
    if fmt_name == "json":
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(render[fmt_name](result), end="")


def cmd_table(args: argparse.Namespace) -> int:
    """``rank1-eval table``: render a table; loads no model."""
    from rank1_eval.paper import TableError, model_folder_name, paper_table, table_from_results, write_table_files

    placeholders = dict(args.set)
    if args.paper:
        result = paper_table(args.table)
    else:
        if args.results is None:
            raise TableError("pass --results DIR (result folders) or --paper (the paper's own table)")
        result = table_from_results(
            args.table, args.results, args.model, row=args.row, placeholders=placeholders,
            allow_partial=args.allow_partial, where=dict(args.where),
        )  # fmt: skip
    _print(result, args.format)
    if args.out:
        stem = result.table.name
        if not args.paper:
            stem += f"__{model_folder_name(args.model) if args.model else 'all'}"
        files = write_table_files(result, args.out, stem)
        print("wrote " + ", ".join(str(p) for p in files.values()), file=sys.stderr)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``rank1-eval reproduce``: exit 1 when a cell failed, so scripts notice an incomplete table."""
    from rank1_eval.paper import cell_runs, load_table, render_markdown, reproduce

    table = load_table(args.table)
    cell_runs(table, dict(args.set), args.cells)  # fail on missing paths before a model loads
    _status(args, "loading mteb, datasets and transformers")
    _quiet_libraries()
    model = build_model(args)
    try:
        rep = reproduce(
            table,
            model,
            output_dir=args.output_dir,
            store=args.store,
            top_k=args.top_k,
            limit_queries=args.limit_queries,
            cells=args.cells,
            placeholders=dict(args.set),
            row=args.row,
            skip_existing=args.skip_existing,
            progress=not (args.no_progress or args.quiet),
            command_line=["rank1-eval", *sys.argv[1:]],
        )
    finally:
        model.close()
    print(render_markdown(rep.result), end="")
    print("wrote " + ", ".join(str(p) for p in rep.files.values()))
    for label, reason in rep.failures.items():
        print(f"rank1-eval: cell {label} failed: {reason}", file=sys.stderr)
    return 1 if rep.failures else 0


def _where_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--where takes KEY=VALUE (a setting in the run's summary.json)")
    key, wanted = value.split("=", 1)
    return key.strip(), wanted


def _cells_arg(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _table_choices() -> str:
    from rank1_eval.paper.manifests import TABLE_NAMES

    return ", ".join(f"{n} ({i})" for i, n in enumerate(TABLE_NAMES, start=1))


def add_table_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``table`` subcommand."""
    valid = _table_choices()
    p = sub.add_parser(
        "table",
        parents=parents,
        help="a paper table filled from existing result folders (or the paper's own)",
        description="Fill a paper table from existing result folders (or print the paper's own); loads no model.",
        epilog=_examples(
            "rank1-eval table bright --paper",
            "rank1-eval table bright --results results --model jhu-clsp/rank1-7b --out tables/",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("table", help=f"{valid}, or a manifest .json")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--results", type=Path, default=None, help="the --output-dir of earlier runs")
    src.add_argument("--paper", action="store_true", help="print the paper's own table")
    p.add_argument("--model", default=None, help="model id, local model path or folder name under --results")
    p.add_argument("--row", default=None, help="paper row to compare against (for a model outside the paper)")
    p.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="NAME=PATH",
        help="value of a manifest placeholder (dl19: DL19_DIR, DL19_RUN, DL19_REJUDGED)",
    )
    p.add_argument("--allow-partial", action="store_true",
                   help="fill cells from partial runs (--limit-queries) when no complete run exists")  # fmt: skip
    p.add_argument("--where", action="append", type=_where_arg, default=[], metavar="KEY=VALUE",
                   help="only runs with this setting: prompt_set=paper, hash=3f2a, … (repeatable)")  # fmt: skip
    p.add_argument("--format", default="md", choices=["md", "csv", "tex", "json", "text"], help="printed format")
    p.add_argument("--out", type=Path, default=None, help="also write .md/.csv/.tex/.json/.png here")
    p.set_defaults(func=cmd_table)
    return p


def add_reproduce_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``reproduce`` subcommand; the model flags are ``rank1-eval run``'s own."""
    valid = _table_choices()
    p = sub.add_parser(
        "reproduce",
        parents=parents,
        help="run every cell of a paper table with one model, then write the table",
        description="Run every cell of a paper table with one loaded model (resuming through the store), "
        "then write the table beside the paper's values.",
        epilog=_examples("rank1-eval reproduce bright --model jhu-clsp/rank1-7b --output-dir results"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("table", help=f"{valid}, or a manifest .json")
    add_model_args(p)
    g = p.add_argument_group("table run")
    g.add_argument("--output-dir", type=Path, default=Path("results"), help="where result folders and tables go")
    g.add_argument("--store", type=Path, default=None, help="SQLite judgement store (default: OUTPUT_DIR/store.sqlite)")
    g.add_argument("--top-k", type=int, default=None, help="override the manifest's top-k (100)")
    g.add_argument("--limit-queries", type=int, default=None, help="smoke runs only: results are partial")
    g.add_argument("--cells", type=_cells_arg, default=None, help="comma-separated column keys to run")
    g.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="NAME=PATH",
        help="value of a manifest placeholder (dl19: DL19_DIR, DL19_RUN, DL19_REJUDGED)",
    )
    g.add_argument("--row", default=None, help="paper row to compare against (for a model outside the paper)")
    g.add_argument("--skip-existing", action="store_true", help="keep cells whose run of the same settings exists")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reproduce)
    return p


# ----------------------------------------------------------------------------------------------------
# compare (rank1_eval.compare)
# ----------------------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    """``rank1-eval compare``: a table for people, ``--json`` for scripts."""
    from rank1_eval.compare import compare, format_comparison

    result = compare(
        args.dir_a,
        args.dir_b,
        metric=args.metric,
        qrels=args.qrels,
        n_permutations=args.permutations,
        seed=args.seed,
        allow_different_tasks=args.force,
        allow_partial=args.allow_partial,
    )
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        print(format_comparison(result, per_query_rows=not args.no_per_query), end="")
    return 0


def add_compare_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``compare`` subcommand."""
    from rank1_eval.compare import DEFAULT_MEASURE, DEFAULT_PERMUTATIONS, DEFAULT_SEED

    p = sub.add_parser(
        "compare",
        parents=parents,
        help="paired comparison of two result folders (or one against its first stage)",
        description="Paired comparison of two rankings of the same queries: per-query deltas, wins/ties/losses, "
        "paired t-test and randomization test.",
        epilog=_examples(
            "rank1-eval compare results/jhu-clsp__rank1-7b/BrightRetrieval_biology "
            "results/jhu-clsp__rank1-0.5b/BrightRetrieval_biology",
            "rank1-eval compare results/jhu-clsp__rank1-7b/BrightRetrieval_biology   # against its first stage",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("dir_a", help="result folder A")
    p.add_argument("dir_b", nargs="?", default=None, help="result folder or run file B (default: A's first stage)")
    p.add_argument("--metric", default=DEFAULT_MEASURE, help="trec_eval measure or ndcg_at_10-style name")
    p.add_argument("--qrels", default=None, help="judgements to use instead of A's qrels.tsv")
    p.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS, help="randomization-test draws")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the randomization test")
    p.add_argument("--force", action="store_true", help="compare folders of different tasks")
    p.add_argument("--allow-partial", action="store_true", help="accept a task folder's partial run (--limit-queries)")
    p.add_argument("--json", action="store_true", help="print the full record as JSON")
    p.add_argument("--no-per-query", action="store_true", help="omit the per-query lines of the table")
    p.set_defaults(func=cmd_compare)
    return p


# ----------------------------------------------------------------------------------------------------
# report (rank1_eval.report)
# ----------------------------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    """``rank1-eval report``: prints the page's path."""
    from rank1_eval.report import write_comparison, write_report

    options = {"texts": not args.no_texts, "max_doc_chars": args.max_doc_chars, "metric": args.metric,
               "allow_partial": args.allow_partial}  # fmt: skip
    if args.b is None:
        path = write_report(args.dir, args.output, **options)
    else:
        path = write_comparison(args.dir, args.b, args.output, **options)
    print(path)
    return 0


def add_report_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        parents=parents,
        help="a self-contained HTML page for one result folder, or two side by side",
        description="Write one self-contained HTML page (no server, nothing fetched) for a result folder: metrics, "
        "per-query gains over the first stage, score distributions by label and calibration, reasoning length vs "
        "correctness, paths by label, the budget curve when a sweep exists, and every pair's reasoning. With B: "
        "two runs side by side (B a result folder, a run file, or 'first-stage').",
        epilog=_examples(
            "rank1-eval report results/jhu-clsp__rank1-7b/BrightRetrieval_biology",
            "rank1-eval report results/jhu-clsp__rank1-7b/NevIR_default results/jhu-clsp__rank1-14b/NevIR_default",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("dir", help="run folder, or a task folder (…/<model>/<Task>_<subtask>) holding one complete run")
    p.add_argument(
        "b", nargs="?", default=None, help="second run: a result folder, a run file, or 'first-stage' (A's own)"
    )
    p.add_argument("-o", "--output", default=None,
                   help="output file (default: <run folder>/report.html, <run folder>/report-vs-B.html)")  # fmt: skip
    p.add_argument("--allow-partial", action="store_true", help="accept a task folder's partial run (--limit-queries)")
    p.add_argument("--metric", default=None, help="per-query metric (trec_eval or ndcg_at_10 style; default: nDCG@10)")
    p.add_argument("--max-doc-chars", type=int, default=2000, help="passage text kept per pair in the page")
    p.add_argument("--no-texts", action="store_true", help="ids only: leave query and passage texts out")
    p.set_defaults(func=cmd_report)
    return p


# ----------------------------------------------------------------------------------------------------
# export (rank1_eval.evaluate.export_results)
# ----------------------------------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """``rank1-eval export --mteb``: every run folder into mteb's ResultCache layout."""
    from rank1_eval.evaluate import export_results

    _quiet_libraries()
    done = export_results(args.results, args.to, allow_partial=args.allow_partial)
    for run, path in done:
        print(f"{run} -> {path}")
    root = args.to or args.results
    print(f"exported {len(done)} run(s); read them with mteb.ResultCache({str(root)!r}).load_results()")
    return 0


def add_export_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        parents=parents,
        help="copy result folders into mteb's ResultCache layout",
        description="Copy every run under RESULTS into mteb's ResultCache layout (<root>/results/<org__model>/"
        "<revision>/[experiments/<name>/]<Task>.json + model_meta.json). Runs do this themselves as they finish; "
        "export writes another root, e.g. mteb's own cache.",
        epilog=_examples("rank1-eval export --mteb results --to ~/.cache/mteb"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("results", type=Path, help="the --output-dir of earlier runs")
    p.add_argument("--mteb", action="store_true", required=True, help="mteb's ResultCache layout (the only format)")
    p.add_argument("--to", type=Path, default=None, help="root of the mteb cache to write (default: RESULTS)")
    p.add_argument("--allow-partial", action="store_true", help="export partial runs too (as mteb experiments)")
    p.set_defaults(func=cmd_export)
    return p


# ----------------------------------------------------------------------------------------------------
# merge (rank1_eval.store)
# ----------------------------------------------------------------------------------------------------


def add_merge_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``merge`` subcommand."""
    p = sub.add_parser(
        "merge",
        parents=parents,
        help="merge judgement stores (e.g. of --shard runs) into one",
        description="Merge judgement stores (e.g. of `run --shard I/N` jobs) into one; a key with two different "
        "judgements is a loud conflict.",
        epilog=_examples("rank1-eval merge --into results/store.sqlite results/store.shard-*-of-4.sqlite"),
        formatter_class=HelpFormatter,
    )
    p.add_argument("--into", type=Path, required=True, help="the store to merge into (created if missing)")
    p.add_argument("sources", type=Path, nargs="+", metavar="STORE", help="stores to copy from")
    p.add_argument("--atol", type=float, default=1e-5, help="scores closer than this are the same judgement")
    p.set_defaults(func=cmd_merge)
    return p


def cmd_merge(args: argparse.Namespace) -> int:
    from rank1_eval.store import StoreError, merge_stores

    try:
        report = merge_stores(args.into, args.sources, atol=args.atol)
    except ValueError as exc:  # e.g. merging a store into itself
        raise StoreError(str(exc)) from exc
    for src in report.per_source:
        print(f"{src.path}: read {src.read}, added {src.added}, duplicates {src.duplicates}")
    print(f"merged {len(report.per_source)} store(s) into {report.into}: added {report.added}, "
          f"duplicates {report.duplicates}")  # fmt: skip
    return 0


# ----------------------------------------------------------------------------------------------------
# the parser
# ----------------------------------------------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default unless it is None/False/empty or the help text already names it; lines of
    descriptions and epilogs that start with a space (the examples) are kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out = []
        for line in text.splitlines():
            out.append(indent + line if line.startswith(" ") else super()._fill_text(line, width, indent))
        return "\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS)
            or default == []
            or (not action.option_strings and action.nargs not in ("?", "*"))
        ):
            return action.help
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _examples(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """-v/-q, at the top level and (default SUPPRESS: they leave the top level's value alone) after a subcommand."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("-v", "--verbose", action="count", default=0 if default is None else default,
                   help="more log lines: -v info, -vv debug")  # fmt: skip
    g.add_argument("-q", "--quiet", action="store_true", default=False if default is None else default,
                   help="errors only, no progress bars")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from rank1_eval import __version__

    parser = argparse.ArgumentParser(
        prog="rank1-eval",
        description="Evaluate rank1 reasoning rerankers on MTEB tasks, reproduce the paper's tables, compare "
        "runs and read their reasoning.",
        epilog=_examples(
            "rank1-eval run                      # the bundled demo: micro rank1 on CPU, under a minute",
            "rank1-eval run --task BrightRetrieval --subtask biology --model jhu-clsp/rank1-7b",
            "rank1-eval COMMAND --help           # the flags of one command",
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _verbosity(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _verbosity(common, argparse.SUPPRESS)
    parents = [common]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        parents=parents,
        help="rerank one task's first stage with rank1 and write the result folder",
        description="Rerank one task's first stage with rank1 and write the result folder (metrics, run, "
        "every pair's reasoning); without --task, the bundled demo.",
        epilog=_examples(
            "rank1-eval run --task BrightRetrieval --subtask biology --model jhu-clsp/rank1-7b --output-dir results"
        ),
        formatter_class=HelpFormatter,
    )
    add_model_args(run)
    add_run_args(run)
    run.set_defaults(func=cmd_run)
    add_reproduce_parser(sub, parents)
    add_table_parser(sub, parents)
    add_compare_parser(sub, parents)
    add_report_parser(sub, parents)
    add_merge_parser(sub, parents)
    add_export_parser(sub, parents)
    return parser


def _log_level(args: argparse.Namespace) -> int:
    if args.quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=_log_level(args), format="%(levelname)s %(name)s: %(message)s")
    from rank1_eval.errors import user_errors

    try:
        return int(args.func(args) or 0)
    except user_errors() as exc:
        print(f"rank1-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rank1-eval: interrupted; finished judgements are in the store, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
