"""``rank1-eval table``, ``compare``, ``report`` and ``export``: read result folders; none loads a model."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rank1_eval.cli.common import (
    HelpFormatter,
    _examples,
    _quiet_libraries,
    _set_arg,
    _table_choices,
)


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


def _where_arg(value: str) -> tuple[str, str]:
    if "=" not in value:
        raise argparse.ArgumentTypeError("--where takes KEY=VALUE (a setting in the run's summary.json)")
    key, wanted = value.split("=", 1)
    return key.strip(), wanted


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
