"""What ``/v1/responses`` sends, as pydantic models: they write the reply schemas of
``/openapi.json``, and the tests validate real replies and stream events against them.

The replies themselves are built as plain dicts in :mod:`._responses_shapes` (as the chat
replies are in ``_wire``): these models describe them, closed (``extra="forbid"``), so a
field the server starts sending must be described here first. The request body is
:class:`~._responses_shapes.ResponsesRequestBody`, the model that validates it; the query of
``GET .../input_items`` is :class:`InputItemsQuery`, which validates it too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel

__all__ = [
    "RESPONSES_MODELS",
    "InputItemsQuery",
    "ResponseDeleted",
    "ResponseItemList",
    "ResponseObject",
    "ResponseStreamEvent",
]

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Echoed(BaseModel):
    # An input item the client sent, stored and listed back as it came (plus an id and a
    # status): keys the server does not read are kept, so the shape stays open.
    model_config = ConfigDict(extra="allow")


class InputItemsQuery(BaseModel):
    """The query of ``GET /v1/responses/{response_id}/input_items``."""

    model_config = ConfigDict(extra="ignore")

    order: Literal["asc", "desc"] = Field(
        default="desc", description="`asc`: oldest first; `desc`: newest first."
    )
    after: str | None = Field(default=None, description="List the items after this item id.")
    limit: int = Field(default=20, ge=1, le=100, description="How many items, 1 to 100.")


# ---------------------------------------------------------------------------- output items


class OutputText(_Reply):
    type: Literal["output_text"]
    text: str
    annotations: list[Any] = Field(description="Always empty.")
    logprobs: list[Any] = Field(description="Always empty.")


class ReasoningText(_Reply):
    type: Literal["reasoning_text"]
    text: str


class OutputMessage(_Reply):
    """The assistant's text."""

    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    status: ItemStatus
    content: list[OutputText]


class ReasoningItem(_Reply):
    """The reasoning a backend exposes, as the model's own text (``content``, as vLLM sends
    it); ``summary`` is always empty."""

    id: str
    type: Literal["reasoning"]
    summary: list[Any]
    content: list[ReasoningText]
    status: ItemStatus


class FunctionCallItem(_Reply):
    """A call of one of the request's function tools."""

    id: str
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str = Field(description="The arguments as a JSON text.")
    status: ItemStatus


OutputItem = Annotated[
    Union[OutputMessage, ReasoningItem, FunctionCallItem], Field(discriminator="type")
]


# ---------------------------------------------------------------------------- the response


class ResponseError(_Reply):
    code: str = Field(description="`rate_limit_exceeded`, `invalid_prompt` or `server_error`.")
    message: str


class IncompleteDetails(_Reply):
    reason: Literal["max_output_tokens", "content_filter"]


class InputTokensDetails(_Reply):
    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(_Reply):
    reasoning_tokens: int


class ResponseUsage(_Reply):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ReasoningSettings(_Reply):
    effort: str | None
    summary: str | None


class ResponseObject(_Reply):
    """A ``response`` object: the reply of ``POST /v1/responses`` and of ``GET
    /v1/responses/{response_id}``, and the ``response`` of the lifecycle stream events."""

    id: str
    object: Literal["response"]
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    background: Literal[False]
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    metadata: dict[str, str]
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: ReasoningSettings
    store: bool
    temperature: float
    text: dict[str, Any] = Field(description="The request's `text`, or the plain text format.")
    tool_choice: Union[str, dict[str, Any]]
    tools: list[dict[str, Any]] = Field(description="The request's function tools.")
    top_p: float
    truncation: Literal["disabled"]
    usage: ResponseUsage | None
    user: None


class ResponseDeleted(_Reply):
    """The reply of ``DELETE /v1/responses/{response_id}``."""

    id: str
    object: Literal["response"]
    deleted: Literal[True]


# ---------------------------------------------------------------------------- input items


class InputMessageItem(_Reply):
    id: str
    type: Literal["message"]
    role: Literal["user", "system", "developer", "assistant"]
    status: Literal["completed"]
    content: list[dict[str, Any]] = Field(
        description="The message's parts as sent (a text is listed as one text part)."
    )


class FunctionCallInputItem(_Echoed):
    id: str
    type: Literal["function_call"]
    call_id: str
    name: str
    status: Literal["completed"]


class FunctionCallOutputItem(_Echoed):
    id: str
    type: Literal["function_call_output"]
    call_id: str
    status: Literal["completed"]


InputItem = Annotated[
    Union[InputMessageItem, FunctionCallInputItem, FunctionCallOutputItem],
    Field(discriminator="type"),
]


class ResponseItemList(_Reply):
    """The reply of ``GET /v1/responses/{response_id}/input_items``."""

    object: Literal["list"]
    data: list[InputItem]
    first_id: str | None
    last_id: str | None
    has_more: bool


# ---------------------------------------------------------------------------- stream events


class _Event(_Reply):
    sequence_number: int = Field(description="Counts the stream's events from 0.")


class _ItemEvent(_Event):
    item_id: str
    output_index: int


class LifecycleEvent(_Event):
    type: Literal[
        "response.created",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    ]
    response: ResponseObject


class OutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: OutputItem


class ContentPartEvent(_ItemEvent):
    type: Literal["response.content_part.added", "response.content_part.done"]
    content_index: int
    part: Annotated[Union[OutputText, ReasoningText], Field(discriminator="type")]


class OutputTextDeltaEvent(_ItemEvent):
    type: Literal["response.output_text.delta"]
    content_index: int
    delta: str
    logprobs: list[Any]


class OutputTextDoneEvent(_ItemEvent):
    type: Literal["response.output_text.done"]
    content_index: int
    text: str
    logprobs: list[Any]


class ReasoningTextDeltaEvent(_ItemEvent):
    type: Literal["response.reasoning_text.delta"]
    content_index: int
    delta: str


class ReasoningTextDoneEvent(_ItemEvent):
    type: Literal["response.reasoning_text.done"]
    content_index: int
    text: str


class FunctionCallArgumentsDeltaEvent(_ItemEvent):
    type: Literal["response.function_call_arguments.delta"]
    delta: str


class FunctionCallArgumentsDoneEvent(_ItemEvent):
    type: Literal["response.function_call_arguments.done"]
    arguments: str
    name: str


_StreamEvent = Annotated[
    Union[
        LifecycleEvent,
        OutputItemEvent,
        ContentPartEvent,
        OutputTextDeltaEvent,
        OutputTextDoneEvent,
        ReasoningTextDeltaEvent,
        ReasoningTextDoneEvent,
        FunctionCallArgumentsDeltaEvent,
        FunctionCallArgumentsDoneEvent,
    ],
    Field(discriminator="type"),
]


class ResponseStreamEvent(RootModel[_StreamEvent]):
    """One event of a streamed ``POST /v1/responses`` (``event: TYPE`` / ``data: {...}``)."""


RESPONSES_MODELS: tuple[type[BaseModel], ...] = (
    ResponseObject,
    ResponseDeleted,
    ResponseItemList,
    ResponseStreamEvent,
)
