"""``rank1-eval``: thin argument parsing over the Python API (flags mirror ``rank1(...)`` and ``RunOptions``)."""

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


class UsageError(ValueError):
    """Flags that do not fit together (checked after the demo defaults are applied)."""


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or an unavailable resource: one clear line, no stack trace."""
    from rank1_eval.beir import DatasetError
    from rank1_eval.compare import CompareError
    from rank1_eval.engines import EngineError
    from rank1_eval.engines.device import DeviceError
    from rank1_eval.model import ModelLoadError
    from rank1_eval.outputs import ResultFolderError
    from rank1_eval.paper import TableError
    from rank1_eval.preflight import OutputError, PromptBudgetError
    from rank1_eval.prompts import PromptError
    from rank1_eval.runs import RunFileError
    from rank1_eval.scoring import PromptTooLongError, ScoringError, TokenizerError
    from rank1_eval.store import StoreError
    from rank1_eval.tasks import TaskError

    return (
        DatasetError, EngineError, DeviceError, ModelLoadError, PromptError, RunFileError, TokenizerError,
        StoreError, TaskError, FileNotFoundError, TableError, CompareError, ResultFolderError, OutputError,
        PromptBudgetError, PromptTooLongError, ScoringError, UsageError,
    )  # fmt: skip


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
    from rank1_eval._data import DEMO_TASK_DIR, MICRO_RANK1_DIR

    return str(DEMO_TASK_DIR), str(DEMO_TASK_DIR / "bm25s_top20.trec"), str(MICRO_RANK1_DIR)


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


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (mirrors rank1(...))")
    g.add_argument("--model", default=None, help="model id or local folder (default: jhu-clsp/rank1-7b)")
    g.add_argument("--revision", default=None)
    g.add_argument("--num-gpus", type=_int_at_least(1), default=1, help="tensor parallel size")
    g.add_argument("--engine", default="auto", choices=["auto", "vllm", "transformers", "openai"],
                   help="openai: vLLM servers at --server-url (auto picks it when URLs are given)")  # fmt: skip
    g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when visible, else cpu)")
    g.add_argument("--dtype", default=None, help="fp_options: float16 (GPU default), bfloat16, float32 (CPU default)")
    g.add_argument("--context-size", type=_int_at_least(2), default=16000, help="> --max-output-tokens")
    g.add_argument("--max-output-tokens", type=_int_at_least(1), default=8192)
    g.add_argument("--gpu-memory-utilization", type=_fraction, default=0.9, help="in (0, 1]")
    g.add_argument("--enforce-eager", action="store_true")
    g.add_argument("--max-num-seqs", type=_int_at_least(1), default=None)
    g.add_argument("--trust-remote-code", action="store_true")
    g.add_argument("--chunk-size", type=_int_at_least(1), default=None,
                   help="pairs per engine call, judgements commit per chunk (default 1024; with servers "
                   "4 per request slot, at least 256)")  # fmt: skip
    g.add_argument("--failed-score", type=_failed_score, default=0.5,
                   help="score of a pair no pass could score (finite), or 'raise' to stop the run")  # fmt: skip
    g.add_argument("--skip-prompt", action="store_true", help="no dataset prompt (dataset_prompt=False)")
    g.add_argument("--prompt-set", default="code", choices=["code", "paper"])
    g.add_argument("--prompt-file", default=None, help="JSON {key: template} overriding the bundled prompts")
    s = p.add_argument_group("scaling out (vLLM servers; see README 'Scaling out')")
    s.add_argument(
        "--data-parallel",
        type=_int_at_least(1),
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
    s.add_argument("--max-concurrency", type=_int_at_least(1), default=8, help="requests in flight per server")
    s.add_argument("--request-timeout", type=_positive_float, default=None,
                   help="seconds per request (default: 30 s + 0.2 s per output token of the request)")  # fmt: skip
    s.add_argument("--max-retries", type=_int_at_least(0), default=5,
                   help="failed backoff rounds before a server is dropped")  # fmt: skip
    s.add_argument("--stall-warning", type=_int_at_least(0), default=300, metavar="S",
                   help="warn when no request has finished for S seconds (0: never)")  # fmt: skip


def build_model(args: argparse.Namespace):
    from rank1_eval.model import DEFAULT_MODEL, rank1

    check_model_args(args)
    device = args.device
    if device is None:
        device = "cuda" if _cuda_visible() else "cpu"
    dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")
    failed = args.failed_score
    return rank1(
        args.model or DEFAULT_MODEL,
        num_gpus=args.num_gpus,
        device=device,
        context_size=args.context_size,
        max_output_tokens=args.max_output_tokens,
        fp_options=dtype,
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
        stall_warning_s=float(args.stall_warning),
        data_parallel=args.data_parallel,
    )


def check_model_args(args: argparse.Namespace) -> None:
    """Flags that must fit together (after the demo's defaults are applied)."""
    if args.context_size <= args.max_output_tokens:
        raise UsageError(
            f"--context-size ({args.context_size}) must exceed --max-output-tokens ({args.max_output_tokens}): the "
            "prompt gets context_size - max_output_tokens tokens"
        )


def _cuda_visible() -> bool:
    """Whether a CUDA GPU is visible, without importing torch when nvidia-smi says no."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task and first stage")
    g.add_argument("--task", default=None, help="seed/mteb task name or a BEIR-style folder (default: bundled demo)")
    g.add_argument("--subtask", default=None, help="e.g. biology, fas, eng-zho; 'default' = none")
    g.add_argument("--split", default=None)
    g.add_argument("--dataset-path", default=None, help="local copy of the task's Hub dataset (offline use)")
    first = g.add_mutually_exclusive_group()
    first.add_argument("--run-file", default=None, help="first-stage run: rank1 JSON, TREC run or mteb predictions")
    first.add_argument("--first-stage", default=None, choices=["bm25"], help="build the top-k with bm25s")
    g.add_argument("--top-k", type=_int_at_least(1), default=100)
    g.add_argument("--main-metric", default=None)
    g.add_argument("--qrels", action="append", type=_qrels_arg, default=[], metavar="NAME=PATH")
    g.add_argument("--limit-queries", type=_int_at_least(1), default=None)
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", type=Path, default=Path("results"))
    o.add_argument("--store", type=Path, default=None, help="SQLite judgement store (default: OUTPUT_DIR/store.sqlite)")
    o.add_argument("--dry-run", action="store_true", help="validate, count pairs and prompt tokens, load no model")
    o.add_argument("--allow-failed", type=_allow_failed, nargs="?", const="all", default=None, metavar="N|P%",
                   help="accept failed pairs (all, or up to N pairs or P%% of them); by default any failed pair "
                   f"ends the run with exit code {EXIT_FAILED_PAIRS} after the results are written")  # fmt: skip
    o.add_argument("--no-progress", action="store_true")
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
    check_model_args(args)
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
        progress=not args.no_progress,
        command_line=["rank1-eval", *sys.argv[1:]],
    )
    prepared = prepare(opts, model.mteb_model_meta.name)
    if args.dry_run:
        from rank1_eval.evaluate import run_dir, store_path_of
        from rank1_eval.preflight import check_run

        out = None if args.shard else run_dir(opts.output_dir, model.mteb_model_meta.name, prepared.task)
        report = dry_run_report(prepared, model)
        report["preflight_warnings"] = check_run(model, prepared, opts, out=out, store_path=store_path_of(opts))
        print(json.dumps(report, indent=2))
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
    return failed_pairs_exit(summary, args.allow_failed)


def failed_pairs_exit(summary: dict[str, Any], allow_failed: str | None) -> int:
    """0, or the banner and :data:`EXIT_FAILED_PAIRS` when more pairs failed than ``--allow-failed`` accepts."""
    from rank1_eval.preflight import failure_banner, failure_limit

    allowed = failure_limit(allow_failed, summary["pairs_total"])
    if summary["failed"] > allowed:
        print(failure_banner(summary, summary["provenance"]["store"], allowed), file=sys.stderr)
        return EXIT_FAILED_PAIRS
    return 0


def _quiet_libraries() -> None:
    """Our progress bar is the one that matters: silence the per-step bars of datasets/transformers."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rank1-eval", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="rerank one task's first stage with rank1 and write the result folder")
    add_model_args(run)
    add_run_args(run)
    run.set_defaults(func=cmd_run)
    from rank1_eval import compare, paper, report

    paper.add_reproduce_parser(sub)
    paper.add_table_parser(sub)
    compare.add_parser(sub)
    report.add_parser(sub)
    from rank1_eval.shards import add_merge_parser

    add_merge_parser(sub)
    add_store_parser(sub)
    return parser


def add_store_parser(sub: Any) -> None:
    p = sub.add_parser("store", help="check, salvage or clean a judgement store")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("check", help="SQLite's consistency check and the judgement counts (read-only)")
    c.add_argument("path", type=Path)
    c.add_argument("--full", action="store_true", help="integrity_check instead of the faster quick_check")
    c.set_defaults(func=cmd_store_check)
    s = actions.add_parser("salvage", help="copy every readable judgement of a damaged store into a new one")
    s.add_argument("path", type=Path)
    s.add_argument("--into", type=Path, required=True, help="the new store (or an existing one to add to)")
    s.set_defaults(func=cmd_store_salvage)
    d = actions.add_parser("drop-failed", help="delete the failed judgements so that a rerun scores them again")
    d.add_argument("path", type=Path)
    d.set_defaults(func=cmd_store_drop_failed)


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    import sqlite3

    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"rank1-eval: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except (OSError, sqlite3.Error, json.JSONDecodeError) as exc:  # a disk, a permission, a file: still one line
        if args.verbose:
            raise
        print(f"rank1-eval: error: {_describe(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        from rank1_eval.store import take_writer_failure

        failure = take_writer_failure()  # the store writer stopped the run: say why, not "interrupted"
        if failure is not None:
            print(f"rank1-eval: error: {_describe(failure)}", file=sys.stderr)
            return EXIT_ERROR
        print("rank1-eval: interrupted; finished judgements are in the store, rerun to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
