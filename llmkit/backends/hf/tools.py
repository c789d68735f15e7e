"""Tool calling for the ``hf`` backend: prompt rendering, call parsing, forced calls.

Local models learn tool calling from their chat template, so that is used where the model
has it: a template that reads ``tools`` gets them (transformers renders the JSON schemas in
the model's own words), and assistant ``tool_calls`` and ``tool`` results are passed in the
shape transformers templates expect. A template without tool support (SmolLM2's, for one)
gets the widely used Hermes convention instead: the tools listed in the system prompt, calls
written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` and results sent back
as ``<tool_response>`` user turns.

Replies are parsed by :class:`ToolCallParser`, the same code for streamed and whole answers,
so a streamed reply accumulates to exactly the non-streamed one. It understands the three
forms models write: Hermes ``<tool_call>`` blocks (Qwen, Hermes, SmolLM3, ...), Mistral's
``[TOOL_CALLS]`` list, and a bare JSON object ``{"name": ..., "parameters": ...}`` as the
whole reply, optionally after ``<|python_tag|>`` (Llama 3.x).

``tool_choice="required"`` or a named tool is enforced with constrained decoding (the reply
can only be a valid call), when llguidance is installed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from ...types import (
    FinishEvent,
    Message,
    ReasoningDelta,
    StreamEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    new_tool_call_id,
)
from .structured import closed_schema

logger = logging.getLogger("llmkit.backends.hf")

__all__ = [
    "ToolCallParser",
    "ToolEventFilter",
    "forced_call_grammar",
    "native_tools",
    "render_messages",
    "split_reply",
    "tool_specs",
]

HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
MISTRAL_MARK = "[TOOL_CALLS]"
LLAMA_MARK = "<|python_tag|>"
_MARKERS = (HERMES_OPEN, MISTRAL_MARK, LLAMA_MARK)
_DECODER = json.JSONDecoder()
_HERMES_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


def native_tools(template: str | None) -> bool:
    """Whether a chat template renders ``tools`` itself."""
    return bool(template) and re.search(r"\btools\b", str(template)) is not None


def tool_specs(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    """The tools in the OpenAI shape transformers chat templates take."""
    return [tool.to_openai() for tool in tools]


def _instruction(tools: Sequence[Tool]) -> str:
    listed = "\n".join(json.dumps(spec["function"]) for spec in tool_specs(tools))
    return (
        "You can call functions to answer. They are described by these JSON schemas:\n"
        f"<tools>\n{listed}\n</tools>\n"
        "To call a function, reply with only this, nothing before or after it:\n"
        f'{HERMES_OPEN}\n{{"name": <function name>, "arguments": <arguments as a JSON object>}}\n'
        f"{HERMES_CLOSE}\n"
        "The result comes back in a <tool_response> block; then answer the user."
    )


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return call.arguments


def _hermes_call(call: ToolCall) -> str:
    body = json.dumps({"name": call.name, "arguments": _arguments(call)})
    return f"{HERMES_OPEN}\n{body}\n{HERMES_CLOSE}"


def render_messages(
    messages: Sequence[Message],
    tools: Sequence[Tool],
    *,
    native: bool,
    reasoning_key: str | None = None,
) -> list[dict[str, Any]]:
    """Messages as chat-template dicts, with tool calls and results in the template's shape
    (``native``) or in the Hermes text convention (with the tools added to the system
    prompt when ``tools`` is not empty). With ``reasoning_key``, an assistant message's
    reasoning goes into that field (the template decides which turns keep it)."""
    names = {c.id: c.name for m in messages for c in (m.tool_calls or [])}
    rendered: list[dict[str, Any]] = []
    for message in messages:
        # Chat templates know system/user/assistant; "developer" is OpenAI's newer system.
        role = "system" if message.role == "developer" else message.role
        text = message.text
        if native:
            item: dict[str, Any] = {"role": role, "content": text}
            if message.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": _arguments(c)},
                    }
                    for c in message.tool_calls
                ]
            if message.role == "tool":
                item["tool_call_id"] = message.tool_call_id
                item["name"] = message.name or names.get(message.tool_call_id or "", "")
            rendered.append(item)
        elif message.role == "tool":
            rendered.append(
                {"role": "user", "content": f"<tool_response>\n{text}\n</tool_response>"}
            )
        elif message.tool_calls:
            calls = "\n".join(_hermes_call(c) for c in message.tool_calls)
            rendered.append({"role": role, "content": f"{text}\n{calls}" if text else calls})
        else:
            rendered.append({"role": role, "content": text})
        if reasoning_key and message.reasoning and message.role == "assistant":
            rendered[-1][reasoning_key] = message.reasoning
    if tools and not native:
        instruction = _instruction(tools)
        if rendered and rendered[0]["role"] == "system":
            rendered[0] = {**rendered[0], "content": f"{rendered[0]['content']}\n\n{instruction}"}
        else:
            rendered.insert(0, {"role": "system", "content": instruction})
    return rendered


def _call_schema(tool: Tool, arguments_key: str, defs: dict[str, Any]) -> dict[str, Any]:
    parameters = dict(tool.parameters)
    # "#/$defs/..." references point at the root of the schema: move the definitions there.
    defs.update(parameters.pop("$defs", {}))
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, arguments_key: parameters},
        "required": ["name", arguments_key],
        "additionalProperties": False,
    }


def forced_call_grammar(tools: Sequence[Tool], template: str | None) -> str:
    """A Lark grammar (llguidance dialect) whose only sentences are one call of one of
    ``tools``, written the way the model's template expects calls."""
    template = template or ""
    key = (
        "parameters" if '"parameters"' in template and HERMES_OPEN not in template else "arguments"
    )
    defs: dict[str, Any] = {}
    schemas = [_call_schema(t, key, defs) for t in tools]
    schema: dict[str, Any] = dict(schemas[0]) if len(schemas) == 1 else {"anyOf": schemas}
    if defs:
        schema["$defs"] = defs
    # Without this llguidance allows any whitespace between tokens, and a weak model can
    # spend its whole budget on it.
    schema["x-guidance"] = {"whitespace_flexible": False}
    call = f"%json{json.dumps(closed_schema(schema))}"
    if MISTRAL_MARK in template:
        return f'start: "{MISTRAL_MARK}[" call "]"\ncall: {call}\n'
    if native_tools(template) and HERMES_OPEN not in template:
        return f"start: call\ncall: {call}\n"
    return f'start: "{HERMES_OPEN}\\n" call "\\n{HERMES_CLOSE}"\ncall: {call}\n'


def _as_call(data: Any) -> ToolCall | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=new_tool_call_id(), name=data["name"], arguments=text)


class ToolCallParser:
    """Splits a reply into plain text and tool calls, incrementally.

    :meth:`feed` returns the text that is certainly not part of a call (it holds back a
    suffix that could still become a call marker, and everything after a marker);
    :meth:`finish` returns the rest of the text and the calls. A reply that starts with
    ``{`` is held back whole, since it may be a bare JSON call.
    """

    def __init__(self, tool_names: Sequence[str]) -> None:
        self._names = set(tool_names)
        self._held = ""  # text not yet known to be plain
        self._calls_text: str | None = None  # everything from the first marker on
        self._bare_json: bool | None = None  # decided by the first non-space character

    def feed(self, delta: str) -> str:
        if self._calls_text is not None:
            self._calls_text += delta
            return ""
        self._held += delta
        if self._bare_json is None:
            stripped = self._held.lstrip()
            if not stripped:
                return ""
            self._bare_json = stripped[0] == "{"
        if self._bare_json:
            return ""
        for marker in _MARKERS:
            at = self._held.find(marker)
            if at >= 0:
                text, self._calls_text = self._held[:at], self._held[at:]
                self._held = ""
                return text
        keep = _partial_marker_length(self._held)
        text, self._held = (
            self._held[: len(self._held) - keep],
            self._held[len(self._held) - keep :],
        )
        return text

    def finish(self) -> tuple[str, list[ToolCall]]:
        if self._bare_json:
            calls = self._parse_bare(self._held)
            return ("", calls) if calls else (self._held, [])
        if self._calls_text is None:
            return self._held, []
        calls = self._parse_marked(self._calls_text)
        if not calls:
            logger.debug("hf: a tool call marker without a parseable call; kept as text")
            return self._held + self._calls_text, []
        return self._held, calls

    def _parse_bare(self, text: str) -> list[ToolCall]:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return []
        items = data if isinstance(data, list) else [data]
        calls = [_as_call(item) for item in items]
        if not calls or any(c is None for c in calls):
            return []
        found = [c for c in calls if c is not None]
        # A bare JSON reply is a call only if it names a tool; otherwise it is an answer.
        return found if all(c.name in self._names for c in found) else []

    def _parse_marked(self, text: str) -> list[ToolCall]:
        if text.startswith(LLAMA_MARK):
            return self._parse_bare(text[len(LLAMA_MARK) :])
        if text.startswith(MISTRAL_MARK):
            try:
                data = json.loads(text[len(MISTRAL_MARK) :])
            except json.JSONDecodeError:
                return []
            items = data if isinstance(data, list) else [data]
        else:
            items = []
            for block in _HERMES_BLOCK.findall(text):
                try:
                    # raw_decode: a reply cut short after the JSON (in "</tool_ca") is fine.
                    items.append(_DECODER.raw_decode(block.strip())[0])
                except json.JSONDecodeError:
                    return []
        calls = [_as_call(item) for item in items]
        return [c for c in calls if c is not None] if all(calls) else []


def _partial_marker_length(text: str) -> int:
    """The length of the longest suffix of ``text`` that is a proper prefix of a marker."""
    best = 0
    for marker in _MARKERS:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                best = max(best, size)
                break
    return best


def split_reply(text: str, tool_names: Sequence[str]) -> tuple[str | None, list[ToolCall]]:
    """A whole reply as (content, tool calls); content is ``None`` when only calls remain."""
    parser = ToolCallParser(tool_names)
    head = parser.feed(text)
    rest, calls = parser.finish()
    content = head + rest
    return (content if content or not calls else None), calls


class ToolEventFilter:
    """Turns a stream of text events into text and tool-call events, the same way
    :func:`split_reply` splits a whole reply: feed every event to :meth:`push`."""

    def __init__(self, tool_names: Sequence[str]) -> None:
        self._parser = ToolCallParser(tool_names)
        self._flushed = False
        self._called = False

    def push(self, event: StreamEvent) -> list[StreamEvent]:
        if isinstance(event, TextDelta):
            text = self._parser.feed(event.delta)
            return [TextDelta(delta=text)] if text else []
        if isinstance(event, ReasoningDelta):
            return [event]  # reasoning comes before the reply: nothing to flush yet
        out: list[StreamEvent] = []
        if not self._flushed:
            self._flushed = True
            rest, calls = self._parser.finish()
            if rest:
                out.append(TextDelta(delta=rest))
            out += [
                ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                for i, c in enumerate(calls)
            ]
            self._called = bool(calls)
        if isinstance(event, FinishEvent) and self._called:
            event = event.model_copy(update={"finish_reason": "tool_calls"})
        out.append(event)
        return out
