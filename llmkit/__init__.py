"""llmkit: one client for OpenAI, self-hosted REST servers and in-process transformers models.

>>> from llmkit import Client
>>> client = Client("hf:smollm2")          # or "openai:gpt-4o-mini", "rest:my-model", ...
>>> client.chat("What is the capital of France?").text  # doctest: +SKIP

The public surface is what this module exports; everything else may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

# Names are imported on first use (PEP 562), so `import llmkit` costs almost nothing and
# never pulls in pydantic models, httpx, or any backend's dependencies until they are needed.
_LAZY: dict[str, str] = {
    "AsyncClient": "client",
    "AsyncStream": "client",
    "CircuitBreaker": "circuit",
    "Client": "client",
    "Hooks": "client",
    "Stream": "client",
    "Audio": "media",
    "File": "media",
    "Image": "media",
    "Example": "prompts",
    "Prompt": "prompts",
    "RateLimit": "ratelimit",
    "RetryPolicy": "retry",
    "Timeout": "timeouts",
    "Provider": "_providers",
    "providers": "_providers",
    "register_provider": "_providers",
    "available_backends": "registry",
    "register_backend": "registry",
    "NOT_GIVEN": "types",
    "ChatResponse": "types",
    "FinishEvent": "types",
    "Message": "types",
    "ReasoningDelta": "types",
    "StreamEvent": "types",
    "TextDelta": "types",
    "Tool": "types",
    "ToolCall": "types",
    "ToolCallDelta": "types",
    "Usage": "types",
    "UsageEvent": "types",
}
_ERRORS = (
    "AuthenticationError",
    "BackendUnavailable",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "ConnectionError",
    "ContextLengthError",
    "InvalidInputError",
    "LLMError",
    "NotFoundError",
    "OutputValidationError",
    "PermissionDeniedError",
    "PromptError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "TimeoutError",
    "UnknownBackendError",
    "UnsupportedFeatureError",
)
_LAZY.update(dict.fromkeys(_ERRORS, "errors"))


def __getattr__(name: str) -> Any:
    if name == "errors":
        import importlib

        return importlib.import_module(".errors", __name__)
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'llmkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, "errors"})


if TYPE_CHECKING:
    from . import errors
    from ._providers import Provider, providers, register_provider
    from .circuit import CircuitBreaker
    from .client import AsyncClient, AsyncStream, Client, Hooks, Stream
    from .errors import (
        AuthenticationError,
        BackendUnavailable,
        BadRequestError,
        CircuitOpenError,
        ConfigError,
        ConflictError,
        ContextLengthError,
        InvalidInputError,
        LLMError,
        NotFoundError,
        OutputValidationError,
        PermissionDeniedError,
        PromptError,
        ProtocolError,
        ProviderError,
        RateLimitError,
        ServerError,
        UnknownBackendError,
        UnsupportedFeatureError,
    )
    from .errors import (
        ConnectionError as ConnectionError,
    )
    from .errors import (
        TimeoutError as TimeoutError,
    )
    from .media import Audio, File, Image
    from .prompts import Example, Prompt
    from .ratelimit import RateLimit
    from .registry import available_backends, register_backend
    from .retry import RetryPolicy
    from .timeouts import Timeout
    from .types import (
        NOT_GIVEN,
        ChatResponse,
        FinishEvent,
        Message,
        ReasoningDelta,
        StreamEvent,
        TextDelta,
        Tool,
        ToolCall,
        ToolCallDelta,
        Usage,
        UsageEvent,
    )

# llmkit.TimeoutError / ConnectionError are importable, but kept out of __all__ so that
# `from llmkit import *` never shadows the builtins of the same names.
__all__ = [
    "NOT_GIVEN",
    "AsyncClient",
    "AsyncStream",
    "Audio",
    "AuthenticationError",
    "BackendUnavailable",
    "BadRequestError",
    "ChatResponse",
    "CircuitBreaker",
    "CircuitOpenError",
    "Client",
    "ConfigError",
    "ConflictError",
    "ContextLengthError",
    "Example",
    "File",
    "FinishEvent",
    "Hooks",
    "Image",
    "InvalidInputError",
    "LLMError",
    "Message",
    "NotFoundError",
    "OutputValidationError",
    "PermissionDeniedError",
    "Prompt",
    "PromptError",
    "ProtocolError",
    "Provider",
    "ProviderError",
    "RateLimit",
    "RateLimitError",
    "ReasoningDelta",
    "RetryPolicy",
    "ServerError",
    "Stream",
    "StreamEvent",
    "TextDelta",
    "Timeout",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "UnknownBackendError",
    "UnsupportedFeatureError",
    "Usage",
    "UsageEvent",
    "__version__",
    "available_backends",
    "errors",
    "providers",
    "register_backend",
    "register_provider",
]
