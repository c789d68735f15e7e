"""Reasoning over the REST backend (respx at the transport), with payloads shaped like each
server: vLLM / llama.cpp / DeepSeek (``reasoning_content``), OpenRouter / Groq / newer vLLM
(``reasoning``), a server without a reasoning parser (inline ``<think>``), TGI (tokens with
inline tags), Ollama (``message.thinking`` and the ``think`` request field); sync and async,
whole and streamed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmkit import ConfigError, Message, ToolCall, UnsupportedFeatureError
from llmkit.streaming import StreamAccumulator
from llmkit.types import ChatResponse

from .helpers import Mode, chat_request, completion_request, streamed

API = "http://llm.test/v1"
THOUGHT = "2 and 2 make 4."
USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 9,
    "total_tokens": 21,
    "completion_tokens_details": {"reasoning_tokens": 6},
}


def sse(*objects: dict[str, Any], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(**fields: Any) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": fields, "finish_reason": None}]}  # fmt: skip


def end_chunks(usage: dict[str, Any] | None = USAGE) -> list[dict[str, Any]]:
    last = delta()
    last["choices"][0]["finish_reason"] = "stop"
    return [last, {"id": "cmpl-1", "choices": [], "usage": usage}] if usage else [last]


def accumulate(events: list[Any]) -> ChatResponse:
    acc = StreamAccumulator()
    for event in events:
        acc.add(event)
    return acc.response()


# Each server's streamed reasoning, as it sends it.
STREAMS = {
    # vLLM --reasoning-parser (older) and DeepSeek: reasoning_content, content null meanwhile.
    "vllm": [delta(role="assistant", content=""), delta(reasoning_content="2 and 2 "),
             delta(reasoning_content="make 4.", content=None), delta(content="Four.")],
    # llama.cpp server: reasoning_content deltas, no role chunk, timings on chunks.
    "llama.cpp": [{**delta(reasoning_content="2 and 2 make 4."), "timings": {"predicted_n": 3}},
                  delta(content="Four.")],
    # OpenRouter, Groq, newer vLLM: "reasoning".
    "openrouter": [delta(role="assistant", reasoning="2 and 2 make 4.", content=""),
                   delta(content="Four.")],
    # No reasoning parser: the model's tags arrive in the content, split anywhere.
    "inline": [delta(content="<th"), delta(content="ink>\n2 and 2 make"), delta(content=" 4.\n</"),
               delta(content="think>\n\nFour.")],
}  # fmt: skip


@pytest.mark.parametrize("server", list(STREAMS))
async def test_openai_dialect_streams(
    server: str, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    body = sse(*STREAMS[server], *end_chunks())
    respx_mock.post(f"{API}/chat/completions").mock(return_value=streamed(body))
    events = await mode.stream(make_backend(), chat_request())
    assert "".join(e.text for e in events) == "Four."
    final = accumulate(events)
    assert (final.reasoning, final.text, final.usage.reasoning_tokens) == (THOUGHT, "Four.", 6)


@pytest.mark.parametrize(
    "message",
    [
        {"role": "assistant", "content": "Four.", "reasoning_content": THOUGHT},
        {"role": "assistant", "content": "Four.", "reasoning": THOUGHT, "reasoning_content": None},
        {"role": "assistant", "content": f"<think>\n{THOUGHT}\n</think>\n\nFour."},
    ],
    ids=["reasoning_content", "reasoning", "inline"],
)
async def test_openai_dialect_replies(
    message: dict[str, Any], mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    reply = {"id": "c", "model": "m", "usage": USAGE,
             "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}  # fmt: skip
    respx_mock.post(f"{API}/chat/completions").respond(json=reply)
    response = await mode.chat(make_backend(), chat_request())
    assert (response.reasoning, response.text, response.usage.reasoning_tokens) == (
        THOUGHT, "Four.", 6,
    )  # fmt: skip


async def test_reply_that_starts_inside_the_thinking_block(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    """DeepSeek-R1 served without a reasoning parser: its template opened ``<think>``, so
    the reply only closes it (``think_tags="open"``)."""
    pieces = [delta(content="2 and 2 make 4.\n</thi"), delta(content="nk>\n\nFour.")]
    respx_mock.post(f"{API}/chat/completions").mock(
        return_value=streamed(sse(*pieces, *end_chunks(None)))
    )
    final = accumulate(await mode.stream(make_backend(think_tags="open"), chat_request()))
    assert (final.reasoning, final.text) == (THOUGHT, "Four.")
    reply = {"choices": [{"message": {"content": "x</think>y"}, "finish_reason": "stop"}]}
    respx_mock.post(f"{API}/chat/completions").respond(json=reply)
    off = await mode.chat(make_backend(think_tags="off"), chat_request())
    assert (off.reasoning, off.text) == (None, "x</think>y")


async def test_openai_dialect_effort_and_round_trip(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    reply = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
    route = respx_mock.post(f"{API}/chat/completions").respond(json=reply)
    call = ToolCall(id="c1", name="add", arguments='{"a": 2, "b": 2}')
    messages = [
        Message.user("2+2?"),
        Message.assistant(tool_calls=[call], reasoning=THOUGHT),
        Message.tool("4", tool_call_id="c1"),
    ]
    await mode.chat(make_backend(), chat_request(messages, reasoning_effort="medium"))
    sent = json.loads(route.calls.last.request.content)
    assert sent["reasoning_effort"] == "medium"
    assert sent["messages"][1]["reasoning_content"] == THOUGHT


async def test_openai_dialect_completion_refuses_effort_before_sending(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{API}/completions").respond(json={})
    with pytest.raises(UnsupportedFeatureError):
        await mode.complete(make_backend(), completion_request(reasoning_effort="low"))
    assert not route.called


# -- TGI ----------------------------------------------------------------------------------

TGI = "http://tgi.test"


def token(text: str, details: dict[str, Any] | None = None) -> bytes:
    body = {"token": {"id": 1, "text": text, "special": False}, "details": details}
    return b"data:" + json.dumps(body).encode() + b"\n\n"


def opened(messages: list[dict[str, Any]]) -> str:
    """A DeepSeek-R1-style template: the generation prompt opens the thinking block."""
    return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|><think>\n"


async def test_tgi_native_inline_tags(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    details = {"finish_reason": "eos_token", "generated_tokens": 9, "input_length": 5}
    tokens = ["<", "think", ">\n", "2 and 2 ", "make 4.", "\n</", "think", ">\n\n", "Four."]
    payload = b"".join(token(t) for t in tokens[:-1]) + token(tokens[-1], details)
    respx_mock.post(f"{TGI}/generate_stream").mock(return_value=streamed(payload))
    backend = make_backend(dialect="tgi", base_url=TGI, template="chatml")
    final = accumulate(await mode.stream(backend, chat_request()))
    assert (final.reasoning, final.text) == (THOUGHT, "Four.")
    assert final.usage.completion_tokens == 9

    respx_mock.post(f"{TGI}/generate").respond(
        json={"generated_text": f"{THOUGHT}\n</think>\n\nFour.", "details": details}
    )
    inside = make_backend(dialect="tgi", base_url=TGI, template=opened)
    response = await mode.chat(inside, chat_request())
    assert (response.reasoning, response.text) == (THOUGHT, "Four.")
    # A raw completion is a continuation: its text is never read for reasoning.
    respx_mock.post(f"{TGI}/generate").respond(json={"generated_text": "<think>x</think>y"})
    raw = await mode.complete(inside, completion_request())
    assert (raw.reasoning, raw.text) == (None, "<think>x</think>y")


@pytest.mark.parametrize("template", [None, "chatml"])
async def test_tgi_refuses_effort_before_sending(
    template: str | None, mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.route(host="tgi.test").respond(json={})
    backend = make_backend(dialect="tgi", base_url=TGI, template=template)
    with pytest.raises(UnsupportedFeatureError, match="reasoning_effort"):
        await mode.chat(backend, chat_request(reasoning_effort="high"))
    with pytest.raises(UnsupportedFeatureError, match="reasoning_effort"):
        await mode.stream(backend, chat_request(reasoning_effort="none"))
    assert not route.called


# -- Ollama native ------------------------------------------------------------------------

OLLAMA = "http://ollama.test:11434"


def ollama_line(content: str = "", thinking: str | None = None, **extra: Any) -> bytes:
    message = {"role": "assistant", "content": content}
    if thinking is not None:
        message["thinking"] = thinking
    body = {"model": "qwen3", "message": message, "done": False, **extra}
    return json.dumps(body).encode() + b"\n"


async def test_ollama_thinking(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    final = {"done": True, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 9}
    body = ollama_line(thinking="2 and 2 ") + ollama_line(thinking="make 4.")
    body += ollama_line("Four.") + ollama_line(**final)
    route = respx_mock.post(f"{OLLAMA}/api/chat").mock(
        return_value=streamed(body, content_type="application/x-ndjson")
    )
    backend = make_backend("qwen3", dialect="ollama", base_url=OLLAMA)
    events = await mode.stream(backend, chat_request(reasoning_effort="low"))
    assert "".join(e.text for e in events) == "Four."
    assert (accumulate(events).reasoning, accumulate(events).text) == (THOUGHT, "Four.")
    assert json.loads(route.calls.last.request.content)["think"] is True

    respx_mock.post(f"{OLLAMA}/api/chat").respond(
        json={
            "model": "qwen3",
            "message": {"role": "assistant", "content": "Four.", "thinking": THOUGHT},
            **final,
        }
    )
    response = await mode.chat(backend, chat_request(reasoning_effort="none"))
    assert (response.reasoning, response.text) == (THOUGHT, "Four.")
    sent = json.loads(respx_mock.calls.last.request.content)
    assert sent["think"] is False
    # The reasoning goes back as the assistant message's "thinking".
    await mode.chat(backend, chat_request([Message.user("2+2?"), response.message, "and 3+3?"]))
    sent = json.loads(respx_mock.calls.last.request.content)
    assert sent["messages"][1] == {"role": "assistant", "content": "Four.", "thinking": THOUGHT}
    assert "think" not in sent


async def test_ollama_inline_tags_without_a_thinking_field(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    final = {"done": True, "done_reason": "stop"}
    body = (
        ollama_line("<think>\n2 and 2") + ollama_line(" make 4.</think>") + ollama_line("\nFour.")
    )
    respx_mock.post(f"{OLLAMA}/api/chat").mock(return_value=streamed(body + ollama_line(**final)))
    backend = make_backend("deepseek-r1", dialect="ollama", base_url=OLLAMA)
    events = await mode.stream(backend, chat_request())
    assert (accumulate(events).reasoning, accumulate(events).text) == (THOUGHT, "Four.")


async def test_ollama_named_levels(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    reply = {"model": "gpt-oss", "message": {"role": "assistant", "content": "ok"}, "done": True}
    route = respx_mock.post(f"{OLLAMA}/api/chat").respond(json=reply)
    backend = make_backend("gpt-oss", dialect="ollama", base_url=OLLAMA, think_levels=True)
    await mode.chat(backend, chat_request(reasoning_effort="high"))
    assert json.loads(route.calls.last.request.content)["think"] == "high"
    for effort in ("none", "minimal"):
        with pytest.raises(UnsupportedFeatureError, match=effort):
            await mode.chat(backend, chat_request(reasoning_effort=effort))
    assert route.call_count == 1
    with pytest.raises(ConfigError, match="think_levels"):
        make_backend(think_levels=True)


def test_rest_reasoning_settings_are_validated(make_backend: Any) -> None:
    with pytest.raises(ConfigError, match="think_tags"):
        make_backend(think_tags="sometimes")
    assert make_backend(think_tags="open").settings.think_tags == "open"
