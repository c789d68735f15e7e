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

The HTTP clients come from :mod:`llmkit._http` (pooling, proxies from the environment, TLS
options) and are built lazily, one sync and one async, so constructing a backend does no I/O.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..._http import (
    CallBudget,
    allow_stream_gaps,
    build_async_client,
    build_client,
    httpx_timeout,
    map_transport_error,
)
from ...errors import (
    ConnectionError,
    ProtocolError,
    ProviderError,
    TimeoutError,
    error_from_status,
    redact,
)
from ...streaming import with_request_id
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
from ..base import BaseBackend, check_json_extra, validate_options
from .dialect_ollama import OllamaDialect
from .dialect_openai import OpenAIDialect
from .dialect_responses import ResponsesDialect
from .dialect_tgi import TEMPLATES, TGIDialect
from .replicas import Balance, Replica, ReplicaHealth, ReplicaSet
from .wire import BACKEND, Dialect, WireCall, WireOptions, trim

__all__ = ["ReplicaHealth", "RestBackend", "RestSettings"]

logger = logging.getLogger("llmkit.rest")

DialectName = Literal["openai", "tgi", "ollama"]
AnyRequest = ChatRequest | CompletionRequest | EmbeddingRequest
# A timer may fire a little before its time: a transport timeout this close to the call's
# deadline is the deadline running out.
_DEADLINE_SLACK = 0.05

_DIALECTS: dict[str, type[Dialect]] = {
    "openai": OpenAIDialect,
    "tgi": TGIDialect,
    "ollama": OllamaDialect,
}
_DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434"}
ENV_BASE_URL = "LLMKIT_REST_BASE_URL"  # one URL, or several separated by commas
ENV_API_KEY = "LLMKIT_REST_API_KEY"

# Transport failures that say "this replica is unreachable or dropped us": worth another
# replica. A read timeout is not among them: the replica may just be slow, and trying the
# next one would spend the same budget again.
_REPLICA_FAILURES = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)


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
        self._dialect = dialect(
            WireOptions(
                spec=self.spec,
                stream_usage=s.stream_usage,
                template=s.template,
                keep_alive=s.keep_alive,
                think_tags=s.think_tags,
                think_levels=s.think_levels,
                schema_format=s.schema_format,
            )
        )
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
        self._timeouts: dict[Timeout, httpx.Timeout] = {}

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

    # ------------------------------------------------------------------ shared, I/O-free

    def _timeout(self, request: AnyRequest) -> httpx.Timeout:
        """This attempt's httpx budgets: the request's phases, capped by its deadline."""
        t = request.timeout
        remaining = request.remaining()
        if remaining is None:
            return self._timeout_for(t)
        if remaining <= 0:
            raise TimeoutError(
                "the call's deadline passed before the request was sent",
                backend=BACKEND,
                model=self.model,
            )
        # Capping by ``remaining`` changes nothing while every httpx budget (each phase,
        # itself capped by ``total``) still fits: then the shared conversion does.
        if remaining >= min(max(t.connect, t.read), t.total):
            return self._timeout_for(t)
        return httpx_timeout(
            Timeout(
                connect=min(t.connect, remaining),
                first_token=min(t.first_token, remaining),
                idle=min(t.idle, remaining),
                total=min(t.total, remaining),
            )
        )

    def _timeout_for(self, t: Timeout) -> httpx.Timeout:
        # Most calls share a handful of Timeout values; converting them is not free.
        cached = self._timeouts.get(t)
        if cached is None:
            cached = self._timeouts[t] = httpx_timeout(t)
            if len(self._timeouts) > 64:
                self._timeouts.clear()
        return cached

    @staticmethod
    def _stream_end(request: ChatRequest | CompletionRequest) -> float | None:
        """The monotonic time a stream must be over by (httpx has no total budget)."""
        ends = (
            [time.monotonic() + request.timeout.total]
            if request.timeout.total != float("inf")
            else []
        )
        if request.deadline is not None:
            ends.append(request.deadline)
        return min(ends) if ends else None

    def _own(self, err: ProviderError) -> ProviderError:
        if err.backend is None or err.backend == self.spec:
            err.backend = BACKEND
        if err.model is None:
            err.model = self.model
        if self._secrets:  # error text parsed from a reply may echo the key back
            err.message = redact(err.message, self._secrets)
            err.args = (err.message,)
            if err.body is not None:
                err.body = json.loads(redact(json.dumps(err.body, default=str), self._secrets))
        return err

    def _failure(self, exc: Exception, replica: Replica) -> tuple[ProviderError, bool]:
        """``exc`` as an llmkit error, and whether it is the replica's fault (fail over)."""
        if isinstance(exc, ProviderError):
            status = exc.status_code
            if isinstance(exc, ConnectionError):  # a stream cut short by the replica
                return self._own(exc), True
            return self._own(exc), status is not None and status >= 500 and status != 501
        if isinstance(exc, httpx.DecodingError):  # e.g. a corrupt gzip body: not transient
            text = redact(str(exc), self._secrets)
            return ProtocolError(
                f"undecodable reply: {text}", backend=BACKEND, model=self.model
            ), False
        err = map_transport_error(exc, backend=BACKEND, model=self.model, secrets=self._secrets)
        err.message = f"{err.message} (replica {replica.display})"
        return err, isinstance(exc, _REPLICA_FAILURES)

    def _status_error(self, response: httpx.Response, replica: Replica) -> ProviderError:
        content = response.content
        try:
            body: Any = json.loads(content)
        except ValueError:
            body = content.decode("utf-8", "replace")
        err = error_from_status(
            response.status_code,
            body,
            response.headers,
            backend=BACKEND,
            model=self.model,
            secrets=self._secrets,
        )
        if len(self._replicas) > 1:
            err.message = f"{err.message} (replica {replica.display})"
        return err

    def _parse(self, call: WireCall, response: httpx.Response) -> Any:
        try:
            data = json.loads(response.content)
        except ValueError:
            text = response.content.decode("utf-8", "replace")
            raise ProtocolError(
                f"reply is not JSON: {trim(text)!r}", backend=BACKEND, model=self.model
            ) from None
        try:
            parsed = call.parse(data, response.headers)
        except ProviderError as err:
            self._own(err)
            raise
        parsed.request_id = response.headers.get("x-request-id")
        return parsed

    def _acquire(self, tried: list[Replica]) -> Replica:
        replica = self._replicas.acquire(tried)
        if replica is None:  # pragma: no cover - _fail_over checks before another attempt
            raise RuntimeError("no replica left to try")
        tried.append(replica)
        return replica

    def _fail_over(
        self, replica: Replica, tried: list[Replica], err: ProviderError, *, allowed: bool = True
    ) -> bool:
        """Put ``replica`` in cool-down; whether the call should try another replica."""
        self._replicas.failed(replica)
        again = allowed and self.settings.failover and len(tried) < len(self._replicas)
        logger.warning(
            "rest: replica %s failed (%s); cooling down for %gs%s",
            replica.display,
            type(err).__name__,
            self._replicas.cooldown,
            ", trying the next replica" if again else "",
        )
        return again

    # ------------------------------------------------------------------ sync shell

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

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Async :meth:`embed`."""
        response: EmbeddingResponse = await self._asend(self._dialect.embed(request), request)
        return response

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Stream a chat reply; ends with a :class:`~llmkit.types.FinishEvent`."""
        return self._stream(self._dialect.chat(request, stream=True), request)

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Stream a raw completion: ``/v1/completions`` (SSE ``text_completion`` chunks),
        TGI ``/generate_stream`` or Ollama ``/api/generate`` (NDJSON), by dialect."""
        return self._stream(self._dialect.complete(request, stream=True), request)

    def _send(self, call: WireCall, request: AnyRequest) -> Any:
        check_json_extra(self.name, request.extra)
        client = self._sync_client()
        tried: list[Replica] = []
        while True:
            replica = self._acquire(tried)
            try:
                url = call.url(replica)
                logger.debug("rest: POST %s", replica.display)
                timeout = self._timeout(request)
                with CallBudget(request.timeout, request.deadline):
                    response = client.post(url, json=call.payload, timeout=timeout)
                if response.status_code >= 400:
                    raise self._status_error(response, replica)
                self._replicas.succeeded(replica)
                return self._parse(call, response)
            except (httpx.RequestError, ProviderError) as exc:
                err, replica_failed = self._failure(exc, replica)
                if replica_failed and self._fail_over(replica, tried, err):
                    continue
                if err is exc:
                    raise
                raise err from exc
            finally:
                self._replicas.release(replica)

    def _stream(
        self, call: WireCall, request: ChatRequest | CompletionRequest
    ) -> Iterator[StreamEvent]:
        check_json_extra(self.name, request.extra)
        client = self._sync_client()
        tried: list[Replica] = []
        while True:
            replica = self._acquire(tried)
            parser = call.new_parser()
            response: httpx.Response | None = None
            yielded = False
            try:
                end = self._stream_end(request)
                req = client.build_request(
                    "POST",
                    call.url(replica),
                    json=call.payload,
                    timeout=self._timeout(request),
                )
                logger.debug("rest: POST %s (stream)", replica.display)
                budget = CallBudget(request.timeout, request.deadline, stream=True)
                with budget:  # the send; the transport binds the budget to the body
                    response = client.send(req, stream=True)
                if response.status_code >= 400:
                    response.read()
                    raise self._status_error(response, replica)
                self._replicas.succeeded(replica)
                request_id = response.headers.get("x-request-id")
                allow_stream_gaps(response, request.timeout, request.remaining())
                chunks = response.iter_bytes()
                for data in chunks:
                    if end is not None and time.monotonic() > end:
                        raise self._total_timeout(request)
                    for event in parser.feed(data):
                        yielded = True
                        yield event
                        budget.next_event()  # the caller wants more: idle budget from now
                    if parser.done:
                        try:  # read the rest so the connection goes back to the pool
                            for _ in chunks:
                                pass
                        except httpx.RequestError:
                            pass  # the answer is complete; a hiccup after it changes nothing
                        break
                for event in with_request_id(parser.finish(), request_id):
                    yielded = True
                    yield event
                return
            except (httpx.RequestError, ProviderError) as exc:
                err, replica_failed = self._failure(exc, replica)
                # After an event reached the caller the replica is still put in cool-down,
                # but the error surfaces: a stream is never replayed behind the caller's back.
                if replica_failed and self._fail_over(replica, tried, err, allowed=not yielded):
                    continue
                if err is exc:
                    raise
                raise err from exc
            finally:
                if response is not None:
                    response.close()
                self._replicas.release(replica)

    def _total_timeout(self, request: AnyRequest, what: str = " while streaming") -> TimeoutError:
        return TimeoutError(
            f"total timeout of {request.timeout.total:g}s (or the call's deadline) exceeded{what}",
            backend=BACKEND,
            model=self.model,
        )

    # ------------------------------------------------------------------ async shell

    async def achat(self, request: ChatRequest) -> ChatResponse:
        """Async :meth:`chat` on an :class:`httpx.AsyncClient` (no thread, no extra loop)."""
        response: ChatResponse = await self._asend(
            self._dialect.chat(request, stream=False), request
        )
        return response

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        """Async :meth:`complete`."""
        response: ChatResponse = await self._asend(
            self._dialect.complete(request, stream=False), request
        )
        return response

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream`."""
        return self._astream(self._dialect.chat(request, stream=True), request)

    def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream_complete`."""
        return self._astream(self._dialect.complete(request, stream=True), request)

    async def _asend(self, call: WireCall, request: AnyRequest) -> Any:
        check_json_extra(self.name, request.extra)
        client = self._async_client()
        tried: list[Replica] = []
        while True:
            replica = self._acquire(tried)
            try:
                url = call.url(replica)
                logger.debug("rest: POST %s", replica.display)
                response = await client.post(url, json=call.payload, timeout=self._timeout(request))
                if response.status_code >= 400:
                    raise self._status_error(response, replica)
                self._replicas.succeeded(replica)
                return self._parse(call, response)
            except (httpx.RequestError, ProviderError) as exc:
                # httpx's budgets are capped by the call's deadline (see _timeout): when that
                # is what ran out, say so, rather than name the phase httpx was in.
                left = request.remaining()
                timed_out = isinstance(exc, httpx.TimeoutException)
                if timed_out and left is not None and left <= _DEADLINE_SLACK:
                    raise self._total_timeout(request, "") from exc
                err, replica_failed = self._failure(exc, replica)
                if replica_failed and self._fail_over(replica, tried, err):
                    continue
                if err is exc:
                    raise
                raise err from exc
            finally:
                self._replicas.release(replica)

    async def _astream(
        self, call: WireCall, request: ChatRequest | CompletionRequest
    ) -> AsyncIterator[StreamEvent]:
        check_json_extra(self.name, request.extra)
        client = self._async_client()
        tried: list[Replica] = []
        while True:
            replica = self._acquire(tried)
            parser = call.new_parser()
            response: httpx.Response | None = None
            yielded = False
            try:
                end = self._stream_end(request)
                req = client.build_request(
                    "POST",
                    call.url(replica),
                    json=call.payload,
                    timeout=self._timeout(request),
                )
                logger.debug("rest: POST %s (stream)", replica.display)
                response = await client.send(req, stream=True)
                if response.status_code >= 400:
                    await response.aread()
                    raise self._status_error(response, replica)
                self._replicas.succeeded(replica)
                request_id = response.headers.get("x-request-id")
                allow_stream_gaps(response, request.timeout, request.remaining())
                chunks = response.aiter_bytes()
                async for data in chunks:
                    if end is not None and time.monotonic() > end:
                        raise self._total_timeout(request)
                    for event in parser.feed(data):
                        yielded = True
                        yield event
                    if parser.done:
                        try:  # read the rest so the connection goes back to the pool
                            async for _ in chunks:
                                pass
                        except httpx.RequestError:
                            pass
                        break
                for event in with_request_id(parser.finish(), request_id):
                    yielded = True
                    yield event
                return
            except (httpx.RequestError, ProviderError) as exc:
                err, replica_failed = self._failure(exc, replica)
                # After an event reached the caller the replica is still put in cool-down,
                # but the error surfaces: a stream is never replayed behind the caller's back.
                if replica_failed and self._fail_over(replica, tried, err, allowed=not yielded):
                    continue
                if err is exc:
                    raise
                raise err from exc
            finally:
                if response is not None:
                    await response.aclose()
                self._replicas.release(replica)

    # ------------------------------------------------------------------ health

    def _probes(self, replica: Replica) -> list[tuple[str, str]]:
        models = replica.api + "/models"
        return [
            (replica.root + "/health", "/health"),
            (models, models[len(replica.root) :] or models),
        ]

    def _judge(
        self, replica: Replica, results: list[tuple[str, int | None, float, str | None]]
    ) -> ReplicaHealth:
        """Health from the probes made: ``(endpoint, status, seconds, error)`` each."""
        endpoint, status, latency, error = results[-1]
        healthy = status is not None and 200 <= status < 300
        if healthy:
            self._replicas.succeeded(replica)
        else:
            if error is None:
                error = f"{endpoint} answered {status}"
            if status is None or status >= 500:
                self._replicas.failed(replica)
        return ReplicaHealth(
            url=replica.display,
            healthy=healthy,
            endpoint=endpoint if status is not None else None,
            status_code=status,
            latency_s=latency,
            error=None if healthy else error,
            cooling_down=self._replicas.cooling_down(replica),
            in_flight=replica.in_flight,
        )

    def _probe_error(self, exc: Exception) -> str:
        return str(
            map_transport_error(exc, backend=BACKEND, model=self.model, secrets=self._secrets)
        )

    def health(self, *, timeout: float = 5.0) -> list[ReplicaHealth]:
        """Probe every replica: ``GET /health``, then the models list where ``/health`` is
        not served (404/405). A healthy replica leaves cool-down; an unreachable or 5xx one
        enters it. Returns one :class:`ReplicaHealth` per ``base_url``, in order."""
        client = self._sync_client()
        out = []
        for replica in self._replicas.replicas:
            results: list[tuple[str, int | None, float, str | None]] = []
            for url, endpoint in self._probes(replica):
                started = time.perf_counter()
                try:
                    status: int | None = client.get(url, timeout=timeout).status_code
                    error = None
                except httpx.RequestError as exc:
                    status, error = None, self._probe_error(exc)
                results.append((endpoint, status, time.perf_counter() - started, error))
                if status not in (404, 405):
                    break
            out.append(self._judge(replica, results))
        return out

    async def ahealth(self, *, timeout: float = 5.0) -> list[ReplicaHealth]:
        """Async :meth:`health`; the replicas are probed concurrently."""
        client = self._async_client()

        async def probe(replica: Replica) -> ReplicaHealth:
            results: list[tuple[str, int | None, float, str | None]] = []
            for url, endpoint in self._probes(replica):
                started = time.perf_counter()
                try:
                    status: int | None = (await client.get(url, timeout=timeout)).status_code
                    error = None
                except httpx.RequestError as exc:
                    status, error = None, self._probe_error(exc)
                results.append((endpoint, status, time.perf_counter() - started, error))
                if status not in (404, 405):
                    break
            return self._judge(replica, results)

        return list(await asyncio.gather(*(probe(r) for r in self._replicas.replicas)))

    @property
    def server_url(self) -> str | None:  # for telemetry: None if several replicas may answer
        replicas = self._replicas.replicas
        return replicas[0].root if len(replicas) == 1 else None
