"""Reasoning models on every backend: the reasoning text, ``reasoning_effort`` and the
reasoning token count, in whole replies and in streams.

Runs offline as it is: ``simulated()`` answers for the remote servers at the HTTP transport,
with replies shaped like each real server's (drop it to talk to real servers). ``--hf`` also
runs the in-process example on the embedded model (loading it takes a while the first time).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator

from llmkit import Client, UnsupportedFeatureError


def openai_example() -> None:
    # --8<-- [start:openai]
    client = Client("openai:gpt-5-mini")
    r = client.chat("Is 97 prime?", reasoning_effort="low")
    print(r.text)
    print(r.usage.reasoning_tokens)  # OpenAI counts the reasoning but does not send it
    # --8<-- [end:openai]


def vllm_example() -> None:
    # --8<-- [start:vllm]
    # vLLM started with --reasoning-parser (DeepSeek-R1, Qwen3, gpt-oss, ...)
    client = Client("rest:deepseek-r1", base_url="http://127.0.0.1:8000/v1")
    with client.stream("Is 97 prime?", reasoning_effort="high") as stream:
        for event in stream:
            if event.type == "reasoning":
                print(f"[thinking] {event.reasoning}")
            print(event.text, end="")  # "" for reasoning events
    print()
    print(stream.response.reasoning)
    # --8<-- [end:vllm]


def ollama_example() -> None:
    # --8<-- [start:ollama]
    client = Client("rest:qwen3", dialect="ollama")  # http://127.0.0.1:11434
    r = client.chat("Is 97 prime?", reasoning_effort="medium")  # sent as think=true
    print(r.reasoning)
    print(r.text)
    # --8<-- [end:ollama]


def tgi_example() -> None:
    # --8<-- [start:tgi]
    # TGI has no reasoning parser: <think>...</think> in the generated text is split off.
    client = Client("rest:qwq", dialect="tgi", base_url="http://127.0.0.1:8080", template="chatml")
    r = client.chat("Is 97 prime?")
    print(r.reasoning)
    print(r.text)
    # --8<-- [end:tgi]


def hf_example() -> None:
    # --8<-- [start:hf]
    client = Client("hf:smollm2")
    try:
        r = client.chat("Is 97 prime?", reasoning_effort="low", max_tokens=40)
    except UnsupportedFeatureError as exc:  # SmolLM2's chat template has no thinking switch
        print(exc)
        r = client.chat("Is 97 prime?", max_tokens=40)
    print(r.reasoning)  # None here; a Qwen3 folder (enable_thinking) gives its <think> text
    print(r.text)
    # --8<-- [end:hf]


def fake_example() -> None:
    # --8<-- [start:fake]
    from llmkit.testing import FakeBackend, Reply

    fake = FakeBackend([Reply("Yes, 97 is prime.", reasoning="Not divisible by 2, 3, 5, 7.")])
    client = Client(backend=fake)
    r = client.chat("Is 97 prime?", reasoning_effort="minimal")
    print(r.reasoning)
    print(fake.requests[0].params.reasoning_effort)
    # --8<-- [end:fake]


# ---------------------------------------------------------------------------- offline servers


def _sse(*deltas: dict[str, object]) -> bytes:
    chunks = [
        {"id": "c1", "model": "deepseek-r1", "choices": [{"index": 0, "delta": d}]} for d in deltas
    ]
    chunks.append({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + (
        b"data: [DONE]\n\n"
    )


@contextlib.contextmanager
def simulated() -> Iterator[None]:
    """Each server's reply, in its own shape, answered at the HTTP transport (respx)."""
    import httpx
    import respx

    os.environ.setdefault("OPENAI_API_KEY", "sk-simulated")
    answer = {"role": "assistant", "content": "Yes, 97 is prime."}
    with respx.mock(assert_all_called=False) as mock:
        mock.post("https://api.openai.com/v1/chat/completions").respond(
            json={
                "choices": [{"index": 0, "message": answer, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 12,
                    "completion_tokens": 90,
                    "total_tokens": 102,
                    "completion_tokens_details": {"reasoning_tokens": 64},
                },
            }
        )
        mock.post("http://127.0.0.1:8000/v1/chat/completions").respond(
            headers={"content-type": "text/event-stream"},
            content=_sse(
                {"reasoning_content": "97 is odd."},
                {"reasoning_content": " Not divisible by 3, 5 or 7."},
                {"content": "Yes, 97 is prime."},
            ),
        )
        mock.post("http://127.0.0.1:11434/api/chat").respond(
            json={
                "model": "qwen3",
                "done": True,
                "done_reason": "stop",
                "message": {**answer, "thinking": "√97 < 10; no divisor up to 7."},
            }
        )
        mock.post("http://127.0.0.1:8080/generate").respond(
            json={
                "generated_text": "<think>\nTry 2, 3, 5, 7: none divides 97.\n</think>\n\n"
                "Yes, 97 is prime.",
                "details": {"finish_reason": "eos_token"},
            }
        )
        mock.route(host="127.0.0.1").mock(side_effect=httpx.ConnectError)
        yield


if __name__ == "__main__":
    with simulated():
        for example in (openai_example, vllm_example, ollama_example, tgi_example):
            print(f"--- {example.__name__}")
            example()
    print("--- fake_example")
    fake_example()
    if "--hf" in sys.argv:
        print("--- hf_example")
        hf_example()
