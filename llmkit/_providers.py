"""Providers as data: OpenAI-compatible services reachable by name.

Most services speak the OpenAI wire format and differ only in where they live, which
environment variable holds the key, and a few quirks. So they are rows of a table, not
classes: ``Client("groq:llama-3.3-70b-versatile")`` finds the ``groq`` row, builds the
backend the row names (``openai`` — the official SDK — for hosted services, ``rest`` —
llmkit's own httpx client — for servers on your machine) with the row's base URL and key,
and applies the row's quirks. ``base_url=`` and ``api_key=`` override the row.

A missing key is a :class:`~llmkit.errors.ConfigError` naming the variable to set, raised
when the client is built, before any network call. Users add their own rows in
``llmkit.toml``::

    [providers.acme]
    base_url = "https://llm.acme.internal/v1"
    api_key_env = "ACME_LLM_KEY"

or at run time with :func:`register_provider`. :func:`providers` lists the table
(``llmkit providers`` on the command line).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["Provider", "get_provider", "providers", "register_provider"]

Dialect = Literal["openai", "ollama", "tgi"]


@dataclass(frozen=True)
class Provider:
    """One service: where it lives, how it authenticates, and what it does differently.

    ``backend`` is the llmkit backend that talks to it (``"openai"`` or ``"rest"``);
    ``dialect`` the wire format (``"openai"`` unless a local server has a native one).
    ``api_key_env`` lists the variables tried in order; empty means no key is needed
    (local servers). ``options`` are backend options the service needs (its quirks, e.g.
    ``max_tokens_param``); ``capabilities`` switch off what the service does not honour, so
    the client falls back (structured output by prompt) or refuses before sending
    (tools), instead of sending what the service ignores or rejects.
    """

    name: str
    base_url: str
    api_key_env: tuple[str, ...] = ()
    backend: Literal["openai", "azure", "rest"] = "openai"
    dialect: Dialect = "openai"
    local: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    docs: str = ""

    def api_key(self) -> str | None:
        """The key from the first of ``api_key_env`` that is set, else None."""
        for name in self.api_key_env:
            value = os.environ.get(name)
            if value:
                return value
        return None


def _hosted(name: str, base_url: str, *keys: str, docs: str, **extra: Any) -> Provider:
    return Provider(name, base_url, api_key_env=keys, docs=docs, **extra)


def _local(name: str, base_url: str, *, docs: str, **extra: Any) -> Provider:
    return Provider(name, base_url, backend="rest", local=True, docs=docs, **extra)


# Base URLs as each service documents them for the OpenAI SDK (the page is in `docs`).
# `openai` and `azure` are llmkit's own backends; their rows only describe them (the
# registry finds the backends first).
_BUILTIN: tuple[Provider, ...] = (
    _hosted(
        "openai",
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        docs="https://platform.openai.com/docs/api-reference",
    ),
    _hosted(
        "azure",
        "https://RESOURCE.openai.azure.com (AZURE_OPENAI_ENDPOINT)",
        "AZURE_OPENAI_API_KEY",
        backend="azure",
        docs="https://learn.microsoft.com/azure/ai-services/openai/reference",
    ),
    _hosted(
        "anthropic",
        "https://api.anthropic.com/v1/",
        "ANTHROPIC_API_KEY",
        docs="https://docs.anthropic.com/en/api/openai-sdk",
        # Its compatibility layer ignores response_format and the tools' `strict`: ask for
        # JSON by prompt and validate, rather than trust a schema that is not enforced.
        capabilities={"structured_output": False},
    ),
    _hosted(
        "cerebras",
        "https://api.cerebras.ai/v1",
        "CEREBRAS_API_KEY",
        docs="https://inference-docs.cerebras.ai/resources/openai",
    ),
    _hosted(
        "deepinfra",
        "https://api.deepinfra.com/v1/openai",
        "DEEPINFRA_API_KEY",
        "DEEPINFRA_TOKEN",
        docs="https://deepinfra.com/docs/openai_api",
    ),
    _hosted(
        "deepseek",
        "https://api.deepseek.com/v1",
        "DEEPSEEK_API_KEY",
        docs="https://api-docs.deepseek.com/",
        # Chat completions accept json_object, not json_schema.
        capabilities={"structured_output": False},
    ),
    _hosted(
        "fireworks",
        "https://api.fireworks.ai/inference/v1",
        "FIREWORKS_API_KEY",
        docs="https://docs.fireworks.ai/tools-sdks/openai-compatibility",
    ),
    _hosted(
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        docs="https://ai.google.dev/gemini-api/docs/openai",
    ),
    _hosted(
        "groq",
        "https://api.groq.com/openai/v1",
        "GROQ_API_KEY",
        docs="https://console.groq.com/docs/openai",
    ),
    _hosted(
        "mistral",
        "https://api.mistral.ai/v1",
        "MISTRAL_API_KEY",
        docs="https://docs.mistral.ai/api/",
    ),
    _hosted(
        "openrouter",
        "https://openrouter.ai/api/v1",
        "OPENROUTER_API_KEY",
        docs="https://openrouter.ai/docs/quickstart",
    ),
    _hosted(
        "perplexity",
        "https://api.perplexity.ai",
        "PERPLEXITY_API_KEY",
        "PPLX_API_KEY",
        docs="https://docs.perplexity.ai/guides/chat-completions-guide",
        # Sonar models answer with search results; they take no function tools.
        capabilities={"tools": False},
    ),
    _hosted(
        "together",
        "https://api.together.xyz/v1",
        "TOGETHER_API_KEY",
        docs="https://docs.together.ai/docs/openai-api-compatibility",
    ),
    _hosted(
        "xai",
        "https://api.x.ai/v1",
        "XAI_API_KEY",
        docs="https://docs.x.ai/docs/api-reference",
    ),
    # Servers on this machine, on their usual ports; no key unless you started them with one
    # (pass api_key=..., or set LLMKIT_REST_API_KEY).
    _local(
        "llamacpp",
        "http://127.0.0.1:8080/v1",
        docs="https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",
    ),
    _local(
        "llama-cpp-python",
        "http://127.0.0.1:8000/v1",
        docs="https://llama-cpp-python.readthedocs.io/en/latest/server/",
        # Learned by running it (tests/rest/test_llama_cpp_python.py): its server answers a
        # json_schema response_format with a 500 and takes {"type": "json_object", "schema"}.
        options={"schema_format": "json_object"},
    ),
    _local(
        "llmkit",
        "http://127.0.0.1:8000/v1",
        docs="llmkit serve (docs/serving.md)",
    ),
    _local(
        "lmstudio",
        "http://127.0.0.1:1234/v1",
        docs="https://lmstudio.ai/docs/app/api/endpoints/openai",
    ),
    _local(
        "ollama",
        "http://127.0.0.1:11434",
        dialect="ollama",
        docs="https://github.com/ollama/ollama/blob/main/docs/api.md",
    ),
    _local(
        "vllm",
        "http://127.0.0.1:8000/v1",
        docs="https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
    ),
)

_table: dict[str, Provider] = {p.name: p for p in _BUILTIN}


def providers() -> list[Provider]:
    """Every known provider (built-in rows and registered ones), sorted by name."""
    return [_table[name] for name in sorted(_table)]


def get_provider(name: str) -> Provider | None:
    return _table.get(name)


def register_provider(
    name: str,
    base_url: str,
    *,
    api_key_env: str | tuple[str, ...] = (),
    backend: Literal["openai", "rest"] = "openai",
    dialect: Dialect = "openai",
    options: Mapping[str, Any] | None = None,
    capabilities: Mapping[str, bool] | None = None,
) -> Provider:
    """Add (or replace) a provider row; ``Client(f"{name}:MODEL")`` then reaches it."""
    from .registry import builtin_backend_names  # the registry imports this module

    if not name or ":" in name:
        raise ConfigError(f"provider name {name!r} must be non-empty and contain no ':'")
    if name in builtin_backend_names():
        raise ConfigError(f"provider name {name!r} is taken by a built-in backend")
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"provider {name!r}: base_url must be an http(s) URL, got {base_url!r}")
    keys = (api_key_env,) if isinstance(api_key_env, str) else tuple(api_key_env)
    provider = Provider(
        name,
        base_url,
        api_key_env=keys,
        backend=backend,
        dialect=dialect,
        local=not keys,
        options=dict(options or {}),
        capabilities=dict(capabilities or {}),
        docs="registered",
    )
    _table[name] = provider
    return provider


def build_backend(provider: Provider, model: str, **options: Any) -> Any:
    """The backend for ``provider:model``: the row's settings under the caller's options."""
    settings: dict[str, Any] = {**provider.options, **options}
    settings.setdefault("base_url", provider.base_url)
    if provider.backend == "rest":
        settings.setdefault("dialect", provider.dialect)
    if settings.get("api_key") is None:
        settings.pop("api_key", None)
        key = provider.api_key()
        if key is not None:
            settings["api_key"] = key
        elif provider.api_key_env:
            names = " or ".join(provider.api_key_env)
            raise ConfigError(f"{provider.name}: no API key; set {names} (or pass api_key=...)")
    backend = _named_class(provider)(model, **settings)
    if provider.capabilities:
        backend.capabilities = dataclasses.replace(backend.capabilities, **provider.capabilities)
    return backend


_classes: dict[tuple[str, str], type[Any]] = {}


def _named_class(provider: Provider) -> type[Any]:
    """The backend class under the provider's name, so responses, logs and spans say
    ``groq:...`` rather than ``openai:...``."""
    from .registry import get_backend_class

    key = (provider.name, provider.backend)
    cls = _classes.get(key)
    if cls is None:
        base = get_backend_class(provider.backend)
        assert isinstance(base, type)  # the openai and rest backends are classes
        cls = type(f"{provider.name.title()}Backend", (base,), {"name": provider.name})
        _classes[key] = cls
    return cls


def markdown_table() -> str:
    """The provider table as Markdown (the README's copy is checked against it)."""
    lines = [
        "| provider | backend | base URL | API key from |",
        "|---|---|---|---|",
    ]
    for p in providers():
        backend = p.backend if p.dialect == "openai" else f"{p.backend} ({p.dialect} dialect)"
        key = " or ".join(f"`{k}`" for k in p.api_key_env) or "none needed"
        lines.append(f"| `{p.name}` | {backend} | `{p.base_url}` | {key} |")
    return "\n".join(lines) + "\n"
