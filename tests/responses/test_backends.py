"""api="responses" on the openai SDK backend and the rest backend, mocked at the HTTP
boundary with respx (the real SDK and httpx code run), sync and async, with faults."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx

import llmkit.errors as E
from llmkit import AsyncClient, Client, RetryPolicy
from llmkit.streaming import StreamAccumulator
from llmkit.types import ChatRequest, FinishEvent, GenerationParams, normalize_messages

from .conftest import KEY, URLS, chat, make_backend, stream
from .kit import (
    call_item,
    failed_event,
    message_item,
    reasoning_item,
    response_obj,
    sse,
    sse_response,
    stream_events,
)

TEXT = [reasoning_item(["Thinking."]), message_item("Hello there!")]
TOOLS = [
    reasoning_item(["Need weather."], encrypted="gAAAA-enc"),
    call_item("get_weather", '{"city": "Paris"}'),
]


def request(messages: Any = "Hi", *, extra: Any = None, **params: Any) -> ChatRequest:
    return ChatRequest(
        model="gpt-5",
        messages=normalize_messages(messages),
        params=GenerationParams(**params),
        extra=extra or {},
    )


def sent(route: respx.Route, index: int = -1) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)  # type: ignore[no-any-return]


def accumulate(events: list[Any]) -> Any:
    acc = StreamAccumulator()
    for event in events:
        acc.add(event)
    return acc.response()


async def test_chat(backend: Any, mock: respx.MockRouter, url: str, mode: str) -> None:
    route = mock.post(url).mock(
        return_value=httpx.Response(
            200, json=response_obj(TEXT, usage=(9, 20, 12)), headers={"x-request-id": "req_1"}
        )
    )
    r = await chat(backend, request("Hi", max_tokens=32, reasoning_effort="low"), mode)
    assert (r.text, r.reasoning, r.id, r.request_id, r.finish_reason) == (
        "Hello there!",
        "Thinking.",
        "resp_abc",
        "req_1",
        "stop",
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.reasoning_tokens) == (
        9,
        20,
        12,
    )
    body = sent(route)
    assert body["input"] == "Hi"  # one user text: the API's plain-string form
    assert body["max_output_tokens"] == 32 and body["reasoning"] == {
        "effort": "low",
        "summary": "auto",
    }
    assert "stream" not in body and "messages" not in body
    assert route.calls[-1].request.headers["authorization"] == f"Bearer {KEY}"


async def test_stream_text_and_reasoning(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    route = mock.post(url).mock(
        return_value=sse_response(sse(stream_events(TEXT)), **{"x-request-id": "req_s"})
    )
    events = await stream(backend, request(), mode)
    r = accumulate(events)
    assert (r.text, r.reasoning, r.id, r.request_id) == (
        "Hello there!",
        "Thinking.",
        "resp_abc",
        "req_s",
    )
    assert isinstance(events[-1], FinishEvent) and events[-1].model == "gpt-5-2025-08-07"
    assert sent(route)["stream"] is True


async def test_stream_tool_calls_keep_encrypted_reasoning(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    mock.post(url).mock(return_value=sse_response(sse(stream_events(TOOLS, pieces=4))))
    r = accumulate(await stream(backend, request(extra={"store": False}), mode))
    assert [(c.id, c.name, c.parsed_arguments) for c in r.tool_calls] == [
        ("call_1", "get_weather", {"city": "Paris"})
    ]
    assert r.finish_reason == "tool_calls"
    assert (
        r.message.provider_data["openai_responses"]["reasoning_items"][0]["encrypted_content"]
        == "gAAAA-enc"
    )


@pytest.mark.parametrize("streamed", [False, True])
async def test_incomplete_is_length(
    backend: Any, mock: respx.MockRouter, url: str, mode: str, streamed: bool
) -> None:
    if streamed:
        events = stream_events(
            [message_item("Cut sh")], status="incomplete", incomplete="max_output_tokens"
        )
        mock.post(url).mock(return_value=sse_response(sse(events)))
        r = accumulate(await stream(backend, request(), mode))
    else:
        body = response_obj(
            [message_item("Cut sh")], status="incomplete", incomplete="max_output_tokens"
        )
        mock.post(url).mock(return_value=httpx.Response(200, json=body))
        r = await chat(backend, request(), mode)
    assert (r.text, r.finish_reason) == ("Cut sh", "length")


@pytest.mark.parametrize(
    ("tail", "error", "match"),
    [
        (
            lambda n: [failed_event("rate_limit_exceeded", "slow down", seq=n)],
            E.RateLimitError,
            "slow down",
        ),
        (
            lambda n: [failed_event("server_error", "upstream broke", seq=n)],
            E.ServerError,
            "upstream broke",
        ),
        (
            lambda n: [
                {
                    "type": "error",
                    "code": "invalid_prompt",
                    "message": "bad prompt",
                    "param": None,
                    "sequence_number": n,
                }
            ],
            E.BadRequestError,
            "bad prompt",
        ),
    ],
)
async def test_error_events_mid_stream_raise_typed_errors(
    backend: Any,
    mock: respx.MockRouter,
    url: str,
    mode: str,
    tail: Any,
    error: type[Exception],
    match: str,
) -> None:
    head = stream_events([message_item("Partial")], terminal=False)
    # The error arrives in its own piece, after text the caller already saw.
    mock.post(url).mock(return_value=sse_response([sse(head), sse(tail(len(head)))]))
    seen: list[Any] = []
    with pytest.raises(error, match=match):
        if mode == "sync":
            for event in backend.stream(request()):
                seen.append(event)
        else:
            async for event in backend.astream(request()):
                seen.append(event)
    assert "".join(e.text for e in seen) == "Partial"


async def test_drop_mid_stream_is_a_connection_error(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    head = sse(stream_events([message_item("Partial")], terminal=False))
    mock.post(url).mock(
        return_value=sse_response(head, fail=httpx.RemoteProtocolError("peer closed connection"))
    )
    with pytest.raises(E.ConnectionError):
        await stream(backend, request(), mode)


async def test_body_ending_without_terminal_event_is_cut_off(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    mock.post(url).mock(
        return_value=sse_response(sse(stream_events([message_item("Partial")], terminal=False)))
    )
    with pytest.raises(E.ConnectionError, match="before the reply was complete"):
        await stream(backend, request(), mode)


async def test_malformed_event_is_a_protocol_error(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    body = sse(stream_events(TEXT)[:3]) + b"event: response.output_text.delta\ndata: {not json\n\n"
    mock.post(url).mock(return_value=sse_response(body))
    with pytest.raises(E.ProtocolError):
        await stream(backend, request(), mode)


@pytest.mark.parametrize("streamed", [False, True])
async def test_http_errors(
    backend: Any, mock: respx.MockRouter, url: str, mode: str, streamed: bool
) -> None:
    err = {
        "error": {
            "message": "Rate limit reached",
            "type": "requests",
            "code": "rate_limit_exceeded",
        }
    }
    mock.post(url).mock(return_value=httpx.Response(429, json=err, headers={"retry-after": "7"}))
    call = stream(backend, request(), mode) if streamed else chat(backend, request(), mode)
    with pytest.raises(E.RateLimitError) as info:
        await call
    assert info.value.retry_after == 7
    mock.post(url).mock(return_value=httpx.Response(503, json={"error": {"message": "overloaded"}}))
    call = stream(backend, request(), mode) if streamed else chat(backend, request(), mode)
    with pytest.raises(E.ServerError, match="overloaded"):
        await call


async def test_failed_reply_without_stream_is_typed(
    backend: Any, mock: respx.MockRouter, url: str, mode: str
) -> None:
    body = response_obj(
        [], status="failed", error={"code": "rate_limit_exceeded", "message": "later"}
    )
    mock.post(url).mock(return_value=httpx.Response(200, json=body))
    with pytest.raises(E.RateLimitError, match="later"):
        await chat(backend, request(), mode)


async def test_max_tokens_floor_only_for_openai(
    kind: str, mock: respx.MockRouter, url: str
) -> None:
    route = mock.post(url).mock(return_value=httpx.Response(200, json=response_obj(TEXT)))
    backend = make_backend(kind)
    if kind == "openai":
        with pytest.raises(E.InvalidInputError, match="minimum of 16"):
            backend.chat(request(max_tokens=8))
        assert not route.called
    else:  # self-hosted servers take small budgets
        backend.chat(request(max_tokens=8))
        assert sent(route)["max_output_tokens"] == 8
    backend.close()


@pytest.mark.parametrize(
    ("spec", "options"),
    [("openai:gpt-5", {"api_key": KEY}), ("rest:m", {"base_url": "http://llm.test/v1"})],
)
def test_api_typo_is_a_config_error_naming_the_choices(spec: str, options: dict[str, Any]) -> None:
    with pytest.raises(E.ConfigError, match="'chat' or 'responses'"):
        Client(spec, api="respones", **options)


def test_api_responses_needs_the_openai_dialect() -> None:
    with pytest.raises(E.ConfigError, match="openai dialect only"):
        Client("rest:m", base_url="http://llm.test", dialect="tgi", api="responses")


# ------------------------------------------------------------------ through the client


@pytest.fixture(params=["openai", "rest"])
def client_spec(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], str]:
    if request.param == "openai":
        return "openai:gpt-5", {"api_key": KEY, "api": "responses"}, URLS["openai"]
    return (
        "rest:gpt-5",
        {"base_url": "http://llm.test/v1", "api": "responses", "verify": False},
        URLS["rest"],
    )


def test_client_retries_before_the_first_event(
    client_spec: tuple[str, dict[str, Any], str], mock: respx.MockRouter
) -> None:
    spec, options, url = client_spec
    route = mock.post(url).mock(
        side_effect=[
            httpx.Response(429, json={"error": {"message": "slow"}}, headers={"retry-after": "0"}),
            httpx.Response(503, json={"error": {"message": "busy"}}),
            sse_response(sse(stream_events(TEXT))),
        ]
    )
    retry = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0)
    with Client(spec, retry=retry, **options) as client, client.stream("Hi") as s:
        text = "".join(e.text for e in s)
    assert (text, s.response.id, route.call_count) == ("Hello there!", "resp_abc", 3)


def test_client_does_not_replay_a_stream_after_its_first_event(
    client_spec: tuple[str, dict[str, Any], str], mock: respx.MockRouter
) -> None:
    spec, options, url = client_spec
    head = sse(stream_events([message_item("Partial")], terminal=False))
    route = mock.post(url).mock(
        return_value=sse_response(head, fail=httpx.RemoteProtocolError("dropped"))
    )
    retry = RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0)
    with (
        Client(spec, retry=retry, **options) as client,
        pytest.raises(E.ConnectionError),
        client.stream("Hi") as s,
    ):
        for _ in s:
            pass
    assert route.call_count == 1


async def test_stateless_tool_round_trip_through_run_tools(
    client_spec: tuple[str, dict[str, Any], str], mock: respx.MockRouter
) -> None:
    spec, options, url = client_spec
    route = mock.post(url).mock(
        side_effect=[
            httpx.Response(200, json=response_obj(TOOLS, id="resp_1")),
            httpx.Response(
                200, json=response_obj([message_item("It is 21C in Paris.")], id="resp_2")
            ),
        ]
    )

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"21C in {city}"

    async with AsyncClient(spec, **options) as client:
        r = await client.run_tools("Weather in Paris?", tools=[get_weather], store=False)
    assert r.text == "It is 21C in Paris."
    second = sent(route, 1)
    assert second["store"] is False and second["include"] == ["reasoning.encrypted_content"]
    assert [i["type"] for i in second["input"]] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert second["input"][1]["encrypted_content"] == "gAAAA-enc"
    assert second["input"][3] == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": "21C in Paris",
    }
    assert sent(route, 0)["tools"][0]["name"] == "get_weather"


def test_previous_response_id_passes_through(
    client_spec: tuple[str, dict[str, Any], str], mock: respx.MockRouter
) -> None:
    spec, options, url = client_spec
    route = mock.post(url).mock(
        return_value=httpx.Response(200, json=response_obj(TEXT, id="resp_2"))
    )
    with Client(spec, **options) as client:
        r = client.chat("And then?", previous_response_id="resp_1", store=True)
    assert r.id == "resp_2"
    body = sent(route)
    assert (body["previous_response_id"], body["store"]) == ("resp_1", True)
    assert "include" not in body


def test_structured_output_uses_text_format(
    client_spec: tuple[str, dict[str, Any], str], mock: respx.MockRouter
) -> None:
    from pydantic import BaseModel

    class City(BaseModel):
        name: str

    spec, options, url = client_spec
    route = mock.post(url).mock(
        return_value=httpx.Response(200, json=response_obj([message_item('{"name": "Paris"}')]))
    )
    with Client(spec, **options) as client:
        r = client.chat("Capital of France?", response_model=City)
    assert r.parsed == City(name="Paris")
    fmt = sent(route)["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["schema"]["properties"]["name"]["type"] == "string"
    assert "response_format" not in sent(route)


# A key that no generic pattern recognises: only the backend's own secrets list masks it.
ODD_KEY = "plainsecretvalue0123456789"


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("spec", ["openai:gpt-5", "rest:gpt-5"])
def test_secrets_stay_out_of_errors(mock: respx.MockRouter, spec: str, streamed: bool) -> None:
    error = {"code": "server_error", "message": f"bad key {ODD_KEY} and {KEY}"}
    failed = response_obj([], status="failed", error=error)
    url = URLS[spec.split(":")[0]]
    if streamed:
        events = [
            *stream_events([], terminal=False),
            failed_event("server_error", error["message"]),
        ]
        mock.post(url).mock(return_value=sse_response(sse(events)))
    else:
        mock.post(url).mock(return_value=httpx.Response(200, json=failed))
    options: dict[str, Any] = {"base_url": "http://llm.test/v1"} if spec.startswith("rest") else {}
    with (
        Client(
            spec, api_key=ODD_KEY, api="responses", retry=RetryPolicy(max_attempts=1), **options
        ) as client,
        pytest.raises(E.ServerError) as info,
    ):
        if streamed:
            with client.stream("Hi") as s:
                for _ in s:
                    pass
        else:
            client.chat("Hi")
    for secret in (ODD_KEY, KEY):
        assert secret not in str(info.value) and secret not in repr(info.value.body)
        assert secret not in repr(info.value.__cause__)


async def test_azure_sends_to_its_responses_endpoint(mock: respx.MockRouter, mode: str) -> None:
    from llmkit.backends.openai import AzureOpenAIBackend

    route = mock.post("https://res.openai.azure.com/openai/responses").mock(
        return_value=httpx.Response(200, json=response_obj(TEXT))
    )
    backend = AzureOpenAIBackend(
        "my-gpt5",
        endpoint="https://res.openai.azure.com",
        api_version="2025-04-01-preview",
        api_key=KEY,
        api="responses",
    )
    req = request()
    req.model = ""  # the deployment name stands in
    try:
        r = await chat(backend, req, mode)
    finally:
        await backend.aclose()
    assert r.text == "Hello there!"
    sent_request = route.calls[-1].request
    assert sent_request.url.params["api-version"] == "2025-04-01-preview"
    assert sent_request.headers["api-key"] == KEY
    assert json.loads(sent_request.content)["model"] == "my-gpt5"


def test_api_is_a_backend_option_in_config_files() -> None:
    config = {"model": "openai:gpt-5", "options": {"api": "responses", "api_key": "k"}}
    with Client.from_config(config) as client:
        assert client.backend._settings.api == "responses"  # type: ignore[attr-defined]
