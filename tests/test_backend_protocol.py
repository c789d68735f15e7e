"""The backend protocol (llmkit.backends.base): a required part, optional abilities declared
as protocols, and capabilities that the client checks before it calls anything.

The third-party side (a backend from its own distribution with only the required part,
used by spec string) is in tests/test_third_party_backend.py.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import pytest

from llmkit import Client, UnsupportedFeatureError
from llmkit.backends.base import (
    Backend,
    BaseBackend,
    Capabilities,
    SupportsBatch,
    SupportsCompletion,
    SupportsEmbedding,
    SupportsLoad,
    SupportsServerURL,
)
from llmkit.testing import instant_retry
from llmkit.types import (
    BaseRequest,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    FinishEvent,
    GenerationRequest,
    Message,
    StreamEvent,
    TextDelta,
)

# -- one request hierarchy ---------------------------------------------------------------


def test_the_request_types_share_one_base() -> None:
    chat = ChatRequest("m", [Message.user("hi")], deadline=time.monotonic() + 60)
    completion = CompletionRequest("m", "Once", deadline=time.monotonic() - 1)
    embedding = EmbeddingRequest("m", ["a", "b"])
    assert all(isinstance(r, BaseRequest) for r in (chat, completion, embedding))
    assert isinstance(chat, GenerationRequest) and isinstance(completion, GenerationRequest)
    assert not isinstance(embedding, GenerationRequest)  # no generation params
    # remaining() is defined once, on the base, not copied per request type
    for cls in (ChatRequest, CompletionRequest, EmbeddingRequest):
        assert cls.remaining is BaseRequest.remaining
    remaining = chat.remaining()
    assert remaining is not None and 59 < remaining <= 60
    assert completion.remaining() == 0.0 and embedding.remaining() is None
    assert (chat.prompt_text(), completion.prompt_text(), embedding.prompt_text()) == (
        "hi",
        "Once",
        "a\nb",
    )


def test_the_shared_fields_are_keywords() -> None:
    with pytest.raises(TypeError):
        ChatRequest("m", [Message.user("hi")], {"x": 1})  # type: ignore[misc]
    request = CompletionRequest("m", "p", extra={"best_of": 2}, deadline=5.0)
    assert (request.extra, request.deadline, request.params.given()) == ({"best_of": 2}, 5.0, {})


# -- capabilities are checked before anything is sent ------------------------------------


class Counting(BaseBackend):
    """Implements every method, each counted, so a refusal can only come from the plan."""

    name = "counting"

    def __init__(self, capabilities: Capabilities) -> None:
        super().__init__("m")
        self.capabilities = capabilities
        self.calls: list[str] = []

    def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls.append("chat")
        return ChatResponse(message=Message.assistant("chat"))

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        self.calls.append("stream")
        yield TextDelta(delta="chat")
        yield FinishEvent()

    def complete(self, request: CompletionRequest) -> ChatResponse:
        self.calls.append("complete")
        return ChatResponse(message=Message.assistant("completed"))

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        self.calls.append("stream_complete")
        yield TextDelta(delta="completed")
        yield FinishEvent()


def test_a_raw_completion_is_refused_without_the_capability(driver) -> None:
    backend = Counting(Capabilities(completion=False))
    client = {"backend": backend, "retry": instant_retry()}
    with pytest.raises(UnsupportedFeatureError, match="does not support raw completion"):
        driver.complete(client, "Once")
    with pytest.raises(UnsupportedFeatureError, match="does not support raw completion"):
        driver.stream_complete(client, "Once")
    assert backend.calls == []  # refused by the plan: no method of the backend ran
    assert driver.chat(client, "hi").text == "chat"  # chat is the required part


def test_a_raw_completion_is_sent_with_the_capability(driver) -> None:
    backend = Counting(Capabilities(completion=True))
    client = {"backend": backend, "retry": instant_retry()}
    assert driver.complete(client, "Once").text == "completed"
    assert driver.stream_complete(client, "Once")[1].text == "completed"
    assert backend.calls == ["complete", "stream_complete"]


def test_a_stream_is_refused_without_the_streaming_capability(driver) -> None:
    backend = Counting(Capabilities(streaming=False, completion=True))
    client = {"backend": backend, "retry": instant_retry()}
    for method in (driver.stream, driver.stream_complete):
        with pytest.raises(UnsupportedFeatureError, match=r"capabilities\.streaming is off"):
            method(client, "hi")
    assert backend.calls == []
    assert driver.chat(client, "hi").text == "chat"


# -- the required part and the optional abilities ----------------------------------------


class ChatOnly:
    """The required part only, without BaseBackend."""

    name: ClassVar[str] = "chat-only"
    capabilities = Capabilities()

    def __init__(self) -> None:
        self.model = "m"

    @property
    def spec(self) -> str:
        return "chat-only:m"

    def chat(self, request: ChatRequest) -> ChatResponse:
        return ChatResponse(message=Message.assistant(request.messages[-1].text[::-1]))

    async def achat(self, request: ChatRequest) -> ChatResponse:
        return self.chat(request)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        yield TextDelta(delta=request.messages[-1].text[::-1])
        yield FinishEvent()

    async def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        for event in self.stream(request):
            yield event

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def test_a_backend_with_only_the_required_part_is_a_backend(driver) -> None:
    backend = ChatOnly()
    assert isinstance(backend, Backend)
    for ability in (
        SupportsCompletion,
        SupportsEmbedding,
        SupportsBatch,
        SupportsLoad,
        SupportsServerURL,
    ):
        assert not isinstance(backend, ability)
    client = {"backend": backend, "retry": instant_retry()}
    assert driver.chat(client, "abc").text == "cba"
    assert driver.stream(client, "abc")[1].text == "cba"
    with pytest.raises(UnsupportedFeatureError, match="'chat-only' does not support raw"):
        driver.complete(client, "abc")


def test_base_backend_declares_the_optional_methods_and_no_server() -> None:
    backend = Counting(Capabilities())
    assert isinstance(backend, SupportsCompletion) and isinstance(backend, SupportsEmbedding)
    assert isinstance(backend, SupportsServerURL) and backend.server_url is None
    assert not isinstance(backend, SupportsBatch) and not isinstance(backend, SupportsLoad)


def test_every_capability_is_each_flag_on() -> None:
    every = Capabilities.every()
    assert all(getattr(every, f.name) for f in dataclasses.fields(Capabilities))
    assert Capabilities.every() == every  # frozen and equal, so a backend may share it


class Batching(ChatOnly):
    name: ClassVar[str] = "batching"

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def batch(self, requests: Any) -> list[ChatResponse]:
        self.batches.append(len(requests))
        return [self.chat(r) for r in requests]

    async def abatch(self, requests: Any) -> list[ChatResponse]:
        return self.batch(requests)


def test_a_native_batch_is_found_through_the_protocol() -> None:
    backend = Batching()
    assert isinstance(backend, SupportsBatch)
    with Client(backend=backend, retry=instant_retry()) as client:
        answers = client.batch(["ab", "cd", "ef"], concurrency=3)
    assert [a.text for a in answers] == ["ba", "dc", "fe"]
    assert sum(backend.batches) == 3 and len(backend.batches) < 3  # sent together
