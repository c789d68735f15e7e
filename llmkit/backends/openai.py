"""The ``openai`` and ``azure`` backends: the official ``openai`` SDK (2.x and 3.x), made safe.

The SDK does what it is good at: building requests, authentication (API keys, Azure AD
tokens), URLs (Azure deployments, any ``base_url``) and turning HTTP statuses into its
exceptions. llmkit adds the rest:

* the HTTP clients come from :mod:`llmkit._http` and are injected as ``http_client=``, so
  pooling, timeouts and proxies behave as in every other llmkit backend (and respx sees every
  request, even under openai 3.x, whose own default client is ``httpx2``);
* the SDK's own retries are off (``max_retries=0``): llmkit's retry policy is the only one;
* every failure is mapped to :mod:`llmkit.errors` at one point (:meth:`_OpenAIBase._map_error`),
  with credentials scrubbed from the message *and* from the chained SDK exception;
* responses are read as JSON and streams are decoded by the I/O-free
  :class:`~llmkit.backends._openai_wire.StreamDecoder` (the same one the ``rest`` backend's
  OpenAI-compatible dialect uses) over the SDK's raw streaming response, which skips
  building a pydantic object per chunk.

With ``api="responses"`` chat calls go to ``/responses`` instead (the Responses API): the
mapping is :mod:`llmkit.backends._responses_wire`, the shells stay the same.

Every keyword the SDK's ``create()`` accepts is passed as a keyword (so the outgoing JSON is
exactly what the SDK would send); anything else a caller passes goes into ``extra_body``.
``ChatResponse.raw`` is the reply's decoded JSON (a dict in the OpenAI shape), the same
portable form every llmkit backend gives.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, ClassVar, Literal

import httpx
import openai
import openai.resources.responses  # lazily exported in 3.x; imported for its signature
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from .. import _http
from .._requests import BaseRequest, ChatRequest, CompletionRequest, EmbeddingRequest
from ..errors import (
    AuthenticationError,
    ConfigError,
    ConnectionError,
    InvalidInputError,
    LLMError,
    ProtocolError,
    ProviderError,
    TimeoutError,
    error_from_status,
    redact,
)
from ..streaming import with_request_id
from ..timeouts import Timeout
from ..types import ChatResponse, EmbeddingResponse, StreamEvent
from ._embeddings_wire import openai_embedding_body, parse_openai_embeddings
from ._openai_responses import ResponsesStreamState
from ._openai_wire import (
    StreamDecoder,
    chat_payload,
    completion_payload,
    error_in_payload,
    parse_chat_completion,
    parse_completion,
)
from ._responses_wire import parse_response, responses_body, responses_capabilities
from .base import BaseBackend, Capabilities, check_json_extra, validate_options

__all__ = ["AzureOpenAIBackend", "AzureOpenAISettings", "OpenAIBackend", "OpenAISettings"]

MaxTokensParam = Literal["auto", "max_tokens", "max_completion_tokens"]

# Reasoning models (o1, o3, o4-mini, gpt-5, ...) reject ``max_tokens`` and want
# ``max_completion_tokens``; everything else, including most OpenAI-compatible servers, still
# takes ``max_tokens``. A family pattern, not a list of model names, so it does not go stale.
_REASONING_MODEL = re.compile(r"^(?:o\d|gpt-5)", re.IGNORECASE)

# Keys llmkit itself sets per call; a caller's value for them is ignored rather than letting
# it clash with the keyword llmkit passes.
_RESERVED = frozenset({"timeout", "stream"})
_EXTRA_KW = ("extra_headers", "extra_query", "extra_body")

_NO_KEY_PLACEHOLDER = "EMPTY"  # what vLLM & co. document for servers that check no key


def _sdk_params(fn: Callable[..., Any]) -> frozenset[str]:
    """The keyword parameters an SDK ``create()`` accepts (they differ between SDK versions)."""
    names = set(inspect.signature(fn).parameters) - {"self"}
    return frozenset(names - _RESERVED - set(_EXTRA_KW))


_CHAT_PARAMS = _sdk_params(openai.resources.chat.Completions.create)
_COMPLETION_PARAMS = _sdk_params(openai.resources.Completions.create)
_EMBEDDING_PARAMS = _sdk_params(openai.resources.Embeddings.create)
_RESPONSES_PARAMS = _sdk_params(openai.resources.responses.Responses.create)


# ---------------------------------------------------------------------------- settings


class _CommonSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    api_key: SecretStr | None = None
    """The API key; falls back to the backend's environment variable."""
    organization: str | None = None
    """OpenAI organization id (``OpenAI-Organization`` header); SDK reads ``OPENAI_ORG_ID``."""
    default_headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every request (per call: ``extra_headers=``)."""
    default_query: dict[str, str] = Field(default_factory=dict)
    """Query parameters added to every request URL."""
    timeout: Timeout | None = None
    """Default per-phase budgets of the HTTP client (each call brings its own as well)."""
    max_tokens_param: MaxTokensParam = "auto"
    """How ``max_tokens`` is sent: ``"auto"`` sends ``max_completion_tokens`` to reasoning
    models (o-series, gpt-5) and ``max_tokens`` to everything else."""
    verify: bool | str = True
    """TLS verification: ``False`` or a CA bundle path for private hosts."""
    api: Literal["chat", "responses"] = "chat"
    """The API chat calls use: chat completions, or the Responses API (``/responses``)."""

    @field_validator("timeout", mode="before")
    @classmethod
    def _coerce_timeout(cls, value: Any) -> Any:
        return None if value is None else Timeout.coerce(value)


class OpenAISettings(_CommonSettings):
    """Options of ``openai:MODEL``."""

    base_url: str | None = None
    """An OpenAI-compatible endpoint (``.../v1``); falls back to ``OPENAI_BASE_URL``."""
    project: str | None = None
    """OpenAI project id (``OpenAI-Project`` header); SDK reads ``OPENAI_PROJECT_ID``."""


class AzureOpenAISettings(_CommonSettings):
    """Options of ``azure:DEPLOYMENT``."""

    endpoint: str | None = None
    """``https://RESOURCE.openai.azure.com``; falls back to ``AZURE_OPENAI_ENDPOINT``."""
    api_version: str | None = None
    """The Azure API version; falls back to ``OPENAI_API_VERSION``."""
    azure_ad_token: SecretStr | None = None
    """A Microsoft Entra ID token; falls back to ``AZURE_OPENAI_AD_TOKEN``."""
    azure_ad_token_provider: Callable[[], Any] | None = None
    """A callable returning a fresh token (or an awaitable of one, for async calls)."""


# ---------------------------------------------------------------------------- I/O-free helpers


def _split_kwargs(payload: dict[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """Payload keys the SDK knows become keywords; the rest travel in ``extra_body``."""
    kwargs: dict[str, Any] = {}
    extra_body: dict[str, Any] = {}
    for key, value in payload.items():
        if key in known:
            kwargs[key] = value
        elif key in _EXTRA_KW:
            if value is not None and not isinstance(value, Mapping):
                raise InvalidInputError(f"{key} must be a mapping, got {type(value).__name__}")
            if key == "extra_body":
                extra_body.update(value or {})
            elif value:
                kwargs[key] = dict(value)
        elif key not in _RESERVED:
            extra_body[key] = value
    if extra_body:
        # The SDK encodes its own keywords (dates included) but hands extra_body to httpx as is.
        check_json_extra("openai", extra_body)
        kwargs["extra_body"] = extra_body
    return kwargs


def _stream_with_usage(kwargs: dict[str, Any]) -> None:
    kwargs["stream"] = True
    # Usage arrives in a last chunk only when asked for; keep the caller's other keys.
    kwargs["stream_options"] = {**(kwargs.get("stream_options") or {}), "include_usage": True}


def _decode_json(content: bytes, *, backend: str) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        text = content[:200].decode("utf-8", "replace")
        raise ProtocolError(f"reply is not JSON: {text!r}", backend=backend) from None


def _body_of(response: httpx.Response | Any) -> Any:
    """The decoded JSON (or the text) of an error reply."""
    try:
        content = response.content
    except Exception:  # a streamed reply that was never read: nothing to show
        return None
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace")


class _StreamState:
    """The shared :class:`~llmkit.backends._openai_wire.StreamDecoder`, plus what the SDK
    shells add: the call's deadline and the request id of the response headers."""

    __slots__ = ("_decoder", "deadline", "request_id")

    def __init__(self, backend: str, model: str, deadline: float | None) -> None:
        self._decoder = StreamDecoder(backend=backend, model=model)
        self.deadline = deadline
        self.request_id: str | None = None

    @property
    def done(self) -> bool:
        return self._decoder.done

    def feed(self, data: bytes) -> list[StreamEvent]:
        if self.deadline is not None and time.monotonic() > self.deadline:
            chunks = self._decoder.chunks
            raise TimeoutError(
                "total timeout: the stream outlived the call's deadline",
                backend=chunks.backend,
                model=chunks.model,
            )
        return self._decoder.feed(data)

    def end(self) -> list[StreamEvent]:
        """The closing events, once the server said ``[DONE]`` or closed the stream."""
        try:
            events = self._decoder.finish()
        except ConnectionError as exc:  # cut off: the reply was not finished
            exc.request_id = self.request_id
            raise
        return with_request_id(events, self.request_id)


# ---------------------------------------------------------------------------- the backends


class _OpenAIBase(BaseBackend):
    """What the OpenAI and Azure backends share: kwargs, shells and the error mapping."""

    capabilities = Capabilities.every()
    _settings: _CommonSettings

    def __init__(self, model: str) -> None:
        super().__init__(model)
        self._sync_client: Any = None
        self._async_client: Any = None
        self._lock = threading.Lock()  # threads sharing a backend must share one pool
        self._secrets: list[str] = []
        self._use_mct = False

    # -- SDK clients, built on first use so a sync-only caller never creates an async pool

    def _make_sdk(self, async_: bool, http_client: Any) -> Any:
        raise NotImplementedError

    def _http_kwargs(self) -> dict[str, Any]:
        return {"timeout": self._settings.timeout, "verify": self._settings.verify}

    @property
    def sdk(self) -> openai.OpenAI:
        """The underlying synchronous SDK client (``max_retries=0``, llmkit's httpx client)."""
        if self._sync_client is None:
            with self._lock:
                if self._sync_client is None:
                    http_client = _http.build_client(**self._http_kwargs())
                    self._sync_client = self._make_sdk(False, http_client)
        return self._sync_client  # type: ignore[no-any-return]

    @property
    def async_sdk(self) -> openai.AsyncOpenAI:
        """The underlying asynchronous SDK client."""
        if self._async_client is None:
            with self._lock:
                if self._async_client is None:
                    http_client = _http.build_async_client(**self._http_kwargs())
                    self._async_client = self._make_sdk(True, http_client)
        return self._async_client  # type: ignore[no-any-return]

    # -- request building (pure)

    def _per_call_timeout(
        self, request: ChatRequest | CompletionRequest | EmbeddingRequest
    ) -> httpx.Timeout:
        timeout = request.timeout
        remaining = request.remaining()
        if remaining is not None:
            if remaining <= 0:
                raise TimeoutError(
                    "total timeout: the deadline passed before the request was sent",
                    backend=self.name,
                    model=request.model or self.model,
                )
            if remaining < timeout.total:
                timeout = Timeout(
                    connect=timeout.connect,
                    first_token=timeout.first_token,
                    idle=timeout.idle,
                    total=remaining,
                )
        return _http.httpx_timeout(timeout)

    def _chat_kwargs(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        if self._settings.api == "responses":  # OpenAI's floor for max_output_tokens is 16
            body = responses_body(request, model=request.model or self.model, min_output_tokens=16)
            kwargs = _split_kwargs(body, _RESPONSES_PARAMS)
            kwargs["timeout"] = self._per_call_timeout(request)
            return {**kwargs, "stream": True} if stream else kwargs
        payload = chat_payload(request, stream=False)
        if not payload["model"]:
            payload["model"] = self.model
        if payload.get("n", 1) not in (1, None):
            raise InvalidInputError(
                f"{self.name}: n={payload['n']!r} is not supported; llmkit reads one choice (n=1)"
            )
        if "max_tokens" in payload and self._use_mct:
            payload["max_completion_tokens"] = payload.pop("max_tokens")
        kwargs = _split_kwargs(payload, _CHAT_PARAMS)
        if stream:
            _stream_with_usage(kwargs)
        kwargs["timeout"] = self._per_call_timeout(request)
        return kwargs

    def _completion_kwargs(self, request: CompletionRequest, *, stream: bool) -> dict[str, Any]:
        payload = completion_payload(request, stream=False)
        if not payload["model"]:
            payload["model"] = self.model
        if payload.get("n", 1) not in (1, None):
            raise InvalidInputError(f"{self.name}: n={payload['n']!r} is not supported (n=1)")
        kwargs = _split_kwargs(payload, _COMPLETION_PARAMS)
        if stream:
            _stream_with_usage(kwargs)
        kwargs["timeout"] = self._per_call_timeout(request)
        return kwargs

    def _stream_kwargs(self, request: ChatRequest | CompletionRequest) -> dict[str, Any]:
        if isinstance(request, CompletionRequest):
            return self._completion_kwargs(request, stream=True)
        return self._chat_kwargs(request, stream=True)

    def _streaming_create(self, sdk: Any, request: ChatRequest | CompletionRequest) -> Any:
        """The SDK's streaming ``create()`` for ``request``: ``/chat/completions`` (or
        ``/responses``), or ``/completions`` for a raw prompt."""
        if isinstance(request, CompletionRequest):
            return sdk.completions.with_streaming_response.create
        return self._chat_api(sdk).with_streaming_response.create

    def _chat_api(self, sdk: Any) -> Any:
        return sdk.responses if self._settings.api == "responses" else sdk.chat.completions

    def _stream_state(self, model: str, request: ChatRequest | CompletionRequest) -> Any:
        chat = isinstance(request, ChatRequest) and self._settings.api == "responses"
        return (ResponsesStreamState if chat else _StreamState)(self.name, model, request.deadline)

    # -- response reading (pure)

    def _chat_response(
        self, content: bytes, model: str, headers: Mapping[str, str]
    ) -> ChatResponse:
        data = _decode_json(content, backend=self.spec)
        error = error_in_payload(data, backend=self.name, model=model)
        if error is not None and self._settings.api == "chat":  # 200 with an error object
            raise self._map_error(error, model)
        try:
            if self._settings.api == "responses":
                response = parse_response(data, backend=self.spec, model=model)
            else:
                response = parse_chat_completion(data, backend=self.spec)
        except ProviderError as exc:  # a failed response, a malformed reply
            exc.backend = self.name
            raise self._map_error(exc, model) from None
        response.request_id = headers.get("x-request-id")
        return response

    def _completion_response(
        self, content: bytes, model: str, headers: Mapping[str, str]
    ) -> ChatResponse:
        data = _decode_json(content, backend=self.spec)
        error = error_in_payload(data, backend=self.name, model=model)
        if error is not None:
            raise self._map_error(error, model)
        response = parse_completion(data, backend=self.spec)
        response.request_id = headers.get("x-request-id")
        return response

    def _embedding_kwargs(self, request: EmbeddingRequest) -> dict[str, Any]:
        # base64, as the SDK itself asks: a quarter of the JSON, decoded without numpy.
        kwargs = _split_kwargs(
            openai_embedding_body(request, request.model or self.model), _EMBEDDING_PARAMS
        )
        kwargs["timeout"] = self._per_call_timeout(request)
        return kwargs

    def _embedding_response(
        self, content: bytes, request: EmbeddingRequest, model: str, headers: Mapping[str, str]
    ) -> EmbeddingResponse:
        data = _decode_json(content, backend=self.spec)
        error = error_in_payload(data, backend=self.name, model=model)
        if error is not None:
            raise self._map_error(error, model)
        response = parse_openai_embeddings(data, request, backend=self.spec, model=model)
        response.request_id = headers.get("x-request-id")
        return response

    # -- the one place failures become llmkit errors

    def _map_error(
        self, exc: BaseException, model: str, request: BaseRequest | None = None
    ) -> LLMError:
        """An SDK or transport exception as an :mod:`llmkit.errors` one, secrets scrubbed."""
        self._scrub(exc)
        if isinstance(exc, LLMError):
            return exc
        secrets = self._secrets
        if isinstance(exc, openai.APIStatusError):
            response = exc.response
            return error_from_status(
                exc.status_code,
                _body_of(response),
                response.headers,
                backend=self.name,
                model=model,
                secrets=secrets,
            )
        if isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)):
            cause = exc.__cause__
            # openai 2.x wraps whatever the transport raised; a cassette miss stays itself.
            if isinstance(cause, LLMError):
                return cause
            if isinstance(cause, httpx.HTTPError):
                return _http.map_transport_error(
                    cause, backend=self.name, model=model, secrets=secrets, request=request
                )
            cls = TimeoutError if isinstance(exc, openai.APITimeoutError) else ConnectionError
            return cls(redact(str(exc), secrets), backend=self.name, model=model)
        if isinstance(exc, httpx.HTTPError):  # raised while reading a stream's body
            return _http.map_transport_error(
                exc, backend=self.name, model=model, secrets=secrets, request=request
            )
        if isinstance(exc, openai.APIError):  # e.g. a reply the SDK could not validate
            return ProtocolError(redact(str(exc), secrets), backend=self.name, model=model)
        # openai.OpenAIError outside HTTP: missing credentials, a token provider that failed.
        return ConfigError(f"{self.name}: {redact(str(exc), secrets)}")

    def _stream_error(
        self, exc: BaseException, model: str, state: Any, request: BaseRequest
    ) -> LLMError:
        error = self._map_error(exc, model, request)
        if isinstance(error, ProviderError) and error.request_id is None:
            error.request_id = state.request_id  # from the response headers
        return error

    def _scrub(self, exc: BaseException) -> None:
        """Mask credentials in an exception: the SDK's (which becomes ``__cause__``) and
        llmkit's own (an error payload inside a stream may echo a key back)."""
        secrets = self._secrets
        exc.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in exc.args)
        if isinstance(getattr(exc, "message", None), str):
            exc.message = redact(exc.message, secrets)  # type: ignore[attr-defined]
        body = getattr(exc, "body", None)
        if body is not None:
            try:
                exc.body = json.loads(redact(json.dumps(body), secrets))  # type: ignore[attr-defined]
            except (TypeError, ValueError):
                exc.body = None  # type: ignore[attr-defined]

    # -- sync shells

    def chat(self, request: ChatRequest) -> ChatResponse:
        """One chat completion (``POST /chat/completions``), one HTTP attempt."""
        kwargs = self._chat_kwargs(request, stream=False)
        try:
            with _http.CallBudget(request.timeout, request.deadline):
                raw = self._chat_api(self.sdk).with_raw_response.create(**kwargs)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self._map_error(exc, kwargs["model"], request) from exc
        return self._chat_response(raw.content, kwargs["model"], raw.headers)

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        """Stream one chat completion; closing the generator closes the HTTP response."""
        return self._stream(request)

    def stream_complete(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Stream one raw completion (``POST /completions`` with ``stream: true``); the
        chunks are ``text_completion`` objects, decoded by the same code as chat chunks."""
        return self._stream(request)

    def _stream(self, request: ChatRequest | CompletionRequest) -> Iterator[StreamEvent]:
        kwargs = self._stream_kwargs(request)
        model = kwargs["model"]
        state = self._stream_state(model, request)
        budget = _http.CallBudget(request.timeout, request.deadline, stream=True)
        try:
            with contextlib.ExitStack() as stack:
                manager = self._streaming_create(self.sdk, request)(**kwargs)
                with budget:  # the send; the transport binds the budget to the body
                    response = stack.enter_context(manager)
                state.request_id = response.headers.get("x-request-id")
                _http.allow_stream_gaps(
                    response.http_response, request.timeout, request.remaining()
                )
                for data in response.iter_bytes():
                    if state.done:
                        continue  # drain to the end, as the async shell does
                    for event in state.feed(data):
                        yield event
                        budget.next_event()  # the caller wants more: idle budget from now
                yield from state.end()
        except (ProviderError, openai.OpenAIError, httpx.HTTPError) as exc:
            if state.done and isinstance(exc, httpx.HTTPError):
                yield from state.end()  # the reply was complete; only the drain failed
                return
            error = self._stream_error(exc, model, state, request)
            if error is exc:
                raise
            raise error from exc

    def complete(self, request: CompletionRequest) -> ChatResponse:
        """One raw completion (``POST /completions``): prompt in, continuation out."""
        kwargs = self._completion_kwargs(request, stream=False)
        try:
            with _http.CallBudget(request.timeout, request.deadline):
                raw = self.sdk.completions.with_raw_response.create(**kwargs)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self._map_error(exc, kwargs["model"], request) from exc
        return self._completion_response(raw.content, kwargs["model"], raw.headers)

    def embed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """One batch of texts to vectors (``POST /embeddings``), one HTTP attempt."""
        kwargs = self._embedding_kwargs(request)
        try:
            with _http.CallBudget(request.timeout, request.deadline):
                raw = self.sdk.embeddings.with_raw_response.create(**kwargs)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self._map_error(exc, kwargs["model"], request) from exc
        return self._embedding_response(raw.content, request, kwargs["model"], raw.headers)

    # -- async shells (mirrors of the above; all logic lives in the pure helpers)

    async def aembed(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Async :meth:`embed`."""
        kwargs = self._embedding_kwargs(request)
        try:
            raw = await self.async_sdk.embeddings.with_raw_response.create(**kwargs)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self._map_error(exc, kwargs["model"], request) from exc
        return self._embedding_response(raw.content, request, kwargs["model"], raw.headers)

    async def achat(self, request: ChatRequest) -> ChatResponse:
        """Async :meth:`chat`."""
        kwargs = self._chat_kwargs(request, stream=False)
        try:
            raw = await self._chat_api(self.async_sdk).with_raw_response.create(**kwargs)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self._map_error(exc, kwargs["model"], request) from exc
        return self._chat_response(raw.content, kwargs["model"], raw.headers)

    def astream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream`; ``aclose()`` closes the HTTP response."""
        return self._astream(request)

    def astream_complete(self, request: CompletionRequest) -> AsyncIterator[StreamEvent]:
        """Async :meth:`stream_complete`."""
        return self._astream(request)

    async def _astream(
        self, request: ChatRequest | CompletionRequest
    ) -> AsyncIterator[StreamEvent]:
        kwargs = self._stream_kwargs(request)
        model = kwargs["model"]
        state = self._stream_state(model, request)
        sdk = self.async_sdk
        try:
            async with self._streaming_create(sdk, request)(**kwargs) as response:
                state.request_id = response.headers.get("x-request-id")
                _http.allow_stream_gaps(
                    response.http_response, request.timeout, request.remaining()
                )
                # Read to the end even after [DONE] (servers end the body right after it):
                # breaking out would leave httpx's own async generators suspended, to be
                # finalised later by stray tasks the event loop schedules.
                async for data in response.iter_bytes():
                    if state.done:
                        continue
                    for event in state.feed(data):
                        yield event
                for event in state.end():
                    yield event
        except (ProviderError, openai.OpenAIError, httpx.HTTPError) as exc:
            if state.done and isinstance(exc, httpx.HTTPError):
                for event in state.end():  # the reply was complete; only the drain failed
                    yield event
                return
            error = self._stream_error(exc, model, state, request)
            if error is exc:
                raise
            raise error from exc

    async def acomplete(self, request: CompletionRequest) -> ChatResponse:
        """Async :meth:`complete`."""
        kwargs = self._completion_kwargs(request, stream=False)
        try:
            raw = await self.async_sdk.completions.with_raw_response.create(**kwargs)
        except (openai.OpenAIError, httpx.HTTPError) as exc:
            raise self._map_error(exc, kwargs["model"], request) from exc
        return self._completion_response(raw.content, kwargs["model"], raw.headers)

    # -- lifecycle

    def close(self) -> None:
        """Close the synchronous connection pool (use :meth:`aclose` for the async one)."""
        if self._sync_client is not None:
            self._sync_client.close()
            self._sync_client = None

    async def aclose(self) -> None:
        """Close both connection pools."""
        self.close()
        if self._async_client is not None:
            await self._async_client.close()
            self._async_client = None


def _provider_error(exc: Exception, secrets: list[str]) -> AuthenticationError:
    return AuthenticationError(
        f"azure_ad_token_provider raised {type(exc).__name__}: "
        f"{redact(str(exc), secrets) or '(no message)'}; check the credential it uses "
        "(for azure-identity: az login, the managed identity or the service principal)",
        backend="azure",
    )


def _guarded_provider(provider: Callable[[], Any], secrets: list[str]) -> Callable[[], Any]:
    """``provider`` with its failures as :class:`AuthenticationError`: the SDK calls it
    itself, so anything it raises (an azure-identity error, a ``RuntimeError``) would
    otherwise reach the caller as it is. Async providers (the async SDK awaits what the
    provider returns) are wrapped the same way."""

    async def awaited(token: Any) -> Any:
        try:
            return await token
        except Exception as exc:
            raise _provider_error(exc, secrets) from exc

    def call() -> Any:
        try:
            token = provider()
        except Exception as exc:
            raise _provider_error(exc, secrets) from exc
        return awaited(token) if inspect.isawaitable(token) else token

    return call


def _secret(value: SecretStr | None, *env_names: str) -> str | None:
    if value is not None:
        return value.get_secret_value() or None
    for name in env_names:
        if os.environ.get(name):
            return os.environ[name]
    return None


def _uses_max_completion_tokens(setting: MaxTokensParam, model: str) -> bool:
    if setting == "auto":
        return bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1]))
    return setting == "max_completion_tokens"


class OpenAIBackend(_OpenAIBase):
    """``openai:MODEL``: the OpenAI API, or any OpenAI-compatible host through ``base_url``.

    Options (see :class:`OpenAISettings`): ``api_key`` (else ``OPENAI_API_KEY``), ``base_url``
    (else ``OPENAI_BASE_URL``), ``organization``, ``project``, ``default_headers``,
    ``default_query``, ``timeout``, ``max_tokens_param``, ``verify``. A custom ``base_url``
    may go without a key (servers that check none); api.openai.com may not.
    """

    name: ClassVar[str] = "openai"

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        settings = validate_options(OpenAISettings, self.name, options)
        self._settings = self._openai = settings
        self.capabilities = responses_capabilities(self.capabilities, settings.api)
        self._base_url = settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = _secret(settings.api_key, "OPENAI_API_KEY")
        if key is None:
            if self._base_url is None:
                raise ConfigError(
                    "openai: no API key; pass api_key=... or set OPENAI_API_KEY "
                    "(or point base_url at a server that needs none)"
                )
            key = _NO_KEY_PLACEHOLDER
        self._api_key = key
        self._secrets = [key]
        self._use_mct = _uses_max_completion_tokens(settings.max_tokens_param, model)

    def _make_sdk(self, async_: bool, http_client: Any) -> Any:
        cls: Any = openai.AsyncOpenAI if async_ else openai.OpenAI
        s = self._openai
        return cls(
            api_key=self._api_key,
            organization=s.organization,
            project=s.project,
            base_url=self._base_url,
            default_headers=s.default_headers or None,
            default_query=s.default_query or None,
            max_retries=0,  # llmkit's retry policy is the only one
            http_client=http_client,
        )

    @property
    def server_url(self) -> str:
        return self._base_url or "https://api.openai.com/v1"

    def __repr__(self) -> str:
        where = f", base_url={self._base_url!r}" if self._base_url else ""
        return f"OpenAIBackend(model={self.model!r}{where})"


class AzureOpenAIBackend(_OpenAIBase):
    """``azure:DEPLOYMENT``: Azure OpenAI, addressed by deployment name.

    Options (see :class:`AzureOpenAISettings`): ``endpoint`` (else ``AZURE_OPENAI_ENDPOINT``),
    ``api_version`` (else ``OPENAI_API_VERSION``), and one credential: ``api_key`` (else
    ``AZURE_OPENAI_API_KEY``), ``azure_ad_token`` (else ``AZURE_OPENAI_AD_TOKEN``) or
    ``azure_ad_token_provider``. Deployment names say nothing about the model behind them, so
    set ``max_tokens_param="max_completion_tokens"`` for reasoning-model deployments.
    """

    name: ClassVar[str] = "azure"

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        settings = validate_options(AzureOpenAISettings, self.name, options)
        self._settings = self._azure = settings
        self.capabilities = responses_capabilities(self.capabilities, settings.api)
        endpoint = settings.endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
        api_version = settings.api_version or os.environ.get("OPENAI_API_VERSION")
        if not endpoint:
            raise ConfigError("azure: no endpoint; pass endpoint=... or set AZURE_OPENAI_ENDPOINT")
        if not api_version:
            raise ConfigError(
                "azure: no api_version; pass api_version=... or set OPENAI_API_VERSION"
            )
        self._endpoint = endpoint.rstrip("/")
        self._api_version = api_version
        self._api_key = _secret(settings.api_key, "AZURE_OPENAI_API_KEY")
        self._ad_token = _secret(settings.azure_ad_token, "AZURE_OPENAI_AD_TOKEN")
        if not (self._api_key or self._ad_token or settings.azure_ad_token_provider):
            raise ConfigError(
                "azure: no credential; pass api_key=..., azure_ad_token=... or "
                "azure_ad_token_provider=... (or set AZURE_OPENAI_API_KEY)"
            )
        self._secrets = [s for s in (self._api_key, self._ad_token) if s]
        self._use_mct = _uses_max_completion_tokens(settings.max_tokens_param, model)

    def _make_sdk(self, async_: bool, http_client: Any) -> Any:
        cls: Any = openai.AsyncAzureOpenAI if async_ else openai.AzureOpenAI
        s = self._azure
        return cls(
            azure_endpoint=self._endpoint,
            api_version=self._api_version,
            api_key=self._api_key,
            azure_ad_token=self._ad_token,
            azure_ad_token_provider=(
                None
                if s.azure_ad_token_provider is None
                else _guarded_provider(s.azure_ad_token_provider, self._secrets)
            ),
            organization=s.organization,
            default_headers=s.default_headers or None,
            default_query=s.default_query or None,
            max_retries=0,
            http_client=http_client,
        )

    @property
    def server_url(self) -> str:
        return self._endpoint

    def __repr__(self) -> str:
        return f"AzureOpenAIBackend(deployment={self.model!r}, endpoint={self._endpoint!r})"
