"""The time of a budget sweep against real runs at the same budgets, on the demo task (micro rank1).

One ``rank1-eval run --budgets`` at the largest budget (its sweep derives the smaller ones), then one real run
per smaller budget, each with a fresh store so it decodes. Prints, per budget: the main metric of both (they
must be equal: the sweep is exact), the engine seconds and wall seconds of both (wall: judging + mteb's metrics,
engine load excluded; the sweep's budgets share the run's loaded engine). Timings on a shared CPU are
noisy: read the ratios, not the absolute seconds.

    python benchmarks/bench_sweep.py [--budgets 4,8,16,32] [--max 64] [--engine vllm] [--out /tmp/bench_sweep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, budget: int, extra: list[str], engine: str) -> tuple[dict, float, Path]:
    cmd = [
        sys.executable,
        "-m",
        "rank1_eval.cli",
        "run",
        "--engine",
        engine,
        "--max-output-tokens",
        str(budget),
        "--output-dir",
        str(out),
        "--no-progress",
        "-q",
        *extra,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr)
    folder = Path(proc.stdout.strip().splitlines()[-1].removeprefix("results: "))
    return json.loads((folder / "summary.json").read_text()), seconds, folder


def _ratio(real: float, sweep: float) -> str:
    return f"{real / sweep:.1f}" if sweep >= 0.01 else "no engine work"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--budgets", default="4,8,16,32")
    p.add_argument("--max", type=int, default=64)
    p.add_argument("--engine", default="vllm")
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_sweep"))
    args = p.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    shutil.rmtree(args.out, ignore_errors=True)
    top, top_s, folder = _run(args.out / "sweep", args.max, ["--budgets", args.budgets], args.engine)
    sweep = {r["budget"]: r for r in json.loads((folder / "sweep.json").read_text())["budgets"]}
    print(
        f"run at {args.max} + sweep of {args.budgets}: {top_s:.1f}s in all (process); run wall "
        f"{top['run_wall_s']:.1f}s, engine {top['this_run']['engine_s']:.1f}s"
    )
    print(
        f"{'budget':>6} {'metric sweep':>12} {'metric real':>12} {'engine s sweep':>15} {'engine s real':>14} "
        f"{'wall s sweep':>13} {'wall s real':>12} {'real/sweep engine':>18}"
    )
    totals = [0.0, 0.0, 0.0, 0.0]
    processes = 0.0
    for b in budgets:
        real, seconds, _ = _run(args.out / f"real{b}", b, [], args.engine)
        processes += seconds
        s = sweep[b]
        eng_s, eng_r = s["sweep_engine_s"], real["this_run"]["engine_s"]
        wall_s, wall_r = s["sweep_wall_s"], real["run_wall_s"] - real["this_run"]["engine_load_s"]
        totals = [totals[0] + eng_s, totals[1] + eng_r, totals[2] + wall_s, totals[3] + wall_r]
        same = "==" if abs(s["main_score"] - real["main_score"]) <= 1e-9 else "!="
        print(
            f"{b:>6} {s['main_score']:>12.5f} {same}{real['main_score']:>10.5f} {eng_s:>15.2f} {eng_r:>14.2f} "
            f"{wall_s:>13.2f} {wall_r:>12.2f} {_ratio(eng_r, eng_s):>18}"
        )
    print(
        f"{'all':>6} {'':>12} {'':>12} {totals[0]:>15.2f} {totals[1]:>14.2f} {totals[2]:>13.2f} {totals[3]:>12.2f} "
        f"{_ratio(totals[1], totals[0]):>18}"
    )
    print(
        f"processes: the run at {args.max} with its sweep {top_s:.1f}s; the real runs at {args.budgets} "
        f"{processes:.1f}s more (each loads mteb, the task and the engine)"
    )


if __name__ == "__main__":
    main()
