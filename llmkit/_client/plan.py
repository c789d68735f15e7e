"""The plan of one call: every decision, no I/O.

A :class:`_Call` is one logical call, validated and prepared (its messages, parameters,
timeout and deadline). A :class:`CallPlan` makes the decisions of its attempts, the way
httpx's ``auth_flow`` makes those of an authentication exchange: which target is next
(the primary, then the fallbacks in order, skipping a backend whose circuit is open),
whether a failure is retried and after how long (:class:`~llmkit.retry.RetryState`, i.e.
the policy's tenacity strategies with ``Retry-After`` and the deadline), and when to give
up. The drivers in :mod:`.sync` and :mod:`.aio` only wait for a request slot, send, and
sleep the waits the plan hands them::

    plan = CallPlan(client, call)
    while True:
        wait = plan.prepare()           # deadline, breaker, client rate limit
        ...sleep(wait), take a slot...
        try: result = send(plan.target.backend, plan.request())
        except LLMError as error:
            wait = plan.after(error)    # None: give up (re-raise); else sleep, go again
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from .. import _telemetry, structured
from .._requests import ChatRequest, CompletionRequest, EmbeddingRequest, GenerationParams
from ..backends.base import (
    Backend,
    SupportsCompletion,
    SupportsEmbedding,
    no_completion,
    no_embeddings,
)
from ..circuit import CircuitBreaker
from ..errors import CircuitOpenError, LLMError, TimeoutError, UnsupportedFeatureError
from ..retry import RetryPolicy, RetryState
from ..timeouts import Timeout
from ..types import ChatResponse, EmbeddingResponse, Message

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

    from .core import _ClientCore

__all__ = ["CallPlan", "_Call", "_Target", "spec_label"]


def spec_label(backend: Backend) -> str:
    """``"backend:model"`` for logs, usage totals and ``response.backend``."""
    spec = getattr(backend, "spec", None)
    return (
        str(spec) if spec else f"{getattr(backend, 'name', type(backend).__name__)}:{backend.model}"
    )


@dataclass
class _Target:
    """One backend the client can send to, with the retry policy that applies to it."""

    backend: Backend
    retry: RetryPolicy
    owned: bool  # the client built it, so the client closes it
    breaker: CircuitBreaker | None = None

    def check_circuit(self) -> None:
        if self.breaker is not None and not self.breaker.allow():
            raise CircuitOpenError(
                f"circuit open: {spec_label(self.backend)} failed repeatedly; skipped until "
                "its cool-down ends",
                backend=self.backend.name,
                model=self.backend.model,
            )

    def record(self, error: BaseException | None) -> None:
        """Feed one attempt's outcome to the breaker (only backend-health failures count)."""
        if self.breaker is None:
            return
        if error is None:
            self.breaker.record_success()
        elif isinstance(error, LLMError) and error.retryable:
            self.breaker.record_failure()


# _Call.slot: the AsyncClient's request slot taken ahead of a call's first attempt.
SLOT_NONE = 0  # none taken ahead (each attempt takes its own)
SLOT_QUEUED = 1  # waiting for one
SLOT_HELD = 2  # holds one, for its first attempt
SLOT_USED = 3  # the first attempt used it (and released it)
SLOT_EXPIRED = 4  # the call's deadline passed while it waited


@dataclass(slots=True)  # no __dict__: one is held per call queued behind the slots
class _Call:
    """One logical call (all its attempts, re-asks and fallbacks), prepared without I/O."""

    kind: str  # "chat", "complete" or "embed"
    messages: list[Message]
    prompt: str
    params: GenerationParams
    extra: dict[str, Any]
    timeout: Timeout
    started: float
    response_model: type[BaseModel] | None = None
    reasks_left: int = 0
    inputs: list[str] | None = None  # embed: one batch of texts
    dimensions: int | None = None  # embed
    attempts: int = field(default=0)
    stream: bool = False  # set by the stream objects: their span ends with the stream
    traced: bool = False  # the span was started (or found not to be recorded)
    span: _telemetry.CallSpan | None = field(default=None, repr=False)
    # The request last built for a target (its attempts share it); built when the first
    # attempt has its slot, so a call queued behind max_concurrency holds no request yet.
    _request: ChatRequest | CompletionRequest | EmbeddingRequest | None = field(
        default=None, init=False, repr=False
    )
    _request_target: _Target | None = field(default=None, init=False, repr=False)
    # The AsyncClient's slot taken before the first attempt (see AsyncClient._queue_ahead).
    slot: int = field(default=SLOT_NONE, init=False, repr=False)

    @property
    def deadline(self) -> float:
        return self.started + self.timeout.total

    def prompt_text(self) -> str:
        if self.inputs is not None:
            return "\n".join(self.inputs)
        return self.prompt if self.kind == "complete" else "\n".join(m.text for m in self.messages)

    def seconds_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def total_timeout(self, target: _Target) -> TimeoutError:
        return TimeoutError(
            f"no answer within the total timeout of {self.timeout.total:g}s",
            backend=target.backend.name,
            model=target.backend.model,
        )

    def queue_timeout(self, target: _Target) -> TimeoutError:
        return TimeoutError(
            "timed out waiting for a free request slot (max_concurrency reached)",
            backend=target.backend.name,
            model=target.backend.model,
            retryable=False,  # the call's deadline has passed: neither retry nor fall back
        )

    def check_deadline(self, target: _Target) -> None:
        if time.monotonic() >= self.deadline:
            raise TimeoutError(
                f"total timeout of {self.timeout.total:g}s exceeded",
                backend=target.backend.name,
                model=target.backend.model,
                retryable=False,  # the budget is spent: neither retry nor fall back
            )

    def check_supported(self, target: _Target) -> None:
        """Refuse what the target's backend cannot do, before any wait or network call."""
        backend = target.backend
        capabilities = backend.capabilities
        if self.kind == "embed":
            if not capabilities.embeddings:
                raise no_embeddings(backend)
            return
        if not getattr(capabilities, "chat", True):
            raise UnsupportedFeatureError(
                f"{backend.spec!r} is an embedding model: call embed() on it, and use a chat "
                "model for chat and completion"
            )
        if self.kind == "complete" and not capabilities.completion:
            raise no_completion(backend)
        if self.stream and not capabilities.streaming:
            raise UnsupportedFeatureError(
                f"backend {backend.spec!r} does not stream (capabilities.streaming is off); "
                "use chat() or complete() instead"
            )
        if self.kind == "chat" and self.params.tools and not capabilities.tools:
            raise UnsupportedFeatureError(
                f"backend {backend.spec!r} cannot call tools; use a backend that can, "
                "or drop tools="
            )
        for kind, able, what in _PARTS_NEEDING:
            if not getattr(capabilities, able, False) and _has_part(self.messages, kind):
                raise UnsupportedFeatureError(
                    f"backend {backend.spec!r} does not take {what} in messages ({kind} "
                    f"parts; capabilities.{able} is off): send text, or use a backend that does"
                )

    def request(self, target: _Target) -> ChatRequest | CompletionRequest | EmbeddingRequest:
        """The request for ``target``, built once for all of its attempts."""
        if self._request is None or self._request_target is not target:
            self._request, self._request_target = self.request_for(target), target
        return self._request

    def request_for(self, target: _Target) -> ChatRequest | CompletionRequest | EmbeddingRequest:
        """The request for ``target``; :meth:`check_supported` must have passed."""
        backend = target.backend
        # What every request carries (BaseRequest's keyword fields).
        common: dict[str, Any] = {
            "extra": self.extra,
            "timeout": self.timeout,
            "deadline": self.deadline,
        }
        if self.inputs is not None:
            return EmbeddingRequest(backend.model, self.inputs, self.dimensions, **common)
        if self.kind == "complete":
            return CompletionRequest(backend.model, self.prompt, params=self.params, **common)
        params, messages = self.params, self.messages
        if self.response_model is not None and "response_format" not in params.model_fields_set:
            if backend.capabilities.structured_output:
                params = params.model_copy(
                    update={"response_format": structured.response_format_for(self.response_model)}
                )
                params.model_fields_set.add("response_format")
            else:
                messages = [structured.instruction_message(self.response_model), *messages]
        return ChatRequest(backend.model, messages, params=params, **common)


# Content part type -> the capability a backend needs to take it.
_PARTS_NEEDING = (
    ("image_url", "vision", "images"),
    ("input_audio", "audio", "audio"),
    ("file", "files", "files"),
)


def _has_part(messages: list[Message], kind: str) -> bool:
    return any(
        isinstance(m.content, list) and any(p.type == kind for p in m.content) for m in messages
    )


class CallPlan:
    """The decisions of one call's attempts (see the module docstring); no I/O.

    One is made per run of a call (a structured-output re-ask runs its own). ``target`` is
    the backend the next attempt goes to.
    """

    __slots__ = ("_client", "_index", "_retries", "call", "target")

    def __init__(self, client: _ClientCore, call: _Call) -> None:
        self._client = client
        self.call = call
        self._index = 0
        self.target: _Target = client._targets[0]
        self._retries: RetryState | None = None  # made at the first failure only
        call.check_supported(self.target)

    def prepare(self, *, queue_expired: bool = False) -> float:
        """An attempt at :attr:`target` begins: refuse it when the call's deadline has
        passed (``queue_expired``: while it waited for a request slot) or the target's
        circuit is open; else the seconds the client's rate limit asks to wait first."""
        call, target = self.call, self.target
        call.attempts += 1
        if queue_expired:
            raise call.queue_timeout(target)
        call.check_deadline(target)
        target.check_circuit()
        return self._client._rate_wait(call, target)

    def request(self) -> ChatRequest | CompletionRequest | EmbeddingRequest:
        """The request of this attempt (``on_request`` sees it): the driver holds a slot."""
        request = self.call.request(self.target)
        hook = self._client._hooks.on_request
        if hook is not None:
            hook(request)
        return request

    def after(self, error: LLMError) -> float | None:
        """The attempt failed with ``error``: the seconds to wait before the next attempt
        (at :attr:`target`, which may now be the next fallback), or ``None`` to give up and
        let ``error`` propagate."""
        call, target = self.call, self.target
        policy = target.retry
        if policy.max_attempts > 1 and policy.is_retryable(error):
            retries = self._retries
            if retries is None:
                # The policy may run on an injected clock: translate the deadline onto it.
                retries = self._retries = RetryState(
                    policy,
                    deadline=policy.clock() + call.seconds_left(),
                    on_retry=self._client._retry_hook(call),
                )
            wait = retries.after(error)
            if wait is not None:
                return wait
        if not self._client._should_fall_back(error, self._index, call):
            return None
        self._index += 1
        self.target = self._client._targets[self._index]
        self._retries = None
        call.check_supported(self.target)
        return 0.0


# What one attempt calls on the backend: made once here, not as a lambda per call (every
# call queued behind max_concurrency would hold one). The optional abilities are cast, not
# checked: check_supported() has refused the call unless the capability is on.
def send_chat(backend: Backend, request: Any) -> ChatResponse:
    return backend.chat(request)


def send_complete(backend: Backend, request: Any) -> ChatResponse:
    return cast(SupportsCompletion, backend).complete(request)


def send_embed(backend: Backend, request: Any) -> EmbeddingResponse:
    return cast(SupportsEmbedding, backend).embed(request)


def asend_embed(backend: Backend, request: Any) -> Awaitable[EmbeddingResponse]:
    return cast(SupportsEmbedding, backend).aembed(request)


def asend_chat(backend: Backend, request: Any) -> Awaitable[ChatResponse]:
    return backend.achat(request)


def asend_complete(backend: Backend, request: Any) -> Awaitable[ChatResponse]:
    return cast(SupportsCompletion, backend).acomplete(request)


def open_backend_stream(backend: Backend, request: Any) -> Any:
    """The backend's stream for ``request`` (a raw completion streams via
    ``stream_complete``)."""
    if isinstance(request, CompletionRequest):
        return cast(SupportsCompletion, backend).stream_complete(request)
    return backend.stream(request)


def open_backend_astream(backend: Backend, request: Any) -> AsyncIterator[Any]:
    if isinstance(request, CompletionRequest):
        return cast(SupportsCompletion, backend).astream_complete(request)
    return backend.astream(request)
