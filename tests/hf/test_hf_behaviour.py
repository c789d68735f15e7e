"""The model-independent part of the behavioural suite (tests/test_behaviour.py) for the hf
backend: the tiny Llama behind the real Client and AsyncClient, sync and async."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llmkit import ConfigError, UnsupportedFeatureError
from llmkit.types import TextDelta


@pytest.fixture
def hf(tiny_llama_dir: Path) -> dict[str, Any]:
    return {"model": f"hf:{tiny_llama_dir}", "device": "cpu"}


def _no_generate_threads(timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(t.name == "llmkit-hf-generate" for t in threading.enumerate()):
            return True
        time.sleep(0.01)
    return False


def test_plain_chat(driver: Any, hf: dict[str, Any]) -> None:
    response = driver.chat(hf, "Hello", max_tokens=6)
    assert response.text and response.finish_reason == "length"
    assert response.usage.completion_tokens == 6 and not response.usage.estimated
    assert response.backend.startswith("hf:")


def test_stream_equals_chat(driver: Any, hf: dict[str, Any]) -> None:
    whole = driver.chat(hf, "Tell me a story", max_tokens=12)
    events, streamed = driver.stream(hf, "Tell me a story", max_tokens=12)
    assert "".join(e.text for e in events) == whole.text == streamed.text
    assert streamed.usage.completion_tokens == whole.usage.completion_tokens
    assert streamed.finish_reason == whole.finish_reason
    assert any(isinstance(e, TextDelta) and e.text for e in events)


def test_stop_is_honoured(driver: Any, hf: dict[str, Any]) -> None:
    full = driver.chat(hf, "Tell me a story", max_tokens=24).text
    stop = full.split("\ufffd")[0][3:6]
    response = driver.chat(hf, "Tell me a story", max_tokens=24, stop=[stop])
    assert response.text == full[: full.find(stop)]
    assert response.finish_reason == "stop"


class CountingSlowSteps:
    """A logits processor that makes each decoding step take ``delay`` seconds and counts
    the steps, so a test can tell a stopped generation from one that ran out by itself."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        self.steps += 1
        time.sleep(self.delay)
        return scores


# The step count shows the generation stopped near where the caller left (the scheduler may
# have run a few steps ahead of the consumer), not at its 300th step; the wait is only for
# the thread to go, generous for a loaded machine (it returns as soon as it has).
LONG = {"max_tokens": 300, "min_new_tokens": 300}
STEP_DELAY, WAIT, STEPS_AHEAD = 0.02, 10.0, 20


def test_leaving_a_stream_early_stops_generation(driver: Any, hf: dict[str, Any]) -> None:
    steps = CountingSlowSteps(STEP_DELAY)
    events, _ = driver.stream(hf, "Hello", **LONG, logits_processor=[steps], stop_after=2)
    assert len(events) == 2
    assert _no_generate_threads(WAIT)
    assert steps.steps < STEPS_AHEAD, steps.steps


def test_backend_options_pass_through(driver: Any, hf: dict[str, Any]) -> None:
    plain = driver.chat(hf, "Tell me a story", max_tokens=16).text
    penalised = driver.chat(hf, "Tell me a story", max_tokens=16, repetition_penalty=5.0).text
    assert plain != penalised


def test_complete_on_a_trainer_checkpoint(driver: Any, trainer_checkpoint: Path) -> None:
    kwargs = {"model": f"hf:{trainer_checkpoint}", "device": "cpu"}
    response = driver.complete(kwargs, "The capital of", max_tokens=5)
    assert response.usage.completion_tokens == 5
    with pytest.raises(UnsupportedFeatureError, match=r"complete\(\)"):
        driver.chat(kwargs, "Hello")


def test_usage_errors_are_config_errors(driver: Any, tmp_path: Path, hf: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="no such folder"):
        driver.chat({"model": f"hf:{tmp_path / 'missing'}"}, "Hello")


# -- stream_complete: a raw prompt, streamed ---------------------------------------------


def test_stream_complete_equals_complete_on_a_trainer_checkpoint(
    driver: Any, trainer_checkpoint: Path
) -> None:
    kwargs = {"model": f"hf:{trainer_checkpoint}", "device": "cpu"}
    whole = driver.complete(kwargs, "The capital of", max_tokens=8)
    events, streamed = driver.stream_complete(kwargs, "The capital of", max_tokens=8)
    deltas = [e.text for e in events if isinstance(e, TextDelta) and e.text]
    assert len(deltas) > 1  # streamed piece by piece, not as one chunk
    assert "".join(deltas) == whole.text == streamed.text
    assert streamed.usage == whole.usage and not streamed.usage.estimated
    assert streamed.finish_reason == whole.finish_reason


def test_stream_complete_uses_no_chat_template(driver: Any, hf: dict[str, Any]) -> None:
    # The chat model's template is not applied: the prompt is continued as it is.
    whole = driver.complete(hf, "Once upon a time", max_tokens=10)
    events, streamed = driver.stream_complete(hf, "Once upon a time", max_tokens=10)
    assert "".join(e.text for e in events) == whole.text == streamed.text
    assert streamed.usage == whole.usage
    chat = driver.chat(hf, "Once upon a time", max_tokens=1)
    assert streamed.usage.prompt_tokens < chat.usage.prompt_tokens  # no role markers


def test_stream_complete_honours_stop(driver: Any, hf: dict[str, Any]) -> None:
    full = driver.complete(hf, "The capital of France", max_tokens=24).text
    # A stop string from the middle of the reply (none of the random model's stray bytes).
    stop = next(full[i : i + 3] for i in range(4, len(full)) if "\ufffd" not in full[i : i + 3])
    assert full.find(stop) > 0
    events, streamed = driver.stream_complete(
        hf, "The capital of France", max_tokens=24, stop=[stop]
    )
    assert "".join(e.text for e in events) == streamed.text == full[: full.find(stop)]
    assert streamed.finish_reason == "stop"


def test_leaving_a_completion_stream_early_stops_generation(
    driver: Any, hf: dict[str, Any]
) -> None:
    steps = CountingSlowSteps(STEP_DELAY)
    events, _ = driver.stream_complete(hf, "Hello", **LONG, logits_processor=[steps], stop_after=2)
    assert len(events) == 2
    assert _no_generate_threads(WAIT)
    assert steps.steps < STEPS_AHEAD, steps.steps
