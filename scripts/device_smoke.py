"""CUDA smoke test of the Transformers engine on the micro rank1 (run on a GPU machine; not a unit test).

Checks, on one machine: the engine loads on ``cuda`` in float32/bfloat16/float16; the rule gives the same
paths as the CPU float32 reference and scores close to it (exactly comparable in float32); ``rank1(...,
device="cuda")`` without ``fp_options`` runs in float16; the device checks refuse ``num_gpus`` larger than the
visible GPUs. Prints one JSON object; ``--out FILE`` also writes it.

    python scripts/device_smoke.py --out $OUT/smoke.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import MICRO_RANK1, demo_pairs  # noqa: E402

from rank1_eval.engines import EngineConfig, load_engine  # noqa: E402
from rank1_eval.engines.device import DeviceError  # noqa: E402
from rank1_eval.scoring import Scorer, ScoringConfig  # noqa: E402


def judge(device: str, dtype: str, pairs, config: ScoringConfig):
    started = time.perf_counter()
    engine = load_engine("transformers", EngineConfig(str(MICRO_RANK1), device=device, dtype=dtype, context_size=1024))
    loaded = time.perf_counter() - started
    scorer = Scorer(engine, config)
    t0 = time.perf_counter()
    judged = scorer.score(scorer.prepare([q for q, _ in pairs], [d for _, d in pairs]))
    elapsed = time.perf_counter() - t0
    info = engine.info()
    engine.close()
    return judged, {"load_s": round(loaded, 2), "score_s": round(elapsed, 2), **info}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    report: dict = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    pairs = demo_pairs(4, 12)
    for name, config in {"pass1": ScoringConfig(64, 1024), "pass2": ScoringConfig(3, 1024)}.items():
        ref, ref_info = judge("cpu", "float32", pairs, config)
        report[f"{name}_cpu_float32"] = {"paths": sorted({j.path for j in ref}), **ref_info}
        for dtype in ("float32", "bfloat16", "float16"):
            got, info = judge("cuda", dtype, pairs, config)
            report[f"{name}_cuda_{dtype}"] = {
                **info,
                "pairs": len(got),
                "same_paths": [a.path for a in got] == [b.path for b in ref],
                "same_reasoning": sum(a.reasoning == b.reasoning for a, b in zip(got, ref, strict=True)),
                "max_abs_score_diff_vs_cpu_fp32": max(abs(a.score - b.score) for a, b in zip(got, ref, strict=True)),
            }
    # the public API's own default dtype on CUDA (float16; float32 on CPU), through a real judge call
    from rank1_eval import rank1

    api = rank1(str(MICRO_RANK1), device="cuda", engine="transformers", context_size=1024, max_output_tokens=64)
    judged = api.judge(pairs[:4])
    report["api_default_dtype_cuda"] = {
        "dtype": api.dtype,
        "engine_dtype": api.engine.info().get("dtype"),
        "paths": sorted({j.path for j in judged}),
    }
    api.close()
    try:
        load_engine("transformers", EngineConfig(str(MICRO_RANK1), device="cuda", dtype="float32", num_gpus=64))
        report["num_gpus_check"] = "NOT refused"
    except DeviceError as exc:
        report["num_gpus_check"] = str(exc)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
