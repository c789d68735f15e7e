"""Constrained decoding for the ``hf`` backend: JSON schemas and grammars via llguidance.

Why llguidance: it is a Rust library with no Python dependencies (one ~3 MB wheel), used by
vLLM, SGLang and llama.cpp, and computes a token mask in microseconds. The alternatives
weighed (see the project notes) were outlines (a large dependency tree), xgrammar (pulls
triton, hundreds of MB, on Linux) and lm-format-enforcer (pure Python, much slower per
token). llguidance ships with the ``hf`` extra; without it the backend falls back to the
prompt-only structured output the client does for any backend.

Each constrained request gets a :class:`GrammarConstraint` (one llguidance ``LLMatcher``);
one generate() call may mix constrained and free rows, so the logits processor keeps one
constraint (or ``None``) per row.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import InvalidInputError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("llmkit.backends.hf")

__all__ = [
    "GrammarConstraint",
    "GrammarFactory",
    "available",
    "closed_schema",
    "logits_processor_for",
    "schema_of",
]

# Compact JSON with a space after separators: what models have seen most in training.
_JSON_OPTIONS = {"whitespace_flexible": False}


def available() -> bool:
    """Whether constrained decoding can be used (llguidance is installed)."""
    return importlib.util.find_spec("llguidance") is not None


def schema_of(response_format: Any) -> dict[str, Any]:
    """The JSON schema an OpenAI-style ``response_format`` asks for.

    ``{"type": "json_schema", "json_schema": {"schema": ...}}`` gives its schema,
    ``{"type": "json_object"}`` any JSON object.
    """
    if not isinstance(response_format, dict):
        raise InvalidInputError(
            "response_format must be a dict like {'type': 'json_schema', 'json_schema': "
            "{'name': ..., 'schema': {...}}} or {'type': 'json_object'}"
        )
    kind = response_format.get("type")
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidInputError(
                "response_format of type 'json_schema' needs json_schema.schema (a dict)"
            )
        return schema
    if kind == "text":
        return {}
    raise InvalidInputError(
        f"response_format type {kind!r} is not supported by the hf backend; use "
        "'json_schema', 'json_object' or 'text'"
    )


@functools.lru_cache(maxsize=128)
def _grammar_for_schema(schema_json: str) -> str:
    from llguidance import LLMatcher

    return str(LLMatcher.grammar_from_json_schema(schema_json, defaults=_JSON_OPTIONS))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=128)
def _grammar_for_lark(lark: str) -> str:
    from llguidance import LLMatcher

    return str(LLMatcher.grammar_from_lark(lark))


def closed_schema(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` on objects that list properties and
    say nothing about others: a generated answer never wants keys the schema did not name
    (OpenAI's strict mode makes the same assumption)."""
    if isinstance(schema, dict):
        out = {k: closed_schema(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed_schema(v) for v in schema]
    return schema


class GrammarConstraint:
    """The grammar state of one generated row: it consumes the row's tokens and says which
    tokens may come next. Once the grammar is complete only EOS is allowed; if it ever
    fails (cannot happen with its own mask, but a row padded after it ended does), the row
    is left unconstrained."""

    def __init__(self, matcher: Any) -> None:
        self.matcher = matcher

    def allowed(self, last_token: int | None) -> bytes | None:
        """Consume ``last_token`` (``None`` at the first step) and return the mask of allowed
        next tokens (one byte per token, non-zero = allowed), or ``None`` for no constraint."""
        m = self.matcher
        if last_token is not None and not m.is_error():
            if m.is_stopped():
                return None  # the answer is complete; what follows is padding
            m.consume_token(last_token)
        if m.is_error():
            return None
        return bytes(m.compute_logit_bias())


class GrammarFactory:
    """Builds constraints for one loaded model; the llguidance tokenizer costs about a
    second to build, so it is made once, on the first constrained request."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids: Sequence[int]) -> None:
        self._hf_tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._eos = sorted(eos_token_ids)
        self._lock = threading.Lock()
        self._tokenizer: Any = None

    def _ll_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                import llguidance.hf

                try:
                    self._tokenizer = llguidance.hf.from_tokenizer(
                        self._hf_tokenizer,
                        n_vocab=max(self._vocab_size, len(self._hf_tokenizer)),
                        eos_token=self._eos or None,
                    )
                except ValueError as exc:  # a slow (Python) tokenizer
                    raise InvalidInputError(
                        f"constrained decoding needs a fast tokenizer: {exc}"
                    ) from None
            return self._tokenizer

    def for_schema(self, schema: dict[str, Any]) -> GrammarConstraint | None:
        """A constraint that makes the row a JSON value valid against ``schema``, or ``None``
        when llguidance cannot compile the schema (then the prompt alone asks for it)."""
        if not schema:
            return None
        # Key order is kept: the grammar writes properties in the schema's order.
        grammar = _grammar_for_schema(json.dumps(closed_schema(schema)))
        return self._matcher(grammar, "JSON schema")

    def for_lark(self, lark: str) -> GrammarConstraint | None:
        """A constraint from a Lark grammar (llguidance dialect: ``%json{...}`` embeds a
        JSON schema)."""
        return self._matcher(_grammar_for_lark(lark), "grammar")

    def _matcher(self, grammar: str, what: str) -> GrammarConstraint | None:
        from llguidance import LLMatcher

        matcher = LLMatcher(self._ll_tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            logger.warning(
                "hf: the %s cannot be enforced by constrained decoding (%s); relying on the "
                "prompt and validation instead",
                what,
                matcher.get_error(),
            )
            return None
        return GrammarConstraint(matcher)


class _GrammarLogitsProcessor:
    """A transformers logits processor applying one constraint (or none) per batch row."""

    def __init__(self, constraints: Sequence[GrammarConstraint | None]) -> None:
        self.constraints = list(constraints)
        self._first = True

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        last: list[int] | None = None if self._first else input_ids[:, -1].tolist()
        self._first = False
        for row, constraint in enumerate(self.constraints):
            if constraint is None:
                continue
            mask = constraint.allowed(None if last is None else last[row])
            if mask is None:
                continue
            allowed = torch.frombuffer(bytearray(mask), dtype=torch.uint8).to(scores.device)
            width = min(allowed.shape[0], scores.shape[1])
            banned = torch.ones(scores.shape[1], dtype=torch.bool, device=scores.device)
            banned[:width] = allowed[:width] == 0
            scores[row] = scores[row].masked_fill(banned, float("-inf"))
        return scores


def logits_processor_for(constraints: Sequence[GrammarConstraint | None]) -> Any | None:
    """One logits processor for a generate() call whose rows carry these constraints
    (``None`` for an unconstrained row); ``None`` when no row is constrained."""
    if all(c is None for c in constraints):
        return None
    return _GrammarLogitsProcessor(constraints)
