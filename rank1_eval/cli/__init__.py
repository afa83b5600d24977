"""``rank1-eval``: thin argument parsing over the Python API (flags mirror ``rank1(...)`` and ``RunOptions``).

The only package that knows argparse: every subcommand parses its flags here and calls plain functions
(``evaluate``, ``paper.reproduce``, ``compare.compare``, ``report.write_report``, ``store.merge_stores``).
Those are imported inside the ``cmd_*`` functions, so ``--help``, ``table``, ``compare`` and ``report``
never import mteb, torch or vLLM.

One module per family of subcommands: :mod:`.run` (run, reproduce), :mod:`.results` (table, compare, report,
export), :mod:`.sweep`, :mod:`.store` (merge, store ...); the flags they share (the model flags generated
from :mod:`rank1_eval.settings`, the run flags, the exit codes) live in :mod:`.common`. This module builds
the parser and runs a command.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rank1_eval.cli.common import (
    DEMO_TASK,
    EXIT_ERROR,
    EXIT_FAILED_PAIRS,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    MODEL_GROUPS,
    SUBCOMMANDS,
    HelpFormatter,
    Terminated,
    _sigterm_as_interrupt,
    add_model_args,
    add_run_args,
    build_model,
    build_parser,
    bundled_demo,
    check_model_args,
    failed_pairs_exit,
    model_kwargs,
)
from rank1_eval.cli.common import _describe as _describe
from rank1_eval.cli.results import (
    add_compare_parser,
    add_export_parser,
    add_report_parser,
    add_table_parser,
    cmd_compare,
    cmd_export,
    cmd_report,
    cmd_table,
)
from rank1_eval.cli.run import add_reproduce_parser, add_run_parser, cmd_reproduce, cmd_run
from rank1_eval.cli.store import (
    add_merge_parser,
    add_store_parser,
    cmd_merge,
    cmd_store_check,
    cmd_store_drop_failed,
    cmd_store_migrate,
    cmd_store_salvage,
)
from rank1_eval.cli.sweep import add_sweep_parser, cmd_sweep

# The subcommands, in the order ``rank1-eval --help`` lists them (common.build_parser adds them; run, reproduce and
# sweep parse a default command line through it, so it lives below them and they reach it without a cycle).
SUBCOMMANDS.extend(
    [
        add_run_parser,
        add_reproduce_parser,
        add_table_parser,
        add_compare_parser,
        add_report_parser,
        add_merge_parser,
        add_store_parser,
        add_export_parser,
        add_sweep_parser,
    ]
)

__all__ = [
    "DEMO_TASK",
    "EXIT_ERROR",
    "EXIT_FAILED_PAIRS",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "MODEL_GROUPS",
    "SUBCOMMANDS",
    "HelpFormatter",
    "Terminated",
    "add_compare_parser",
    "add_export_parser",
    "add_merge_parser",
    "add_model_args",
    "add_report_parser",
    "add_reproduce_parser",
    "add_run_args",
    "add_run_parser",
    "add_store_parser",
    "add_sweep_parser",
    "add_table_parser",
    "build_model",
    "build_parser",
    "bundled_demo",
    "check_model_args",
    "cmd_compare",
    "cmd_export",
    "cmd_merge",
    "cmd_report",
    "cmd_reproduce",
    "cmd_run",
    "cmd_store_check",
    "cmd_store_drop_failed",
    "cmd_store_migrate",
    "cmd_store_salvage",
    "cmd_sweep",
    "cmd_table",
    "failed_pairs_exit",
    "main",
    "model_kwargs",
]


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
