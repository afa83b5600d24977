"""The flags and helpers every ``rank1-eval`` subcommand shares: the model flags (generated from
:mod:`rank1_eval.settings`), the run flags, the argument types, the exit codes and the help formatter.

The only place (with its sibling modules in :mod:`rank1_eval.cli`) that knows argparse."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
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


def failed_pairs_exit(summary: dict[str, Any], allow_failed: str | None) -> int:
    """0, or the banner and :data:`EXIT_FAILED_PAIRS` when more pairs failed than ``--allow-failed`` accepts."""
    from rank1_eval.preflight import failure_banner, failure_limit

    allowed = failure_limit(allow_failed, summary["pairs_total"])
    if summary["failed"] > allowed:
        print(failure_banner(summary, summary["provenance"]["store"], allowed), file=sys.stderr)
        return EXIT_FAILED_PAIRS
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


def _set_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--set takes NAME=VALUE")
    name, path = value.split("=", 1)
    return name.strip(), path


def _table_choices() -> str:
    from rank1_eval.paper.manifests import TABLE_NAMES

    return ", ".join(f"{n} ({i})" for i, n in enumerate(TABLE_NAMES, start=1))


# Each adds one subcommand to the parser (``add_run_parser``, ...); rank1_eval.cli fills it in --help's order.
SUBCOMMANDS: list[Callable[[Any, Sequence[argparse.ArgumentParser]], argparse.ArgumentParser]] = []


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
    for add in SUBCOMMANDS:
        add(sub, parents)
    return parser
