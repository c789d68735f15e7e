"""Configuration: spec strings, mappings, TOML files with named profiles, the environment.

A *spec* is ``"backend:model"``: ``"openai:gpt-4o-mini"``, ``"hf:smollm2"``,
``"rest:llama3:8b"`` (the model part may itself contain colons).

A config file (``llmkit.toml``) holds one or more profiles::

    default_profile = "local"

    [profiles.local]
    model = "hf:smollm2"

    [profiles.prod]
    model = "openai:gpt-4o-mini"
    timeout = 30                      # or { connect = 5, first_token = 20, idle = 10, total = 60 }
    fallbacks = ["local", "rest:llama3:8b"]   # profile names or specs
    retry = { max_attempts = 4, max_backoff = 10 }
    api_key_env = "MY_OPENAI_KEY"     # read the key from this variable (keys stay out of files)
    [profiles.prod.options]           # backend-specific options
    organization = "org-123"

A file without ``[profiles]`` is a single profile written at the top level. The profile is
chosen by the ``profile=`` argument, else ``LLMKIT_PROFILE``, else ``default_profile``, else
the only profile there is.

``Client()`` with no arguments resolves, in order: ``LLMKIT_MODEL`` (a spec), ``LLMKIT_CONFIG``
(a file), ``./llmkit.toml``, and finally the embedded default model ``hf:smollm2``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError
from .retry import RetryPolicy
from .timeouts import Timeout

__all__ = [
    "DEFAULT_MODEL",
    "ProfileSettings",
    "load_config",
    "parse_spec",
    "resolve_default",
]

DEFAULT_MODEL = "hf:smollm2"
ENV_MODEL = "LLMKIT_MODEL"
ENV_CONFIG = "LLMKIT_CONFIG"
ENV_PROFILE = "LLMKIT_PROFILE"
LOCAL_CONFIG = "llmkit.toml"


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``"backend:model"`` into its parts (the model part may contain colons)."""
    if not isinstance(spec, str):
        raise ConfigError(
            f"a model spec must be a string like 'openai:gpt-4o-mini', got {type(spec).__name__}"
        )
    backend, sep, model = spec.strip().partition(":")
    if not sep or not backend or not model:
        raise ConfigError(
            f"invalid model spec {spec!r}: write it as 'backend:model', e.g. 'openai:gpt-4o-mini', "
            "'hf:smollm2' or 'rest:my-model'"
        )
    return backend, model


class ProfileSettings(BaseModel):
    """One validated profile: everything needed to build a :class:`~llmkit.Client`."""

    model_config = ConfigDict(extra="forbid")
    model: str
    base_url: Union[str, list[str], None] = None
    api_key_env: str | None = None
    timeout: Union[float, dict[str, float], None] = None
    retry: RetryPolicy | None = None
    fallbacks: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Client(self.model, **kwargs)`` (fallbacks not included)."""
        kwargs: dict[str, Any] = dict(self.options)
        if self.base_url is not None:
            kwargs["base_url"] = self.base_url
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(
                    f"api_key_env names ${self.api_key_env}, which is not set; export it or remove api_key_env"
                )
            kwargs["api_key"] = key
        if self.timeout is not None:
            kwargs["timeout"] = Timeout.coerce(self.timeout)
        if self.retry is not None:
            kwargs["retry"] = self.retry
        return kwargs


def _field_path(loc: tuple[Any, ...]) -> str:
    # Union members appear in pydantic's loc as type tags ("float", "dict[str,float]"); drop them.
    parts = []
    for part in loc:
        text = str(part)
        if text in {"float", "int", "str", "bool", "none", "list", "dict"} or "[" in text:
            break
        parts.append(text)
    return ".".join(parts)


def _format_validation(where: str, exc: ValidationError) -> ConfigError:
    err = exc.errors()[0]
    field = _field_path(tuple(err["loc"])) or "(root)"
    if err["type"] == "extra_forbidden":
        parent = err["loc"][:-1]
        model: Any = ProfileSettings
        if parent == ("retry",):
            model = RetryPolicy
        allowed = ", ".join(sorted(model.model_fields))
        return ConfigError(f"{where}: unknown key {field!r}; allowed keys: {allowed}")
    value = err.get("input")
    shown = "***" if "key" in field.lower() else repr(value)
    return ConfigError(f"{where}: invalid value for {field!r}: {shown} ({err['msg']})")


def _read_toml(path: Path) -> dict[str, Any]:
    # Imported here: most programs never read a config file.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None


def _profiles(data: Mapping[str, Any], where: str) -> tuple[dict[str, Any], str | None]:
    if "profiles" not in data:
        return {"default": dict(data)}, "default"
    top_allowed = {"profiles", "default_profile"}  # ("providers" was taken out before)
    unknown = sorted(set(data) - top_allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key(s) {', '.join(map(repr, unknown))}; with [profiles], "
            "allowed top-level keys are: default_profile, profiles, providers"
        )
    profiles = data["profiles"]
    if not isinstance(profiles, Mapping) or not profiles:
        raise ConfigError(f"{where}: 'profiles' must be a table of named profiles")
    default = data.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise ConfigError(f"{where}: default_profile must be a profile name")
    return dict(profiles), default


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any], profile: str | None = None
) -> tuple[ProfileSettings, dict[str, ProfileSettings]]:
    """Read a TOML file or a mapping; return the chosen profile and all profiles by name.

    A ``[providers.NAME]`` table registers a provider (see :mod:`llmkit._providers`), so
    profiles (and any later ``Client("NAME:model")``) can use it.
    """
    if isinstance(source, Mapping):
        data, where = dict(source), "config"
    else:
        path = Path(source)
        data, where = _read_toml(path), str(path)
    _register_providers(data.pop("providers", None), where)
    raw_profiles, default = _profiles(data, where)
    profiles: dict[str, ProfileSettings] = {}
    for name, raw in raw_profiles.items():
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: profile {name!r} must be a table")
        try:
            profiles[name] = ProfileSettings.model_validate(dict(raw))
        except ValidationError as exc:
            label = (
                where
                if name == "default" and "profiles" not in data
                else f"{where}: profile {name!r}"
            )
            raise _format_validation(label, exc) from None
        parse_spec(profiles[name].model)  # fail early on a malformed spec
    chosen = profile or os.environ.get(ENV_PROFILE) or default
    if chosen is None:
        if len(profiles) != 1:
            raise ConfigError(
                f"{where}: several profiles ({', '.join(sorted(profiles))}) and none chosen; pass "
                f"profile=..., set {ENV_PROFILE}, or set default_profile"
            )
        chosen = next(iter(profiles))
    if chosen not in profiles:
        raise ConfigError(
            f"{where}: no profile {chosen!r}; available profiles: {', '.join(sorted(profiles))}"
        )
    for name, settings in profiles.items():
        for fallback in settings.fallbacks:
            if ":" not in fallback and fallback not in profiles:
                raise ConfigError(
                    f"{where}: profile {name!r} falls back to {fallback!r}, which is neither a profile "
                    "nor a 'backend:model' spec"
                )
    return profiles[chosen], profiles


class ProviderSettings(BaseModel):
    """One ``[providers.NAME]`` table of a config file."""

    model_config = ConfigDict(extra="forbid")
    base_url: str
    api_key_env: Union[str, list[str]] = Field(default_factory=list)
    backend: Literal["openai", "rest"] = "openai"
    dialect: Literal["openai", "ollama", "tgi"] = "openai"
    options: dict[str, Any] = Field(default_factory=dict)
    capabilities: dict[str, bool] = Field(default_factory=dict)


def _register_providers(raw: Any, where: str) -> None:
    if raw is None:
        return
    from ._providers import register_provider

    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: 'providers' must be a table of [providers.NAME] tables")
    for name, table in raw.items():
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: provider {name!r} must be a table")
        try:
            settings = ProviderSettings.model_validate(dict(table))
        except ValidationError as exc:
            errors = exc.errors()
            # An unknown key explains a missing one (a misspelt base_url), so it goes first.
            err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
            field = ".".join(str(p) for p in err["loc"]) or "(root)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(ProviderSettings.model_fields))
                raise ConfigError(
                    f"{where}: provider {name!r}: unknown key {field!r}; allowed keys: {allowed}"
                ) from None
            raise ConfigError(
                f"{where}: provider {name!r}: invalid value for {field!r} ({err['msg']})"
            ) from None
        keys = settings.api_key_env
        register_provider(
            name,
            settings.base_url,
            api_key_env=(keys,) if isinstance(keys, str) else tuple(keys),
            backend=settings.backend,
            dialect=settings.dialect,
            options=settings.options,
            capabilities=settings.capabilities,
        )


def resolve_default() -> tuple[str, Path | None]:
    """What ``Client()`` uses: ``(spec, None)`` or ``("", config_path)``."""
    spec = os.environ.get(ENV_MODEL)
    if spec:
        return spec, None
    config = os.environ.get(ENV_CONFIG)
    if config:
        return "", Path(config)
    local = Path.cwd() / LOCAL_CONFIG
    if local.is_file():
        return "", local
    return DEFAULT_MODEL, None
