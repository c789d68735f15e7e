"""The part of ``Client`` and ``AsyncClient`` that does no I/O.

:class:`_ClientCore` resolves configuration into targets (the primary backend and its
fallbacks), normalises input into a prepared :class:`~.plan._Call`, finishes responses
(usage totals, the client rate limit, ``on_response``, the log record, the span) and runs
the structured-output re-ask loop's decisions. The two clients (:mod:`.sync`, :mod:`.aio`)
add only how they wait.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from pydantic import BaseModel, ValidationError
from typing_extensions import Self

from .. import _telemetry, structured
from ..backends.base import Backend
from ..circuit import CircuitBreaker
from ..config import ProfileSettings, load_config, parse_spec, resolve_default
from ..errors import (
    ConfigError,
    InvalidInputError,
    LLMError,
    OutputValidationError,
    RateLimitError,
)
from ..prompts import Prompt
from ..ratelimit import RateLimit
from ..registry import get_backend_class
from ..retry import RetryPolicy
from ..timeouts import DEFAULT_TIMEOUT, Timeout, TimeoutInput
from ..types import (
    NOT_GIVEN,
    ChatRequest,
    ChatResponse,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    GenerationParams,
    Message,
    NotGiven,
    Usage,
    estimate_tokens,
    normalize_embedding_inputs,
    normalize_messages,
)
from .options import PARAM_NAMES
from .plan import _Call, _Target, spec_label

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["DEFAULT_MAX_CONCURRENCY", "ChatInput", "Hooks", "_ClientCore", "merge_embeddings"]

logger = logging.getLogger("llmkit")

ChatInput = Union[str, Message, Mapping[str, Any], Sequence[Any], Prompt]

# Requests in flight per client. Past a few hundred, httpx's pool spends more time managing
# waiters than sending; a cap in front of it keeps latency flat under bursts.
DEFAULT_MAX_CONCURRENCY = 64
DEFAULT_RETRY = RetryPolicy()
# Texts per embedding request: OpenAI takes up to 2048, servers often batch 32 at a time
# themselves; 128 keeps a request small enough to retry cheaply and large enough to be fast.
DEFAULT_EMBED_BATCH = 128
# How many times a reply that fails response_model validation is re-asked before giving up.
DEFAULT_STRUCTURED_REASKS = 2
# Distinct per-call option sets whose validated params a client keeps (see _options).
_PARAMS_CACHE_SIZE = 64


# The GenAI semantic conventions' operation names, by call kind.
_OPERATIONS = {"chat": "chat", "complete": "text_completion", "embed": "embeddings"}


def merge_embeddings(responses: Sequence[EmbeddingResponse]) -> EmbeddingResponse:
    """The batches of one ``embed()`` call as one response, vectors in input order."""
    if len(responses) == 1:
        return responses[0]
    first = responses[0]
    usage = first.usage
    for response in responses[1:]:
        usage = usage + response.usage
    vectors = [vector for response in responses for vector in response.vectors]
    return EmbeddingResponse.model_construct(
        vectors=vectors, model=first.model, backend=first.backend, usage=usage, request_id=None
    )


def _check_forced_tool_call(response: ChatResponse, params: GenerationParams) -> None:
    """A ``tool_choice`` that forces a call, answered with text, is an error, never a silent
    success: some servers ignore the field (llama-cpp-python unless started with a
    function-calling chat format). A reply cut by ``max_tokens`` keeps its ``length``."""
    choice = params.tool_choice
    forced = choice == "required" or isinstance(choice, Mapping)
    if not forced or response.tool_calls or response.finish_reason == "length":
        return
    raise OutputValidationError(
        f"tool_choice={choice!r} forces a tool call, but {response.backend} answered with text "
        "instead: the server may ignore tool_choice (llama-cpp-python needs a function-calling "
        "chat format); use tool_choice='auto', or a backend that honours it",
        raw_text=response.text,
        errors=[{"type": "tool_call_missing", "tool_choice": choice}],
    )


@dataclass
class Hooks:
    """Callbacks for observability; each is optional and must not raise.

    ``on_request(request)`` before every attempt, ``on_retry(error, attempt)`` before a retry
    sleeps, ``on_response(response)`` when a call succeeds, ``on_error(error)`` when a call
    finally fails (after retries and fallbacks). ``embed()`` calls them too, once per batch
    of texts, with an :class:`~llmkit.types.EmbeddingRequest` / ``EmbeddingResponse``.
    """

    on_request: Callable[[ChatRequest | CompletionRequest | EmbeddingRequest], None] | None = None
    on_response: Callable[[ChatResponse | EmbeddingResponse], None] | None = None
    on_retry: Callable[[BaseException, int], None] | None = None
    on_error: Callable[[BaseException], None] | None = None


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
        self._defaults = {k: options.pop(k) for k in list(options) if k in PARAM_NAMES}
        # Shared by every call that sets no option of its own (requests treat params as
        # read-only): no validation, and no object held per queued call.
        self._default_params = self._check_params(self._defaults)
        self._params_cache: dict[Any, GenerationParams] = {}
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
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        profile: str | None = None,
        **overrides: Any,
    ) -> Self:
        """A client from a TOML file or a mapping (see :mod:`llmkit.config`)."""
        settings, profiles = load_config(source, profile)
        self = cls.__new__(cls)
        self._closed = False
        self._init_from_profile(settings, profiles, overrides)
        return self

    def _close_owned(self) -> None:
        """Close, synchronously, the backends this client created (once)."""
        if self._closed:
            return
        self._closed = True
        for target in getattr(self, "_targets", []):
            if target.owned:
                target.backend.close()

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
        fallbacks = [spec_label(t.backend) for t in self._targets[1:]]
        extra = f", fallbacks={fallbacks!r}" if fallbacks else ""
        return f"{type(self).__name__}({spec_label(self.backend)!r}{extra})"

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

    def _options(self, options: dict[str, Any]) -> tuple[GenerationParams, dict[str, Any]]:
        """Split a method's ``**options`` (a fresh dict, taken over; the call's own keys
        already popped): every key naming a :class:`GenerationParams` field goes into the
        params, and what is left is the backend's ``extra`` (no copy held per queued call)."""
        if not options:
            return self._default_params, options
        given = {}
        for name in PARAM_NAMES.intersection(options):
            value = options.pop(name)
            if not isinstance(value, NotGiven):
                given[name] = value
        if not given:
            return self._default_params, options
        try:
            # Calls repeat the same few options (temperature=0, max_tokens=...): their
            # validated params are shared like the defaults (requests treat params as
            # read-only), so a repeat skips pydantic validation.
            key: Any = frozenset(given.items())
            params = self._params_cache.get(key)
        except TypeError:  # an unhashable value (a list of stops, tools): validate each time
            return self._check_params({**self._defaults, **given}), options
        if params is None:
            params = self._check_params({**self._defaults, **given})
            if len(self._params_cache) >= _PARAMS_CACHE_SIZE:
                self._params_cache.clear()
            self._params_cache[key] = params
        return params, options

    def _timeout_for(self, timeout: Any) -> Timeout:
        return self._timeout if isinstance(timeout, NotGiven) else Timeout.coerce(timeout)

    def _prepare_chat(self, messages: ChatInput, options: dict[str, Any]) -> _Call:
        """The call for ``chat``/``stream`` with ``options`` (their ``**options``)."""
        if self._closed:
            raise ConfigError("this client is closed; create a new one")
        rendered = self._conversation(messages, options.pop("variables", NOT_GIVEN))
        system = options.pop("system", NOT_GIVEN)
        system_text = self._system if isinstance(system, NotGiven) else system
        if system_text:
            rendered = [Message(role="system", content=system_text), *rendered]
        response_model = options.pop("response_model", None)
        if not isinstance(response_model, NotGiven) and response_model is not None:
            if not (isinstance(response_model, type) and issubclass(response_model, BaseModel)):
                raise InvalidInputError(
                    f"response_model must be a pydantic model class, got {response_model!r}"
                )
            model_cls: type[BaseModel] | None = response_model
        else:
            model_cls = None
        timeout = self._timeout_for(options.pop("timeout", NOT_GIVEN))
        params, extra = self._options(options)
        return _Call(
            kind="chat",
            messages=rendered,
            prompt="",
            params=params,
            extra=extra,
            timeout=timeout,
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
        self, prompt: str, options: dict[str, Any], method: str = "complete"
    ) -> _Call:
        """The call for ``complete``/``stream_complete`` with ``options``."""
        if self._closed:
            raise ConfigError("this client is closed; create a new one")
        if not isinstance(prompt, str):
            raise InvalidInputError(
                f"{method}() takes the prompt as a str, got {type(prompt).__name__}"
            )
        timeout = self._timeout_for(options.pop("timeout", NOT_GIVEN))
        params, extra = self._options(options)
        return _Call(
            kind="complete",
            messages=[],
            prompt=prompt,
            params=params,
            extra=extra,
            timeout=timeout,
            started=time.monotonic(),
        )

    def _prepare_embed(self, inputs: Any, options: dict[str, Any]) -> list[_Call]:
        """One call per batch of texts for ``embed``, validated before anything is sent."""
        if self._closed:
            raise ConfigError("this client is closed; create a new one")
        texts = normalize_embedding_inputs(inputs)
        timeout = self._timeout_for(options.pop("timeout", NOT_GIVEN))
        dimensions = options.pop("dimensions", NOT_GIVEN)
        if dimensions is NOT_GIVEN or dimensions is None:
            dimensions = None
        elif not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            raise InvalidInputError(f"dimensions must be a positive integer, got {dimensions!r}")
        size = options.pop("batch_size", NOT_GIVEN)
        size = DEFAULT_EMBED_BATCH if size is NOT_GIVEN else size
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise InvalidInputError(f"batch_size must be a positive integer, got {size!r}")
        extra = {k: v for k, v in options.items() if v is not NOT_GIVEN}
        started = time.monotonic()
        return [
            _Call(
                kind="embed",
                messages=[],
                prompt="",
                params=self._default_params,
                extra=extra,
                timeout=timeout,
                started=started,
                inputs=texts[i : i + size],
                dimensions=dimensions,
            )
            for i in range(0, len(texts), size)
        ]

    def _embed_concurrency(self, batches: int) -> int:
        """Batches of one ``embed()`` in flight at once (see ``BaseBackend.embed_concurrency``)."""
        limit = getattr(self.backend, "embed_concurrency", None) or self._max_concurrency
        return max(1, min(limit, self._max_concurrency, batches))

    def _finish_embed(
        self, response: EmbeddingResponse, call: _Call, target: _Target
    ) -> EmbeddingResponse:
        """Usage totals, ``on_response``, the log record and the span of one batch."""
        self._account(response, call, target)
        if self._hooks.on_response is not None:
            self._hooks.on_response(response)
        logger.info(
            "llm embed backend=%s model=%s latency=%.3fs texts=%d prompt_tokens=%d attempts=%d "
            "request_id=%s",
            response.backend,
            response.model,
            time.monotonic() - call.started,
            len(call.inputs or ()),
            response.usage.prompt_tokens,
            call.attempts,
            response.request_id,
        )
        if call.span is not None:
            call.span.response(response, target.backend, call.attempts, end=True)
        return response

    # -- response finishing (no I/O) -----------------------------------------------------

    def _account(
        self, response: ChatResponse | EmbeddingResponse, call: _Call, target: _Target
    ) -> None:
        """What every reply gets, chat or embeddings: its backend label and model, usage
        estimated where the backend counted none, the rate limit charged with the completion
        tokens (the prompt's were reserved before sending; an embedding batch has none more),
        the client's usage totals."""
        response.backend = spec_label(target.backend)
        if not response.model:
            response.model = target.backend.model
        usage = response.usage
        if usage.estimated and usage.total_tokens == 0:
            completion = ""
            if isinstance(response, ChatResponse):
                completion = response.text + "".join(tc.arguments for tc in response.tool_calls)
            response.usage = usage = Usage.estimate(call.prompt_text(), completion)
        if self._rate_limit is not None:
            self._rate_limit.charge(usage.completion_tokens)
        with self._usage_lock:
            previous = self._usage_totals.get(response.backend)
            self._usage_totals[response.backend] = usage if previous is None else previous + usage

    def _finish(self, response: ChatResponse, call: _Call, target: _Target) -> ChatResponse:
        self._account(response, call, target)
        if call.kind == "chat" and not call.stream:
            _check_forced_tool_call(response, call.params)
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

    def _trace_enter(self, call: _Call) -> object | None:
        """Start the call's span before its first attempt (once: structured re-asks share
        it; a stream's starts when the stream opens) and make it current while the call
        runs, so spans of instrumented HTTP clients nest under it. Returns the token."""
        if self._tracer is None:
            return None
        if not call.traced:
            call.traced = True
            call.span = self._tracer.start(
                _OPERATIONS[call.kind],
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
            spec_label(self._targets[index].backend),
            type(error).__name__,
            spec_label(self._targets[index + 1].backend),
        )
        return True
