"""OpenTelemetry spans (GenAI semantic conventions), in sync and async mode alike.

Every test passes its own SDK ``TracerProvider`` with an in-memory exporter through
``tracer_provider=``, so tests stay isolated and the global provider is never set.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import llmkit
from llmkit import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConfigError,
    OutputValidationError,
    ServerError,
    Usage,
    _telemetry,
)
from llmkit.backends.base import BaseBackend
from llmkit.testing import FakeBackend, FunctionBackend, Reply, instant_retry
from llmkit.types import ChatRequest, ChatResponse, Message

USAGE = Usage(prompt_tokens=9, completion_tokens=2)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    yield tp
    tp.shutdown()


def only_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    spans = exporter.get_finished_spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def everything_recorded(span: ReadableSpan) -> str:
    """Every attribute, event and status text of a span, as one string to search."""
    parts = [span.name, repr(attrs(span)), str(span.status.description)]
    for event in span.events:
        parts += [event.name, repr(dict(event.attributes or {}))]
    return "\n".join(parts)


# -- chat and complete ------------------------------------------------------------------


def test_chat_span_follows_the_genai_conventions(driver, provider, exporter) -> None:
    fake = FakeBackend([Reply("Paris.", usage=USAGE, finish_reason="stop")])
    response = driver.chat(
        {"backend": fake, "tracer_provider": provider, "temperature": 0.2},
        "What is the capital of France?",
        max_tokens=20,
        top_p=0.9,
        seed=7,
        stop=["\n\n"],
    )
    span = only_span(exporter)
    assert span.name == "chat fake-model"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "llmkit"
    assert span.instrumentation_scope.version == llmkit.__version__
    a = attrs(span)
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "fake"
    assert a["gen_ai.request.model"] == "fake-model"
    assert a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.request.top_p"] == 0.9
    assert a["gen_ai.request.max_tokens"] == 20
    assert a["gen_ai.request.seed"] == 7
    assert a["gen_ai.request.stop_sequences"] == ("\n\n",)
    assert a["gen_ai.request.stream"] is False
    assert a["gen_ai.response.model"] == "fake-model"
    assert a["gen_ai.response.id"] == response.id
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.usage.input_tokens"] == 9
    assert a["gen_ai.usage.output_tokens"] == 2
    assert a["llmkit.backend"] == "fake:fake-model"
    assert a["llmkit.attempts"] == 1
    assert "llmkit.usage.estimated" not in a
    # Content is never recorded.
    assert "capital" not in everything_recorded(span) and "Paris" not in everything_recorded(span)


def test_unset_options_are_not_recorded(driver, provider, exporter) -> None:
    driver.chat({"backend": FakeBackend(["ok"]), "tracer_provider": provider}, "hi")
    a = attrs(only_span(exporter))
    for name in ("temperature", "top_p", "max_tokens", "seed", "stop_sequences"):
        assert f"gen_ai.request.{name}" not in a
    assert a["llmkit.usage.estimated"] is True  # the fake reported no usage


def test_complete_is_a_text_completion_span(driver, provider, exporter) -> None:
    fake = FakeBackend([Reply(" upon a time", usage=USAGE)], model="base-model")
    driver.complete({"backend": fake, "tracer_provider": provider}, "Once", max_tokens=5)
    span = only_span(exporter)
    assert span.name == "text_completion base-model"
    assert attrs(span)["gen_ai.operation.name"] == "text_completion"
    assert attrs(span)["gen_ai.usage.output_tokens"] == 2


def test_the_span_is_current_while_the_backend_runs(driver, provider, exporter) -> None:
    seen: list[str] = []

    def answer(request: Any) -> str:
        current = trace.get_current_span()
        seen.append(getattr(current, "name", ""))
        return "ok"

    driver.chat({"backend": FunctionBackend(answer), "tracer_provider": provider}, "hi")
    assert seen == ["chat function-model"]
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached again afterwards


def test_the_span_is_a_child_of_the_callers_span(provider, exporter) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("handle-request") as parent:
        Client(backend=FakeBackend(["ok"]), tracer_provider=provider).chat("hi")
    llm = next(s for s in exporter.get_finished_spans() if s.name == "chat fake-model")
    assert llm.parent is not None
    assert llm.parent.span_id == parent.get_span_context().span_id


# -- failures, retries, fallbacks -------------------------------------------------------


def test_failure_sets_error_status_and_type(driver, provider, exporter) -> None:
    fake = FakeBackend([BadRequestError("prompt rejected", status_code=400)])
    with pytest.raises(BadRequestError):
        driver.chat({"backend": fake, "tracer_provider": provider}, "hi")
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    a = attrs(span)
    assert a["error.type"] == "BadRequestError"
    assert a["llmkit.attempts"] == 1
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "llmkit.errors.BadRequestError"
    assert "prompt rejected" in str(event.attributes["exception.message"])


def test_retries_are_span_events(driver, provider, exporter) -> None:
    fake = FakeBackend([ServerError("busy", status_code=503)] * 2 + [Reply("ok", usage=USAGE)])
    driver.chat({"backend": fake, "tracer_provider": provider, "retry": instant_retry()}, "hi")
    span = only_span(exporter)
    retries = [e for e in span.events if e.name == "llmkit.retry"]
    assert [e.attributes["llmkit.attempt"] for e in retries] == [1, 2]  # type: ignore[index]
    assert {e.attributes["error.type"] for e in retries} == {"ServerError"}  # type: ignore[index]
    assert attrs(span)["llmkit.attempts"] == 3
    assert span.status.status_code is StatusCode.UNSET


def test_retries_exhausted(driver, provider, exporter) -> None:
    fake = FakeBackend([ServerError("busy", status_code=503)])
    with pytest.raises(ServerError):
        driver.chat({"backend": fake, "tracer_provider": provider, "retry": instant_retry()}, "hi")
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "ServerError"
    assert attrs(span)["llmkit.attempts"] == 3
    assert len([e for e in span.events if e.name == "llmkit.retry"]) == 2


def test_fallback_names_the_backend_that_answered(driver, provider, exporter) -> None:
    primary = FakeBackend([ServerError("down", status_code=503)], model="primary")
    backup = Client(backend=FunctionBackend(lambda r: Reply("ok", usage=USAGE), model="backup"))
    driver.chat(
        {
            "backend": primary,
            "fallbacks": [backup],
            "retry": instant_retry(),
            "tracer_provider": provider,
        },
        "hi",
    )
    span = only_span(exporter)
    assert span.name == "chat backup"
    a = attrs(span)
    assert a["gen_ai.provider.name"] == "function"
    assert a["gen_ai.request.model"] == "backup"
    assert a["llmkit.backend"] == "function:backup"
    assert a["llmkit.attempts"] == 4  # 3 on the primary, 1 on the backup
    (fallback,) = [e for e in span.events if e.name == "llmkit.fallback"]
    assert dict(fallback.attributes or {}) == {
        "error.type": "ServerError",
        "llmkit.fallback.from": "fake:primary",
        "llmkit.fallback.to": "function:backup",
    }


class City(BaseModel):
    name: str


def test_structured_reasks_share_one_span(driver, provider, exporter) -> None:
    fake = FakeBackend(["not json", '{"name": "Paris"}'])
    response = driver.chat(
        {"backend": fake, "tracer_provider": provider}, "Capital?", response_model=City
    )
    assert response.parsed == City(name="Paris")
    span = only_span(exporter)
    assert attrs(span)["llmkit.attempts"] == 2
    assert span.status.status_code is StatusCode.UNSET


def test_structured_failure_is_an_error_span(driver, provider, exporter) -> None:
    with pytest.raises(OutputValidationError):
        driver.chat(
            {"backend": FakeBackend(["never json"]), "tracer_provider": provider},
            "Capital?",
            response_model=City,
        )
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "OutputValidationError"


# -- streams ----------------------------------------------------------------------------


def test_stream_span(driver, provider, exporter) -> None:
    fake = FakeBackend([Reply("Hello there", chunks=["Hel", "lo ", "there"], usage=USAGE)])
    _, response = driver.stream({"backend": fake, "tracer_provider": provider}, "hi")
    assert response.text == "Hello there"
    span = only_span(exporter)
    a = attrs(span)
    assert span.name == "chat fake-model"
    assert a["gen_ai.request.stream"] is True
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.response.id"] == response.id  # the same id, though the fake sent none
    assert "llmkit.request_id" not in a  # nor a request id
    assert a["gen_ai.usage.input_tokens"] == 9 and a["gen_ai.usage.output_tokens"] == 2
    assert isinstance(a["gen_ai.response.time_to_first_chunk"], float)
    assert 0 <= a["gen_ai.response.time_to_first_chunk"] < 5
    assert "llmkit.stream.closed_early" not in a
    assert span.status.status_code is StatusCode.UNSET


def test_stream_complete_is_a_streamed_text_completion_span(driver, provider, exporter) -> None:
    fake = FakeBackend([Reply(" upon a time", usage=USAGE)], model="base-model")
    kwargs = {"backend": fake, "tracer_provider": provider}
    _, response = driver.stream_complete(kwargs, "Once", max_tokens=5)
    assert response.text == " upon a time"
    span = only_span(exporter)
    a = attrs(span)
    assert span.name == "text_completion base-model"
    assert a["gen_ai.operation.name"] == "text_completion"
    assert a["gen_ai.request.stream"] is True and a["gen_ai.request.max_tokens"] == 5
    assert a["gen_ai.usage.output_tokens"] == 2
    assert isinstance(a["gen_ai.response.time_to_first_chunk"], float)
    assert span.status.status_code is StatusCode.UNSET


def test_sync_stream_span_ends_after_the_last_event(provider, exporter) -> None:
    fake = FakeBackend([Reply("a b c", chunks=["a", " b", " c"])])
    client = Client(backend=fake, tracer_provider=provider)
    with client.stream("hi") as stream:
        seen = 0
        for _ in stream:
            seen += 1
            assert exporter.get_finished_spans() == ()  # still open mid-stream
        assert len(exporter.get_finished_spans()) == 1  # ended with the stream, before close
    assert seen >= 3
    assert len(exporter.get_finished_spans()) == 1


async def test_async_stream_span_ends_after_the_last_event(provider, exporter) -> None:
    fake = FakeBackend([Reply("a b c", chunks=["a", " b", " c"])])
    client = AsyncClient(backend=fake, tracer_provider=provider)
    async with client.stream("hi") as stream:
        async for _ in stream:
            assert exporter.get_finished_spans() == ()
        assert len(exporter.get_finished_spans()) == 1
    assert len(exporter.get_finished_spans()) == 1
    await client.aclose()


def test_stream_closed_early_is_not_an_error(driver, provider, exporter) -> None:
    fake = FakeBackend([Reply("one two three", chunks=["one", " two", " three"])])
    events, _ = driver.stream({"backend": fake, "tracer_provider": provider}, "hi", stop_after=1)
    assert len(events) == 1
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.UNSET
    a = attrs(span)
    assert a["llmkit.stream.closed_early"] is True
    assert "gen_ai.response.finish_reasons" not in a
    assert "gen_ai.response.time_to_first_chunk" in a


def test_stream_never_iterated_ends_its_span_on_close(provider, exporter) -> None:
    client = Client(backend=FakeBackend(["hello"]), tracer_provider=provider)
    stream = client.stream("hi")
    assert exporter.get_finished_spans() == ()  # nothing starts until the stream opens
    with stream:
        pass
    assert attrs(only_span(exporter))["llmkit.stream.closed_early"] is True


def test_stream_failing_midway_is_an_error_span(driver, provider, exporter) -> None:
    reply = Reply(
        "one two three",
        chunks=["one", " two", " three"],
        fail_after=2,
        error=ServerError("dropped", status_code=502),
    )
    with pytest.raises(ServerError):
        driver.stream({"backend": FakeBackend([reply]), "tracer_provider": provider}, "hi")
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "ServerError"
    assert "llmkit.stream.closed_early" not in attrs(span)


def test_stream_failing_to_open_is_an_error_span(driver, provider, exporter) -> None:
    fake = FakeBackend([BadRequestError("nope", status_code=400)])
    with pytest.raises(BadRequestError):
        driver.stream({"backend": fake, "tracer_provider": provider}, "hi")
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["gen_ai.request.stream"] is True


# -- switched off, not configured, not installed ----------------------------------------


def test_tracing_false_makes_no_spans(driver, provider, exporter) -> None:
    kwargs = {"backend": FakeBackend(["ok"]), "tracer_provider": provider, "tracing": False}
    driver.chat(kwargs, "hi")
    driver.stream(kwargs, "hi")
    assert exporter.get_finished_spans() == ()


def test_sampled_out_calls_make_no_spans(driver, exporter) -> None:
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    driver.chat({"backend": FakeBackend(["ok"]), "tracer_provider": tp}, "hi")
    driver.stream({"backend": FakeBackend(["ok"]), "tracer_provider": tp}, "hi")
    assert exporter.get_finished_spans() == ()


def test_no_sdk_configured_drops_the_span_at_once() -> None:
    client = Client(backend=FakeBackend(["ok"]), tracer_provider=trace.NoOpTracerProvider())
    assert client._tracer is not None
    span = client._tracer.start("chat", client.backend, None, stream=False)
    assert span is None
    assert client.chat("hi").text == "ok"


def test_tracer_provider_without_opentelemetry_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_telemetry, "_otel", False)  # as if opentelemetry-api were absent
    assert Client(backend=FakeBackend(["ok"]))._tracer is None
    with pytest.raises(ConfigError, match=r"llmkit\[otel\]"):
        Client(backend=FakeBackend(["ok"]), tracer_provider=TracerProvider())


def test_import_llmkit_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, llmkit\n"
        "from llmkit import Client, AsyncClient\n"
        "from llmkit.testing import FakeBackend\n"
        "Client(backend=FakeBackend(['ok']), tracing=False).chat('hi')\n"
        "print('opentelemetry' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- provider names and servers ---------------------------------------------------------


def test_provider_names_map_to_well_known_values() -> None:
    assert _telemetry.provider_name("openai") == "openai"
    assert _telemetry.provider_name("azure") == "azure.ai.openai"
    assert _telemetry.provider_name("hf") == "hf"


def test_server_address_of_a_single_rest_replica(provider, exporter) -> None:
    from llmkit.backends.rest import RestBackend

    one = RestBackend("m", base_url="http://gpu-1:8000/v1")
    two = RestBackend("m", base_url=["http://gpu-1:8000/v1", "http://gpu-2:8000/v1"])
    try:
        assert _telemetry._server_attributes(one) == {
            "server.address": "gpu-1",
            "server.port": 8000,
        }
        assert _telemetry._server_attributes(two) == {}  # which replica answers is unknown
    finally:
        one.close()
        two.close()


class _Served(BaseBackend):
    """A third-party backend that names its server the declared way."""

    name = "served"

    def __init__(self, url: str | None) -> None:
        super().__init__("m")
        self._url = url
        self._base_url = "http://private-attribute:1234"  # private: never read

    @property
    def server_url(self) -> str | None:
        return self._url

    def chat(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(message=Message.assistant("hi"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://llm.internal:8443/v1", {"server.address": "llm.internal", "server.port": 8443}),
        ("https://llm.internal/v1", {"server.address": "llm.internal", "server.port": 443}),
        (None, {}),
    ],
)
def test_the_server_address_comes_from_server_url(provider, exporter, url, expected) -> None:
    with Client(backend=_Served(url), tracer_provider=provider) as client:
        client.chat("Hello")
    a = attrs(only_span(exporter))
    assert {k: v for k, v in a.items() if k.startswith("server.")} == expected


# -- through the real openai backend (respx at the HTTP boundary) -----------------------

BASE = "https://api.openai.com/v1"
SECRET = "sk-test-SECRET123"


@pytest.fixture
def openai_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[respx.MockRouter]:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def completion_body() -> dict[str, Any]:
    return {
        "id": "chatcmpl-otel42",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi!", "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def run_chat(mode: str, client_kwargs: dict[str, Any]) -> Any:
    if mode == "sync":
        with Client("openai:gpt-4o-mini", **client_kwargs) as client:
            return client.chat("Hello")

    async def go() -> Any:
        async with AsyncClient("openai:gpt-4o-mini", **client_kwargs) as client:
            return await client.chat("Hello")

    return asyncio.run(go())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_openai_backend_span(mode: str, openai_env, provider, exporter) -> None:
    openai_env.post("/chat/completions").respond(json=completion_body())
    run_chat(mode, {"api_key": SECRET, "tracer_provider": provider})
    span = only_span(exporter)
    a = attrs(span)
    assert span.name == "chat gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.id"] == "chatcmpl-otel42"
    assert a["gen_ai.usage.input_tokens"] == 12 and a["gen_ai.usage.output_tokens"] == 3
    assert a["server.address"] == "api.openai.com" and a["server.port"] == 443
    assert SECRET not in everything_recorded(span)


def sse_body() -> bytes:
    def chunk(choices: list[Any], **extra: Any) -> bytes:
        body = {"id": "chatcmpl-otel7", "model": "gpt-4o-mini-2024-07-18", "choices": choices}
        return b"data: " + json.dumps({**body, **extra}).encode() + b"\n\n"

    usage = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}
    return (
        chunk([{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}])
        + chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        + chunk([], usage=usage)
        + b"data: [DONE]\n\n"
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream", [False, True])
def test_openai_span_records_the_request_id(
    mode: str, stream: bool, openai_env, provider, exporter
) -> None:
    headers = {"x-request-id": "req_otel"}
    if stream:
        headers["content-type"] = "text/event-stream"
        reply = httpx.Response(200, headers=headers, content=sse_body())
    else:
        reply = httpx.Response(200, headers=headers, json=completion_body())
    openai_env.post("/chat/completions").mock(return_value=reply)
    kwargs = {"api_key": SECRET, "tracer_provider": provider}
    if mode == "sync":
        with Client("openai:gpt-4o-mini", **kwargs) as client:
            if stream:
                with client.stream("Hello") as s:
                    for _ in s:
                        pass
                response = s.response
            else:
                response = client.chat("Hello")
    else:

        async def go() -> Any:
            async with AsyncClient("openai:gpt-4o-mini", **kwargs) as client:
                if not stream:
                    return await client.chat("Hello")
                async with client.stream("Hello") as s:
                    async for _ in s:
                        pass
                return s.response

        response = asyncio.run(go())
    a = attrs(only_span(exporter))
    assert response.request_id == "req_otel" and a["llmkit.request_id"] == "req_otel"
    assert a["gen_ai.request.stream"] is stream
    assert (
        a["gen_ai.response.id"]
        == response.id
        == ("chatcmpl-otel7" if stream else "chatcmpl-otel42")
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_openai_401_records_no_secret(mode: str, openai_env, provider, exporter) -> None:
    echo = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}. Authorization: Bearer {SECRET}",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
            "param": SECRET,
        }
    }
    openai_env.post("/chat/completions").mock(
        return_value=httpx.Response(401, json=echo, headers={"x-request-id": "req_401"})
    )
    with pytest.raises(AuthenticationError):
        run_chat(mode, {"api_key": SECRET, "tracer_provider": provider})
    span = only_span(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "AuthenticationError"
    recorded = everything_recorded(span)
    assert "Incorrect API key provided" in recorded  # the (redacted) message is there
    assert "SECRET123" not in recorded
    assert "SECRET123" not in json.dumps(json.loads(span.to_json()))


def test_a_provider_configured_after_the_client_is_used() -> None:
    # Clients are often built at import time, before the application configures tracing;
    # the API's proxy tracer then forwards to the provider set later (a fresh process, so
    # the global provider of this one is never touched).
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "from llmkit import Client\n"
        "from llmkit.testing import FakeBackend\n"
        "client = Client(backend=FakeBackend(['ok']))\n"
        "client.chat('before')\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "client.chat('after')\n"
        "print([s.name for s in exporter.get_finished_spans()])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['chat fake-model']"
