"""Prompt templates: a system text, a user template and few-shot examples → messages."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import PromptError
from .types import Message

__all__ = ["Example", "Prompt"]

_FORMATTER = string.Formatter()


def _fields(template: str) -> set[str]:
    names: set[str] = set()
    try:
        for _, field, _, _ in _FORMATTER.parse(template):
            if field is None:
                continue
            if field == "" or field.isdigit():
                raise PromptError(
                    f"template {template!r} uses a positional placeholder '{{{field}}}'; "
                    "name every variable, e.g. '{text}' (write '{{' and '}}' for literal braces)"
                )
            # "{user.name}" and "{items[0]}" depend on the variable before the first . or [
            names.add(field.split(".", 1)[0].split("[", 1)[0])
    except ValueError as exc:
        raise PromptError(f"malformed template {template!r}: {exc}") from None
    return names


class Example(BaseModel):
    """One few-shot example: a user turn and the assistant's answer (both templates)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    user: str
    assistant: str


class Prompt(BaseModel):
    """A reusable prompt: ``render(**variables)`` returns the messages to send.

    >>> p = Prompt(system="You translate {source} to {target}.", user="{text}")
    >>> [m.text for m in p.render(source="English", target="French", text="Good morning")]
    ['You translate English to French.', 'Good morning']

    Every ``{name}`` placeholder is a variable; rendering with one missing, or with one the
    templates do not use, raises :class:`~llmkit.errors.PromptError` naming it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    system: str | None = None
    user: str
    examples: tuple[Example, ...] = Field(default=())

    @field_validator("examples", mode="before")
    @classmethod
    def _coerce_examples(cls, value: Any) -> Any:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ValueError(
                "examples must be a list of {'user': ..., 'assistant': ...} or (user, assistant) pairs"
            )
        out = []
        for item in value:
            if isinstance(item, (tuple, list)) and len(item) == 2:
                out.append(Example(user=item[0], assistant=item[1]))
            else:
                out.append(item)
        return tuple(out)

    @property
    def variables(self) -> frozenset[str]:
        """The names every render must supply."""
        names = _fields(self.user)
        if self.system:
            names |= _fields(self.system)
        for example in self.examples:
            names |= _fields(example.user) | _fields(example.assistant)
        return frozenset(names)

    def render(self, variables: Mapping[str, Any] | None = None, /, **kwargs: Any) -> list[Message]:
        """The messages for these variable values (a mapping, keywords, or both)."""
        values = {**(variables or {}), **kwargs}
        needed = self.variables
        missing = sorted(needed - values.keys())
        unknown = sorted(values.keys() - needed)
        if missing:
            raise PromptError(
                f"missing prompt variable(s): {', '.join(missing)}; this prompt needs: {', '.join(sorted(needed))}"
            )
        if unknown:
            raise PromptError(
                f"unknown prompt variable(s): {', '.join(unknown)}; this prompt uses: "
                f"{', '.join(sorted(needed)) or '(none)'}"
            )
        messages: list[Message] = []
        if self.system:
            messages.append(Message(role="system", content=self.system.format(**values)))
        for example in self.examples:
            messages.append(Message(role="user", content=example.user.format(**values)))
            messages.append(Message(role="assistant", content=example.assistant.format(**values)))
        messages.append(Message(role="user", content=self.user.format(**values)))
        return messages
