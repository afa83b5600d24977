"""``rank1-eval``: thin argument parsing over the Python API (flags mirror ``rank1(...)`` and ``RunOptions``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEMO_TASK = "demo"


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean bad input or an unavailable resource: one clear line, no stack trace."""
    from rank1_eval.beir import DatasetError
    from rank1_eval.compare import CompareError
    from rank1_eval.engines import EngineError
    from rank1_eval.engines.device import DeviceError
    from rank1_eval.model import ModelLoadError
    from rank1_eval.paper import TableError
    from rank1_eval.prompts import PromptError
    from rank1_eval.runs import RunFileError
    from rank1_eval.scoring import TokenizerError
    from rank1_eval.store import StoreError
    from rank1_eval.tasks import TaskError

    return (
        DatasetError, EngineError, DeviceError, ModelLoadError, PromptError, RunFileError, TokenizerError,
        StoreError, TaskError, FileNotFoundError, TableError, CompareError,
    )  # fmt: skip


def bundled_demo() -> tuple[str, str, str]:
    """(task folder, run file, model folder) of the bundled demo: package data, so a wheel carries it too."""
    from rank1_eval._data import DEMO_TASK_DIR, MICRO_RANK1_DIR

    return str(DEMO_TASK_DIR), str(DEMO_TASK_DIR / "bm25s_top20.trec"), str(MICRO_RANK1_DIR)


def _qrels_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--qrels takes NAME=PATH")
    name, path = value.split("=", 1)
    return name, path


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model (mirrors rank1(...))")
    g.add_argument("--model", default=None, help="model id or local folder (default: jhu-clsp/rank1-7b)")
    g.add_argument("--revision", default=None)
    g.add_argument("--num-gpus", type=int, default=1, help="tensor parallel size")
    g.add_argument("--engine", default="auto", choices=["auto", "vllm", "transformers", "openai"],
                   help="openai: vLLM servers at --server-url (auto picks it when URLs are given)")  # fmt: skip
    g.add_argument("--device", default=None, help="cuda or cpu (default: cuda when visible, else cpu)")
    g.add_argument("--dtype", default=None, help="fp_options: float16 (GPU default), bfloat16, float32 (CPU default)")
    g.add_argument("--context-size", type=int, default=16000)
    g.add_argument("--max-output-tokens", type=int, default=8192)
    g.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    g.add_argument("--enforce-eager", action="store_true")
    g.add_argument("--max-num-seqs", type=int, default=None)
    g.add_argument("--trust-remote-code", action="store_true")
    g.add_argument("--scheduling", default="stream", choices=["stream", "chunked"],
                   help="stream (default): requests stream into the engine, each judgement stored when final; "
                   "chunked: the former synchronous chunks of --chunk-size pairs")  # fmt: skip
    g.add_argument("--chunk-size", type=int, default=None,
                   help="--scheduling chunked: pairs per engine call (default 1024; with servers 4 per request "
                   "slot, at least 256)")  # fmt: skip
    g.add_argument("--length-rule", default="reference", choices=["reference", "reserve_output"],
                   help="reference (default, as the paper ran): a passage is cut only when the prompt alone "
                   "leaves no room for the forced answer, each pair generates min(max_output_tokens, "
                   "context_size - prompt tokens); reserve_output: prompts cut to context_size - "
                   "max_output_tokens")  # fmt: skip
    g.add_argument("--ngram-speculation", type=int, default=0, metavar="K",
                   help="vLLM prompt-lookup (n-gram) speculative decoding with K draft tokens (GPU; 0 = off)")
    g.add_argument("--failed-score", default="0.5", help="score of a pair no pass could score, or 'raise'")
    g.add_argument("--skip-prompt", action="store_true", help="no dataset prompt (dataset_prompt=False)")
    g.add_argument("--prompt-set", default="code", choices=["code", "paper"])
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
    from rank1_eval.model import DEFAULT_MODEL, rank1

    device = args.device
    if device is None:
        device = "cuda" if _cuda_visible() else "cpu"
    dtype = args.dtype or ("float16" if device.startswith("cuda") else "float32")
    failed = args.failed_score if args.failed_score == "raise" else float(args.failed_score)
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
        scheduling=args.scheduling,
        length_rule=args.length_rule,
        ngram_speculation=args.ngram_speculation,
        server_urls=tuple(args.server_urls),
        api_key_env=args.api_key_env,
        max_concurrency=args.max_concurrency,
        request_timeout=args.request_timeout,
        max_retries=args.max_retries,
        data_parallel=args.data_parallel,
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
    g.add_argument("--run-file", default=None, help="first-stage run: rank1 JSON, TREC run or mteb predictions")
    g.add_argument("--first-stage", default=None, choices=["bm25"], help="build the top-k with bm25s")
    g.add_argument("--top-k", type=int, default=100)
    g.add_argument("--main-metric", default=None)
    g.add_argument("--qrels", action="append", type=_qrels_arg, default=[], metavar="NAME=PATH")
    g.add_argument("--limit-queries", type=int, default=None)
    o = p.add_argument_group("outputs")
    o.add_argument("--output-dir", type=Path, default=Path("results"))
    o.add_argument("--store", type=Path, default=None, help="SQLite judgement store (default: OUTPUT_DIR/store.sqlite)")
    o.add_argument("--dry-run", action="store_true", help="validate, count pairs and prompt tokens, load no model")
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
    _quiet_libraries()
    model = build_model(args)
    from rank1_eval.progress import ProgressDisplay

    display = ProgressDisplay(0, enabled=not args.no_progress and not args.dry_run)
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
        verbose=args.verbose,
        command_line=["rank1-eval", *sys.argv[1:]],
    )
    display.status(f"loading task {args.task}{' ' + args.subtask if args.subtask else ''} and its first stage")
    try:
        prepared = prepare(opts, model.mteb_model_meta.name)
    finally:
        display.close()
    if args.dry_run:
        print(json.dumps(dry_run_report(prepared, model), indent=2))
        return 0
    try:  # close() stops the vLLM servers of --data-parallel, also on errors
        if args.shard is not None:
            from rank1_eval.shards import run_shard, shard_message

            print(shard_message(run_shard(model, prepared, opts, args.shard)))
            return 0
        summary = evaluate(model, prepared, opts, progress=ProgressDisplay(prepared.n_pairs, enabled=opts.progress,
                                                                           started=display.started))  # fmt: skip
    finally:
        model.close()
    print(metric_table(summary))
    print(cost_line(summary))
    print(f"results: {summary['output_dir']}")
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
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log on screen, the engines' own output included (else in <result folder>/engine.log)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"rank1-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rank1-eval: interrupted; finished judgements are in the store, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
