"""The data llmkit passes around: messages, responses, stream events and requests.

The request types (and the generation parameters and tools they carry) are defined in
:mod:`llmkit._requests` and re-exported here, their public import path.

Messages and responses are pydantic v2 models that convert to and from the OpenAI JSON
shapes (``chat.completion``, message dicts), so anything written for the OpenAI API can be
handed to llmkit unchanged, and llmkit's own server can answer in exactly that shape.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ._parts import AudioPart, ContentPart, FilePart, ImagePart, TextPart

# The request types and what they carry live in their own module; this is their public path.
from ._requests import (
    BaseRequest,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    GenerationParams,
    GenerationRequest,
    ReasoningEffort,
    Tool,
    describe,
)
from .errors import InvalidInputError, ProtocolError

__all__ = [
    "NOT_GIVEN",
    "AudioPart",
    "BaseRequest",
    "ChatRequest",
    "ChatResponse",
    "CompletionRequest",
    "ContentPart",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FilePart",
    "FinishEvent",
    "GenerationParams",
    "GenerationRequest",
    "ImagePart",
    "Message",
    "MessageInput",
    "NotGiven",
    "ReasoningDelta",
    "ReasoningEffort",
    "StreamEvent",
    "TextDelta",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "UsageEvent",
    "estimate_tokens",
    "normalize_messages",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]

# The fields OpenAI-compatible servers put an assistant message's reasoning in: DeepSeek,
# vLLM and llama.cpp say ``reasoning_content``; OpenRouter, Groq and newer vLLM ``reasoning``.
REASONING_FIELDS = ("reasoning_content", "reasoning")


# ---------------------------------------------------------------------------- messages
# (the content parts of a message live in llmkit._parts and are re-exported here)


class ToolCall(BaseModel):
    """A function call the model asked for. ``arguments`` is the JSON text the model wrote."""

    model_config = ConfigDict(extra="forbid")
    id: str
    name: str
    arguments: str = "{}"
    type: Literal["function"] = "function"

    @model_validator(mode="before")
    @classmethod
    def _from_openai_shape(cls, data: Any) -> Any:
        # Accept {"id", "type", "function": {"name", "arguments"}} as sent by OpenAI.
        if isinstance(data, Mapping) and "function" in data:
            fn = data["function"] or {}
            return {
                "id": data.get("id") or "",
                "name": fn.get("name", ""),
                "arguments": fn.get("arguments", "{}"),
            }
        return data

    @field_validator("arguments", mode="before")
    @classmethod
    def _arguments_as_text(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            try:
                return json.dumps(value)
            except (TypeError, ValueError) as exc:  # pydantic reports it as a ValidationError
                raise ValueError(f"tool call arguments must be JSON values: {exc}") from None
        return value

    @property
    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments decoded from JSON; :class:`ProtocolError` when they are not JSON."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ProtocolError(
                f"tool call {self.name!r} has arguments that are not JSON: {self.arguments[:200]!r}"
            ) from exc
        if not isinstance(value, dict):
            raise ProtocolError(f"tool call {self.name!r} arguments are not a JSON object")
        return value

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


class Message(BaseModel):
    """One chat message, in the OpenAI roles: system, developer, user, assistant, tool."""

    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning: str | None = Field(default=None, exclude_if=lambda value: value is None)
    """What a reasoning model said before answering (assistant messages only). Kept so the
    message can be passed back in the next turn; each backend decides whether to send it
    (see "Reasoning models" in the docs: some providers need it, some reject it)."""
    provider_data: dict[str, Any] | None = Field(
        default=None, repr=False, exclude_if=lambda value: value is None
    )
    """Opaque state a backend attached for the round trip (e.g. which field a server sent
    the reasoning in, OpenRouter's ``reasoning_details``), keyed by wire format. Only the
    wire format that wrote it reads it back."""

    @model_validator(mode="before")
    @classmethod
    def _reasoning_alias(cls, data: Any) -> Any:
        # An assistant message dict copied from a DeepSeek/vLLM reply carries its reasoning
        # as ``reasoning_content`` (OpenRouter's ``reasoning`` is this field's own name).
        if isinstance(data, Mapping) and "reasoning_content" in data:
            data = dict(data)
            value = data.pop("reasoning_content")
            if value is not None and data.get("reasoning") is None:
                data["reasoning"] = value
        return data

    @field_validator("content", mode="before")
    @classmethod
    def _text_items_as_parts(cls, value: Any) -> Any:
        # ["What is this?", Image("cat.png")]: a bare string in a part list is a text part.
        if isinstance(value, (list, tuple)):
            return [{"type": "text", "text": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError(
                "a 'tool' message needs 'tool_call_id' (the id of the call it answers)"
            )
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only 'assistant' messages can carry 'tool_calls'")
        if self.reasoning is not None and self.role != "assistant":
            raise ValueError("only 'assistant' messages can carry 'reasoning'")
        if self.content is None and not self.tool_calls and self.role != "assistant":
            raise ValueError(f"a {self.role!r} message needs 'content'")
        return self

    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str | list[ContentPart]) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(
        cls,
        content: str | None = None,
        tool_calls: list[ToolCall] | None = None,
        reasoning: str | None = None,
    ) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls, reasoning=reasoning)

    @classmethod
    def tool(cls, content: str, tool_call_id: str) -> Message:
        return cls(role="tool", content=content, tool_call_id=tool_call_id)

    @property
    def text(self) -> str:
        """The text of the message (text parts joined); ``""`` when it has none."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))

    def to_openai(self, *, reasoning_field: str | None = None) -> dict[str, Any]:
        """The message as an OpenAI message dict; with ``reasoning_field``, the reasoning
        (when there is any) goes into that field (``"reasoning_content"`` is what the
        OpenAI-compatible ecosystem reads)."""
        out: dict[str, Any] = {"role": self.role}
        if isinstance(self.content, list):
            out["content"] = [p.model_dump(exclude_none=True) for p in self.content]
        else:
            out["content"] = self.content
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [tc.to_openai() for tc in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if reasoning_field and self.reasoning:
            out[reasoning_field] = self.reasoning
        return out


MessageInput = Union[
    str, Message, Mapping[str, Any], Sequence[Union[str, Message, Mapping[str, Any]]]
]


def _one_message(item: Any, index: int | None) -> Message:
    where = "" if index is None else f" at position {index}"
    if isinstance(item, Message):
        return item
    if isinstance(item, str):
        return Message(role="user", content=item)
    if isinstance(item, Mapping):
        try:
            return Message.model_validate(dict(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}"
                for err in exc.errors()
            )
            raise InvalidInputError(
                f"invalid message{where}: {problems}. Expected an OpenAI-shaped dict such as "
                "{'role': 'user', 'content': 'Hello'}"
            ) from None
    raise InvalidInputError(
        f"cannot use {type(item).__name__} {describe(item)} as a message{where}; pass a str, "
        "a llmkit.Message, an OpenAI-shaped dict, or a list of those"
    )


def normalize_messages(value: Any) -> list[Message]:
    """Turn any accepted input shape into a list of :class:`Message`.

    Accepted: a ``str`` (one user message), a :class:`Message`, an OpenAI-shaped dict, or a
    list/tuple of those. Anything else raises :class:`InvalidInputError` naming what was wrong.
    """
    if isinstance(value, (str, Message, Mapping)):
        return [_one_message(value, None)]
    if isinstance(value, (list, tuple)):
        if not value:
            raise InvalidInputError("no messages given: pass at least one message")
        return [_one_message(item, i) for i, item in enumerate(value)]
    raise InvalidInputError(
        f"cannot use {type(value).__name__} {describe(value)} as chat input; pass a str, a "
        "llmkit.Message, an OpenAI-shaped dict, a list of those, or a llmkit.Prompt"
    )


# ---------------------------------------------------------------------------- usage and response


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) for backends that report none."""
    return math.ceil(len(text) / 4) if text else 0


class Usage(BaseModel):
    """Token counts of one call. ``estimated`` is true when the backend reported none."""

    model_config = ConfigDict(extra="forbid")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False
    # Left out of dumps when unknown, so usage of non-reasoning calls dumps as it always did.
    reasoning_tokens: int | None = Field(default=None, exclude_if=lambda value: value is None)
    """Of ``completion_tokens``, how many the model spent reasoning (``None``: not reported)."""

    @model_validator(mode="after")
    def _fill_total(self) -> Usage:
        if not self.total_tokens:
            self.total_tokens = self.prompt_tokens + self.completion_tokens
        return self

    @classmethod
    def estimate(cls, prompt_text: str, completion_text: str) -> Usage:
        return cls(
            prompt_tokens=estimate_tokens(prompt_text),
            completion_tokens=estimate_tokens(completion_text),
            estimated=True,
        )

    def __add__(self, other: Usage) -> Usage:
        reasoning = None
        if self.reasoning_tokens is not None or other.reasoning_tokens is not None:
            reasoning = (self.reasoning_tokens or 0) + (other.reasoning_tokens or 0)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            estimated=self.estimated or other.estimated,
            reasoning_tokens=reasoning,
        )

    @classmethod
    def from_openai(cls, data: Any) -> Usage | None:
        """An OpenAI ``usage`` object (``None`` when ``data`` is not one), with
        ``completion_tokens_details.reasoning_tokens`` when the server sent it."""
        if not isinstance(data, Mapping):
            return None
        details = data.get("completion_tokens_details")
        reasoning = details.get("reasoning_tokens") if isinstance(details, Mapping) else None
        return cls(
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            total_tokens=int(data.get("total_tokens") or 0),
            reasoning_tokens=reasoning if isinstance(reasoning, int) else None,
        )

    def to_openai(self) -> dict[str, Any]:
        """This usage as an OpenAI ``usage`` object."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.reasoning_tokens is not None:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out


def new_response_id() -> str:
    # os.urandom is ~20x cheaper than uuid4() and this runs on every call.
    return "chatcmpl-" + os.urandom(12).hex()


def new_tool_call_id() -> str:
    """An id for a tool call a backend parsed from text (local models write none)."""
    return "call_" + os.urandom(12).hex()


class ChatResponse(BaseModel):
    """The answer to one chat (or completion) call, whichever backend gave it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    message: Message
    finish_reason: str = "stop"
    usage: Usage = Field(default_factory=lambda: Usage(estimated=True))
    model: str = ""
    backend: str = ""
    id: str = Field(default_factory=new_response_id)
    created: int = Field(default_factory=lambda: int(time.time()))
    parsed: Any = None
    request_id: str | None = None
    """The provider's request id (``x-request-id``) when it sent one: quote it to support."""
    raw: Any = Field(default=None, repr=False, exclude=True)

    @property
    def text(self) -> str:
        """The assistant's text (``""`` when it only called tools)."""
        return self.message.text

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self.message.tool_calls or []

    @property
    def reasoning(self) -> str | None:
        """The reasoning text the backend exposed (``None`` when it exposed none)."""
        return self.message.reasoning

    def to_openai(self) -> dict[str, Any]:
        """This response as an OpenAI ``chat.completion`` object (the reasoning, when there
        is any, as ``message.reasoning_content``, the field the ecosystem reads)."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": self.message.to_openai(reasoning_field="reasoning_content"),
                    "finish_reason": self.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": self.usage.to_openai(),
        }

    @classmethod
    def from_openai(cls, data: Mapping[str, Any], *, backend: str = "") -> ChatResponse:
        """Build a response from an OpenAI ``chat.completion`` dict (first choice).

        Tolerates what real servers send: ``content`` null, missing ``usage``, missing ids.
        Raises :class:`ProtocolError` when there is no choice to read.
        """
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ProtocolError("reply has no 'choices'", backend=backend or None)
        choice = choices[0]
        raw_message = dict(choice.get("message") or {})
        raw_message.setdefault("role", "assistant")
        # Servers add fields we do not model (refusal, audio, ...).
        known = {
            k: raw_message[k] for k in ("role", "content", "name", "tool_calls") if k in raw_message
        }
        if not known.get("tool_calls"):
            known.pop("tool_calls", None)
        known.update(reasoning_of(raw_message))
        try:
            message = Message.model_validate(known)
        except ValidationError as exc:
            raise ProtocolError(
                f"malformed message in reply: {exc.errors()[0]['msg']}", backend=backend or None
            ) from None
        usage = Usage.from_openai(data.get("usage")) or Usage(estimated=True)
        return cls(
            message=message,
            finish_reason=choice.get("finish_reason") or "stop",
            usage=usage,
            model=str(data.get("model") or ""),
            backend=backend,
            id=str(data.get("id") or new_response_id()),
            created=int(data.get("created") or time.time()),
            raw=data,
        )


def reasoning_of(raw_message: Mapping[str, Any]) -> dict[str, Any]:
    """The ``reasoning`` and ``provider_data`` of an OpenAI-shaped message or delta dict:
    the text of its first non-empty reasoning field, which field that was, and OpenRouter's
    ``reasoning_details`` (opaque blocks some models need back); ``{}`` when it has none."""
    out: dict[str, Any] = {}
    state: dict[str, Any] = {}
    for name in REASONING_FIELDS:
        value = raw_message.get(name)
        if isinstance(value, str) and value:
            out["reasoning"] = value
            state["reasoning_field"] = name
            break
    details = raw_message.get("reasoning_details")
    if isinstance(details, list) and details:
        state["reasoning_details"] = details
    if state:
        out["provider_data"] = {"openai": state}
    return out


# ---------------------------------------------------------------------------- stream events


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @property
    def text(self) -> str:
        """The text delta this event carries; ``""`` for events that carry none."""
        return ""


class TextDelta(_Event):
    """A piece of the assistant's text."""

    type: Literal["text"] = "text"
    delta: str

    @property
    def text(self) -> str:
        return self.delta


class ReasoningDelta(_Event):
    """A piece of the model's reasoning. Its :attr:`text` is ``""``, so a loop that prints
    ``event.text`` never prints reasoning; read :attr:`reasoning` to show it."""

    type: Literal["reasoning"] = "reasoning"
    reasoning: str


class ToolCallDelta(_Event):
    """A piece of a tool call: the first delta of a call has ``id`` and ``name``; later ones
    append to ``arguments``. ``index`` tells parallel calls apart."""

    type: Literal["tool_call"] = "tool_call"
    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class UsageEvent(_Event):
    """Token counts, usually sent once at the end of a stream."""

    type: Literal["usage"] = "usage"
    usage: Usage


class FinishEvent(_Event):
    """The last event of a stream: why the model stopped, and the reply's metadata."""

    type: Literal["finish"] = "finish"
    finish_reason: str = "stop"
    id: str | None = None
    model: str | None = None
    request_id: str | None = None
    """The provider's request id (``x-request-id`` of the streamed HTTP response), when it
    sent one; becomes :attr:`ChatResponse.request_id` of the accumulated response."""
    provider_data: dict[str, Any] | None = Field(default=None, repr=False)
    """Opaque round-trip state of the reply (e.g. encrypted reasoning items of the Responses
    API); becomes the accumulated message's :attr:`Message.provider_data`."""


StreamEvent = Annotated[
    Union[TextDelta, ReasoningDelta, ToolCallDelta, UsageEvent, FinishEvent],
    Field(discriminator="type"),
]


# ---------------------------------------------------------------------------- options


class NotGiven:
    """The type of :data:`NOT_GIVEN`: marks an option the caller did not pass (``None`` can be
    a real value, so it cannot mean "absent")."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN = NotGiven()


# -------------------------------------------------------------------------- embeddings


def normalize_embedding_inputs(value: Any) -> list[str]:
    """A ``str`` or a list of ``str`` as the list of texts to embed.

    Every backend gets the same rules, checked before anything is sent: at least one text,
    every item a ``str``, and no empty (or blank) text — OpenAI rejects those, and an empty
    text has no meaning to retrieve by, so it is refused everywhere rather than embedded as
    the model's special tokens alone.
    """
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, (list, tuple)):
        texts = list(value)
    else:
        raise InvalidInputError(f"embed() takes a str or a list of str, got {type(value).__name__}")
    if not texts:
        raise InvalidInputError("embed() needs at least one text; got an empty list")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"embed() input {i} is a {type(text).__name__}, not a str; convert it first"
            )
        if not text.strip():
            raise InvalidInputError(
                f"embed() input {i} is empty; drop empty texts before embedding"
            )
    return texts


class EmbeddingResponse(BaseModel):
    """Vectors for the inputs of one ``embed()`` call, one per input, in input order."""

    vectors: list[list[float]]
    model: str = ""
    backend: str = ""
    usage: Usage = Field(default_factory=lambda: Usage(estimated=True))
    request_id: str | None = None

    @property
    def dimensions(self) -> int:
        """The length of each vector (0 when there are none)."""
        return len(self.vectors[0]) if self.vectors else 0

    def __repr__(self) -> str:
        # Thousands of floats help nobody in a repr or a log line.
        return (
            f"EmbeddingResponse(vectors=<{len(self.vectors)} x {self.dimensions}>, "
            f"model={self.model!r}, backend={self.backend!r}, usage={self.usage!r})"
        )

    __str__ = __repr__
