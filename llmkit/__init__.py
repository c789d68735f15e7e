"""llmkit: one client for OpenAI, self-hosted REST servers and in-process transformers models.

>>> from llmkit import Client
>>> client = Client("hf:smollm2")          # or "openai:gpt-4o-mini", "rest:my-model", ...
>>> client.chat("What is the capital of France?").text  # doctest: +SKIP

The public surface is what this module exports; everything else may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors
from .client import AsyncClient, AsyncStream, Client, Stream
from .errors import (
    AuthenticationError,
    BackendUnavailable,
    BadRequestError,
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
    ConnectionError as ConnectionError,  # not in __all__: see below
)
from .errors import (
    TimeoutError as TimeoutError,  # not in __all__: see below
)
from .prompts import Example, Prompt
from .registry import available_backends, register_backend
from .retry import RetryPolicy
from .timeouts import Timeout
from .types import (
    NOT_GIVEN,
    ChatResponse,
    FinishEvent,
    Message,
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
    "AuthenticationError",
    "BackendUnavailable",
    "BadRequestError",
    "ChatResponse",
    "Client",
    "ConfigError",
    "ConflictError",
    "ContextLengthError",
    "Example",
    "FinishEvent",
    "InvalidInputError",
    "LLMError",
    "Message",
    "NotFoundError",
    "OutputValidationError",
    "PermissionDeniedError",
    "Prompt",
    "PromptError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
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
    "register_backend",
]
