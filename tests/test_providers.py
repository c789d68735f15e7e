"""Providers as data: every row of the table reaches its service with the right URL and key.

respx intercepts at the transport, so the real openai SDK (hosted rows) and llmkit's own
httpx client (local rows) build and send each request.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

import llmkit
from llmkit import (
    AsyncClient,
    Client,
    ConfigError,
    UnknownBackendError,
    UnsupportedFeatureError,
    _providers,
)
from llmkit._providers import get_provider, markdown_table, providers
from llmkit.config import load_config

KEY = "sk-test-PROVIDERKEY-0123456789abcdef"
ROWS = [p for p in providers() if p.backend != "azure"]
README = Path(__file__).resolve().parent.parent / "README.md"


def openai_reply(text: str = "hi from the provider") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def ollama_reply(text: str = "hi from the provider") -> dict[str, Any]:
    return {
        "model": "m",
        "created_at": "2026-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": text},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 3,
        "eval_count": 4,
    }


def chat_url(provider: llmkit.Provider) -> str:
    if provider.dialect == "ollama":
        return provider.base_url.rstrip("/") + "/api/chat"
    return provider.base_url.rstrip("/") + "/chat/completions"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rows registered by a test (a config file's [providers]) must not outlive it.
    monkeypatch.setattr(_providers, "_table", dict(_providers._table))
    for provider in providers():
        for name in provider.api_key_env:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LLMKIT_REST_API_KEY", raising=False)
    monkeypatch.delenv("LLMKIT_REST_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("provider", ROWS, ids=[p.name for p in ROWS])
async def test_each_row_reaches_its_service(
    provider: llmkit.Provider, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if provider.api_key_env:
        monkeypatch.setenv(provider.api_key_env[-1], KEY)  # any of its variables will do
    body = ollama_reply() if provider.dialect == "ollama" else openai_reply()
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(chat_url(provider)).mock(return_value=httpx.Response(200, json=body))
        spec = f"{provider.name}:some-model"
        if mode == "sync":
            with Client(spec) as client:
                r = client.chat("hello", max_tokens=5)
        else:
            async with AsyncClient(spec) as aclient:
                r = await aclient.chat("hello", max_tokens=5)
    assert r.text == "hi from the provider"
    assert r.backend == spec  # named after the provider, not the backend underneath
    sent = route.calls.last.request
    payload = json.loads(sent.content)
    assert payload["model"] == "some-model"
    auth = sent.headers.get("authorization")
    if provider.api_key_env:
        assert auth == f"Bearer {KEY}"
    else:
        assert auth is None  # a local server gets no made-up key


@pytest.mark.parametrize("provider", [p for p in ROWS if p.api_key_env], ids=lambda p: p.name)
def test_a_missing_key_names_the_variable_before_any_request(provider: llmkit.Provider) -> None:
    with respx.mock(assert_all_mocked=True) as mock:  # any request would fail loudly
        with pytest.raises(ConfigError) as info:
            Client(f"{provider.name}:m")
        assert not mock.calls
    assert provider.api_key_env[0] in str(info.value)
    assert "api_key=" in str(info.value)


def test_base_url_and_api_key_override_the_row() -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://proxy.example/groq/v1/chat/completions").mock(
            return_value=httpx.Response(200, json=openai_reply())
        )
        client = Client(
            "groq:llama-3.3-70b-versatile",
            base_url="https://proxy.example/groq/v1",
            api_key=KEY,
        )
        assert client.chat("hi").text == "hi from the provider"
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(client)


def test_a_row_that_ignores_json_schema_gets_structured_output_by_prompt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class City(BaseModel):
        name: str

    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    provider = get_provider("anthropic")
    assert provider is not None
    with respx.mock() as mock:
        route = mock.post(chat_url(provider)).mock(
            return_value=httpx.Response(200, json=openai_reply('{"name": "Paris"}'))
        )
        r = Client("anthropic:claude-x").chat("capital of France?", response_model=City)
    assert r.parsed == City(name="Paris")
    payload = json.loads(route.calls.last.request.content)
    assert "response_format" not in payload  # not sent where the service ignores it
    assert "JSON" in json.dumps(payload["messages"])  # asked for in the prompt instead


def test_a_row_without_tools_refuses_them_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPLEXITY_API_KEY", KEY)
    with respx.mock(assert_all_mocked=True) as mock:
        with pytest.raises(UnsupportedFeatureError):
            Client("perplexity:sonar").chat(
                "weather?",
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
            )
        assert not mock.calls


def test_providers_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", KEY)
    config = tmp_path / "llmkit.toml"
    config.write_text(
        """
        default_profile = "main"
        [providers.acme]
        base_url = "https://llm.acme.test/v1"
        api_key_env = "ACME_KEY"
        [profiles.main]
        model = "acme:big-model"
        """.replace("        ", "")
    )
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post("https://llm.acme.test/v1/chat/completions").mock(
            return_value=httpx.Response(200, json=openai_reply())
        )
        r = Client.from_config(config).chat("hi")
    assert r.backend == "acme:big-model"
    assert route.calls.last.request.headers["authorization"] == f"Bearer {KEY}"
    assert "acme" in [p.name for p in providers()]


def test_a_bad_provider_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="provider 'acme': unknown key 'url'"):
        load_config({"providers": {"acme": {"url": "x"}}, "model": "fake:x"})
    with pytest.raises(ConfigError, match="taken by a built-in backend"):
        load_config({"providers": {"openai": {"base_url": "https://x.test"}}, "model": "fake:x"})
    with pytest.raises(ConfigError, match="must be an http"):
        load_config({"providers": {"acme": {"base_url": "ftp://x"}}, "model": "fake:x"})


def test_unknown_names_list_the_providers() -> None:
    with pytest.raises(UnknownBackendError) as info:
        Client("groqq:llama")
    assert "providers: " in str(info.value) and "groq" in str(info.value)


def test_the_table_has_the_services_users_ask_for() -> None:
    names = {p.name for p in providers()}
    assert names >= {
        "openai", "azure", "groq", "deepseek", "openrouter", "together", "mistral",
        "fireworks", "xai", "cerebras", "perplexity", "deepinfra", "gemini", "anthropic",
        "ollama", "vllm", "lmstudio", "llamacpp", "llmkit",
    }  # fmt: skip
    for p in providers():
        assert p.docs, f"{p.name}: cite where the base URL comes from"
        assert p.local == (not p.api_key_env)


def test_readme_table_is_generated_from_the_data() -> None:
    assert markdown_table() in README.read_text(), (
        "README's provider table is out of date: run python scripts/update_provider_table.py"
    )


def test_cli_lists_providers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llmkit", "providers", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["groq"]["api_key_env"] == ["GROQ_API_KEY"]
    assert rows["ollama"]["dialect"] == "ollama" and rows["ollama"]["local"]
