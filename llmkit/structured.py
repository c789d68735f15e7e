"""Structured output, I/O-free: schema → request, reply text → validated pydantic object."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from .types import Message

__all__ = [
    "extract_json",
    "instruction_message",
    "repair_message",
    "response_format_for",
    "validate_output",
]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def response_format_for(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAI ``response_format`` (``json_schema``) for a pydantic model."""
    return {
        "type": "json_schema",
        "json_schema": {"name": model.__name__, "schema": model.model_json_schema()},
    }


def instruction_message(model: type[BaseModel]) -> Message:
    """A system message that asks for JSON matching the schema, for backends that cannot
    constrain their output natively."""
    schema = json.dumps(model.model_json_schema(), separators=(",", ":"))
    return Message(
        role="system",
        content=f"Reply with a single JSON object, and nothing else, that matches this JSON schema: {schema}",
    )


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
