"""``rank1-eval merge`` and ``store`` (check, salvage, drop-failed, migrate): the judgement store's commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rank1_eval.cli.common import (
    EXIT_ERROR,
    HelpFormatter,
    _demo_defaults,
    _examples,
    _quiet_libraries,
    _run_options,
    add_model_args,
    add_run_args,
    build_model,
)


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
