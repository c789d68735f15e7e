"""The TGI dialect over mocked HTTP: native /generate(_stream) with a template, the
OpenAI-compatible route without one, parameters, usage, stop reasons and errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from llmkit import errors
from llmkit.types import FinishEvent, UsageEvent

from .helpers import Mode, chat_request, completion_request, kinds, split_at, streamed, texts

ROOT = "http://tgi.test"


def tgi(make_backend: Any, **options: Any) -> Any:
    options.setdefault("base_url", ROOT)
    return make_backend("tgi-model", dialect="tgi", **options)


def token_event(
    text: str, *, special: bool = False, details: dict[str, Any] | None = None
) -> bytes:
    body = {
        "index": 1,
        "token": {"id": 1, "text": text, "logprob": -0.1, "special": special},
        "generated_text": None,
        "details": details,
    }
    return b"data:" + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


DETAILS = {"finish_reason": "eos_token", "generated_tokens": 3, "seed": None, "input_length": 11}
SAMPLE = (
    token_event("Bon")
    + token_event("jour ")
    + token_event("à tous")
    + token_event("</s>", special=True, details=DETAILS)
)


async def test_chat_without_template_uses_messages_api(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{ROOT}/v1/chat/completions").mock(
        return_value=httpx.Response(
            200,
            json={
                "id": "",
                "model": "tgi",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3},
            },
        )
    )
    backend = tgi(make_backend)
    assert not backend.capabilities.tools and backend.capabilities.completion
    response = await mode.chat(backend, chat_request(max_tokens=5))
    assert response.text == "Hi" and response.usage.total_tokens == 3
    assert json.loads(route.calls.last.request.content)["max_tokens"] == 5


async def test_chat_with_template_uses_generate(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{ROOT}/generate").mock(
        return_value=httpx.Response(
            200,
            json={
                "generated_text": "Paris.",
                "details": {"finish_reason": "stop_sequence", "generated_tokens": 2},
            },
            headers={"x-prompt-tokens": "17", "x-generated-tokens": "2"},
        )
    )
    backend = tgi(make_backend, template="chatml")
    request = chat_request(
        [{"role": "system", "content": "Be brief."}, "Capital of France?"],
        max_tokens=8,
        temperature=0,
        top_p=1.0,
        stop=["<|im_end|>"],
        seed=3,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": {"type": "string"}},
        },
        extra={"repetition_penalty": 1.1, "parameters": {"top_k": 4}},
    )
    response = await mode.chat(backend, request)
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "inputs": "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nCapital of France?<|im_end|>\n<|im_start|>assistant\n",
        "parameters": {
            "details": True,
            "max_new_tokens": 8,
            "do_sample": False,  # temperature 0 is greedy; TGI rejects temperature=0
            "stop": ["<|im_end|>"],
            "seed": 3,
            "grammar": {"type": "json", "value": {"type": "string"}},
            "repetition_penalty": 1.1,
            "top_k": 4,
        },
    }
    assert response.text == "Paris."
    assert response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (17, 2)
    assert not response.usage.estimated
    assert response.backend == "rest:tgi-model"


async def test_template_format_string_and_callable(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{ROOT}/generate").mock(
        return_value=httpx.Response(200, json=[{"generated_text": "ok"}])  # the list form
    )
    backend = tgi(make_backend, template="[{role}] {content}\n")
    response = await mode.chat(backend, chat_request("Hi", temperature=0.7, top_p=0.9))
    sent = json.loads(route.calls.last.request.content)
    assert sent["inputs"] == "[user] Hi\n[assistant] "
    assert sent["parameters"]["temperature"] == 0.7 and sent["parameters"]["top_p"] == 0.9
    assert response.text == "ok" and response.usage.estimated

    backend = tgi(make_backend, template=lambda msgs: "|".join(m["content"] for m in msgs) + "|>")
    await mode.chat(backend, chat_request(["a", "b"]))
    assert json.loads(route.calls.last.request.content)["inputs"] == "a|b|>"


async def test_template_rejects_tools(mode: Mode, make_backend: Any) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(errors.UnsupportedFeatureError):
        await mode.chat(tgi(make_backend, template="chatml"), chat_request(tools=[tool]))


async def test_complete_uses_generate(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(f"{ROOT}/generate").mock(
        return_value=httpx.Response(
            200,
            json={
                "generated_text": " a time",
                "details": {"finish_reason": "length", "generated_tokens": 2},
            },
        )
    )
    response = await mode.complete(tgi(make_backend), completion_request(max_tokens=2))
    assert json.loads(route.calls.last.request.content) == {
        "inputs": "Once upon",
        "parameters": {"details": True, "max_new_tokens": 2},
    }
    assert response.text == " a time" and response.finish_reason == "length"
    assert (
        response.usage.completion_tokens == 2 and response.usage.estimated
    )  # prompt side estimated


def summary(events: list[Any]) -> tuple[Any, ...]:
    usage = [e.usage.model_dump() for e in events if isinstance(e, UsageEvent)]
    assert isinstance(events[-1], FinishEvent)
    return texts(events), usage, events[-1].finish_reason


EXPECTED = (
    "Bonjour à tous",
    [{"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14, "estimated": False}],
    "stop",
)


async def test_stream_split_at_every_position(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    route = respx_mock.post(f"{ROOT}/generate_stream")
    backend = tgi(make_backend, template="chatml")
    for position in range(len(SAMPLE) + 1):
        route.mock(return_value=streamed(split_at(SAMPLE, position)))
        events = await mode.stream(backend, chat_request())
        assert summary(events) == EXPECTED, position
    assert kinds(events) == ["text", "text", "text", "usage", "finish"]


async def test_stream_length_and_missing_input_length(
    mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    payload = token_event("a") + token_event(
        "b", details={"finish_reason": "length", "generated_tokens": 2}
    )
    respx_mock.post(f"{ROOT}/generate_stream").mock(return_value=streamed(payload))
    events = await mode.stream(tgi(make_backend, template="chatml"), chat_request())
    assert events[-1].finish_reason == "length"
    usage = next(e for e in events if isinstance(e, UsageEvent)).usage
    assert usage.completion_tokens == 2 and usage.estimated


@pytest.mark.parametrize(
    ("error_type", "cls"),
    [
        ("generation", errors.ServerError),
        ("validation", errors.BadRequestError),
        ("overloaded", errors.RateLimitError),
    ],
)
async def test_error_inside_stream(
    error_type: str, cls: type[Exception], mode: Mode, make_backend: Any, respx_mock: Any
) -> None:
    payload = (
        token_event("a")
        + b'data:{"error":"Request failed","error_type":"'
        + error_type.encode()
        + b'"}\n\n'
    )
    respx_mock.post(f"{ROOT}/generate_stream").mock(return_value=streamed(payload))
    with pytest.raises(cls, match="Request failed"):
        await mode.stream(tgi(make_backend, template="chatml"), chat_request())


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            422,
            {
                "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096",
                "error_type": "validation",
            },
            errors.ContextLengthError,
        ),
        (429, {"error": "Model is overloaded", "error_type": "overloaded"}, errors.RateLimitError),
        (
            424,
            {"error": "Request failed during generation", "error_type": "generation"},
            errors.BadRequestError,
        ),
        (500, {"error": "CUDA error", "error_type": "generation"}, errors.ServerError),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_http_errors(
    status: int,
    body: Any,
    cls: type[Exception],
    streaming: bool,
    mode: Mode,
    make_backend: Any,
    respx_mock: Any,
) -> None:
    path = "/generate_stream" if streaming else "/generate"
    respx_mock.post(ROOT + path).mock(return_value=httpx.Response(status, json=body))
    backend = tgi(make_backend, template="chatml")
    with pytest.raises(cls, match=body["error"][:10]):
        if streaming:
            await mode.stream(backend, chat_request())
        else:
            await mode.chat(backend, chat_request())


async def test_malformed_and_dropped(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    route = respx_mock.post(f"{ROOT}/generate_stream")
    backend = tgi(make_backend, template="chatml")
    route.mock(return_value=streamed(token_event("a") + b"data:{oops\n\n"))
    with pytest.raises(errors.ProtocolError, match="oops"):
        await mode.stream(backend, chat_request())
    route.mock(
        return_value=streamed(
            [token_event("a"), token_event("b")], error=httpx.ReadError("reset"), fail_at=1
        )
    )
    with pytest.raises(errors.ConnectionError):
        await mode.stream(backend, chat_request())


async def test_malformed_plain_reply(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    respx_mock.post(f"{ROOT}/generate").mock(
        return_value=httpx.Response(200, json={"generated_text": 5})
    )
    with pytest.raises(errors.ProtocolError, match="generated_text"):
        await mode.chat(tgi(make_backend, template="chatml"), chat_request())


async def test_stream_cut_short(mode: Mode, make_backend: Any, respx_mock: Any) -> None:
    respx_mock.post(f"{ROOT}/generate_stream").mock(return_value=streamed(token_event("a")))
    with pytest.raises(errors.ConnectionError, match="before the reply was complete"):
        await mode.stream(tgi(make_backend, template="chatml"), chat_request())
