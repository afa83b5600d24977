#!/usr/bin/env bash
# The seed interface: launch_job.sh MODEL DATASET SUBTASK [NUM_GPUS] [extra rank1-eval run args...]
#   MODEL     a rank1 checkpoint id (jhu-clsp/rank1-7b) or a local model folder; or a baseline: any mteb reranker
#             (BAAI/bge-reranker-v2-m3, mteb/baseline-random-cross-encoder) or a local CrossEncoder folder
#   DATASET   a task name (NevIR, BrightRetrieval, mFollowIR, SciFact, ...) or a BEIR-style folder
#   SUBTASK   e.g. biology, fas, eng-zho; "default" for none
#   NUM_GPUS  tensor-parallel size (default 1; rank1 only: a baseline with NUM_GPUS > 1 is an error)
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 MODEL DATASET SUBTASK [NUM_GPUS] [extra rank1-eval run args...]" >&2
    exit 2
fi
MODEL=$1; DATASET=$2; SUBTASK=$3; shift 3
NUM_GPUS=1
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then NUM_GPUS=$1; shift; fi

# the seed's vLLM environment
export VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
export VLLM_WORKER_MULTIPROC_METHOD=spawn

echo "== rank1_eval job =="
echo "host:    $(hostname)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "model:   $MODEL   dataset: $DATASET   subtask: $SUBTASK   gpus: $NUM_GPUS"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=index,name,memory.total,memory.used --format=csv || true
else
    echo "gpus:    none visible (nvidia-smi not found)"
fi
echo "memory:  $(free -h 2>/dev/null | awk '/^Mem:/ {print $2 " total, " $7 " available"}')"
echo "cpu:     $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"

PY=${PYTHON:-python}
SUB_ARGS=()
if [ "$SUBTASK" != "default" ]; then SUB_ARGS=(--subtask "$SUBTASK"); fi
exec "$PY" -m rank1_eval.cli run --model "$MODEL" --task "$DATASET" "${SUB_ARGS[@]}" --num-gpus "$NUM_GPUS" "$@"
