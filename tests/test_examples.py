"""Every example runs end to end, offline. The ones on the embedded model are slow."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str, timeout: float = 300) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_tool_loop_scripted_profile() -> None:
    assert run_example("tool_loop.py").strip() == "It is 21 degrees celsius in Paris."


def test_async_app_streams_over_sse() -> None:
    pytest.importorskip("starlette")
    from llmkit import AsyncClient
    from llmkit.server import run_in_thread
    from llmkit.testing import FakeBackend, Reply

    spec = importlib.util.spec_from_file_location("async_app", EXAMPLES / "async_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake = FakeBackend([Reply("Paris is the capital.", chunks=["Paris ", "is the ", "capital."])])
    app = module.create_app(AsyncClient(backend=fake))
    with run_in_thread(app) as url:
        assert "EventSource" in httpx.get(f"{url}/").text
        with httpx.stream("GET", f"{url}/ask", params={"q": "capital?"}, timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [
                json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")
            ]
    assert "".join(e.get("text", "") for e in events) == "Paris is the capital."
    assert events[-1] == {"done": True}
    assert fake.requests[0].messages[-1].text == "capital?"


@pytest.mark.slow
def test_qa_on_the_embedded_model() -> None:
    out = run_example("qa.py")
    assert "Paris" in out and "hf:smollm2" in out


# The 135M model's words are not pinned; what each example prints around them is, so a run
# that answers nothing, errors half-way or loses a turn fails.


@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="the hf extra (torch, transformers) is not installed: hf:minilm embeds in-process",
)
def test_rag_example_retrieves_with_the_embedded_embedding_model() -> None:
    # The scripted profile answers instantly; what is checked is the retrieval by hf:minilm.
    out = run_example("rag.py", "Which mountain is the highest in Japan?", "--profile", "scripted")
    lines = out.strip().split("\n")
    assert lines[0] == "context: Mount Fuji is the highest mountain in Japan, at 3,776 metres."
    assert lines[-1] == "[hf:minilm + fake:scripted]"


@pytest.mark.slow
def test_rag_example_answers_on_the_embedded_models() -> None:
    out = run_example("rag.py")
    assert out.startswith("context: The Eiffel Tower in Paris was completed in 1889")
    assert "answer: " in out and "[hf:minilm + hf:smollm2]" in out


@pytest.mark.slow
def test_generate_example_streams_text_and_counts_its_tokens() -> None:
    *text, summary = run_example("generate.py").rstrip("\n").split("\n")
    match = re.fullmatch(r"\[(\d+) tokens from hf:smollm2\]", summary)
    assert match and 0 < int(match[1]) <= 60, summary  # max_tokens=60 in the example
    assert "".join(text).strip()


@pytest.mark.slow
def test_translate_example_answers_each_phrase() -> None:
    lines = run_example("translate.py").strip().split("\n")
    assert [line.split(" -> ")[0] for line in lines] == ["Good morning", "See you tomorrow"]
    assert all(line.split(" -> ", 1)[1].strip() for line in lines), lines


@pytest.mark.slow
def test_code_assistant_example_keeps_both_turns() -> None:
    first, second = run_example("code_assistant.py").split("\n---\n")
    assert first.strip() and second.strip()


@pytest.mark.slow
def test_extraction_on_the_embedded_model() -> None:
    assert run_example("extract.py").strip() == "Person(name='Alice', age=30)"


@pytest.mark.slow
def test_tool_loop_on_the_embedded_model() -> None:
    # The call is forced and valid; the 135M model's answer then carries the tool's result.
    out = run_example("tool_loop.py", "--profile", "local")
    assert "21" in out


@pytest.mark.slow
def test_train_serve_call() -> None:
    pytest.importorskip("starlette")
    out = run_example("train_serve_call.py", "--steps", "40", timeout=600)
    assert "trained 40 steps" in out
    assert "prompt 'The cat' ->" in out


def test_reasoning_example_on_every_remote_backend() -> None:
    pytest.importorskip("respx")
    out = run_example("reasoning.py")
    assert "--- openai_example\nYes, 97 is prime.\n64\n" in out
    assert "[thinking] 97 is odd.\n" in out and "97 is odd. Not divisible by 3, 5 or 7.\n" in out
    assert "--- ollama_example\n√97 < 10; no divisor up to 7.\nYes, 97 is prime.\n" in out
    assert "--- tgi_example\nTry 2, 3, 5, 7: none divides 97.\nYes, 97 is prime.\n" in out
    assert out.endswith("--- fake_example\nNot divisible by 2, 3, 5, 7.\nminimal\n")


@pytest.mark.slow
def test_reasoning_example_on_the_embedded_model() -> None:
    out = run_example("reasoning.py", "--hf")
    assert "no thinking switch" in out and out.split("--- hf_example\n")[1].count("\n") >= 3


def _sections(path: Path) -> dict[str, str]:
    """The ``--8<-- [start:NAME]`` sections of an example, dedented."""
    import re
    import textwrap

    found = re.findall(
        r"# --8<-- \[start:(\w+)\]\n(.*?)\n\s*# --8<-- \[end:\1\]", path.read_text(), re.S
    )
    return {name: textwrap.dedent(body) for name, body in found}


def test_readme_reasoning_examples_are_the_ones_that_run() -> None:
    """The README shows the example's sections verbatim (the docs include them directly)."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    sections = _sections(EXAMPLES / "reasoning.py")
    assert set(sections) == {"openai", "vllm", "ollama", "tgi", "hf", "fake"}
    for name, body in sections.items():
        assert body in readme, name
    docs = (EXAMPLES.parent / "docs" / "reasoning.md").read_text()
    for name in sections:
        assert f'--8<-- "examples/reasoning.py:{name}"' in docs, name
