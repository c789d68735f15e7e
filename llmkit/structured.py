"""Structured output, I/O-free: schema → request, reply text → validated pydantic object."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, PydanticUserError, ValidationError

from .errors import InvalidInputError
from .types import Message

__all__ = [
    "extract_json",
    "instruction_message",
    "json_schema_of",
    "repair_message",
    "response_format_for",
    "schema_instruction_message",
    "validate_output",
]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def json_schema_of(model: type[BaseModel], what: str = "response_model") -> dict[str, Any]:
    """``model``'s JSON schema, or :class:`InvalidInputError` saying what to change.

    pydantic raises its own errors (``PydanticInvalidForJsonSchema`` for a field of an
    arbitrary type, for one) from deep inside schema generation; the caller only passed a
    model, so the error names the model and the usual fixes.
    """
    try:
        return model.model_json_schema()
    except PydanticUserError as exc:
        reason = str(exc).splitlines()[0]
        raise InvalidInputError(
            f"{what} {model.__name__}: pydantic cannot write a JSON schema for it ({reason}); "
            "use JSON-compatible field types, or annotate the field with "
            "pydantic.WithJsonSchema(...)"
        ) from exc


def response_format_for(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAI ``response_format`` (``json_schema``) for a pydantic model."""
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": json_schema_of(model)},
    }


def _placeholder(prop: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> str:
    """A template value for one schema property: ``<string>``, ``"a" | "b"``, ``{...}``."""
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].rsplit("/", 1)[-1], {})
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "anyOf" in prop:
        options = [p for p in prop["anyOf"] if p.get("type") != "null"]
        return _placeholder(options[0], defs, depth) if options else "null"
    kind = prop.get("type")
    if kind == "object" and "properties" in prop and depth < 3:
        return _format_template(prop, defs, depth + 1)
    if kind == "array":
        return f"[{_placeholder(prop.get('items', {}), defs, depth + 1)}, ...]"
    return f"<{kind or 'value'}>"


def _format_template(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> str:
    fields = (
        f"{json.dumps(name)}: {_placeholder(prop, defs, depth)}"
        for name, prop in schema.get("properties", {}).items()
    )
    return "{" + ", ".join(fields) + "}"


def instruction_message(model: type[BaseModel]) -> Message:
    """A system message that asks for JSON matching the schema, for backends that cannot
    constrain their output natively.

    Small models follow a format template (``{"name": <string>, "age": <integer>}``) far
    better than a raw JSON schema, which they tend to echo back; the full schema is added
    only when the template cannot carry everything (nested definitions).
    """
    return schema_instruction_message(json_schema_of(model))


def schema_instruction_message(schema: dict[str, Any]) -> Message:
    """:func:`instruction_message` for a JSON schema (what ``response_format`` carries)."""
    template = _format_template(schema, schema.get("$defs", {}))
    text = f"Reply with only a JSON object, and nothing else, in this format: {template}"
    if "$defs" in schema:
        text += f"\nIt must validate against this JSON schema: {json.dumps(schema, separators=(',', ':'))}"
    return Message(role="system", content=text)


def extract_json(text: str) -> str:
    """The JSON part of a reply: inside a code fence, or from the first brace to the last."""
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start_candidates = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not start_candidates:
        return text.strip()
    start = min(start_candidates)
    end = max(text.rfind("}"), text.rfind("]"))
    return text[start : end + 1] if end > start else text[start:]


def validate_output(text: str, model: type[BaseModel]) -> tuple[BaseModel | None, list[Any]]:
    """``(parsed, [])`` when ``text`` holds valid output, else ``(None, errors)``."""
    try:
        return model.model_validate_json(extract_json(text)), []
    except ValidationError as exc:
        return None, exc.errors(include_url=False)


def repair_message(errors: list[Any]) -> Message:
    """The user turn that re-asks after invalid output, quoting what was wrong."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or 'value'}: {e.get('msg')}"
        for e in errors[:10]
    )
    return Message(
        role="user",
        content=f"That reply did not match the schema ({problems}). Reply again with only the corrected JSON.",
    )
