"""The keyword options of ``chat``/``stream``/``complete``/``stream_complete``, defined once.

Each method takes ``**options: Unpack[ChatOptions]`` (or :class:`CompleteOptions`), so the
sixteen sync and async signatures share one typed definition: editors complete the names
and type checkers check the values. DESIGN's rule that a keyword llmkit does not know goes
to the backend unchanged is PEP 728's ``extra_items=Any``: the known keys are typed, any
other key is allowed and lands in the request's ``extra``. Pyright (and so Pylance in
editors) implements PEP 728; mypy does not yet, and reads the definitions as closed: under
mypy a keyword for the backend alone is reported (pass it through a ``dict`` with
``**{...}``, or add it here when llmkit should know it). At run time the split is by name:
every key that names a field of :class:`~llmkit.types.GenerationParams` goes into the
params (so a field added there flows in without a change here), the client's own keys
(``system``, ``variables``, ``response_model``, ``timeout``) are taken out, and the rest is
the backend's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel
from typing_extensions import TypedDict

from ..timeouts import TimeoutInput
from ..types import GenerationParams, NotGiven

__all__ = [
    "PARAM_NAMES",
    "BatchOptions",
    "ChatOptions",
    "CompleteOptions",
    "EmbedOptions",
    "ReasoningEffort",
    "batch_settings",
]

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high"]

# Read when a call is prepared, not copied into a list of names here: a field added to
# GenerationParams is routed into the params with no edit to the client.
PARAM_NAMES = frozenset(GenerationParams.model_fields)


# `NotGiven` in each type: NOT_GIVEN passed explicitly means "not given" (openai's idiom).
class CompleteOptions(TypedDict, total=False, extra_items=Any):  # type: ignore[call-arg]
    """Options of ``complete``/``stream_complete`` (and the generation options of ``chat``).

    Any other keyword is passed to the backend unchanged.
    """

    temperature: float | NotGiven
    """Sampling temperature, 0 to 2."""
    max_tokens: int | NotGiven
    """The most tokens to generate."""
    top_p: float | NotGiven
    """Nucleus sampling: the probability mass sampled from."""
    stop: str | list[str] | NotGiven
    """Text (or texts) that end generation."""
    seed: int | NotGiven
    """A seed for reproducible sampling, where the backend supports it."""
    reasoning_effort: ReasoningEffort | NotGiven
    """How much a reasoning model thinks before it answers."""
    timeout: TimeoutInput | NotGiven
    """Seconds, or a :class:`~llmkit.Timeout`, for this call instead of the client's."""


class ChatOptions(CompleteOptions, total=False, extra_items=Any):  # type: ignore[call-arg]
    """Options of ``chat``/``stream`` (and ``batch``, ``run_tools``).

    Any other keyword is passed to the backend unchanged.
    """

    system: str | NotGiven
    """A system prompt for this call (instead of the client's)."""
    tools: Sequence[Any] | NotGiven
    """Tools the model may call: functions, pydantic models or :class:`~llmkit.Tool`."""
    tool_choice: str | dict[str, Any] | NotGiven
    """``"auto"``, ``"none"``, ``"required"`` or a tool's name."""
    response_format: dict[str, Any] | NotGiven
    """An OpenAI-style ``response_format`` sent as it is."""
    response_model: type[BaseModel] | NotGiven
    """A pydantic model the reply must validate against; the result is ``response.parsed``."""
    variables: Mapping[str, Any] | NotGiven
    """Values for a :class:`~llmkit.Prompt` input."""


class BatchOptions(ChatOptions, total=False, extra_items=Any):  # type: ignore[call-arg]
    """Options of ``batch``: how the batch runs, then the options of each ``chat``."""

    concurrency: int
    """Inputs in flight at once (default 8; for a backend that batches natively 32, at most
    the client's ``max_concurrency``, so that its batches fill)."""
    return_exceptions: bool
    """A failed input holds its own exception instead of failing the batch (default no)."""
    progress: bool | None
    """A counter on stderr (default: when stderr is a terminal)."""


class EmbedOptions(TypedDict, total=False, extra_items=Any):  # type: ignore[call-arg]
    """Options of ``embed``. Any other keyword is passed to the backend unchanged."""

    dimensions: int | NotGiven
    """Vector length, for models that can shorten theirs (e.g. text-embedding-3)."""
    batch_size: int | NotGiven
    """Texts per request (default 128); larger inputs are split, each batch retried on its
    own, HTTP batches sent concurrently within the client's limits."""
    timeout: TimeoutInput | NotGiven
    """Seconds, or a :class:`~llmkit.Timeout`, for each batch instead of the client's."""


# The default concurrency of a batch on a natively batching backend: enough inputs in flight
# to fill a couple of its batches (the hf backend's are 16 rows) and send them back to
# back; past that, threads queueing for the GIL cost more than larger batches gain.
NATIVE_CONCURRENCY = 32


def batch_settings(
    options: dict[str, Any], native: bool, max_concurrency: int
) -> tuple[int, bool, bool | None]:
    """``(concurrency, return_exceptions, progress)`` taken out of a ``batch``'s options;
    what is left are the options of each input's ``chat``. ``native``: the backend batches
    natively, and by default gets as many inputs at once as the client allows."""
    concurrency = options.pop(
        "concurrency", min(max_concurrency, NATIVE_CONCURRENCY) if native else 8
    )
    return (
        max(1, concurrency),
        options.pop("return_exceptions", False),
        options.pop("progress", None),
    )
