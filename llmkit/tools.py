"""Tools from plain Python: functions and pydantic models → JSON schema, and running calls.

``tools=[get_weather]`` works on any ``chat``: the function's signature, type hints and
docstring become the tool's schema (through pydantic, so defaults, enums, ``Literal`` and
nested models are described properly). :func:`execute` runs a :class:`~llmkit.types.ToolCall`
against the tools it was offered, validating the model's arguments first.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, PydanticUserError, ValidationError, create_model

from .errors import InvalidInputError
from .structured import json_schema_of
from .types import Message, Tool, ToolCall

__all__ = ["ToolBox", "execute", "tool_from_function", "tool_from_model"]

logger = logging.getLogger("llmkit.tools")


def _docstring_summary(obj: Any) -> str | None:
    doc = inspect.getdoc(obj)
    if not doc:
        return None
    # The first paragraph describes the tool; an "Args:" section describes parameters.
    return doc.split("\n\n", 1)[0].strip() or None


def _arg_descriptions(obj: Any) -> dict[str, str]:
    doc = inspect.getdoc(obj) or ""
    out: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            if not stripped:
                continue
            if not line.startswith((" ", "\t")):
                break
            name, sep, text = stripped.partition(":")
            name = name.split("(")[0].strip()
            if sep and name.isidentifier():
                out[name] = text.strip()
    return out


def _arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    signature = inspect.signature(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        hints = {}
    descriptions = _arg_descriptions(fn)
    fields: dict[str, Any] = {}
    from pydantic import Field

    for name, param in signature.parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise InvalidInputError(f"tool function {fn.__name__!r} cannot take *args or **kwargs")
        annotation = hints.get(name, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        described = descriptions.get(name)
        # A docstring description must not override one given with Annotated[..., Field()].
        fields[name] = (annotation, Field(default, description=described) if described else default)
    return create_model(  # type: ignore[call-overload, no-any-return]
        f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    schema = dict(schema)
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return schema


def tool_from_function(fn: Callable[..., Any]) -> Tool:
    """A :class:`Tool` that describes ``fn`` and can run it."""
    if not callable(fn) or not hasattr(fn, "__name__"):
        raise InvalidInputError(f"cannot make a tool from {fn!r}; pass a named function")
    try:
        model = _arguments_model(fn)
    except PydanticUserError as exc:  # a parameter type pydantic cannot validate
        reason = str(exc).splitlines()[0]
        raise InvalidInputError(
            f"tool function {fn.__name__!r}: pydantic cannot describe its parameters "
            f"({reason}); annotate them with JSON-compatible types or pydantic models"
        ) from exc
    tool = Tool(
        name=fn.__name__,
        description=_docstring_summary(fn),
        parameters=_clean_schema(json_schema_of(model, f"tool function {fn.__name__!r}:")),
    )
    tool._function = fn
    tool._arguments = model
    return tool


def tool_from_model(model: type[BaseModel]) -> Tool:
    """A :class:`Tool` whose arguments are a pydantic model (calling it returns the model)."""
    tool = Tool(
        name=model.__name__,
        description=_docstring_summary(model),
        parameters=_clean_schema(json_schema_of(model, "tool")),
    )
    tool._function = lambda **kwargs: model(**kwargs)
    tool._arguments = model
    return tool


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


def _prepare(
    call: ToolCall, tools: Mapping[str, Tool]
) -> tuple[Callable[..., Any], dict[str, Any]] | str:
    """The function and validated arguments, or the error text to send back to the model."""
    tool = tools.get(call.name)
    if tool is None or tool._function is None:
        return f"error: there is no tool named {call.name!r}; available: {', '.join(sorted(tools))}"
    try:
        raw = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return f"error: the arguments are not valid JSON: {call.arguments[:200]}"
    if tool._arguments is not None:
        try:
            validated = tool._arguments.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
            return f"error: invalid arguments for {call.name}: {problems}"
        # Pass the validated field values (nested models stay models), not the raw JSON.
        return tool._function, {
            name: getattr(validated, name) for name in type(validated).model_fields
        }
    return tool._function, raw if isinstance(raw, dict) else {}


def execute(call: ToolCall, tools: Mapping[str, Tool]) -> Message:
    """Run one tool call and return the ``tool`` message that carries its result back.

    Failures (unknown tool, invalid arguments, an exception in the tool) become the message
    text, so the model can correct itself instead of the whole loop failing.
    """
    prepared = _prepare(call, tools)
    if isinstance(prepared, str):
        return Message.tool(prepared, call.id)
    fn, kwargs = prepared
    try:
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            raise InvalidInputError(f"tool {call.name!r} is async; use AsyncClient.run_tools")
    except InvalidInputError:
        raise
    except Exception as exc:
        logger.warning("tool %s raised %s", call.name, type(exc).__name__)
        return Message.tool(f"error: {type(exc).__name__}: {exc}", call.id)
    return Message.tool(_result_text(result), call.id)


async def aexecute(call: ToolCall, tools: Mapping[str, Tool]) -> Message:
    """Like :func:`execute`; coroutine functions are awaited, plain ones run in a thread."""
    prepared = _prepare(call, tools)
    if isinstance(prepared, str):
        return Message.tool(prepared, call.id)
    fn, kwargs = prepared
    try:
        if inspect.iscoroutinefunction(fn):
            result = await fn(**kwargs)
        else:
            import asyncio  # not at module level: import llmkit stays free of asyncio

            result = await asyncio.to_thread(fn, **kwargs)
    except Exception as exc:
        logger.warning("tool %s raised %s", call.name, type(exc).__name__)
        return Message.tool(f"error: {type(exc).__name__}: {exc}", call.id)
    return Message.tool(_result_text(result), call.id)


class ToolBox:
    """The tools of one call, by name."""

    def __init__(self, tools: Sequence[Any]) -> None:
        self.tools = [Tool.coerce(t) for t in tools]
        self.by_name = {t.name: t for t in self.tools}
        if len(self.by_name) != len(self.tools):
            raise InvalidInputError("two tools have the same name")
