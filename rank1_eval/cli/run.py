"""``rank1-eval run`` and ``reproduce``: judge pairs (one task, or the paper's tables) and write result folders.

The engines, mteb and the paper's manifests are imported inside the ``cmd_*`` functions, so ``--help`` stays fast."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rank1_eval.cli.common import (
    EXIT_FAILED_PAIRS,
    HelpFormatter,
    _allow_failed,
    _demo_defaults,
    _examples,
    _int_at_least,
    _quiet_libraries,
    _run_options,
    _set_arg,
    _status,
    _table_choices,
    add_model_args,
    add_run_args,
    build_model,
    build_parser,
    check_model_args,
    failed_pairs_exit,
)
from rank1_eval.cli.sweep import _print_sweep


def cmd_run(args: argparse.Namespace) -> int:
    from rank1_eval import baseline
    from rank1_eval.evaluate import cost_line, dry_run_report, evaluate, metric_table, prepare
    from rank1_eval.flags import check_flags, given_flags

    # --model: rank1, or any mteb reranker (a baseline); flags of the other kind are an error naming the flag
    is_baseline = baseline.is_baseline(args.model)
    baseline.check_flags(args, vars(build_parser().parse_args(["run"])), baseline=is_baseline)
    budget_list = None
    if args.budgets:
        from rank1_eval.sweep import parse_budgets

        budget_list = parse_budgets(args.budgets)
    # no silent overrides: before the demo's defaults, so only what the user typed counts as asked for
    flag_warnings = (
        []
        if is_baseline
        else check_flags(args, given_flags(args, build_parser().parse_args(["run"])), budgets=budget_list)
    )
    _demo_defaults(args)
    if not args.server_urls and not is_baseline:  # servers load the model themselves; a baseline is mteb's
        from rank1_eval.flags import check_model_reachable
        from rank1_eval.model import DEFAULT_MODEL

        check_model_reachable(args.model or DEFAULT_MODEL, args.revision, default=args.model is None)
    budgets = None
    if args.verify and not args.budgets:
        from rank1_eval.sweep import SweepError

        raise SweepError("--verify checks a budget sweep: pass --budgets too")
    if args.budgets:
        from rank1_eval.sweep import SweepError, parse_budgets

        if args.shard is not None:
            raise SweepError("--budgets with --shard: merge the shards' stores, then `rank1-eval sweep` the result")
        budgets = parse_budgets(args.budgets)
        if max(budgets) > args.max_output_tokens:  # the run is made at the largest budget
            args.max_output_tokens = max(budgets)
    check_model_args(args)
    from rank1_eval.progress import ProgressDisplay

    # one display for the whole run: status lines (with the elapsed time) while things load, silent under -q;
    # then the per-judgement bar, unless --no-progress
    display = ProgressDisplay(
        0, enabled=not (args.no_progress or args.quiet), status=not args.quiet, prefix="rank1-eval: "
    )
    sweep_result = None
    try:
        display.status("loading mteb, datasets and transformers")
        _quiet_libraries()
        model = baseline.from_args(args) if is_baseline else build_model(args)
        opts = _run_options(args)
        display.status(f"loading task {opts.task}{' ' + opts.subtask if opts.subtask else ''} and its first stage")
        prepared = prepare(opts, model.mteb_model_meta.name)
        for warning in flag_warnings:  # recorded in summary.json's run_warnings
            logging.getLogger("rank1_eval").warning(warning)
            prepared.notes.append(warning)
        if args.dry_run:
            from rank1_eval.evaluate import run_folder, store_path_of
            from rank1_eval.preflight import check_run

            display.close()
            out = None if args.shard else run_folder(model, prepared, opts)
            report = dry_run_report(prepared, model)
            report["preflight_warnings"] = check_run(model, prepared, opts, out=out, store_path=store_path_of(opts))
            print(json.dumps(report, indent=2))
            return 0
        display.status(
            f"{prepared.n_pairs} pairs to judge with {model.model_name_or_path} ({model.engine_name} "
            "engine); the model loads at the first pair the store does not hold"
        )
        try:  # close() stops the vLLM servers of --data-parallel, also on errors
            if args.shard is not None:
                from rank1_eval.shards import run_shard, shard_message

                display.close()
                print(shard_message(run_shard(model, prepared, opts, args.shard)))
                return 0
            summary = evaluate(model, prepared, opts, progress=display)
            if budgets:
                from rank1_eval.sweep import sweep

                display.status(f"deriving budgets {', '.join(map(str, budgets))} from the run")
                sweep_result = sweep(
                    model,
                    prepared,
                    opts,
                    budgets,
                    Path(summary["output_dir"]),
                    verify_pairs=args.verify,
                    base_summary=summary,
                    progress=display,
                )
        finally:
            model.close()
    finally:
        display.close()
    print(metric_table(summary))
    print(cost_line(summary))
    if sweep_result is not None:
        _print_sweep(sweep_result)
    print(f"results: {summary['output_dir']}")
    return failed_pairs_exit(summary, args.allow_failed)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``rank1-eval reproduce``: exit 1 when a cell failed, so scripts notice an incomplete table."""
    from rank1_eval.flags import check_flags, given_flags
    from rank1_eval.paper import cell_runs, load_table, render_markdown, reproduce

    check_flags(args, given_flags(args, build_parser().parse_args(["reproduce", args.table])))
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
            verbose=bool(args.verbose),
            command_line=["rank1-eval", *sys.argv[1:]],
            data_root=args.data_root,
            dataset_paths=dict(args.dataset_path),
        )
    finally:
        model.close()
    print(render_markdown(rep.result), end="")
    print("wrote " + ", ".join(str(p) for p in rep.files.values()))
    for label, reason in rep.failures.items():
        print(f"rank1-eval: cell {label} failed: {reason}", file=sys.stderr)
    failed_pairs = [failed_pairs_exit(s, args.allow_failed) for s in rep.summaries.values()]  # a line per cell
    return 1 if rep.failures else EXIT_FAILED_PAIRS if any(failed_pairs) else 0


def _dataset_path_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--dataset-path takes TASK=PATH (e.g. SciFact=/data/scifact)")
    task, path = value.split("=", 1)
    return task.strip(), path


def _cells_arg(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


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
    g.add_argument("--top-k", type=_int_at_least(1), default=None, help="override the manifest's top-k (100)")
    g.add_argument("--limit-queries", type=_int_at_least(1), default=None, help="smoke runs only: results are partial")
    g.add_argument("--cells", type=_cells_arg, default=None, help="comma-separated column keys to run")
    g.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="NAME=PATH",
        help="value of a manifest placeholder (dl19: DL19_DIR, DL19_RUN, DL19_REJUDGED)",
    )
    g.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="folder of local Hub copies by repo id, e.g. DIR/xlangai/BRIGHT, DIR/mteb/scifact "
        "(default: $RANK1_DATA_ROOT)",
    )
    g.add_argument(
        "--dataset-path",
        action="append",
        type=_dataset_path_arg,
        default=[],
        metavar="TASK=PATH",
        help="local Hub copy of one task's dataset (repeatable; wins over --data-root)",
    )
    g.add_argument("--row", default=None, help="paper row to compare against (for a model outside the paper)")
    g.add_argument("--skip-existing", action="store_true", help="do not re-evaluate cells with a whole result folder")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument(
        "--allow-failed",
        type=_allow_failed,
        nargs="?",
        const="all",
        default=None,
        metavar="N|P%",
        help=f"accept failed pairs per cell (all, N, P%%); else exit code {EXIT_FAILED_PAIRS}",
    )
    p.set_defaults(func=cmd_reproduce)
    return p


def add_run_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``run`` subcommand: the model flags and the run flags."""
    run = sub.add_parser(
        "run",
        parents=parents,
        help="rerank one task's first stage with rank1 (or an mteb reranker) and write the result folder",
        description="Rerank one task's first stage with rank1 and write the result folder (metrics, run, "
        "every pair's reasoning); without --task, the bundled demo. --model may also name any mteb reranker "
        "(e.g. BAAI/bge-reranker-v2-m3, mteb/baseline-random-cross-encoder) or a local sentence-transformers "
        "CrossEncoder folder: the same candidates, store and result folder, scores without reasoning.",
        epilog=_examples(
            "rank1-eval run --task BrightRetrieval --subtask biology --model jhu-clsp/rank1-7b --output-dir results"
        ),
        formatter_class=HelpFormatter,
    )
    add_model_args(run)
    add_run_args(run)
    run.set_defaults(func=cmd_run)
    return run
