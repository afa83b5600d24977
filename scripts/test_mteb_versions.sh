#!/usr/bin/env bash
# rank1_eval against other mteb versions: scripts/test_mteb_versions.sh [VERSION ...]
#
# For each mteb VERSION (default: the floor of pyproject.toml's range and the newest mteb on PyPI), as a user who
# already has that mteb installed:
#   1. a throwaway venv that sees this machine's packages (--system-site-packages: torch, vLLM, transformers are
#      not downloaded again) with `pip install mteb==VERSION` in it;
#   2. `pip install` of the rank1_eval wheel (built here, pip's normal resolver, dependencies checked) — it must
#      leave that mteb in place: the script fails if pip changed it;
#   3. from a folder outside the checkout: the demo (`rank1-eval run --engine transformers`, the micro rank1)
#      and a baseline run (`--model mteb/baseline-random-cross-encoder`) on the same candidates, then
#      `rank1-eval compare` of the two.
# Venvs go under $RANK1_VENVS (default: a temporary folder, removed at the end). Needs the network for PyPI.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
FLOOR=$("$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from rank1_eval.mteb_compat import MTEB_FLOOR; print(MTEB_FLOOR)")
if [ $# -eq 0 ]; then
    NEWEST=$("$PY" -m pip index versions mteb 2>/dev/null | sed -n 's/^mteb (\(.*\))$/\1/p')
    set -- "$FLOOR" "$NEWEST"
fi
WORK=${RANK1_VENVS:-$(mktemp -d)}
[ -n "${RANK1_VENVS:-}" ] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONPATH VLLM_ENABLE_V1_MULTIPROCESSING

echo "== building the wheel"
rm -rf "$WORK/src" "$WORK/dist" && mkdir -p "$WORK/src"
cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/rank1_eval" "$WORK/src/"
"$PY" -m pip wheel -q --no-deps --no-build-isolation "$WORK/src" -w "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/rank1_eval-*.whl)
echo "$WHEEL"

for VERSION in "$@"; do
    echo "== mteb $VERSION"
    VENV="$WORK/mteb-$VERSION"
    rm -rf "$VENV"
    "$PY" -m venv --system-site-packages "$VENV"
    "$VENV/bin/pip" install -q "mteb==$VERSION"
    before=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('mteb'))")
    "$VENV/bin/pip" install "$WHEEL" | grep -E "^Requirement already satisfied: mteb|mteb-|^Successfully" || true
    after=$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('mteb'))")
    echo "mteb before the wheel: $before, after: $after"
    if [ "$before" != "$after" ] || [ "$after" != "$VERSION" ]; then
        echo "FAIL: installing rank1_eval changed mteb $VERSION to $after" >&2
        exit 1
    fi
    RUN="$WORK/run-$VERSION"
    rm -rf "$RUN" && mkdir -p "$RUN"
    (
        cd "$RUN"
        "$VENV/bin/rank1-eval" run --engine transformers --output-dir out --no-progress
        "$VENV/bin/rank1-eval" run --model mteb/baseline-random-cross-encoder --output-dir out --no-progress
        "$VENV/bin/rank1-eval" compare out/local__micro-rank1/Dl19MiniLocal_default \
            out/mteb__baseline-random-cross-encoder/Dl19MiniLocal_default --no-per-query
        "$VENV/bin/python" -c "import mteb, rank1_eval; print('imported mteb', mteb.__version__, 'from', mteb.__file__)"
    )
    echo "== mteb $VERSION: OK"
done
