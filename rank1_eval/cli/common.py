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

EXIT_ERROR = 2  # bad input, an unusable resource, a fault: one line on stderr
EXIT_FAILED_PAIRS = 3  # the run finished, but more pairs failed than --allow-failed accepts (results written)
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM: what scancel, preemption and `kill` send


class Terminated(KeyboardInterrupt):
    """SIGTERM taken like Ctrl-C: the same unwinding (the store writer flushes, result folders stay as they were)."""


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise Terminated()


def _describe(exc: BaseException) -> str:
    """One line for an error that reached the top: the file and the fix for OS errors, the message otherwise."""
    import errno
    import sqlite3

    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        hint = {
            errno.ENOSPC: "the disk is full: free space (or use another --output-dir/--store) and rerun; every "
            "judgement already in the store is kept and not scored again",
            errno.EROFS: "the file system is read-only: use a writable --output-dir/--store",
            errno.EACCES: "no permission: fix the permissions or use another path",
            errno.EPERM: "not permitted (immutable or protected): use another path",
            errno.EDQUOT: "disk quota exceeded: free space and rerun; the store keeps every judgement",
        }.get(exc.errno or 0, "")
        return f"{where}{exc.strerror}" + (f" ({hint})" if hint else "")
    if isinstance(exc, sqlite3.Error):
        return f"SQLite error: {exc}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def bundled_demo() -> tuple[str, str, str]:
    """(task folder, run file, model folder) of the bundled demo: package data, so a wheel carries it too."""
    from rank1_eval._data import DEMO_RUN_FILE, DEMO_TASK_DIR, MICRO_RANK1_DIR

    return str(DEMO_TASK_DIR), str(DEMO_RUN_FILE), str(MICRO_RANK1_DIR)


def _int_at_least(low: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {number}")
        return number

    parse.__name__ = f"integer >= {low}"
    return parse


def _positive_float(value: str) -> float:
    import math

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return number


def _fraction(value: str) -> float:
    number = _positive_float(value)
    if number > 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value}")
    return number


def _failed_score(value: str) -> float | str:
    """``raise`` or a finite float: NaN would make every failed pair's rank undefined."""
    import math

    if value == "raise":
        return value
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'raise', got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number or 'raise', got {value!r}")
    return number


def _allow_failed(value: str) -> str:
    """``N`` pairs, ``P%`` of the pairs, or ``all`` (the bare flag)."""
    import math

    text = value.strip()
    if text == "all":
        return text
    number_text = text[:-1] if text.endswith("%") else text
    try:
        number = float(number_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N, P% or nothing (= all), got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (text.endswith("%") and number > 100):
        raise argparse.ArgumentTypeError(f"expected N >= 0 or 0-100%, got {value!r}")
    return text


def _qrels_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--qrels takes NAME=PATH")
    name, path = value.split("=", 1)
    return name, path


_KINDS: dict[str, Any] = {
    "str": str,
    "int>=0": _int_at_least(0),
    "int>=1": _int_at_least(1),
    "int>=2": _int_at_least(2),
    "fraction": _fraction,
    "float>0": _positive_float,
    "failed_score": _failed_score,
}
MODEL_GROUPS = {
    "model": "model (mirrors rank1(...))",
    "scaling": "scaling out (vLLM servers; see README 'Scaling out')",
}


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model flags, generated from :class:`rank1_eval.settings.Settings` (one flag per setting)."""
    from rank1_eval import settings as S

    groups = {name: p.add_argument_group(title) for name, title in MODEL_GROUPS.items()}
    for name in S.names():
        role = S.role(name)
        default = S.default(name) if role.cli_default == "=field" else role.cli_default
        options: dict[str, Any] = {"help": role.help, "dest": S.cli_dest(name)}
        if role.kind == "flag":
            options["action"] = "store_true"
        elif role.kind == "append":
            options.update(action="append", default=[])
        else:
            options.update(type=_KINDS[role.kind], default=default)
        if role.choices:
            options["choices"] = list(role.choices)
        if role.metavar:
            options["metavar"] = role.metavar
        groups[role.cli_group].add_argument(role.flag, **options)


def model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``rank1(...)`` keyword arguments from the parsed model flags (every setting, by its field name)."""
    from rank1_eval import settings as S

    out = {}
    for name in S.names():
        value = getattr(args, S.cli_dest(name))
        role = S.role(name)
        out[name] = role.from_cli(value) if role.from_cli is not None else value
    if out["model_name_or_path"] is None:
        out["model_name_or_path"] = S.DEFAULT_MODEL
    return out


def build_model(args: argparse.Namespace):
    """The model the flags describe; device and dtype defaults are the API's (float16 on CUDA, float32 on CPU)."""
    from rank1_eval.model import rank1

    check_model_args(args)
    kwargs = model_kwargs(args)
    kwargs["keep_token_ids"] = bool(kwargs["keep_token_ids"] or getattr(args, "budgets", None))
    return rank1(**kwargs)


def check_model_args(args: argparse.Namespace) -> None:
    """Flags that must fit together (after the demo's defaults are applied)."""
    # under the reference rule a pair generates min(max_output_tokens, context_size - prompt tokens): any pair of
    # values works, and a query that cannot fit is found by the pre-flight
    if getattr(args, "length_rule", "reference") == "reserve_output" and args.context_size <= args.max_output_tokens:
        from rank1_eval.errors import UsageError

        raise UsageError(
            f"--context-size ({args.context_size}) must exceed --max-output-tokens ({args.max_output_tokens}) under "
            "--length-rule reserve_output: the prompt gets context_size - max_output_tokens tokens"
        )


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task and first stage")
    g.add_argument("--task", default=None, help="seed/mteb task name or a BEIR-style folder (default: bundled demo)")
    g.add_argument("--subtask", default=None, help="e.g. biology, fas, eng-zho; 'default' = none")
    g.add_argument("--split", default=None, help="evaluation split (default: the task's)")
    g.add_argument("--dataset-path", default=None, help="local copy of the task's Hub dataset (offline use)")
    g.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="folder of local Hub copies by repo id, e.g. DIR/mteb/scifact (default: $RANK1_DATA_ROOT)",
    )
    first = g.add_mutually_exclusive_group()
    first.add_argument("--run-file", default=None, help="first-stage run: rank1 JSON, TREC run or mteb predictions")
    first.add_argument("--first-stage", default=None, choices=["bm25"], help="build the top-k with bm25s")
    g.add_argument("--top-k", type=_int_at_least(1), default=100, help="first-stage candidates reranked per query")
    g.add_argument("--main-metric", default=None, help="metric reported first (default: the task's)")
    g.add_argument(
        "--qrels",
        action="append",
        type=_qrels_arg,
        default=[],
        metavar="NAME=PATH",
        help="extra judgements to score the run with (repeatable)",
    )
    g.add_argument("--limit-queries", type=_int_at_least(1), default=None, help="first N queries only (smoke runs)")
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", type=Path, default=Path("results"), help="where result folders go")
    o.add_argument("--store", type=Path, default=None, help="SQLite judgement store (default: OUTPUT_DIR/store.sqlite)")
    o.add_argument(
        "--budgets",
        default=None,
        metavar="B1,B2,...",
        help="after the run (at --max-output-tokens, the largest budget), derive every smaller budget "
        "from it as `rank1-eval sweep` does (keeps token ids)",
    )
    o.add_argument(
        "--verify",
        type=_int_at_least(0),
        default=0,
        metavar="N",
        help="with --budgets: re-run N sampled pairs per budget for real and report the differences",
    )
    o.add_argument("--dry-run", action="store_true", help="validate, count pairs and prompt tokens, load no model")
    o.add_argument(
        "--allow-failed",
        type=_allow_failed,
        nargs="?",
        const="all",
        default=None,
        metavar="N|P%",
        help="accept failed pairs (all, or up to N pairs or P%% of them); by default any failed pair "
        f"ends the run with exit code {EXIT_FAILED_PAIRS} after the results are written",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument(
        "--shard",
        type=_shard_arg,
        default=None,
        metavar="I/N",
        help="judge only shard I of N (0-based) into its own store, write no outputs; then "
        "`rank1-eval merge` and run again with --store",
    )


def _shard_arg(value: str) -> tuple[int, int]:
    from rank1_eval.shards import ShardError, parse_shard

    try:
        return parse_shard(value)
    except ShardError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _demo_defaults(args: argparse.Namespace) -> None:
    """No --task (or --task demo): the bundled demo task, run file and micro rank1, with CPU-sized settings."""
    if args.task is None or args.task == DEMO_TASK:
        task, run_file, model = bundled_demo()
        args.task = task
        args.run_file = args.run_file or (None if args.first_stage else run_file)
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


def _run_options(args: argparse.Namespace, command_line: Sequence[str] | None = None) -> Any:
    from rank1_eval.evaluate import RunOptions

    return RunOptions(
        task=args.task,
        subtask=None if args.subtask in (None, "default") else args.subtask,
        run_file=args.run_file,
        first_stage=args.first_stage,
        top_k=args.top_k,
        split=args.split,
        dataset_path=args.dataset_path,
        data_root=args.data_root,
        main_metric=args.main_metric,
        qrels=dict(args.qrels),
        output_dir=args.output_dir,
        store=args.store,
        limit_queries=args.limit_queries,
        dry_run=args.dry_run,
        progress=not (args.no_progress or args.quiet),
        verbose=bool(args.verbose),
        command_line=list(command_line or ["rank1-eval", *sys.argv[1:]]),
    )


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


def failed_pairs_exit(summary: dict[str, Any], allow_failed: str | None) -> int:
    """0, or the banner and :data:`EXIT_FAILED_PAIRS` when more pairs failed than ``--allow-failed`` accepts."""
    from rank1_eval.preflight import failure_banner, failure_limit

    allowed = failure_limit(allow_failed, summary["pairs_total"])
    if summary["failed"] > allowed:
        print(failure_banner(summary, summary["provenance"]["store"], allowed), file=sys.stderr)
        return EXIT_FAILED_PAIRS
    return 0


def _print_sweep(result: dict[str, Any]) -> None:
    from rank1_eval.sweep import table

    print(table(result))
    for check in result.get("verify", []):
        print(
            f"verify budget {check['budget']}: {check['pairs']} pairs re-run for real ({check.get('cut_pairs', 0)} "
            f"cut), same path {check.get('same_path')}, same reasoning {check.get('same_reasoning')}, max |Δscore| "
            f"{check.get('max_abs_score_diff')}"
        )


def cmd_sweep(args: argparse.Namespace) -> int:
    """``rank1-eval sweep``: re-create the recorded run (from the store), derive each budget, write the sweep."""
    from rank1_eval import sweep as S
    from rank1_eval.evaluate import prepare
    from rank1_eval.progress import ProgressDisplay

    budgets = S.parse_budgets(args.budgets)
    results = {}
    for folder in args.result_dirs:
        folder = S.find_run(folder).resolve()
        argv, cwd, summary = S.recorded_command(folder)
        sampling = summary.get("provenance", {}).get("sampling", {})
        if "max_output_tokens" in sampling:  # fail before anything loads
            S.check_budgets(
                budgets,
                sampling["max_output_tokens"],
                sampling.get("force_rethink", 0),
                sampling.get("answer_rule", "rank1"),
            )
        run_args = build_parser().parse_args(argv)
        run_args.keep_token_ids = True
        _demo_defaults(run_args)
        here = os.getcwd()
        if cwd and Path(cwd).is_dir():
            os.chdir(cwd)  # the recorded command's relative paths (task, run file, output dir) are relative to it
        try:
            if args.store is not None:
                run_args.store = Path(here, args.store).resolve()
            elif run_args.store is None:
                run_args.store = Path(summary["provenance"].get("store") or run_args.output_dir / "store.sqlite")
            run_args.store = Path(run_args.store).resolve()
            if not run_args.store.is_file():
                raise S.SweepError(f"judgement store {run_args.store} not found: pass the run's store with --store")
            run_args.no_progress = run_args.no_progress or args.no_progress
            run_args.quiet, run_args.verbose = args.quiet, args.verbose
            display = ProgressDisplay(
                0, enabled=not (args.no_progress or args.quiet), status=not args.quiet, prefix="rank1-eval: "
            )
            try:
                display.status("loading mteb, datasets and transformers")
                _quiet_libraries()
                model = build_model(run_args)
                opts = _run_options(run_args, ["rank1-eval", *sys.argv[1:]] if argv else None)
                display.status(f"loading task {opts.task} and its first stage")
                prepared = prepare(opts, model.mteb_model_meta.name)
                try:
                    results[str(folder)] = S.sweep(
                        model,
                        prepared,
                        opts,
                        budgets,
                        folder,
                        verify_pairs=args.verify,
                        base_summary=summary,
                        progress=display,
                    )
                finally:
                    model.close()
            finally:
                display.close()
        finally:
            os.chdir(here)
        print(f"{folder}:")
        _print_sweep(results[str(folder)])
        print(f"wrote {folder / 'sweep.json'}, sweep.csv, sweep.png")
    if len(results) > 1 or args.plot:
        target = args.plot or Path(os.path.commonpath(list(results))) / S.SWEEP_PLOT
        S.plot({r.get("task") or k: r for k, r in results.items()}, target)
        print(f"plot of all tasks: {target}")
    return 0


def add_sweep_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep",
        parents=parents,
        help="every smaller reasoning budget derived exactly from one run (table, plot, sweep.json)",
        description="Derive the judgements at each budget from a result folder's run (made at the largest "
        "budget; greedy decoding makes the first b tokens of that run the run at b): pairs that finished within "
        "b are kept, the others cut to b tokens and answered by one prefill-only forced answer. Each budget is "
        "stored under its own key (a later real run at b is a store hit), gets the result folder a real run at b "
        "would have (beside DIR), "
        "and a row of DIR/sweep.json, sweep.csv and sweep.png. Loads the model (for the prefills) unless the "
        "store holds every budget already.",
        epilog=_examples(
            "rank1-eval sweep results/local__micro-rank1/Dl19MiniLocal_default --budgets 4,8,12,16,32 --verify 5",
            "   (after the demo: rank1-eval run --keep-token-ids --output-dir results)",
            "rank1-eval run --task BrightRetrieval --subtask biology --budgets 256,512,1024,2048,4096,8192",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "result_dirs",
        type=Path,
        nargs="+",
        metavar="RESULT_DIR",
        help="run folder(s) of `run`, or task folder(s) holding one run no sweep derived",
    )
    p.add_argument(
        "--budgets", required=True, metavar="B1,B2,...", help="max_output_tokens values, each at most the run's"
    )
    p.add_argument(
        "--verify",
        type=_int_at_least(0),
        default=0,
        metavar="N",
        help="re-run N sampled pairs per budget for real (cut pairs first) and report the differences",
    )
    p.add_argument("--store", type=Path, default=None, help="the run's judgement store (default: as recorded)")
    p.add_argument("--plot", type=Path, default=None, help="also one plot of all RESULT_DIRs' tasks here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
    return p


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
            args.table,
            args.results,
            args.model,
            row=args.row,
            placeholders=placeholders,
            allow_partial=args.allow_partial,
            where=dict(args.where),
        )
    _print(result, args.format)
    if args.out:
        stem = result.table.name
        if not args.paper:
            stem += f"__{'+'.join(map(model_folder_name, args.model)) if args.model else 'all'}"
        files = write_table_files(result, args.out, stem)
        print("wrote " + ", ".join(str(p) for p in files.values()), file=sys.stderr)
    return 0


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
            "rank1-eval table bright --results results --model jhu-clsp/rank1-7b --model BAAI/bge-reranker-v2-m3",
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("table", help=f"{valid}, or a manifest .json")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--results", type=Path, default=None, help="the --output-dir of earlier runs")
    src.add_argument("--paper", action="store_true", help="print the paper's own table")
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help="model id, local model path or folder name under --results; repeat it for one row per "
        "model (rank1 next to the mteb baselines you ran)",
    )
    p.add_argument("--row", default=None, help="paper row to compare against (for a model outside the paper)")
    p.add_argument(
        "--set",
        action="append",
        type=_set_arg,
        default=[],
        metavar="NAME=PATH",
        help="value of a manifest placeholder (dl19: DL19_DIR, DL19_RUN, DL19_REJUDGED)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="fill cells from partial runs (--limit-queries) when no complete run exists",
    )
    p.add_argument(
        "--where",
        action="append",
        type=_where_arg,
        default=[],
        metavar="KEY=VALUE",
        help="only runs with this setting: prompt_set=paper, hash=3f2a, … (repeatable)",
    )
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

    options = {
        "texts": not args.no_texts,
        "max_doc_chars": args.max_doc_chars,
        "metric": args.metric,
        "allow_partial": args.allow_partial,
    }
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
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="output file (default: <run folder>/report.html, <run folder>/report-vs-B.html)",
    )
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
    """``rank1-eval export [--mteb]``: every run folder into mteb's ResultCache layout."""
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
    p.add_argument("--mteb", action="store_true", help="mteb's ResultCache layout (the only format; optional)")
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
    print(
        f"merged {len(report.per_source)} store(s) into {report.into}: added {report.added}, "
        f"duplicates {report.duplicates}"
    )
    return 0


# ----------------------------------------------------------------------------------------------------
# store (rank1_eval.store): check, salvage, drop-failed
# ----------------------------------------------------------------------------------------------------


def add_store_parser(sub: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """The ``store`` subcommand: check, salvage or clean a judgement store."""
    p = sub.add_parser(
        "store",
        parents=parents,
        help="check, salvage or clean a judgement store",
        description="Check a judgement store (SQLite's own consistency check), copy every readable judgement of "
        "a damaged one into a new store, or delete failed judgements so that a rerun scores them again.",
        epilog=_examples(
            "rank1-eval store check results/store.sqlite",
            "rank1-eval store salvage results/store.sqlite --into results/store.salvaged.sqlite",
        ),
        formatter_class=HelpFormatter,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = actions.add_parser("check", parents=parents, help="SQLite's consistency check and the counts (read-only)")
    c.add_argument("path", type=Path, help="the store")
    c.add_argument("--full", action="store_true", help="integrity_check instead of the faster quick_check")
    c.set_defaults(func=cmd_store_check)
    s = actions.add_parser("salvage", parents=parents, help="copy every readable judgement into a new store")
    s.add_argument("path", type=Path, help="the damaged store (only read)")
    s.add_argument("--into", type=Path, required=True, help="the new store (or an existing one to add to)")
    s.set_defaults(func=cmd_store_salvage)
    d = actions.add_parser("drop-failed", parents=parents, help="delete failed judgements: a rerun scores them")
    d.add_argument("path", type=Path, help="the store")
    d.set_defaults(func=cmd_store_drop_failed)
    m = actions.add_parser(
        "migrate",
        parents=parents,
        help="re-key a store of the previous key scheme, given the flags of the run that made it",
        description="Recompute, for every pair of the run these flags describe, the key the previous scheme gave "
        "it and the key it has now, and copy each judgement found under its old key into --into under its new "
        "key. Exact: only judgements made with these settings move; the rest are counted (migrate again with "
        "the flags of their runs). The old store is only read.",
        epilog=_examples(
            "rank1-eval store migrate results/store.sqlite --into results/store.v2.sqlite "
            "--task SciFact --max-output-tokens 8192"
        ),
        formatter_class=HelpFormatter,
    )
    m.add_argument("path", type=Path, help="the store of the previous key scheme (only read)")
    m.add_argument("--into", type=Path, required=True, help="the store to write (new, or one of today's scheme)")
    add_model_args(m)
    add_run_args(m)
    m.set_defaults(func=cmd_store_migrate)
    return p


def cmd_store_migrate(args: argparse.Namespace) -> int:
    """``rank1-eval store migrate OLD --into NEW <run flags>``: old key -> new key for every pair of that run."""
    from rank1_eval.errors import UsageError
    from rank1_eval.evaluate import prepare
    from rank1_eval.judge import LEGACY_REUSABLE_ENGINES, LEGACY_RULE_VERSION, legacy_key
    from rank1_eval.scoring import RULE_VERSION
    from rank1_eval.shards import task_prompts
    from rank1_eval.store import migrate_store

    _demo_defaults(args)
    _quiet_libraries()
    model = build_model(args)
    engines = LEGACY_REUSABLE_ENGINES.get(RULE_VERSION, frozenset())
    if model.engine_name not in engines or args.data_parallel > 1:
        dp = " with --data-parallel" if args.data_parallel > 1 else ""
        raise UsageError(
            f"judgements of the previous key scheme were decoded under rule version {LEGACY_RULE_VERSION}; under "
            f"this rank1_eval's rule ({RULE_VERSION}) the {model.engine_name} engine{dp} decodes differently: they "
            f"cannot be reused, only rerun (re-keyable: the {', '.join(sorted(engines)) or 'no'} engine)"
        )
    prepared = prepare(_run_options(args), model.mteb_model_meta.name)
    prompts = task_prompts(model, prepared.task)
    mapping = {legacy_key(model.core, p.prompt): model.core.key(p) for p in prompts}
    report = migrate_store(args.path, args.into, mapping)
    print(report.message())
    return 0


def cmd_store_check(args: argparse.Namespace) -> int:
    from rank1_eval.store import check_store

    result = check_store(args.path, full=args.full)
    print(result.message(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else EXIT_ERROR


def cmd_store_salvage(args: argparse.Namespace) -> int:
    from rank1_eval.store import salvage_store

    print(salvage_store(args.path, args.into).message())
    return 0


def cmd_store_drop_failed(args: argparse.Namespace) -> int:
    from rank1_eval.store import drop_failed

    n = drop_failed(args.path)
    print(f"{args.path}: deleted {n} failed judgements; a rerun scores those pairs again")
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
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="more log lines: -v info (and the engines' own output on screen instead of "
        "<result folder>/engine.log), -vv debug",
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if default is None else default,
        help="errors only, no progress bars",
    )


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
    add_reproduce_parser(sub, parents)
    add_table_parser(sub, parents)
    add_compare_parser(sub, parents)
    add_report_parser(sub, parents)
    add_merge_parser(sub, parents)
    add_store_parser(sub, parents)
    add_export_parser(sub, parents)
    add_sweep_parser(sub, parents)
    return parser


def _log_level(args: argparse.Namespace) -> int:
    if args.quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=_log_level(args), format="%(levelname)s %(name)s: %(message)s")
    import signal
    import threading

    from rank1_eval.errors import user_errors

    on_main = threading.current_thread() is threading.main_thread()
    old_sigterm = signal.signal(signal.SIGTERM, _sigterm_as_interrupt) if on_main else None
    try:
        return _run_command(args, user_errors)
    finally:
        if old_sigterm is not None:
            signal.signal(signal.SIGTERM, old_sigterm)


def _run_command(args: argparse.Namespace, user_errors: Any) -> int:
    """The subcommand, with every error it can end in turned into one line and an exit code."""
    import sqlite3

    try:
        return int(args.func(args) or 0)
    except user_errors() as exc:
        print(f"rank1-eval: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, sqlite3.Error, json.JSONDecodeError) as exc:  # a disk, a permission, a file: still one line
        if args.verbose:
            raise
        print(f"rank1-eval: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        from rank1_eval.store import judgements_written, take_writer_failure

        failure = take_writer_failure()  # the store writer stopped the run: say why, not "interrupted"
        if failure is not None:
            print(f"rank1-eval: error: {_describe(failure)}", file=sys.stderr)
            return EXIT_ERROR
        what = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        print(
            f"rank1-eval: interrupted by {what}: {judgements_written()} judgements kept in the store, rerun to resume",
            file=sys.stderr,
        )
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
