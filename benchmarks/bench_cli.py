"""Wall time of CLI commands that should answer at once (``--help``, ``table bright --paper``), plus the heavy
modules each one imported. Runs each command N times in fresh interpreters, interleaved, and prints the load
average beside the figures, because on a shared machine absolute seconds mean little.

    python benchmarks/bench_cli.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "--help": ["--help"],
    "table bright --paper": ["table", "bright", "--paper"],
}
HEAVY = ("mteb", "torch", "vllm", "transformers", "datasets", "sklearn", "scipy", "polars")
PROBE = (
    "import sys, runpy; sys.argv = ['rank1-eval', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('rank1_eval.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
    f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], file=sys.stderr)\n"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    heavy: dict[str, str] = {}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeat):
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "rank1_eval.cli", *argv], capture_output=True, text=True)
            times[name].append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {proc.stderr[-500:]}")
        loads.append(os.getloadavg()[0])
    for name, argv in COMMANDS.items():
        proc = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True)
        heavy[name] = next((line for line in proc.stderr.splitlines() if line.startswith("HEAVY")), proc.stderr[-300:])
    for name, ts in times.items():
        print(
            json.dumps(
                {
                    "command": f"rank1-eval {name}",
                    "runs": len(ts),
                    "median_s": round(statistics.median(ts), 3),
                    "min_s": round(min(ts), 3),
                    "max_s": round(max(ts), 3),
                    "heavy_modules": heavy[name],
                }
            )
        )
    print(json.dumps({"load_avg_1min": [round(x, 2) for x in loads], "cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
