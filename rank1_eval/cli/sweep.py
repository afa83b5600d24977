"""``rank1-eval sweep``: one task's pairs under a grid of settings, and the table of their rates."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rank1_eval.cli.common import (
    HelpFormatter,
    _demo_defaults,
    _examples,
    _int_at_least,
    _quiet_libraries,
    _run_options,
    build_model,
    build_parser,
)


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
