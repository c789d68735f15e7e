"""What a backend receives: one request per call, and the parameters and tools it carries.

The three request types share :class:`BaseRequest` (the model, pass-through ``extra``, the
per-phase ``timeout`` and the call's absolute ``deadline``); chat and raw completion also
share :class:`GenerationRequest` (the :class:`GenerationParams`). The client builds them;
backends only read them. Everything here is re-exported from :mod:`llmkit.types`, the public
import path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from .errors import InvalidInputError
from .timeouts import Timeout

if TYPE_CHECKING:
    from .types import Message

__all__ = [
    "BaseRequest",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "GenerationParams",
    "GenerationRequest",
    "ReasoningEffort",
    "Tool",
]

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]
"""How much a reasoning model should think before answering (``reasoning_effort=``)."""


def describe(value: Any) -> str:
    """``repr(value)`` cut to 80 characters, for error messages about bad input."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---------------------------------------------------------------------------- tools


class Tool(BaseModel):
    """A function the model may call: a name, a description and a JSON schema of parameters."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None
    # Set for tools built from Python callables (llmkit.tools), so they can be run.
    _function: Any = PrivateAttr(default=None)
    _arguments: Any = PrivateAttr(default=None)

    @classmethod
    def coerce(cls, value: Any) -> Tool:
        """Accept a :class:`Tool`, an OpenAI tool dict, a plain tool-definition dict, a Python
        function (its signature and docstring become the schema) or a pydantic model class."""
        if isinstance(value, Tool):
            return value
        if isinstance(value, type) and issubclass(value, BaseModel):
            from .tools import tool_from_model

            return tool_from_model(value)
        if callable(value) and not isinstance(value, type):
            from .tools import tool_from_function

            return tool_from_function(value)
        if isinstance(value, Mapping):
            data = dict(value)
            if data.get("type") == "function" and "function" in data:
                data = dict(data["function"])
            elif data.get("type") == "function":  # the Responses API's flat form
                data.pop("type")
            try:
                return cls.model_validate(data)
            except ValidationError as exc:
                raise InvalidInputError(
                    f"invalid tool definition {describe(value)}: {exc.errors()[0]['msg']}"
                ) from None
        raise InvalidInputError(
            f"cannot use {type(value).__name__} {describe(value)} as a tool; pass a llmkit.Tool "
            "or an OpenAI tool dict {'type': 'function', 'function': {...}}"
        )

    def to_openai(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            fn["description"] = self.description
        if self.strict is not None:
            fn["strict"] = self.strict
        return {"type": "function", "function": fn}


class GenerationParams(BaseModel):
    """The generation options llmkit knows by name. Only fields that were set are sent;
    ``model_fields_set`` tells a backend which ones the caller gave."""

    model_config = ConfigDict(extra="forbid")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: ReasoningEffort | None = None
    """How much a reasoning model should think; each backend maps it to its own switch, or
    raises :class:`~llmkit.errors.UnsupportedFeatureError` before sending."""

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _coerce_tools(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)):
            raise ValueError("tools must be a list")
        return [Tool.coerce(v) for v in value]

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("auto", "none", "required"):
            # A bare tool name is the friendly form of {"type": "function", ...}.
            return {"type": "function", "function": {"name": value}}
        return value

    @property
    def effort(self) -> ReasoningEffort | None:
        """The ``reasoning_effort`` the caller set (``None`` when not set)."""
        return self.reasoning_effort if "reasoning_effort" in self.model_fields_set else None

    def given(self) -> dict[str, Any]:
        """The options the caller set, as plain JSON-able values."""
        out: dict[str, Any] = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if name == "tools" and value is not None:
                value = [t.to_openai() for t in value]
            out[name] = value
        return out


# ---------------------------------------------------------------------------- requests


@dataclass
class BaseRequest:
    """What every request carries. Only ``model`` is positional; the rest are keywords.

    ``deadline`` is an absolute ``time.monotonic()`` value (or ``None``) that bounds the whole
    call; ``timeout`` holds the per-phase budgets; ``extra`` is passed through to the
    provider as it is.
    """

    model: str
    extra: dict[str, Any] = field(default_factory=dict, kw_only=True)
    timeout: Timeout = field(default_factory=Timeout, kw_only=True)
    deadline: float | None = field(default=None, kw_only=True)

    def remaining(self) -> float | None:
        """Seconds left before the deadline (``None`` when there is none)."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def prompt_text(self) -> str:
        """The text sent, for estimating usage when a backend reports none."""
        raise NotImplementedError


@dataclass
class GenerationRequest(BaseRequest):
    """A request that generates text (chat or raw completion): it carries the
    :class:`GenerationParams`."""

    params: GenerationParams = field(default_factory=GenerationParams, kw_only=True)


@dataclass
class ChatRequest(GenerationRequest):
    """What a backend receives for one chat call."""

    messages: list[Message]

    def prompt_text(self) -> str:
        return "\n".join(m.text for m in self.messages)


@dataclass
class CompletionRequest(GenerationRequest):
    """What a backend receives for one raw completion (``prompt -> continuation``) call."""

    prompt: str

    def prompt_text(self) -> str:
        return self.prompt


@dataclass
class EmbeddingRequest(BaseRequest):
    """What a backend receives for one embedding call: one batch of texts."""

    inputs: list[str]
    dimensions: int | None = None

    def prompt_text(self) -> str:
        return "\n".join(self.inputs)
