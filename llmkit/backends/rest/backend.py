"""The ``rest`` backend: self-hosted model servers over HTTP, one or many replicas.

``Client("rest:my-model", base_url="http://gpu-1:8000/v1")`` talks to any server of one of
three dialects ("how to talk", see the ``dialect_*`` modules):

- ``openai`` (default): ``/v1/chat/completions``, ``/v1/completions`` as served by vLLM,
  llama.cpp server, Ollama's ``/v1``, ``transformers serve`` and ``llmkit serve``;
- ``tgi``: Text Generation Inference (native ``/generate`` with a ``template``, else its
  ``/v1/chat/completions``);
- ``ollama``: Ollama's native ``/api/chat`` and ``/api/generate`` (NDJSON streams).

"Where to connect" is this module: ``base_url`` may be a list of replicas, balanced
client-side (``balance="round_robin"`` or ``"least_in_flight"``). A replica that fails with a
connection error or a 5xx is skipped for ``cooldown`` seconds and the request fails over to
the next replica -- for a stream, only before the caller has seen an event -- before the error
reaches the client's retry policy. :meth:`RestBackend.health` probes every replica.

Every decision of a call (which replica, budgets, errors, failover, reading a stream) is
the I/O-free :mod:`.exchange`, shared by the sync and async methods here, which only send
and read. The HTTP clients come from :mod:`llmkit._http` (pooling, proxies from the
environment, TLS options) and are built lazily, one sync and one async, so constructing a
backend does no I/O.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from dataclasses import fields
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..._http import CallBudget, build_async_client, build_client
from ...timeouts import Timeout
from ...types import (
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamEvent,
)
from .._openai_wire import ThinkTags
from ..base import BaseBackend, validate_options
from .dialect_ollama import OllamaDialect
from .dialect_openai import OpenAIDialect
from .dialect_responses import ResponsesDialect
from .dialect_tgi import TEMPLATES, TGIDialect
from .exchange import AnyRequest, Probe, Shell
from .replicas import Balance, Replica, ReplicaHealth, ReplicaSet
from .wire import Dialect, WireCall, WireOptions

__all__ = ["ReplicaHealth", "RestBackend", "RestSettings"]

DialectName = Literal["openai", "tgi", "ollama"]

_DIALECTS: dict[str, type[Dialect]] = {
    "openai": OpenAIDialect,
    "tgi": TGIDialect,
    "ollama": OllamaDialect,
}
_DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434"}
ENV_BASE_URL = "LLMKIT_REST_BASE_URL"  # one URL, or several separated by commas
ENV_API_KEY = "LLMKIT_REST_API_KEY"


class RestSettings(BaseModel):
    """Options of the ``rest`` backend (``RestBackend(model, **options)``).

    ``base_url``: one URL or a list of replica URLs. If the last path segment is a version
    (``/v1``, ``/v2``, ``/v1beta``) the URL is the OpenAI-compatible API base and the server
    root is the URL without it; otherwise the URL is the server root and the API base is
    ``<root>/v1``. So ``http://host:8000`` and ``http://host:8000/v1`` are equivalent; native
    TGI and Ollama endpoints and ``/health`` live on the root. When not given it is read
    from ``LLMKIT_REST_BASE_URL`` (comma-separated for replicas), else defaults to
    ``http://127.0.0.1:11434`` for the ollama dialect; the openai and tgi dialects need one.
    ``api_key`` likewise falls back to ``LLMKIT_REST_API_KEY``.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    base_url: list[str] | None = None
    dialect: DialectName = "openai"
    api: Literal["chat", "responses"] = Field(
        default="chat", description="openai dialect: chat via /v1/chat/completions or /v1/responses"
    )
    api_key: SecretStr | None = None
    auth_header: str = Field(
        default="authorization",
        description="header carrying api_key: 'authorization' sends 'Bearer <key>', any other "
        "header name (e.g. 'x-api-key') sends the bare key",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="extra headers on every request"
    )
    timeout: Timeout = Field(
        default_factory=Timeout,
        description="default budgets of the HTTP clients (each call passes its own)",
    )
    verify: bool | str = Field(default=True, description="TLS verification, or a CA bundle path")
    http2: bool = Field(default=False, description="HTTP/2 (needs the h2 package)")
    max_connections: int = Field(default=100, ge=1)
    max_keepalive_connections: int = Field(default=20, ge=0)
    balance: Balance = "round_robin"
    cooldown: float = Field(default=30.0, ge=0, description="seconds a failed replica is skipped")
    failover: bool = Field(default=True, description="retry on the next replica after a failure")
    stream_usage: bool = Field(
        default=True,
        description="ask OpenAI-compatible servers for usage in streams (stream_options); "
        "turn off for servers that reject the field",
    )
    template: str | Callable[[list[dict[str, Any]]], str] | None = Field(
        default=None,
        description="tgi only: render chat to a prompt for /generate -- a preset "
        f"({', '.join(TEMPLATES)}), a format string with {{role}} and {{content}}, or a callable",
    )
    schema_format: Literal["json_schema", "json_object"] = Field(
        default="json_schema",
        description="openai dialect: how a JSON schema is asked for -- OpenAI's "
        "{'type': 'json_schema', 'json_schema': {...}}, or {'type': 'json_object', 'schema': "
        "{...}} for servers that only take that form (llama-cpp-python answers the first with "
        "a 500)",
    )
    keep_alive: str | float | None = Field(
        default=None, description="ollama only: how long the server keeps the model loaded"
    )
    think_tags: ThinkTags = Field(
        default="auto",
        description="openai and tgi: how <think> tags in the reply text are read -- 'auto' "
        "(a reply starting with <think> holds reasoning up to </think>), 'open' (the server's "
        "chat template opened the tag: the reply starts inside the reasoning), 'off'",
    )
    think_levels: bool = Field(
        default=False,
        description="ollama only: the model takes named thinking levels (gpt-oss): "
        "reasoning_effort low/medium/high is sent as think='low'/... instead of think=true",
    )

    @field_validator("base_url", mode="before")
    @classmethod
    def _urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if value is None:
            return None
        urls = list(value)
        if not urls:
            raise ValueError("give at least one URL")
        for url in urls:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
            try:
                httpx.URL(url)
            except httpx.InvalidURL as exc:
                raise ValueError(f"{url!r} is not a valid URL: {exc}") from None
        return urls

    @field_validator("http2")
    @classmethod
    def _h2_installed(cls, value: bool) -> bool:
        # Checked here, not at the first request: a missing extra is a configuration error.
        if value and importlib.util.find_spec("h2") is None:
            raise ValueError('HTTP/2 needs the h2 package: pip install "httpx[http2]"')
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Timeout:
        return Timeout.coerce(value)

    @model_validator(mode="after")
    def _dialect_options(self) -> RestSettings:
        if self.template is not None:
            if self.dialect != "tgi":
                raise ValueError("'template' applies to the tgi dialect only")
            custom = isinstance(self.template, str) and self.template not in TEMPLATES
            if custom and "{content}" not in str(self.template):
                raise ValueError(
                    f"template must be a preset ({', '.join(TEMPLATES)}) or a format string "
                    "with {role} and {content}"
                )
        if self.keep_alive is not None and self.dialect != "ollama":
            raise ValueError("'keep_alive' applies to the ollama dialect only")
        if self.api != "chat" and self.dialect != "openai":
            raise ValueError("api='responses' applies to the openai dialect only")
        if self.think_levels and self.dialect != "ollama":
            raise ValueError("'think_levels' applies to the ollama dialect only")
        if self.base_url is None and self.dialect not in _DEFAULT_URLS:
            raise ValueError(
                f"the {self.dialect} dialect needs base_url, e.g. base_url='http://127.0.0.1:8000/v1'"
            )
        return self


class RestBackend(BaseBackend):
    """A self-hosted server (or a set of replicas) reached over HTTP with llmkit's own httpx
    clients. See the module docstring and :class:`RestSettings` for the options."""

    name = "rest"

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        # The conventional environment variables fill what the caller left out (so a spec
        # like "rest:llama3" in a fallback list works without options).
        if options.get("base_url") is None and os.environ.get(ENV_BASE_URL):
            options["base_url"] = [
                u.strip() for u in os.environ[ENV_BASE_URL].split(",") if u.strip()
            ]
        if options.get("api_key") is None and os.environ.get(ENV_API_KEY):
            options["api_key"] = os.environ[ENV_API_KEY]
        self.settings = validate_options(RestSettings, self.name, options)
        s = self.settings
        self._replicas = ReplicaSet(
            s.base_url or [_DEFAULT_URLS[s.dialect]], balance=s.balance, cooldown=s.cooldown
        )
        dialect = ResponsesDialect if s.api == "responses" else _DIALECTS[s.dialect]
        # The dialect reads the settings of the same names as WireOptions' fields.
        wire = {f.name: getattr(s, f.name) for f in fields(WireOptions) if f.name != "spec"}
        self._dialect = dialect(WireOptions(spec=self.spec, **wire))
        self.capabilities = self._dialect.capabilities
        key = s.api_key.get_secret_value() if s.api_key is not None else None
        self._secrets: tuple[str, ...] = (key,) if key else ()
        self._headers = dict(s.headers)
        if key:
            header = s.auth_header.lower()
            self._headers[header] = f"Bearer {key}" if header == "authorization" else key
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._aclient: httpx.AsyncClient | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None
        self._shell = Shell(
            model=model,
            spec=self.spec,
            replicas=self._replicas,
            secrets=self._secrets,
            failover=s.failover,
        )

    def __repr__(self) -> str:
        urls = ", ".join(r.display for r in self._replicas.replicas)
        dialect = self.settings.dialect
        return f"RestBackend(model={self.model!r}, dialect={dialect!r}, base_url=[{urls}])"

    @property
    def replicas(self) -> list[Replica]:
        """The replicas with their live state (in-flight requests, cool-down)."""
        return list(self._replicas.replicas)

    # ------------------------------------------------------------------ HTTP clients

    def _client_options(self) -> dict[str, Any]:
        s = self.settings
        return {
            "headers": self._headers,
            "timeout": s.timeout,
            "verify": s.verify,
            "http2": s.http2,
            "limits": httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive_connections,
                keepalive_expiry=30.0,
            ),
        }

    def _sync_client(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = build_client(**self._client_options())
                client = self._client
        return client

    def _async_client(self) -> httpx.AsyncClient:
        # An AsyncClient's pooled connections belong to the event loop that opened them, so
        # a call from another loop (asyncio.run twice, a test per loop) gets a fresh client.
        loop = asyncio.get_running_loop()
        client = self._aclient
        if client is None or self._aclient_loop is not loop:
            client = self._aclient = build_async_client(**self._client_options())
            self._aclient_loop = loop
        return client

    def close(self) -> None:
        """Close the HTTP clients (a later call builds new ones)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()
        aclient, loop = self._aclient, self._aclient_loop
        self._aclient = self._aclient_loop = None
        if (
            aclient is not None
            and loop is not None
            and not loop.is_closed()
            and not loop.is_running()
        ):
            loop.run_until_complete(aclient.aclose())
        # An async client whose loop is gone (or running: use aclose()) is dropped as is.

    async def aclose(self) -> None:
        """Close the HTTP clients from async code."""
        aclient, loop = self._aclient, self._aclient_loop
        self._aclient = self._aclient_loop = None
        if aclient is not None and loop is asyncio.get_running_loop():
            await aclient.aclose()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ calls
    # The drivers below only do I/O; every decision (which replica, budgets, errors,
    # failover, stream parsing) is the shared, I/O-free Shell/Attempt of .exchange.

    def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat call (with failover across replicas)."""
        response: ChatResponse = self._send(self._dialect.chat(request, stream=False), request)
        return response

    def complete(self, request: CompletionRequest) -> ChatResponse:
        """One raw completion call (``/v1/completions``, TGI ``/generate``, Ollama
        ``/api/generate``)."""
        response: ChatResponse = self._send(self._dialect.complete(request, stream=False), request)
        return response

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """One batch of texts to vectors: ``/v1/embeddings``, TEI ``/embed`` or Ollama
        ``/api/embed``, by dialect (with failover across replicas)."""
        response: EmbeddingResponse = self._send(self._dialect.embed(request), request)
        return response

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Stream a chat reply; ends with a :class:`~llmkit.types.FinishEvent`."""
        return self._stream(self._dialect.chat(request, stream=True), request)

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Stream a raw completion: ``/v1/completions`` (SSE ``text_completion`` chunks),
        TGI ``/generate_stream`` or Ollama ``/api/generate`` (NDJSON), by dialect."""
        return self._stream(self._dialect.complete(request, stream=True), request)

    async def achat(self, request: ChatRequest) -> ChatResponse:
        """Async :meth:`chat` on an :class:`httpx.AsyncClient` (no thread, no extra loop)."""
        return await self._asend(self._dialect.chat(request, stream=False), request)  # type: ignore[no-any-return]

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        """Async :meth:`complete`."""
        return await self._asend(self._dialect.complete(request, stream=False), request)  # type: ignore[no-any-return]

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Async :meth:`embed`."""
        return await self._asend(self._dialect.embed(request), request)  # type: ignore[no-any-return]

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream`."""
        return self._astream(self._dialect.chat(request, stream=True), request)

    def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream_complete`."""
        return self._astream(self._dialect.complete(request, stream=True), request)

    def _send(self, call: WireCall, request: AnyRequest) -> Any:
        client = self._sync_client()
        for attempt in self._shell.attempts(call, request):
            with attempt:
                # httpx alone bounds neither the total nor a trickled reply on the sync path.
                with CallBudget(request.timeout, request.deadline):
                    response = client.post(attempt.url, json=call.payload, timeout=attempt.timeout)
                return attempt.reply(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _asend(self, call: WireCall, request: AnyRequest) -> Any:
        client = self._async_client()
        for attempt in self._shell.attempts(call, request, late_is_total=True):
            with attempt:
                send = client.post(attempt.url, json=call.payload, timeout=attempt.timeout)
                return attempt.reply(await send)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _stream(
        self, call: WireCall, request: ChatRequest | CompletionRequest
    ) -> Iterator[StreamEvent]:
        client = self._sync_client()
        for attempt in self._shell.attempts(call, request):
            with attempt:
                budget = CallBudget(request.timeout, request.deadline, stream=True)
                with budget:  # the send; the transport binds the budget to the body
                    response = client.send(attempt.build(client), stream=True)
                try:
                    if response.status_code >= 400:
                        response.read()
                    attempt.opened(response)
                    chunks = response.iter_bytes()
                    for data in chunks:
                        for event in attempt.feed(data):
                            yield event
                            budget.next_event()  # the caller wants more: idle budget from now
                        if attempt.done:
                            with suppress(httpx.RequestError):  # the answer is complete
                                deque(chunks, 0)  # the rest, so the connection is reused
                            break
                    yield from attempt.finish()
                    return
                finally:
                    response.close()

    async def _astream(
        self, call: WireCall, request: ChatRequest | CompletionRequest
    ) -> AsyncIterator[StreamEvent]:
        client = self._async_client()
        for attempt in self._shell.attempts(call, request, late_is_total=True):
            with attempt:
                response = await client.send(attempt.build(client), stream=True)
                try:
                    if response.status_code >= 400:
                        await response.aread()
                    attempt.opened(response)
                    async for data in (chunks := response.aiter_bytes()):
                        for event in attempt.feed(data):
                            yield event
                        if attempt.done:
                            with suppress(httpx.RequestError):
                                async for _ in chunks:  # the rest: the connection is reused
                                    pass
                            break
                    for event in attempt.finish():
                        yield event
                    return
                finally:
                    await response.aclose()

    # ------------------------------------------------------------------ health

    def health(self, *, timeout: float = 5.0) -> list[ReplicaHealth]:
        """Probe every replica: ``GET /health``, then the models list where ``/health`` is
        not served (404/405). A healthy replica leaves cool-down; an unreachable or 5xx one
        enters it. Returns one :class:`ReplicaHealth` per ``base_url``, in order."""
        client = self._sync_client()
        out = []
        for replica in self._replicas.replicas:
            probe = Probe(self._shell, replica)
            while (url := probe.next_url()) is not None:
                try:
                    probe.answered(client.get(url, timeout=timeout).status_code)
                except httpx.RequestError as exc:
                    probe.answered(exc)
            out.append(probe.health())
        return out

    async def ahealth(self, *, timeout: float = 5.0) -> list[ReplicaHealth]:
        """Async :meth:`health`; the replicas are probed concurrently."""
        client = self._async_client()

        async def probe(replica: Replica) -> ReplicaHealth:
            flow = Probe(self._shell, replica)
            while (url := flow.next_url()) is not None:
                try:
                    flow.answered((await client.get(url, timeout=timeout)).status_code)
                except httpx.RequestError as exc:
                    flow.answered(exc)
            return flow.health()

        return list(await asyncio.gather(*(probe(r) for r in self._replicas.replicas)))

    @property
    def server_url(self) -> str | None:  # for telemetry: None if several replicas may answer
        replicas = self._replicas.replicas
        return replicas[0].root if len(replicas) == 1 else None
