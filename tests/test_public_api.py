"""The public surface is pinned, and importing llmkit stays light."""

from __future__ import annotations

import subprocess
import sys

import llmkit

EXPECTED = [
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


def test_all_is_pinned_and_sorted() -> None:
    assert llmkit.__all__ == EXPECTED
    for name in llmkit.__all__:
        assert hasattr(llmkit, name), name


def test_builtin_shadowing_errors_are_reachable_but_not_star_exported() -> None:
    assert llmkit.errors.TimeoutError is llmkit.TimeoutError
    assert "TimeoutError" not in llmkit.__all__ and "ConnectionError" not in llmkit.__all__
    namespace: dict[str, object] = {}
    exec("from llmkit import *", namespace)
    assert "TimeoutError" not in namespace


def test_import_does_not_pull_heavy_dependencies() -> None:
    code = (
        "import sys, llmkit\n"
        "from llmkit import Client, AsyncClient\n"
        "heavy = [m for m in ('openai', 'torch', 'transformers', 'starlette', 'uvicorn', 'opentelemetry') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_defers_what_only_some_calls_need() -> None:
    # asyncio (with ssl, subprocess, concurrent.futures) only for async calls, tenacity only
    # for a retry, tomllib only for a config file, httpx only for an HTTP backend.
    code = (
        "import sys\n"
        "from llmkit import AsyncClient, Client, Prompt, RateLimit, RetryPolicy, Stream\n"
        "deferred = ('asyncio', 'tenacity', 'tomllib', 'tomli', 'httpx', 'ssl')\n"
        "print(','.join(m for m in deferred if m in sys.modules))\n"
        "import llmkit._client.aio as c  # the async driver\n"
        "c.asyncio.Semaphore  # the first use imports it and binds the real module\n"
        "print(c.asyncio is sys.modules['asyncio'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["", "True"]


def test_py_typed_is_shipped() -> None:
    from importlib import resources

    assert resources.files("llmkit").joinpath("py.typed").is_file()
