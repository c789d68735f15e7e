#!/usr/bin/env bash
# Issue 20's GPU figures in one device call (prepared by scripts/gpu_prepare.sh):
#
#   bash .gpu/gpu_bench.sh OUTDIR [TOTAL_SECONDS=480] [--small]
#
# run from the root of the checkout gpu_prepare.sh filled, after installing the carried wheels;
# the whole device command (carry [".whl", ".gpu"], timeout_s 540):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; bash .gpu/gpu_bench.sh $OUT 470
#
# Stages, most wanted first, each under its own `timeout` cut from TOTAL_SECONDS so the whole
# run ends in time and a stage that overruns loses only itself (each writes its JSON as it
# goes):
#   1. gpu_hf_compile.py: compile=True single stream, 135M and 1.7B (warm-up apart), against
#      the eager backend and raw generate (cuDNN attention on and off), then raw
#      generate with a static cache if time is left               (~40% of TOTAL)
#   2. bench_serve_hf.py: `llmkit serve` vs `transformers serve --continuous-batching`,
#      32 concurrent streamed requests, 128 tokens, 135M                      (~25% of TOTAL)
#   3. gpu_hf_bench.py (the shared benchmark) with what is left
# OUTDIR gets gpu_hf_compile.json, serve_hf.json, gpu_hf.json, the console of each stage
# (*.log) and the servers' logs.
set -u
OUT=${1:?usage: gpu_bench.sh OUTDIR [TOTAL_SECONDS] [--small]}
TOTAL=${2:-480}
SMALL=""
[ "${3:-}" = "--small" ] && SMALL="--small"
G=$(cd "$(dirname "$0")" && pwd)
cd "$G" || exit 1
export PYTHONPATH="$G${PYTHONPATH:+:$PYTHONPATH}"  # .gpu/llmkit before the checkout's
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
START=$(date +%s)
left() { echo $(( TOTAL - ($(date +%s) - START) )); }
mkdir -p "$OUT"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python3 -c "import torch, transformers, llmkit, fastapi, uvicorn, starlette, pydantic, openai; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'llmkit', llmkit.__version__, llmkit.__file__, 'fastapi', fastapi.__version__)" 2>&1
} | tee "$OUT/env.log"

# 1. compile=True
T1=$(( TOTAL * 40 / 100 ))
echo "== compile: timeout $T1 s (left $(left) s)"
timeout -k 5 "$T1" python3 gpu_hf_compile.py tok "$OUT" --budget $(( T1 - 25 )) $SMALL 2>&1 | tee "$OUT/compile.log" | grep -v '^\s*$' | tail -n 40

# 2. llmkit serve vs transformers serve (continuous batching), on the 135M folder stage 1 made
T2=$(( TOTAL * 25 / 100 ))
if [ "$(left)" -gt $(( T2 + 30 )) ]; then
    if [ -n "$SMALL" ]; then SRC=/tmp/gpu-models/tiny; MT=16; else SRC=/tmp/gpu-models/smollm2-135m; MT=128; fi
    DEVICE=cuda; DTYPE=bfloat16
    CB_MEMORY="--cb-memory 0.3"  # transformers-cb would take most of the GPU, llmkit's KV cache none
    python3 -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { DEVICE=cpu; DTYPE=float32; CB_MEMORY=""; }
    echo "== serve: timeout $T2 s (left $(left) s)"
    timeout -k 10 "$T2" python3 benchmarks/bench_serve_hf.py --source "$SRC" --device $DEVICE --dtype $DTYPE \
        --concurrency 32 --max-tokens $MT --rounds 3 --servers llmkit,transformers-cb \
        $CB_MEMORY --start-timeout $(( T2 * 2 / 3 )) --json "$OUT/serve_hf.json" 2>&1 | tee "$OUT/serve.log" | grep -v 'Loading weights' | tail -n 30
    cp /tmp/bench_serve_hf-*.log "$OUT/" 2>/dev/null
else
    echo "== serve: skipped, $(left) s left"
fi

# 3. the shared benchmark with the rest
T3=$(( $(left) - 10 ))
if [ "$T3" -gt 120 ]; then
    echo "== gpu_hf_bench: timeout $T3 s, budget $(( T3 - 110 )) s"
    timeout -k 5 "$T3" python3 gpu_hf_bench.py tok "$OUT" --budget $(( T3 - 110 )) $SMALL 2>&1 | tee "$OUT/bench.log" | tail -n 30
else
    echo "== gpu_hf_bench: skipped, $(left) s left"
fi
echo "== done in $(( $(date +%s) - START )) s"
