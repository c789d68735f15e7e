"""The OpenAI shapes as pydantic models: the request bodies the server accepts (validated,
and turned into client arguments), and the replies it sends (which write ``/openapi.json``).

The request models follow the OpenAI request shapes. Fields llmkit cannot honour with a
non-default value (``n > 1``, ``logprobs``) are rejected with a 400; OpenAI fields that do
not change what llmkit generates (``user``, ``metadata``, ...) and unknown fields are
ignored, as OpenAI-compatible servers usually do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import InvalidInputError
from ..types import Message, ReasoningEffort

__all__ = [
    "RESPONSE_MODELS",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "CompletionRequestBody",
    "ErrorBody",
    "Health",
    "ModelCard",
    "ModelList",
    "RequestError",
    "StreamOptions",
    "TextCompletion",
    "parse_body",
]

# Keys of an OpenAI message that llmkit models; others (refusal, audio, annotations,
# function_call: what the SDK echoes back when a reply is re-sent as history) are dropped.
# reasoning_content / reasoning: an assistant message passed back with its reasoning.
_MESSAGE_KEYS = (
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "reasoning_content",
    "reasoning",
)


class RequestError(Exception):
    """A request the server rejects before it reaches the model (400, with the param)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with token counts."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="The served model name (or the full spec).")
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, description="Only 1 is supported.")
    user: str | None = None
    reasoning_effort: ReasoningEffort | None = None

    def generation_kwargs(self, max_tokens_cap: int | None) -> dict[str, Any]:
        """Keyword arguments for ``AsyncClient.complete``/``stream_complete`` (and the chat
        methods; only what was given)."""
        if self.n not in (None, 1):
            raise RequestError("n > 1 is not supported by this server", param="n")
        kwargs: dict[str, Any] = {}
        for name in ("temperature", "top_p", "stop", "seed", "reasoning_effort"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        max_tokens = self._max_tokens()
        if max_tokens_cap is not None:
            max_tokens = min(max_tokens or max_tokens_cap, max_tokens_cap)
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        return kwargs

    def _max_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def include_usage(self) -> bool:
        """Whether a streamed reply ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Common):
    """``POST /v1/chat/completions``."""

    messages: list[dict[str, Any]] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Union[str, dict[str, Any], None] = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None

    def _max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def chat_messages(self) -> list[Message]:
        """The messages as llmkit :class:`Message` objects (400 naming the bad one)."""
        out = []
        for index, raw in enumerate(self.messages):
            data = {k: raw[k] for k in _MESSAGE_KEYS if k in raw}
            if data.get("role") == "assistant" and not data.get("tool_calls"):
                data.pop("tool_calls", None)
            try:
                out.append(Message.model_validate(data))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"])
                param = f"messages[{index}]" + (f".{where}" if where else "")
                raise RequestError(
                    f"invalid message at messages[{index}]: {err['msg']}", param=param
                ) from None
        return out

    def generation_kwargs(self, max_tokens_cap: int | None) -> dict[str, Any]:
        """Keyword arguments for ``AsyncClient.chat``/``stream`` (only what was given)."""
        if self.logprobs:
            raise RequestError("logprobs are not supported by this server", param="logprobs")
        kwargs = super().generation_kwargs(max_tokens_cap)
        for name in ("tools", "tool_choice", "response_format"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs


class CompletionRequestBody(_Common):
    """``POST /v1/completions`` (raw text completion)."""

    prompt: Union[str, list[str]]
    echo: bool | None = None
    suffix: str | None = None

    def prompt_text(self) -> str:
        """The prompt; a list is accepted when it holds exactly one string."""
        if self.echo:
            raise RequestError("echo is not supported by this server", param="echo")
        if self.suffix:
            raise RequestError("suffix is not supported by this server", param="suffix")
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) != 1:
            raise RequestError("exactly one prompt per request is supported", param="prompt")
        return self.prompt[0]


class EmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, description="The served model name (or the full spec).")
    input: Union[str, list[str]] = Field(
        description="A text or a list of texts (token-id arrays are not accepted)."
    )
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="`base64`: little-endian float32, what the official SDK asks for.",
    )
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


def parse_body(cls: type[BaseModel], data: Any) -> Any:
    """Validate a decoded JSON body; a :class:`RequestError` names the first bad field."""
    if not isinstance(data, Mapping):
        raise RequestError("the request body must be a JSON object")
    try:
        return cls.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        if err["type"] == "missing":
            message = f"missing required parameter: {param!r}"
        else:
            shown = repr(err.get("input"))
            if len(shown) > 80:
                shown = shown[:77] + "..."
            message = f"invalid value for {param!r}: {shown} ({err['msg']})"
        raise RequestError(message, param=param) from None
    except InvalidInputError as exc:  # pragma: no cover - raised by nested llmkit validators
        raise RequestError(str(exc)) from None


# ---------------------------------------------------------------------------- responses
# What the server sends (built as plain dicts in ``_wire``); these models write the response
# schemas of /openapi.json, and the tests validate real replies against them.


class _Reply(BaseModel):
    # Closed shapes: a field the server starts sending must be described here first.
    model_config = ConfigDict(extra="forbid")


class CompletionTokensDetails(_Reply):
    reasoning_tokens: int | None = Field(
        default=None, description="How many of the completion tokens were reasoning."
    )


class Usage(_Reply):
    """Token counts (estimated when the backend reports none)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None


class FunctionCall(_Reply):
    name: str
    arguments: str = Field(description="The arguments as a JSON text.")


class ToolCall(_Reply):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Reply):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = Field(
        default=None, description="The model's reasoning, when the backend exposes it."
    )


class _Choice(_Reply):
    # What every choice shares: a chunk's is null until the last one.
    index: int
    finish_reason: str | None
    logprobs: None = None


class ChatChoice(_Choice):
    message: AssistantMessage


class _Completion(_Reply):
    # What a completion reply and each of its stream chunks share (``object`` is narrowed
    # to the one value each sends).
    id: str
    object: str
    created: int
    model: str


class ChatCompletion(_Completion):
    """The reply of ``POST /v1/chat/completions``."""

    object: Literal["chat.completion"]
    choices: list[ChatChoice]
    usage: Usage


class FunctionCallDelta(_Reply):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(_Reply):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class ChunkDelta(_Reply):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = Field(
        default=None, description="A piece of the reasoning, when the backend exposes it."
    )


class ChunkChoice(_Choice):
    delta: ChunkDelta


class ChatCompletionChunk(_Completion):
    """One event of a streamed chat completion (``data: {...}``); the usage chunk has empty
    ``choices``."""

    object: Literal["chat.completion.chunk"]
    choices: list[ChunkChoice]
    usage: Usage | None = None


class TextChoice(_Choice):
    text: str


class TextCompletion(_Completion):
    """The reply of ``POST /v1/completions``, and each of its stream events."""

    object: Literal["text_completion"]
    choices: list[TextChoice]
    usage: Usage | None = None


class ModelCard(_Reply):
    """A served model."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(_Reply):
    """The reply of ``GET /v1/models``."""

    object: Literal["list"]
    data: list[ModelCard]


class ErrorDetail(_Reply):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(_Reply):
    """Every error the server sends, in OpenAI's shape (also as a stream event after a late
    failure)."""

    error: ErrorDetail


class Embedding(_Reply):
    object: Literal["embedding"]
    index: int
    embedding: Union[list[float], str]


class EmbeddingUsage(_Reply):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(_Reply):
    """The reply of ``POST /v1/embeddings``."""

    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class Health(_Reply):
    """The reply of ``GET /health``."""

    status: Literal["ok"]


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ChatCompletion,
    ChatCompletionChunk,
    TextCompletion,
    ModelList,
    ModelCard,
    EmbeddingList,
    ErrorBody,
    Health,
)
