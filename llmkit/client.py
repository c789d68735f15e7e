"""``Client`` and ``AsyncClient``: one surface in front of every backend.

The work is split the way httpx and openai-python split theirs: :class:`_ClientCore` holds
everything that does no I/O (resolving configuration, normalising input, building requests,
finishing responses, the structured-output loop), and the two clients are thin shells that
only differ in how they wait — the sync client calls the backend's sync methods directly (no
event loop per call), the async client awaits the async ones.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import threading
import time
from builtins import TimeoutError as TimeoutError_
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union

from pydantic import BaseModel, ValidationError

from . import _telemetry, structured
from ._slots import AsyncSlots
from .backends.base import Backend
from .circuit import CircuitBreaker
from .config import ProfileSettings, load_config, parse_spec, resolve_default
from .errors import (
    ConfigError,
    InvalidInputError,
    LLMError,
    OutputValidationError,
    RateLimitError,
    ServerError,
    TimeoutError,
    UnsupportedFeatureError,
)
from .prompts import Prompt
from .ratelimit import RateLimit
from .registry import get_backend_class
from .retry import RetryPolicy
from .streaming import StreamAccumulator
from .timeouts import DEFAULT_TIMEOUT, Timeout, TimeoutInput
from .tools import ToolBox, aexecute, execute
from .types import (
    NOT_GIVEN,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    GenerationParams,
    Message,
    NotGiven,
    StreamEvent,
    Usage,
    estimate_tokens,
    normalize_messages,
)

if TYPE_CHECKING:
    import asyncio

    from opentelemetry.trace import TracerProvider
else:
    from ._lazy import lazy_module

    asyncio = lazy_module("asyncio", globals())  # only async calls need it: see _lazy

__all__ = ["AsyncClient", "AsyncStream", "Client", "Hooks", "Stream"]

logger = logging.getLogger("llmkit")

ChatInput = Union[str, Message, Mapping[str, Any], Sequence[Any], Prompt]
T = TypeVar("T")

_PARAM_NAMES = frozenset(GenerationParams.model_fields)
# Requests in flight per client. Past a few hundred, httpx's pool spends more time managing
# waiters than sending; a cap in front of it keeps latency flat under bursts.
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_RETRY = RetryPolicy()
# How many times a reply that fails response_model validation is re-asked before giving up.
DEFAULT_STRUCTURED_REASKS = 2


@dataclass
class Hooks:
    """Callbacks for observability; each is optional and must not raise.

    ``on_request(request)`` before every attempt, ``on_retry(error, attempt)`` before a retry
    sleeps, ``on_response(response)`` when a call succeeds, ``on_error(error)`` when a call
    finally fails (after retries and fallbacks).
    """

    on_request: Callable[[ChatRequest | CompletionRequest], None] | None = None
    on_response: Callable[[ChatResponse], None] | None = None
    on_retry: Callable[[BaseException, int], None] | None = None
    on_error: Callable[[BaseException], None] | None = None


@dataclass
class _Target:
    """One backend the client can send to, with the retry policy that applies to it."""

    backend: Backend
    retry: RetryPolicy
    owned: bool  # the client built it, so the client closes it
    breaker: CircuitBreaker | None = None

    def circuit_open_error(self) -> ServerError:
        error = ServerError(
            f"circuit open: {_spec_label(self.backend)} failed repeatedly; skipped until its cool-down ends",
            backend=self.backend.name,
            model=self.backend.model,
        )
        error.circuit_open = True  # type: ignore[attr-defined]  # fall back, don't retry
        return error

    def check_circuit(self) -> None:
        if self.breaker is not None and not self.breaker.allow():
            raise self.circuit_open_error()

    def record(self, error: BaseException | None) -> None:
        """Feed one attempt's outcome to the breaker (only backend-health failures count)."""
        if self.breaker is None:
            return
        if error is None:
            self.breaker.record_success()
        elif isinstance(error, LLMError) and error.retryable:
            self.breaker.record_failure()


# _Call.slot: the AsyncClient's request slot taken ahead of a call's first attempt.
_SLOT_NONE = 0  # none taken ahead (each attempt takes its own)
_SLOT_QUEUED = 1  # waiting for one
_SLOT_HELD = 2  # holds one, for its first attempt
_SLOT_USED = 3  # the first attempt used it (and released it)
_SLOT_EXPIRED = 4  # the call's deadline passed while it waited


@dataclass(slots=True)  # no __dict__: one is held per call queued behind the slots
class _Call:
    """One logical call (all its attempts, re-asks and fallbacks), prepared without I/O."""

    kind: str  # "chat" or "complete"
    messages: list[Message]
    prompt: str
    params: GenerationParams
    extra: dict[str, Any]
    timeout: Timeout
    started: float
    response_model: type[BaseModel] | None = None
    reasks_left: int = 0
    attempts: int = field(default=0)
    stream: bool = False  # set by the stream objects: their span ends with the stream
    traced: bool = False  # the span was started (or found not to be recorded)
    span: _telemetry.CallSpan | None = field(default=None, repr=False)
    _first_failure: LLMError | None = field(default=None, repr=False)
    # The request last built for a target (its attempts share it); built when the first
    # attempt has its slot, so a call queued behind max_concurrency holds no request yet.
    _request: ChatRequest | CompletionRequest | None = field(default=None, init=False, repr=False)
    _request_target: _Target | None = field(default=None, init=False, repr=False)
    # The AsyncClient's slot taken before the first attempt (see AsyncClient._queue_ahead).
    slot: int = field(default=_SLOT_NONE, init=False, repr=False)

    @property
    def deadline(self) -> float:
        return self.started + self.timeout.total

    def prompt_text(self) -> str:
        return self.prompt if self.kind == "complete" else "\n".join(m.text for m in self.messages)

    def _policy_deadline(self, policy: RetryPolicy) -> float:
        # The policy may run on an injected clock; translate the call's deadline onto it.
        return policy.clock() + self.seconds_left()

    def retry_controller(
        self, target: _Target, first_failure: LLMError, on_retry: Callable[[Any], None] | None
    ) -> Any:
        """A tenacity controller whose first attempt replays ``first_failure`` (the attempt
        the fast path already made), so attempt counting and backoff stay exact."""
        self._first_failure = first_failure
        self.attempts -= 1  # the replay is not a new attempt
        return target.retry.retrying(
            deadline=self._policy_deadline(target.retry), on_retry=on_retry
        )

    def async_retry_controller(
        self, target: _Target, first_failure: LLMError, on_retry: Callable[[Any], None] | None
    ) -> Any:
        self._first_failure = first_failure
        self.attempts -= 1
        return target.retry.async_retrying(
            deadline=self._policy_deadline(target.retry), on_retry=on_retry
        )

    def replay_first_failure(self) -> None:
        error, self._first_failure = self._first_failure, None
        if error is not None:
            self.attempts += 1
            raise error

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
        if self.kind == "chat" and self.params.tools and not target.backend.capabilities.tools:
            raise UnsupportedFeatureError(
                f"backend {target.backend.spec!r} cannot call tools; use a backend that can, "
                "or drop tools="
            )

    def request(self, target: _Target) -> ChatRequest | CompletionRequest:
        """The request for ``target``, built once for all of its attempts."""
        if self._request is None or self._request_target is not target:
            self._request, self._request_target = self.request_for(target), target
        return self._request

    def request_for(self, target: _Target) -> ChatRequest | CompletionRequest:
        """The request for ``target``; :meth:`check_supported` must have passed."""
        backend = target.backend
        if self.kind == "complete":
            return CompletionRequest(
                model=backend.model,
                prompt=self.prompt,
                params=self.params,
                extra=self.extra,
                timeout=self.timeout,
                deadline=self.deadline,
            )
        params, messages = self.params, self.messages
        if self.response_model is not None and "response_format" not in params.model_fields_set:
            if backend.capabilities.structured_output:
                params = params.model_copy(
                    update={"response_format": structured.response_format_for(self.response_model)}
                )
                params.model_fields_set.add("response_format")
            else:
                messages = [structured.instruction_message(self.response_model), *messages]
        return ChatRequest(
            model=backend.model,
            messages=messages,
            params=params,
            extra=self.extra,
            timeout=self.timeout,
            deadline=self.deadline,
        )


# What one attempt calls on the backend: made once here, not as a lambda per call (every
# call queued behind max_concurrency would hold one).
def _send_chat(backend: Backend, request: Any) -> ChatResponse:
    return backend.chat(request)


def _send_complete(backend: Backend, request: Any) -> ChatResponse:
    return backend.complete(request)


def _asend_chat(backend: Backend, request: Any) -> Awaitable[ChatResponse]:
    return backend.achat(request)


def _asend_complete(backend: Backend, request: Any) -> Awaitable[ChatResponse]:
    return backend.acomplete(request)


def _spec_label(backend: Backend) -> str:
    spec = getattr(backend, "spec", None)
    return (
        str(spec) if spec else f"{getattr(backend, 'name', type(backend).__name__)}:{backend.model}"
    )


class _ClientCore:
    """The I/O-free part shared by :class:`Client` and :class:`AsyncClient`."""

    def __init__(
        self,
        model: str | None = None,
        *,
        backend: Backend | None = None,
        api_key: str | None = None,
        base_url: str | Sequence[str] | None = None,
        timeout: TimeoutInput | None = None,
        retry: RetryPolicy | None = None,
        fallbacks: Sequence[str | _ClientCore] = (),
        system: str | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        hooks: Hooks | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        rate_limit: RateLimit | None = None,
        tracing: bool | None = None,
        tracer_provider: TracerProvider | None = None,
        **options: Any,
    ) -> None:
        self._closed = False
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigError(
                f"max_concurrency must be a positive integer, got {max_concurrency!r}"
            )
        self._max_concurrency = max_concurrency
        self._hooks = hooks or Hooks()
        self._rate_limit = rate_limit
        # Resolved once per client; None when tracing is off or OpenTelemetry is absent.
        self._tracer = _telemetry.tracer_for(tracing, tracer_provider)
        self._usage_lock = threading.Lock()
        self._usage_totals: dict[str, Usage] = {}
        self._setup_concurrency()
        if model is not None and backend is not None:
            raise ConfigError("pass either a model spec or backend=..., not both")
        if model is None and backend is None:
            spec, config_path = resolve_default()
            if config_path is not None:
                settings, profiles = load_config(config_path)
                self._init_from_profile(
                    settings,
                    profiles,
                    overrides={
                        "api_key": api_key,
                        "base_url": base_url,
                        "timeout": timeout,
                        "retry": retry,
                        "system": system,
                        "max_concurrency": max_concurrency,
                        "hooks": hooks,
                        "circuit_breaker": circuit_breaker,
                        "rate_limit": rate_limit,
                        "tracing": tracing,
                        "tracer_provider": tracer_provider,
                        **options,
                    },
                )
                return
            model = spec
        self._timeout = Timeout.coerce(timeout) if timeout is not None else DEFAULT_TIMEOUT
        self._retry = retry if retry is not None else DEFAULT_RETRY
        if not isinstance(self._retry, RetryPolicy):
            raise ConfigError(
                f"retry must be a llmkit.RetryPolicy, got {type(self._retry).__name__}"
            )
        self._system = system
        # Generation options given to the constructor become defaults for every call.
        self._defaults = {k: options.pop(k) for k in list(options) if k in _PARAM_NAMES}
        # Shared by every call that sets no option of its own (requests treat params as
        # read-only): no validation, and no object held per queued call.
        self._default_params = self._check_params(self._defaults)
        if backend is not None:
            if not isinstance(backend, Backend):
                raise ConfigError(
                    f"backend must implement llmkit.backends.Backend, got {type(backend).__name__}"
                )
            primary = _Target(backend, self._retry, owned=False)
        else:
            assert model is not None
            backend_options = dict(options)
            if api_key is not None:
                backend_options["api_key"] = api_key
            if base_url is not None:
                backend_options["base_url"] = base_url
            primary = _Target(self._build_backend(model, backend_options), self._retry, owned=True)
        self._targets = [primary, *self._fallback_targets(fallbacks)]
        if circuit_breaker is not None:
            for target in self._targets:
                if target.breaker is None:
                    target.breaker = circuit_breaker.fresh()

    # -- construction helpers ------------------------------------------------------------

    def _setup_concurrency(self) -> None:
        raise NotImplementedError  # the sync and async shells each bring their own primitive

    def _init_from_profile(
        self,
        settings: ProfileSettings,
        profiles: Mapping[str, ProfileSettings],
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        kwargs = settings.client_kwargs()
        kwargs.update({k: v for k, v in (overrides or {}).items() if v is not None})
        fallbacks: list[str | _ClientCore] = []
        for name in settings.fallbacks:
            if name in profiles:
                fb = profiles[name]
                fallbacks.append(type(self)(fb.model, **fb.client_kwargs()))
            else:
                fallbacks.append(name)
        type(self).__init__(self, settings.model, fallbacks=fallbacks, **kwargs)

    @staticmethod
    def _build_backend(spec: str, options: dict[str, Any]) -> Backend:
        name, model = parse_spec(spec)
        cls = get_backend_class(name)
        backend = cls(model, **options)
        return backend  # type: ignore[no-any-return]

    def _fallback_targets(self, fallbacks: Sequence[str | _ClientCore]) -> list[_Target]:
        if isinstance(fallbacks, (str, _ClientCore)):
            fallbacks = [fallbacks]
        targets = []
        for fb in fallbacks:
            if isinstance(fb, _ClientCore):
                targets.append(dataclasses.replace(fb._targets[0], owned=False))
            elif isinstance(fb, str):
                targets.append(_Target(self._build_backend(fb, {}), self._retry, owned=True))
            else:
                raise ConfigError(
                    f"fallbacks must be model specs or clients, got {type(fb).__name__} {fb!r}"
                )
        return targets

    @classmethod
    def _from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        profile: str | None = None,
        **overrides: Any,
    ) -> Any:
        settings, profiles = load_config(source, profile)
        self = cls.__new__(cls)
        self._closed = False
        self._init_from_profile(settings, profiles, overrides)
        return self

    # -- introspection -------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The primary backend."""
        return self._targets[0].backend

    @property
    def model(self) -> str:
        return self._targets[0].backend.model

    @property
    def usage(self) -> Usage:
        """Tokens used by every call this client made so far (all backends together)."""
        with self._usage_lock:
            return sum(self._usage_totals.values(), Usage())

    @property
    def usage_by_backend(self) -> dict[str, Usage]:
        """Running token totals per backend spec (``"openai:gpt-4o-mini"``, ...)."""
        with self._usage_lock:
            return dict(self._usage_totals)

    def cost(self, prices: Mapping[str, tuple[float, float]]) -> float:
        """What the tokens used so far cost, given ``prices``: backend spec (or model name) →
        ``(input price, output price)`` per million tokens. Unpriced backends raise
        :class:`ConfigError` rather than silently counting as free."""
        total = 0.0
        for spec, usage in self.usage_by_backend.items():
            price = prices.get(spec) or prices.get(spec.partition(":")[2])
            if price is None:
                raise ConfigError(f"no price for {spec!r}; add it to the price table")
            total += usage.prompt_tokens * price[0] / 1e6 + usage.completion_tokens * price[1] / 1e6
        return total

    def __repr__(self) -> str:
        fallbacks = [_spec_label(t.backend) for t in self._targets[1:]]
        extra = f", fallbacks={fallbacks!r}" if fallbacks else ""
        return f"{type(self).__name__}({_spec_label(self.backend)!r}{extra})"

    # -- request preparation (no I/O) ----------------------------------------------------

    @staticmethod
    def _check_params(values: Mapping[str, Any]) -> GenerationParams:
        try:
            return GenerationParams(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"])
            raise InvalidInputError(
                f"invalid value for {name}: {err.get('input')!r} ({err['msg']})"
            ) from None
        except InvalidInputError:
            raise

    def _options(
        self, given: Mapping[str, Any], extra: Mapping[str, Any]
    ) -> tuple[GenerationParams, dict[str, Any]]:
        own = {k: v for k, v in given.items() if not isinstance(v, NotGiven)}
        if not _PARAM_NAMES.isdisjoint(extra):  # e.g. reasoning_effort=: a params field
            extra = dict(extra)
            own.update({k: extra.pop(k) for k in _PARAM_NAMES.intersection(extra)})
        params = self._check_params({**self._defaults, **own}) if own else self._default_params
        # A method's **extra is already a fresh dict: no copy held per queued call.
        return params, extra if type(extra) is dict else dict(extra)

    def _timeout_for(self, timeout: Any) -> Timeout:
        return self._timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)

    def _prepare_chat(
        self,
        messages: ChatInput,
        *,
        system: Any,
        variables: Any,
        response_model: Any,
        timeout: Any,
        given: Mapping[str, Any],
        extra: Mapping[str, Any],
    ) -> _Call:
        if self._closed:
            raise ConfigError("this client is closed; create a new one")
        rendered = self._conversation(messages, variables)
        system_text = self._system if isinstance(system, NotGiven) else system
        if system_text:
            rendered = [Message(role="system", content=system_text), *rendered]
        if not isinstance(response_model, NotGiven) and response_model is not None:
            if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
                raise InvalidInputError(
                    f"response_model must be a pydantic model class, got {response_model!r}"
                )
            model_cls: type[BaseModel] | None = response_model
        else:
            model_cls = None
        params, extra_dict = self._options(given, extra)
        return _Call(
            kind="chat",
            messages=rendered,
            prompt="",
            params=params,
            extra=extra_dict,
            timeout=self._timeout_for(timeout),
            started=time.monotonic(),
            response_model=model_cls,
            reasks_left=DEFAULT_STRUCTURED_REASKS if model_cls is not None else 0,
        )

    @staticmethod
    def _conversation(messages: ChatInput, variables: Any) -> list[Message]:
        if isinstance(messages, Prompt):
            return messages.render(None if isinstance(variables, NotGiven) else variables)
        if not isinstance(variables, NotGiven):
            raise InvalidInputError("variables= is only used with a llmkit.Prompt input")
        return normalize_messages(messages)

    def _prepare_complete(
        self,
        prompt: str,
        *,
        timeout: Any,
        given: Mapping[str, Any],
        extra: Mapping[str, Any],
        method: str = "complete",
    ) -> _Call:
        if self._closed:
            raise ConfigError("this client is closed; create a new one")
        if not isinstance(prompt, str):
            raise InvalidInputError(
                f"{method}() takes the prompt as a str, got {type(prompt).__name__}"
            )
        params, extra_dict = self._options(given, extra)
        return _Call(
            kind="complete",
            messages=[],
            prompt=prompt,
            params=params,
            extra=extra_dict,
            timeout=self._timeout_for(timeout),
            started=time.monotonic(),
        )

    # -- response finishing (no I/O) -----------------------------------------------------

    def _finish(self, response: ChatResponse, call: _Call, target: _Target) -> ChatResponse:
        response.backend = _spec_label(target.backend)
        if not response.model:
            response.model = target.backend.model
        usage = response.usage
        if usage.estimated and usage.total_tokens == 0:
            completion = response.text + "".join(tc.arguments for tc in response.tool_calls)
            response.usage = Usage.estimate(call.prompt_text(), completion)
        if self._rate_limit is not None:
            self._rate_limit.charge(response.usage.completion_tokens)
        with self._usage_lock:
            previous = self._usage_totals.get(response.backend)
            self._usage_totals[response.backend] = (
                response.usage if previous is None else previous + response.usage
            )
        if self._hooks.on_response is not None:
            self._hooks.on_response(response)
        logger.info(
            "llm call backend=%s model=%s latency=%.3fs prompt_tokens=%d completion_tokens=%d "
            "attempts=%d id=%s request_id=%s",
            response.backend,
            response.model,
            time.monotonic() - call.started,
            response.usage.prompt_tokens,
            response.usage.completion_tokens,
            call.attempts,
            response.id,
            response.request_id,
        )
        if call.span is not None:
            call.span.response(
                response, target.backend, call.attempts, end=call.response_model is None
            )
        return response

    @staticmethod
    def _structured_next(response: ChatResponse, call: _Call) -> _Call | None:
        """Validate structured output: ``None`` when done (``response.parsed`` set), else
        the follow-up call that re-asks; raises when no re-asks are left."""
        assert call.response_model is not None
        parsed, errors = structured.validate_output(response.text, call.response_model)
        if parsed is not None:
            response.parsed = parsed
            if call.span is not None:
                call.span.succeed(call.attempts)
            return None
        if call.reasks_left <= 0:
            error = OutputValidationError(
                f"the model's reply did not validate against {call.response_model.__name__}: "
                f"{errors[0].get('msg') if errors else 'invalid'}",
                raw_text=response.text,
                errors=errors,
                attempts=DEFAULT_STRUCTURED_REASKS - call.reasks_left + 1,
            )
            if call.span is not None:
                call.span.fail(error, call.attempts)
            raise error
        return dataclasses.replace(
            call,
            messages=[
                *call.messages,
                Message(role="assistant", content=response.text),
                structured.repair_message(errors),
            ],
            reasks_left=call.reasks_left - 1,
        )

    def _native_batch(
        self, inputs: Sequence[ChatInput], chat_options: Mapping[str, Any]
    ) -> tuple[list[_Call], list[Any], Callable[[list[Any]], Any]] | None:
        """The prepared calls for a backend-native batch, or ``None`` when it does not apply."""
        run = getattr(self.backend, "batch", None)
        if not callable(run) or len(self._targets) > 1 or chat_options.get("response_model"):
            return None
        special = {"system", "variables", "timeout"}
        given = {k: v for k, v in chat_options.items() if k in _PARAM_NAMES}
        extra = {
            k: v for k, v in chat_options.items() if k not in _PARAM_NAMES and k not in special
        }
        calls = [
            self._prepare_chat(
                item,
                system=chat_options.get("system", NOT_GIVEN),
                variables=chat_options.get("variables", NOT_GIVEN),
                response_model=NOT_GIVEN,
                timeout=chat_options.get("timeout", NOT_GIVEN),
                given=given,
                extra=extra,
            )
            for item in inputs
        ]
        target = self._targets[0]
        for call in calls:
            call.check_supported(target)
        return calls, [c.request_for(target) for c in calls], run

    def _rate_wait(self, call: _Call, target: _Target) -> float:
        """Seconds this attempt must wait for the client's rate limit (0 without one)."""
        if self._rate_limit is None:
            return 0.0
        wait = self._rate_limit.reserve(estimate_tokens(call.prompt_text()))
        if wait > call.seconds_left():
            raise RateLimitError(
                f"the client-side rate limit allows the next request in {wait:.1f}s, after the "
                "call's deadline",
                backend=target.backend.name,
                model=target.backend.model,
                retry_after=wait,
                retryable=False,
            )
        return wait

    def _before_attempt(self, request: ChatRequest | CompletionRequest) -> None:
        if self._hooks.on_request is not None:
            self._hooks.on_request(request)

    def _trace_enter(self, call: _Call) -> object | None:
        """Start the call's span before its first attempt (once: structured re-asks share
        it; a stream's starts when the stream opens) and make it current while the call
        runs, so spans of instrumented HTTP clients nest under it. Returns the token."""
        if self._tracer is None:
            return None
        if not call.traced:
            call.traced = True
            call.span = self._tracer.start(
                "text_completion" if call.kind == "complete" else "chat",
                self._targets[0].backend,
                call.params,
                stream=call.stream,
            )
        return call.span.activate() if call.span is not None else None

    def _after_failure(self, error: BaseException, call: _Call) -> None:
        if call.span is not None:
            call.span.fail(error, call.attempts)
        if self._hooks.on_error is not None:
            self._hooks.on_error(error)

    def _retry_hook(self, call: _Call) -> Callable[[Any], None] | None:
        hook, span = self._hooks.on_retry, call.span
        if hook is None and span is None:
            return None

        def on_retry(state: Any) -> None:
            error = state.outcome.exception()
            if span is not None:
                span.retry(error, state.attempt_number, state.upcoming_sleep)
            if hook is not None:
                hook(error, state.attempt_number)

        return on_retry

    def _should_fall_back(self, error: LLMError, index: int, call: _Call) -> bool:
        if index + 1 >= len(self._targets) or not error.retryable:
            return False
        if call.span is not None:
            call.span.fallback(
                error, self._targets[index].backend, self._targets[index + 1].backend
            )
        logger.warning(
            "backend %s failed with %s; falling back to %s",
            _spec_label(self._targets[index].backend),
            type(error).__name__,
            _spec_label(self._targets[index + 1].backend),
        )
        return True


class _Progress:
    """A tiny stderr counter for batches (no dependency; silent unless stderr is a tty)."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        import sys

        self._stream = sys.stderr
        self.enabled = self._stream.isatty() if enabled is None else enabled
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def step(self) -> None:
        with self._lock:
            self.done += 1
            if self.enabled:
                self._stream.write(f"\rllmkit batch: {self.done}/{self.total}")
                self._stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._stream.write("\n")
            self._stream.flush()


def _given(**kwargs: Any) -> dict[str, Any]:
    return kwargs


# ======================================================================================
# sync


class Client(_ClientCore):
    """The synchronous client.

    Args:
        model: a spec ``"backend:model"`` (``"openai:gpt-4o-mini"``, ``"hf:smollm2"``,
            ``"rest:my-model"``). Omitted: ``LLMKIT_MODEL``, ``LLMKIT_CONFIG``,
            ``./llmkit.toml``, then the embedded ``hf:smollm2``.
        backend: a ready backend instance instead of a spec (e.g.
            ``llmkit.testing.FakeBackend(...)``); the client does not close it.
        api_key, base_url: passed to the backend (which also reads the conventional
            environment variables, e.g. ``OPENAI_API_KEY``).
        timeout: seconds or :class:`~llmkit.Timeout`; the default for every call.
        retry: a :class:`~llmkit.RetryPolicy` (default: 3 attempts, exponential backoff).
        fallbacks: specs or clients tried in order when this backend fails with a retryable
            error after its retries.
        system: a default system prompt.
        tracing: an OpenTelemetry span per call (GenAI semantic conventions) when
            ``opentelemetry-api`` is installed (``llmkit[otel]``); ``False`` turns it off.
        tracer_provider: an OpenTelemetry ``TracerProvider`` to use instead of the global one.
        **options: ``temperature``, ``max_tokens``, ... become per-call defaults; anything
            else is a backend option (``dialect=`` for rest, ``device=`` for hf, ...).
    """

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the backends this client created."""
        if self._closed:
            return
        self._closed = True
        for target in getattr(self, "_targets", []):
            if target.owned:
                target.backend.close()

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        profile: str | None = None,
        **overrides: Any,
    ) -> Client:
        """A client from a TOML file or a mapping (see :mod:`llmkit.config`)."""
        return cls._from_config(source, profile, **overrides)  # type: ignore[no-any-return]

    def _setup_concurrency(self) -> None:
        self._slots = threading.BoundedSemaphore(self._max_concurrency)

    def _run(self, call: _Call, op: Callable[[Backend, Any], T]) -> tuple[T, _Target]:
        """One logical call: retries per target, then fallbacks in order."""
        token = self._trace_enter(call)
        try:
            for index, target in enumerate(self._targets):
                call.check_supported(target)
                try:
                    # Fast path: the first attempt needs no retry machinery.
                    try:
                        return self._attempt(call, target, op), target
                    except LLMError as error:
                        if not target.retry.is_retryable(error) or target.retry.max_attempts < 2:
                            raise
                        first_failure = error
                    for attempt in call.retry_controller(
                        target, first_failure, self._retry_hook(call)
                    ):
                        with attempt:
                            call.replay_first_failure()
                            return self._attempt(call, target, op), target
                except LLMError as error:
                    if not self._should_fall_back(error, index, call):
                        raise
        except BaseException as error:
            self._after_failure(error, call)
            raise
        finally:
            if token is not None:
                _telemetry.CallSpan.deactivate(token)
        raise AssertionError("unreachable: the last target re-raises")  # pragma: no cover

    def _attempt(self, call: _Call, target: _Target, op: Callable[[Backend, Any], T]) -> T:
        call.attempts += 1
        call.check_deadline(target)
        target.check_circuit()
        wait = self._rate_wait(call, target)
        if wait:
            self._rate_limit.sleep(wait)  # type: ignore[union-attr]
        if not self._slots.acquire(timeout=call.seconds_left()):
            raise call.queue_timeout(target)
        try:
            request = call.request(target)
            self._before_attempt(request)
            result = op(target.backend, request)
        except BaseException as error:
            target.record(error)
            raise
        finally:
            self._slots.release()
        target.record(None)
        return result

    def chat(
        self,
        messages: ChatInput,
        *,
        system: str | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        tools: Sequence[Any] | NotGiven = NOT_GIVEN,
        tool_choice: str | dict[str, Any] | NotGiven = NOT_GIVEN,
        response_format: dict[str, Any] | NotGiven = NOT_GIVEN,
        response_model: type[BaseModel] | NotGiven = NOT_GIVEN,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> ChatResponse:
        """Send a conversation and return the answer.

        ``messages`` is a str, a :class:`~llmkit.Message`, an OpenAI-shaped dict, a list of
        those, or a :class:`~llmkit.Prompt` (with ``variables=``). Keyword arguments llmkit
        does not know are passed to the backend unchanged.
        """
        call = self._prepare_chat(
            messages,
            system=system,
            variables=variables,
            response_model=response_model,
            timeout=timeout,
            given=_given(
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=top_p,
                stop=stop,
                seed=seed,
                tools=tools,
                tool_choice=tool_choice,
                response_format=response_format,
            ),
            extra=extra,
        )
        while True:
            response, target = self._run(call, _send_chat)
            response = self._finish(response, call, target)
            if call.response_model is None:
                return response
            next_call = self._structured_next(response, call)
            if next_call is None:
                return response
            call = next_call

    def stream(
        self,
        messages: ChatInput,
        *,
        system: str | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        tools: Sequence[Any] | NotGiven = NOT_GIVEN,
        tool_choice: str | dict[str, Any] | NotGiven = NOT_GIVEN,
        response_format: dict[str, Any] | NotGiven = NOT_GIVEN,
        response_model: type[BaseModel] | NotGiven = NOT_GIVEN,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> Stream:
        """Like :meth:`chat`, but returns a :class:`Stream` of events (use it in ``with``).

        Arguments are validated now; the request is sent when the ``with`` block is entered
        (or iteration starts), and HTTP errors surface there, before the first event.
        """
        call = self._prepare_chat(
            messages,
            system=system,
            variables=variables,
            response_model=response_model,
            timeout=timeout,
            given=_given(
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=top_p,
                stop=stop,
                seed=seed,
                tools=tools,
                tool_choice=tool_choice,
                response_format=response_format,
            ),
            extra=extra,
        )
        return Stream(self, call)

    def complete(
        self,
        prompt: str,
        *,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> ChatResponse:
        """Raw text completion (``prompt -> continuation``), for base models."""
        call = self._prepare_complete(
            prompt,
            timeout=timeout,
            given=_given(
                temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed
            ),
            extra=extra,
        )
        response, target = self._run(call, _send_complete)
        return self._finish(response, call, target)

    def stream_complete(
        self,
        prompt: str,
        *,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> Stream:
        """Like :meth:`complete`, but returns a :class:`Stream` of the continuation (use it
        in ``with``), with the same semantics as :meth:`stream`.

        Arguments are validated now; the request is sent when the ``with`` block is entered
        (or iteration starts). A backend without raw completion raises
        :class:`~llmkit.errors.UnsupportedFeatureError` there, before anything is sent.
        """
        call = self._prepare_complete(
            prompt,
            timeout=timeout,
            given=_given(
                temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed
            ),
            extra=extra,
            method="stream_complete",
        )
        return Stream(self, call)

    def batch(
        self,
        inputs: Sequence[ChatInput],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
        progress: bool | None = None,
        **chat_options: Any,
    ) -> list[Any]:
        """Answer many inputs, ``concurrency`` at a time, in input order.

        With ``return_exceptions=True`` a failed item holds its :class:`LLMError` instead of
        failing the whole batch. ``progress`` shows a counter on stderr (default: when stderr
        is a terminal). ``chat_options`` apply to every item.

        A backend with a native ``batch()`` (the local ``hf`` backend pads the inputs into
        one ``generate()`` call, several times faster than one by one) gets the whole batch
        in one go when there are no fallbacks and no ``response_model``.
        """
        from concurrent.futures import ThreadPoolExecutor

        native = self._native_batch(inputs, chat_options)
        if native is not None:
            calls, requests, run = native
            try:
                responses = run(requests)
            except LLMError as error:
                if not return_exceptions:
                    raise
                return [error] * len(inputs)
            target = self._targets[0]
            return [self._finish(r, c, target) for r, c in zip(responses, calls, strict=True)]

        tracker = _Progress(len(inputs), progress)
        results: list[Any] = [None] * len(inputs)

        def one(index: int) -> None:
            try:
                results[index] = self.chat(inputs[index], **chat_options)
            except LLMError as error:
                if not return_exceptions:
                    raise
                results[index] = error
            finally:
                tracker.step()

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = [pool.submit(one, i) for i in range(len(inputs))]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            finally:
                tracker.close()
        return results

    def run_tools(
        self,
        messages: ChatInput,
        tools: Sequence[Any],
        *,
        max_turns: int = 8,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        **chat_options: Any,
    ) -> ChatResponse:
        """Chat, run the tools the model calls, send their results back, and repeat until the
        model answers without calling a tool (at most ``max_turns`` model calls).

        ``tools`` are Python functions, pydantic models or :class:`~llmkit.Tool` objects
        built from them. A tool that raises, or is called with invalid arguments, sends the
        error text back to the model. If the model still calls tools on the last turn, that
        response is returned as it is (check ``response.tool_calls``). A ``tool_choice`` that
        forces a call applies to the first turn only; later turns use ``"auto"``.
        """
        box = ToolBox(tools)
        conversation = self._conversation(messages, variables)
        response: ChatResponse | None = None
        for _ in range(max(1, max_turns)):
            response = self.chat(conversation, tools=box.tools, **chat_options)
            if not response.tool_calls:
                return response
            chat_options = _after_tool_turn(chat_options)
            conversation = [*conversation, response.message]
            conversation += [execute(call, box.by_name) for call in response.tool_calls]
        assert response is not None
        return response


def _after_tool_turn(chat_options: dict[str, Any]) -> dict[str, Any]:
    """The options for the turn after the model called tools: a ``tool_choice`` that forces
    a call (``"required"`` or a named tool) goes back to ``"auto"``, or the model could never
    give its final answer and the loop would only end at ``max_turns``."""
    if chat_options.get("tool_choice", "auto") in ("auto", "none"):
        return chat_options
    return {**chat_options, "tool_choice": "auto"}


def _open_stream(backend: Backend, request: Any) -> tuple[Iterator[Any], Any]:
    """Start a backend stream and pull its first event, so that errors surface (and can be
    retried) before the caller has seen anything. A raw completion (the request
    ``_Call.request_for`` builds for ``kind="complete"``) streams via ``stream_complete``."""
    if isinstance(request, CompletionRequest):
        iterator = backend.stream_complete(request)
    else:
        iterator = backend.stream(request)
    try:
        first = next(iterator, None)
    except BaseException:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()
        raise
    return iterator, first


class _StreamState(Generic[T]):
    """What :class:`Stream` and :class:`AsyncStream` share: accumulation and the response."""

    # Slots: one stream object is held per call queued behind max_concurrency.
    __slots__ = (
        "_accumulator",
        "_call",
        "_client",
        "_closed",
        "_events_seen",
        "_finished",
        "_iterator",
        "_pending",
        "_response",
        "_target",
    )

    def __init__(self, client: _ClientCore, call: _Call) -> None:
        self._client = client
        self._call = call
        self._iterator: T | None = None
        self._pending: Any = None
        self._accumulator: StreamAccumulator | None = None
        self._target: _Target | None = None
        self._finished = False
        self._closed = False
        self._response: ChatResponse | None = None
        self._events_seen = 0
        call.stream = True  # the span lives from opening the stream to its end

    def _started(self, iterator: T, first: Any, target: _Target) -> None:
        self._iterator, self._pending, self._target = iterator, first, target
        self._accumulator = StreamAccumulator(
            model=target.backend.model, backend=_spec_label(target.backend)
        )
        if self._call.span is not None:
            self._call.span.stream_started(target.backend, first is not None)

    def _end_of_stream(self) -> None:
        """The backend's stream is over: finish the response now (the ``llm call`` log
        record, usage totals, ``on_response``), whether or not the caller reads
        ``response``, and end the span with the same id and request id."""
        self._finished = True
        try:
            self._finished_response()
        finally:
            self._trace_end()

    def _trace_end(self, error: BaseException | None = None) -> None:
        """End the stream's span: with ``error``, else finished or closed early."""
        span = self._call.span
        if span is None or span.ended:
            return
        if error is not None:
            span.fail(error, self._call.attempts)
            return
        response, acc = self._response, self._accumulator
        if response is not None:
            span.stream_done(
                id=response.id,
                model=response.model,
                finish_reason=response.finish_reason,
                usage=response.usage,
                request_id=response.request_id,
                attempts=self._call.attempts,
                closed_early=not self._finished,
            )
            return
        usage = None
        if acc is not None:
            usage = acc.usage or Usage.estimate(self._call.prompt_text(), acc.text)
        span.stream_done(
            id=acc.id if acc is not None else None,
            model=acc.model if acc is not None else None,
            finish_reason=acc.finish_reason if acc is not None else None,
            usage=usage,
            request_id=acc.request_id if acc is not None else None,
            attempts=self._call.attempts,
            closed_early=not self._finished,
        )

    def _budget(self) -> float:
        """Seconds allowed for the next event: first-token budget, then idle, within total."""
        phase = (
            self._call.timeout.first_token if self._events_seen == 0 else self._call.timeout.idle
        )
        return max(0.0, min(phase, self._call.deadline - time.monotonic()))

    def _deadline_error(self) -> TimeoutError:
        assert self._target is not None
        if time.monotonic() >= self._call.deadline:
            message = f"total timeout of {self._call.timeout.total:g}s exceeded while streaming"
        else:
            what = "first token" if self._events_seen == 0 else "next chunk (idle)"
            message = f"stream timed out waiting for the {what}"
        return TimeoutError(
            message, backend=self._target.backend.name, model=self._target.backend.model
        )

    def _seen(self, event: Any) -> Any:
        assert self._accumulator is not None
        self._events_seen += 1
        self._accumulator.add(event)
        return event

    def _finished_response(self) -> ChatResponse:
        """The accumulated response, finished (logged, counted) exactly once."""
        if self._response is None:
            assert self._accumulator is not None and self._target is not None
            response = self._accumulator.response(prompt_text=self._call.prompt_text())
            self._response = self._client._finish(response, self._call, self._target)
        return self._response

    def _build_response(self) -> ChatResponse:
        response = self._finished_response()
        model = self._call.response_model
        if model is not None and self._finished and response.parsed is None:
            parsed, errors = structured.validate_output(response.text, model)
            if parsed is None:
                raise OutputValidationError(
                    f"the streamed reply did not validate against {model.__name__}",
                    raw_text=response.text,
                    errors=errors,
                )
            response.parsed = parsed
        return response


class Stream(_StreamState[Iterator[Any]]):
    """A streamed answer (of :meth:`Client.stream` or :meth:`Client.stream_complete`):
    iterate for events (each has ``.text``), then read ``.response``.

    Leaving the ``with`` block (or calling :meth:`close`) before the end closes the
    underlying request or stops local generation.
    """

    __slots__ = ()
    _client: Client

    def __enter__(self) -> Stream:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        if self._iterator is None:
            if self._closed:
                raise ConfigError("this stream is closed")
            (iterator, first), target = self._client._run(self._call, _open_stream)
            self._started(iterator, first, target)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> StreamEvent:
        self._open()
        if self._pending is not None:
            event, self._pending = self._pending, None
            return self._seen(event)  # type: ignore[no-any-return]
        if self._finished or self._closed:
            raise StopIteration
        assert self._iterator is not None
        if time.monotonic() >= self._call.deadline:
            error = self._deadline_error()
            self._trace_end(error)
            self.close()
            raise error
        try:
            event = next(self._iterator)
        except StopIteration:
            self._end_of_stream()
            raise
        except BaseException as error:
            self._trace_end(error)
            self.close()
            raise
        return self._seen(event)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the stream and release its connection (or generation thread)."""
        if self._closed:
            return
        self._closed = True
        self._trace_end()  # a no-op unless the caller left early
        if self._iterator is not None and not self._finished:
            close = getattr(self._iterator, "close", None)
            if close is not None:
                close()

    @property
    def response(self) -> ChatResponse:
        """The accumulated response. If the stream is still open, the rest is read first;
        after an early close it holds what arrived until then."""
        self._open()
        if not self._finished and not self._closed:
            for _ in self:
                pass
        return self._build_response()

    def text_stream(self) -> Iterator[str]:
        """Just the text deltas."""
        for event in self:
            if event.text:
                yield event.text


# ======================================================================================
# async


async def _with_budget(awaitable: Awaitable[T], seconds: float, error: Callable[[], LLMError]) -> T:
    if sys.version_info >= (3, 11):
        # asyncio.timeout cancels in place; wait_for would wrap every call in a new Task.
        try:
            async with asyncio.timeout(seconds):
                return await awaitable
        except TimeoutError_:
            raise error() from None
    try:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(awaitable, timeout=seconds)
    except asyncio.TimeoutError:
        raise error() from None


class _EventTimer:
    """The per-event budget of an :class:`AsyncStream`, with one timer per stream.

    ``asyncio.timeout`` around every event schedules and cancels a timer handle per token
    (several microseconds each, a good part of llmkit's cost per streamed token). Here a wait
    only records its deadline; the one pending timer, when it fires, either finds the wait
    still running past its deadline and cancels the task (as ``asyncio.timeout`` would, and
    with the same ``uncancel`` bookkeeping), or re-arms itself for the current deadline.
    Python 3.11+ (``Task.uncancel``).
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_loop", "_task", "_until", "_when")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._until = self._when = 0.0
        self._cancelling = 0
        self._expired = False

    def start(self, seconds: float) -> None:
        """A wait for the next event begins; it may last ``seconds``."""
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        if sys.version_info >= (3, 11):
            self._cancelling = task.cancelling()
        self._until = until = self._loop.time() + seconds
        if self._handle is None or until < self._when:
            if self._handle is not None:
                self._handle.cancel()
            self._when = until
            self._handle = self._loop.call_at(until, self._fire)

    def stop(self) -> bool:
        """The wait ended; whether it ran out of time (its CancelledError is ours)."""
        task, self._task = self._task, None
        if not self._expired or task is None:
            return False
        self._expired = False
        if sys.version_info >= (3, 11):
            return task.uncancel() <= self._cancelling
        return True  # pragma: no cover - only used on Python 3.11+

    def _fire(self) -> None:
        self._handle = None
        if self._task is None:
            return  # between waits: the next start() arms a timer again
        if self._until > self._when:  # this wait began after the timer was set
            self._when = self._until
            self._handle = self._loop.call_at(self._until, self._fire)
            return
        self._expired = True
        self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class AsyncClient(_ClientCore):
    """The asynchronous client: the same surface as :class:`Client`, awaitable."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the backends this client created."""
        if self._closed:
            return
        self._closed = True
        for target in getattr(self, "_targets", []):
            if target.owned:
                await target.backend.aclose()

    close = aclose

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        profile: str | None = None,
        **overrides: Any,
    ) -> AsyncClient:
        """A client from a TOML file or a mapping (see :mod:`llmkit.config`)."""
        return cls._from_config(source, profile, **overrides)  # type: ignore[no-any-return]

    def _setup_concurrency(self) -> None:
        # asyncio primitives belong to one event loop; made on first use in each loop.
        self._slots_by_loop: dict[asyncio.AbstractEventLoop, AsyncSlots] = {}

    def _async_slots(self) -> AsyncSlots:
        loop = asyncio.get_running_loop()
        slots = self._slots_by_loop.get(loop)
        if slots is None:
            for old in [lp for lp in self._slots_by_loop if lp.is_closed()]:
                del self._slots_by_loop[old]
            slots = self._slots_by_loop[loop] = AsyncSlots(self._max_concurrency)
        return slots

    # A call waits for its slot in the caller's own coroutine (chat, complete, a stream's
    # open), awaiting the slot's future directly: a call queued behind max_concurrency then
    # holds its validated input and that future, and no frames of _run and _attempt. The
    # first attempt uses the slot; later attempts take their own.

    def _queue_ahead(self, call: _Call) -> asyncio.Future[bool] | None:
        """Take a slot for ``call`` now, or queue it: the future to await, then pass to
        :meth:`_seat`. Pair with :meth:`_leave` in a ``finally``."""
        waiter = self._async_slots().acquire(call.deadline)
        call.slot = _SLOT_HELD if waiter is None else _SLOT_QUEUED
        return waiter

    @staticmethod
    def _seat(call: _Call, acquired: bool) -> None:
        # Past its deadline, the call's first attempt raises the queue timeout (inside _run,
        # so hooks and the span see it as they see every failure).
        call.slot = _SLOT_HELD if acquired else _SLOT_EXPIRED

    def _leave(self, call: _Call, waiter: asyncio.Future[bool] | None) -> None:
        """Give back a slot the call took ahead but never used (it failed before its first
        attempt, or was cancelled while queued or just after a slot was handed over)."""
        if call.slot == _SLOT_HELD:
            call.slot = _SLOT_USED
            self._async_slots().release()
        elif call.slot == _SLOT_QUEUED and waiter is not None:
            self._async_slots().abandon(waiter)

    async def _run(
        self, call: _Call, op: Callable[[Backend, Any], Awaitable[T]]
    ) -> tuple[T, _Target]:
        token = self._trace_enter(call)
        try:
            # range, not enumerate: a call queued behind the slots holds the iterator.
            for index in range(len(self._targets)):
                target = self._targets[index]
                call.check_supported(target)
                try:
                    try:  # fast path, as in Client._run
                        return await self._attempt(call, target, op), target
                    except LLMError as error:
                        if not target.retry.is_retryable(error) or target.retry.max_attempts < 2:
                            raise
                        first_failure = error
                    async for attempt in call.async_retry_controller(
                        target, first_failure, self._retry_hook(call)
                    ):
                        with attempt:
                            call.replay_first_failure()
                            return await self._attempt(call, target, op), target
                except LLMError as error:
                    if not self._should_fall_back(error, index, call):
                        raise
        except BaseException as error:
            self._after_failure(error, call)
            raise
        finally:
            if token is not None:
                _telemetry.CallSpan.deactivate(token)
        raise AssertionError("unreachable: the last target re-raises")  # pragma: no cover

    async def _attempt(
        self, call: _Call, target: _Target, op: Callable[[Backend, Any], Awaitable[T]]
    ) -> T:
        call.attempts += 1
        if call.slot == _SLOT_EXPIRED:
            raise call.queue_timeout(target)
        call.check_deadline(target)
        target.check_circuit()
        wait = self._rate_wait(call, target)
        if wait:
            await self._rate_limit.async_sleep(wait)  # type: ignore[union-attr]
        slots = self._async_slots()
        if call.slot == _SLOT_HELD:
            call.slot = _SLOT_USED  # the slot the call queued for; released below
        else:
            waiter = slots.acquire(call.deadline)
            if waiter is not None:  # queued behind max_concurrency
                try:
                    acquired = await waiter
                except asyncio.CancelledError:
                    slots.abandon(waiter)
                    raise
                if not acquired:
                    raise call.queue_timeout(target)
        try:
            request = call.request(target)
            self._before_attempt(request)
            if sys.version_info >= (3, 11):
                # Inline rather than through _with_budget: one coroutine less per call.
                try:
                    async with asyncio.timeout(call.seconds_left()):
                        result = await op(target.backend, request)
                except TimeoutError_:
                    raise call.total_timeout(target) from None
            else:  # pragma: no cover - Python 3.10
                result = await _with_budget(
                    op(target.backend, request),
                    call.seconds_left(),
                    functools.partial(call.total_timeout, target),
                )
        except BaseException as error:
            target.record(error)
            raise
        finally:
            slots.release()
        target.record(None)
        return result

    async def chat(
        self,
        messages: ChatInput,
        *,
        system: str | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        tools: Sequence[Any] | NotGiven = NOT_GIVEN,
        tool_choice: str | dict[str, Any] | NotGiven = NOT_GIVEN,
        response_format: dict[str, Any] | NotGiven = NOT_GIVEN,
        response_model: type[BaseModel] | NotGiven = NOT_GIVEN,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> ChatResponse:
        """Send a conversation and return the answer (see :meth:`Client.chat`)."""
        call = self._prepare_chat(
            messages,
            system=system,
            variables=variables,
            response_model=response_model,
            timeout=timeout,
            given=_given(
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=top_p,
                stop=stop,
                seed=seed,
                tools=tools,
                tool_choice=tool_choice,
                response_format=response_format,
            ),
            extra=extra,
        )
        first, waiter = call, self._queue_ahead(call)
        try:
            if waiter is not None:
                self._seat(call, await waiter)
            while True:
                response, target = await self._run(call, _asend_chat)
                response = self._finish(response, call, target)
                if call.response_model is None:
                    return response
                next_call = self._structured_next(response, call)
                if next_call is None:
                    return response
                call = next_call
        finally:
            self._leave(first, waiter)

    def stream(
        self,
        messages: ChatInput,
        *,
        system: str | NotGiven = NOT_GIVEN,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        tools: Sequence[Any] | NotGiven = NOT_GIVEN,
        tool_choice: str | dict[str, Any] | NotGiven = NOT_GIVEN,
        response_format: dict[str, Any] | NotGiven = NOT_GIVEN,
        response_model: type[BaseModel] | NotGiven = NOT_GIVEN,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> AsyncStream:
        """An :class:`AsyncStream` (use ``async with``); arguments are validated now."""
        call = self._prepare_chat(
            messages,
            system=system,
            variables=variables,
            response_model=response_model,
            timeout=timeout,
            given=_given(
                temperature=temperature,
                max_tokens=max_tokens,
                top_p=top_p,
                stop=stop,
                seed=seed,
                tools=tools,
                tool_choice=tool_choice,
                response_format=response_format,
            ),
            extra=extra,
        )
        return AsyncStream(self, call)

    async def complete(
        self,
        prompt: str,
        *,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> ChatResponse:
        """Raw text completion (``prompt -> continuation``), for base models."""
        call = self._prepare_complete(
            prompt,
            timeout=timeout,
            given=_given(
                temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed
            ),
            extra=extra,
        )
        waiter = self._queue_ahead(call)
        try:
            if waiter is not None:
                self._seat(call, await waiter)
            response, target = await self._run(call, _asend_complete)
        finally:
            self._leave(call, waiter)
        return self._finish(response, call, target)

    def stream_complete(
        self,
        prompt: str,
        *,
        temperature: float | NotGiven = NOT_GIVEN,
        max_tokens: int | NotGiven = NOT_GIVEN,
        top_p: float | NotGiven = NOT_GIVEN,
        stop: str | list[str] | NotGiven = NOT_GIVEN,
        seed: int | NotGiven = NOT_GIVEN,
        timeout: TimeoutInput | NotGiven = NOT_GIVEN,
        **extra: Any,
    ) -> AsyncStream:
        """An :class:`AsyncStream` of a raw completion (use ``async with``); see
        :meth:`Client.stream_complete`. Arguments are validated now."""
        call = self._prepare_complete(
            prompt,
            timeout=timeout,
            given=_given(
                temperature=temperature, max_tokens=max_tokens, top_p=top_p, stop=stop, seed=seed
            ),
            extra=extra,
            method="stream_complete",
        )
        return AsyncStream(self, call)

    async def batch(
        self,
        inputs: Sequence[ChatInput],
        *,
        concurrency: int = 8,
        return_exceptions: bool = False,
        progress: bool | None = None,
        **chat_options: Any,
    ) -> list[Any]:
        """Answer many inputs, ``concurrency`` at a time, in input order (see
        :meth:`Client.batch`)."""
        native = self._native_batch(inputs, chat_options)
        abatch = getattr(self.backend, "abatch", None)
        if native is not None and callable(abatch):
            calls, requests, _ = native
            try:
                responses = await abatch(requests)
            except LLMError as error:
                if not return_exceptions:
                    raise
                return [error] * len(inputs)
            target = self._targets[0]
            return [self._finish(r, c, target) for r, c in zip(responses, calls, strict=True)]
        tracker = _Progress(len(inputs), progress)
        gate = asyncio.Semaphore(max(1, concurrency))

        async def one(item: ChatInput) -> Any:
            async with gate:
                try:
                    return await self.chat(item, **chat_options)
                except LLMError as error:
                    if not return_exceptions:
                        raise
                    return error
                finally:
                    tracker.step()

        tasks = [asyncio.ensure_future(one(item)) for item in inputs]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            tracker.close()

    async def run_tools(
        self,
        messages: ChatInput,
        tools: Sequence[Any],
        *,
        max_turns: int = 8,
        variables: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        **chat_options: Any,
    ) -> ChatResponse:
        """The async tool loop (see :meth:`Client.run_tools`); the calls of one turn run
        concurrently (coroutine tools awaited, plain functions in worker threads)."""
        box = ToolBox(tools)
        conversation = self._conversation(messages, variables)
        response: ChatResponse | None = None
        for _ in range(max(1, max_turns)):
            response = await self.chat(conversation, tools=box.tools, **chat_options)
            if not response.tool_calls:
                return response
            chat_options = _after_tool_turn(chat_options)
            results = await asyncio.gather(
                *(aexecute(call, box.by_name) for call in response.tool_calls)
            )
            conversation = [*conversation, response.message, *results]
        assert response is not None
        return response


class AsyncStream(_StreamState[AsyncIterator[Any]]):
    """The async counterpart of :class:`Stream` (of :meth:`AsyncClient.stream` or
    :meth:`AsyncClient.stream_complete`); the first-token and idle budgets of the
    call's timeout are enforced on every event, so a stalled stream fails."""

    __slots__ = ("_timer",)
    _client: AsyncClient

    def __init__(self, client: AsyncClient, call: _Call) -> None:
        super().__init__(client, call)
        self._timer: _EventTimer | None = None

    async def __aenter__(self) -> AsyncStream:
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _open(self) -> None:
        if self._iterator is not None:
            return
        if self._closed:
            raise ConfigError("this stream is closed")

        client, call = self._client, self._call
        waiter = client._queue_ahead(call)
        try:
            if waiter is not None:
                client._seat(call, await waiter)
            (iterator, first), target = await client._run(call, self._open_backend)
        finally:
            client._leave(call, waiter)
        self._started(iterator, first, target)

    async def _open_backend(self, backend: Backend, request: Any) -> tuple[AsyncIterator[Any], Any]:
        """One attempt: start the backend stream and wait for its first event (within the
        first-token budget). A method, not a closure: it is held by every queued stream."""
        if isinstance(request, CompletionRequest):  # kind="complete": stream_complete()
            iterator = backend.astream_complete(request)
        else:
            iterator = backend.astream(request)
        try:
            first = await _with_budget(
                iterator.__anext__(),
                max(
                    0.0,
                    min(self._call.timeout.first_token, self._call.deadline - time.monotonic()),
                ),
                lambda: TimeoutError(
                    "stream timed out waiting for the first token",
                    backend=backend.name,
                    model=backend.model,
                ),
            )
        except StopAsyncIteration:
            first = None
        except BaseException:
            await _aclose(iterator)
            raise
        return iterator, first

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> StreamEvent:
        await self._open()
        if self._pending is not None:
            event, self._pending = self._pending, None
            return self._seen(event)  # type: ignore[no-any-return]
        if self._finished or self._closed:
            raise StopAsyncIteration
        assert self._iterator is not None
        try:
            if sys.version_info >= (3, 11):
                timer = self._timer
                if timer is None:
                    timer = self._timer = _EventTimer()
                timer.start(self._budget())
                try:
                    event = await self._iterator.__anext__()
                except asyncio.CancelledError:
                    if timer.stop():
                        raise self._deadline_error() from None
                    raise
                except BaseException:
                    timer.stop()
                    raise
                timer.stop()
            else:  # pragma: no cover - Python 3.10
                event = await _with_budget(
                    self._iterator.__anext__(), self._budget(), self._deadline_error
                )
        except StopAsyncIteration:
            self._stop_timer()
            self._end_of_stream()
            raise
        except BaseException as error:
            self._trace_end(error)
            await self.aclose()
            raise
        return self._seen(event)  # type: ignore[no-any-return]

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    async def aclose(self) -> None:
        """Stop the stream and release its connection (or generation thread)."""
        if self._closed:
            return
        self._closed = True
        self._trace_end()  # a no-op unless the caller left early
        self._stop_timer()
        if self._iterator is not None and not self._finished:
            await _aclose(self._iterator)

    close = aclose

    async def get_response(self) -> ChatResponse:
        """The accumulated response, reading the rest of the stream first if it is open."""
        await self._open()
        if not self._finished and not self._closed:
            async for _ in self:
                pass
        return self._build_response()

    @property
    def response(self) -> ChatResponse:
        """The accumulated response once the stream has ended (or was closed); use
        ``await stream.get_response()`` to read the rest of an open stream first."""
        if self._iterator is None:
            raise ConfigError(
                "the stream has not started; iterate it (or await get_response()) first"
            )
        return self._build_response()

    async def text_stream(self) -> AsyncIterator[str]:
        """Just the text deltas."""
        async for event in self:
            if event.text:
                yield event.text


async def _aclose(iterator: Any) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except RuntimeError:
            # "aclose(): asynchronous generator is already running" after a cancelled
            # __anext__: the generator is finalised by the event loop instead.
            pass
