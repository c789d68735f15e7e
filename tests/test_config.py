from __future__ import annotations

from pathlib import Path

import pytest

from llmkit import Client, ConfigError, RetryPolicy, Timeout, UnknownBackendError
from llmkit.config import DEFAULT_MODEL, load_config, parse_spec, resolve_default

CONFIG = """
default_profile = "dev"

[profiles.dev]
model = "fake:dev-model"
timeout = 12
retry = { max_attempts = 5, max_backoff = 2.5 }
fallbacks = ["backup", "fake:inline"]

[profiles.dev.options]
temperature = 0.3

[profiles.backup]
model = "fake:backup-model"
timeout = { connect = 1, first_token = 2, idle = 3, total = 4 }
"""


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("rest:llama3:8b", ("rest", "llama3:8b")),
        ("hf:/models/x.gguf", ("hf", "/models/x.gguf")),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("spec", ["gpt-4o", ":model", "openai:", ""])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(ConfigError, match="backend:model"):
        parse_spec(spec)


def test_profiles_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "llmkit.toml"
    path.write_text(CONFIG)
    client = Client.from_config(path)
    assert client.model == "dev-model"
    assert client._timeout == Timeout.coerce(12)
    assert client._retry == RetryPolicy(max_attempts=5, max_backoff=2.5)
    assert client._defaults == {"temperature": 0.3}
    assert [t.backend.model for t in client._targets] == ["dev-model", "backup-model", "inline"]
    backup = Client.from_config(path, profile="backup")
    assert backup._timeout == Timeout(connect=1, first_token=2, idle=3, total=4)


def test_profile_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "llmkit.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("LLMKIT_PROFILE", "backup")
    assert Client.from_config(path).model == "backup-model"


def test_flat_mapping_config() -> None:
    client = Client.from_config({"model": "fake:flat", "options": {"max_tokens": 7}})
    assert client.model == "flat"
    client.chat("x")
    assert client.backend.requests[0].params.max_tokens == 7  # type: ignore[attr-defined]


def test_malformed_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[profiles.dev]\nmodel = "fake:x\n')
    with pytest.raises(ConfigError, match=r"bad\.toml.*not valid TOML.*line 2"):
        Client.from_config(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Client.from_config("/nonexistent/llmkit.toml")


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            {"profiles": {"a": {"model": "fake:x", "modle": 1}}},
            "profile 'a': unknown key 'modle'; allowed keys: api_key_env, base_url",
        ),
        (
            {"profiles": {"a": {"model": "fake:x", "retry": {"max_atempts": 2}}}},
            "unknown key 'retry.max_atempts'; allowed keys: deadline",
        ),
        (
            {"profiles": {"a": {"model": "fake:x", "timeout": "soon"}}},
            "invalid value for 'timeout': 'soon'",
        ),
        ({"profiles": {"a": {"model": "nospec"}}}, "backend:model"),
        ({"profiles": {"a": {"model": "fake:x"}, "b": {"model": "fake:y"}}}, "several profiles"),
        (
            {"profiles": {"a": {"model": "fake:x"}}, "default_profile": "zzz"},
            "no profile 'zzz'; available profiles: a",
        ),
        ({"profiles": {"a": {"model": "fake:x", "fallbacks": ["ghost"]}}}, "falls back to 'ghost'"),
        ({"profiles": {"a": {"model": "fake:x"}}, "extra": 1}, "unknown top-level key"),
        (
            {"model": "fake:x", "retry": {"max_attempts": 0}},
            "invalid value for 'retry.max_attempts': 0",
        ),
    ],
)
def test_invalid_config_names_field_value_and_allowed(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert fragment in str(info.value)


def test_unknown_backend_lists_known_ones() -> None:
    with pytest.raises(UnknownBackendError) as info:
        Client("nosuch:model")
    message = str(info.value)
    for name in ("fake", "hf", "openai", "rest"):
        assert name in message


def test_api_key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_KEY_VAR", raising=False)
    with pytest.raises(ConfigError, match="MISSING_KEY_VAR"):
        Client.from_config({"model": "fake:x", "api_key_env": "MISSING_KEY_VAR"})


def test_default_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMKIT_MODEL", raising=False)
    monkeypatch.delenv("LLMKIT_CONFIG", raising=False)
    assert resolve_default() == (DEFAULT_MODEL, None) == ("hf:smollm2", None)

    (tmp_path / "llmkit.toml").write_text('model = "fake:from-local-file"\n')
    assert Client().model == "from-local-file"

    other = tmp_path / "other.toml"
    other.write_text('model = "fake:from-env-config"\n')
    monkeypatch.setenv("LLMKIT_CONFIG", str(other))
    assert Client().model == "from-env-config"

    monkeypatch.setenv("LLMKIT_MODEL", "fake:from-env-model")
    assert Client().model == "from-env-model"
    assert Client().chat("ping").text == "ping"


def test_unknown_backend_option_is_a_config_error() -> None:
    from pydantic import BaseModel, ConfigDict

    from llmkit.backends.base import validate_options

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dialect: str = "openai"
        api_key: str | None = None

    with pytest.raises(
        ConfigError, match=r"rest: unknown option\(s\) 'dialekt'; allowed: api_key, dialect"
    ):
        validate_options(Settings, "rest", {"dialekt": "tgi"})
    with pytest.raises(ConfigError) as info:
        validate_options(Settings, "rest", {"api_key": 12345})
    assert "12345" not in str(info.value)
