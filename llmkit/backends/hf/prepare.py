"""Turning a request into what ``generate()`` needs, checked before anything runs.

:class:`Preparation` is the part of :class:`~.backend.HuggingFaceBackend` that renders chat
messages through the model's chat template (tools, the thinking switch), tokenizes, sets the
generation config, stop strings and constrained decoding (structured output, forced tool
calls), and fits a request into the KV-cache budget. It does no generation; the backend's
scheduler runs the :class:`_Prepared` rows it makes.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from ... import structured
from ..._thinking import opens_thinking
from ...errors import (
    BackendUnavailable,
    ContextLengthError,
    InvalidInputError,
    UnsupportedFeatureError,
)
from ...timeouts import Timeout
from ...types import (
    ChatRequest,
    CompletionRequest,
    GenerationParams,
    Message,
    Tool,
)
from ..base import Capabilities
from . import reasoning as hf_reasoning
from . import runtime
from . import structured as hf_structured
from . import tools as hf_tools
from . import vision as hf_vision
from .batching import Job
from .generation import (
    build_generation_config,
    sampling_key,
)
from .loading import LoadedModel

logger = logging.getLogger("llmkit.backends.hf")

AnyRequest = Union[ChatRequest, CompletionRequest]


@dataclass
class _Prepared:
    """A request turned into token ids and generate() settings, checked before running."""

    input_ids: list[int]
    max_new_tokens: int
    stops: list[str]
    config: Any
    kwargs: dict[str, Any]
    seed: int | None
    key: str
    timeout: Timeout
    deadline: float | None
    # Per-row constrained decoding state (structured output, forced tool calls), or None.
    constraint: Any = None
    # Chat only: whether the reply starts inside a <think> block the template opened
    # (None for raw completions, whose text is not read for reasoning).
    think_inside: bool | None = None
    # A vision-language model's image inputs (pixel_values, ...): such a row runs alone.
    inputs: dict[str, Any] | None = None

    def limit(self, budget: float, start: float) -> float | None:
        """The monotonic time by which the answer must be complete."""
        limits = [
            t for t in (start + budget if math.isfinite(budget) else None, self.deadline) if t
        ]
        return min(limits) if limits else None


def _require_packages() -> None:
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailable(
            f"backend 'hf' needs {' and '.join(repr(m) for m in missing)}, which "
            f'{"is" if len(missing) == 1 else "are"} not installed; run: pip install "llmkit[hf]"'
        )


def _check_text_only(messages: Sequence[Message], model: str) -> None:
    # The client's plan refuses these first (capabilities.vision is off); a backend called
    # directly refuses them here, before anything is generated.
    if hf_vision.media_parts(messages):
        raise UnsupportedFeatureError(
            f"hf:{model} is a text-only model: images, audio and files in messages need a "
            "vision-language model (a folder whose config.json has a vision_config)"
        )


def _text_config(loaded: LoadedModel) -> Any:
    """The language model's config (a vision-language model nests it)."""
    config = loaded.model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _with_system(messages: list[Message], text: str) -> list[Message]:
    """Add ``text`` to the system prompt (one system message: some templates allow no more)."""
    if messages and messages[0].role in ("system", "developer"):
        first = messages[0]
        return [Message(role="system", content=f"{first.text}\n\n{text}"), *messages[1:]]
    return [Message(role="system", content=text), *messages]


def _active_tools(params: GenerationParams) -> list[Tool]:
    """The tools the model is offered (none when ``tool_choice="none"``)."""
    tools = list(params.tools or []) if "tools" in params.model_fields_set else []
    if params.tool_choice == "none":
        return []
    return tools


def _constrained_call(params: GenerationParams, tools: list[Tool]) -> bool:
    """Whether the reply was decoded under the forced-call grammar (so it can only be a
    call, complete or cut short)."""
    return bool(_forced_tools(params, tools)) and hf_structured.available()


def _forced_tools(params: GenerationParams, tools: list[Tool]) -> list[Tool]:
    """The tools one of which must be called (``tool_choice`` required or named), else []."""
    choice = params.tool_choice
    if not tools or choice in (None, "auto"):
        return []
    if choice == "required":
        return tools
    name = None
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
    elif isinstance(choice, str):
        name = choice
    chosen = [t for t in tools if t.name == name]
    if not chosen:
        raise InvalidInputError(
            f"tool_choice names {name!r}, which is not among the tools given "
            f"({', '.join(t.name for t in tools)}); use 'auto', 'none', 'required' or "
            "{'type': 'function', 'function': {'name': ...}}"
        )
    return chosen


def _eos_ids(loaded: LoadedModel) -> set[int]:
    ids: set[int] = set()
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(int(i) for i in configured)
    if loaded.tokenizer.eos_token_id is not None:
        ids.add(int(loaded.tokenizer.eos_token_id))
    return ids


class Preparation:
    """Request → :class:`_Prepared` (mixed into the backend, whose state it reads)."""

    model: str
    name: ClassVar[str]
    settings: Any  # HuggingFaceSettings
    capabilities: Capabilities
    _grammars: hf_structured.GrammarFactory | None
    _tokenizer_lock: threading.RLock

    def _ensure_loaded(self) -> LoadedModel:
        raise NotImplementedError  # the backend loads the model

    def _encode(self, loaded: LoadedModel, text: str, *, special: bool) -> list[int]:
        with self._tokenizer_lock:
            return list(loaded.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _chat_ids(
        self,
        loaded: LoadedModel,
        messages: list[Message],
        tools: Sequence[Tool] = (),
        effort: str | None = None,
    ) -> tuple[list[int], bool, dict[str, Any] | None]:
        """The prompt's token ids, whether it ends inside an open ``<think>``, and a
        vision-language model's image inputs (``None`` for a text-only model)."""
        # A vision-language model renders through its processor (see .vision).
        tok = loaded.tokenizer if loaded.processor is None else loaded.processor
        if not getattr(tok, "chat_template", None):
            raise UnsupportedFeatureError(
                f"hf:{self.model} has no chat template, so chat messages cannot be formatted "
                "for it (a base model?); use complete() with a raw prompt instead, or give a "
                "tokenizer that has a chat template"
            )
        if loaded.processor is None:
            _check_text_only(messages, self.model)
        template = tok.chat_template
        switch = hf_reasoning.template_switch(template, effort, self.model)
        native = hf_tools.native_tools(template)
        rendered = hf_tools.render_messages(
            messages, tools, native=native, reasoning_key=hf_reasoning.reasoning_key(template)
        )
        specs = hf_tools.tool_specs(tools) if native and tools else None
        if loaded.processor is not None:
            with self._tokenizer_lock:
                ids, inputs, text = hf_vision.chat_inputs(
                    loaded.processor,
                    loaded.model,
                    messages,
                    rendered,
                    tools=specs,
                    template_kwargs=switch,
                    model=self.model,
                )
            return ids, opens_thinking(text), inputs
        try:
            with self._tokenizer_lock:
                text = tok.apply_chat_template(
                    rendered, tools=specs, tokenize=False, add_generation_prompt=True, **switch
                )
        except Exception as exc:  # jinja2 errors: roles out of order, unsupported role, ...
            raise InvalidInputError(
                f"hf:{self.model}: the model's chat template rejected the messages: {exc}"
            ) from None
        # The template already holds BOS and the role markers.
        return self._encode(loaded, str(text), special=False), opens_thinking(str(text)), None

    def _prepare(self, loaded: LoadedModel, request: AnyRequest) -> _Prepared:
        inside: bool | None = None
        inputs: dict[str, Any] | None = None
        if isinstance(request, CompletionRequest):
            if request.params.effort is not None:
                raise UnsupportedFeatureError(
                    f"hf:{self.model}: reasoning_effort needs chat (a chat template's "
                    "thinking switch); a raw completion has none"
                )
            ids = self._encode(loaded, request.prompt, special=True)
            if not ids:
                bos = loaded.tokenizer.bos_token_id
                if bos is None:
                    raise InvalidInputError(
                        "hf: the prompt is empty and the model has no BOS token"
                    )
                ids = [int(bos)]
        params: GenerationParams = request.params
        tools = _active_tools(params)
        schema = self._schema(params)
        constraint = self._constraint(loaded, params, tools, schema)
        if isinstance(request, ChatRequest):
            messages = request.messages
            if schema:
                # Constrained decoding makes the reply valid JSON; the instruction tells the
                # model what to put in it.
                instruction = structured.schema_instruction_message(schema).text
                messages = _with_system(messages, instruction)
            ids, inside, inputs = self._chat_ids(loaded, messages, tools, params.effort)
        wanted = params.max_tokens if "max_tokens" in params.model_fields_set else None
        max_new = wanted or self.settings.max_new_tokens
        context = getattr(_text_config(loaded), "max_position_embeddings", None)
        if isinstance(context, int) and context > 0:
            if len(ids) >= context:
                raise ContextLengthError(
                    f"the prompt has {len(ids)} tokens but the model's context window is "
                    f"{context} tokens",
                    backend=self.name,
                    model=self.model,
                )
            max_new = min(max_new, context - len(ids))
        max_new = self._fit_budget(loaded, len(ids), max_new, explicit=wanted is not None)
        tok = loaded.tokenizer
        config, kwargs = build_generation_config(
            loaded.model.generation_config,
            params,
            request.extra,
            max_new_tokens=max_new,
            pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        )
        stops = list(params.stop or []) if "stop" in params.model_fields_set else []
        seed = params.seed if "seed" in params.model_fields_set else None
        return _Prepared(
            input_ids=ids,
            max_new_tokens=max_new,
            stops=stops,
            config=config,
            kwargs=kwargs,
            seed=seed,
            key=sampling_key(params, request.extra),
            timeout=request.timeout,
            deadline=request.deadline,
            constraint=constraint,
            think_inside=inside,
            inputs=inputs or None,
        )

    def _fit_budget(self, loaded: LoadedModel, prompt: int, max_new: int, *, explicit: bool) -> int:
        """``max_new`` within ``kv_cache_budget``: a default ``max_tokens`` shrinks to fit,
        a prompt (or an explicit ``max_tokens``) that cannot fit is refused."""
        budget = self.settings.kv_cache_budget
        if budget is None:
            return max_new
        per_token = runtime.kv_bytes_per_token(loaded.model.config, loaded.dtype)
        fits = int(budget // per_token - prompt)
        if fits >= max_new:
            return max_new
        if fits >= 1 and not explicit:
            return fits
        raise ContextLengthError(
            f"the prompt ({prompt} tokens) plus {max_new} new tokens needs "
            f"{(prompt + max_new) * per_token / 2**20:.1f} MiB of KV cache, more than "
            f"kv_cache_budget ({budget / 2**20:.1f} MiB); shorten the prompt or lower max_tokens",
            backend=self.name,
            model=self.model,
        )

    @staticmethod
    def _batch_cost(jobs: Sequence[Job[tuple[LoadedModel, _Prepared]]]) -> float:
        """Bytes of KV cache a left-padded generate() of ``jobs`` needs."""
        loaded = jobs[0].payload[0]
        per_token = runtime.kv_bytes_per_token(loaded.model.config, loaded.dtype)
        width = max(len(j.payload[1].input_ids) for j in jobs)
        longest = max(j.payload[1].max_new_tokens for j in jobs)
        return float(len(jobs) * (width + longest) * per_token)

    @staticmethod
    def _schema(params: GenerationParams) -> dict[str, Any]:
        if "response_format" not in params.model_fields_set or params.response_format is None:
            return {}
        return hf_structured.schema_of(params.response_format)

    def _grammar_factory(self, loaded: LoadedModel) -> hf_structured.GrammarFactory | None:
        if not self.capabilities.structured_output:
            return None
        if self._grammars is None:
            self._grammars = hf_structured.GrammarFactory(
                loaded.tokenizer,
                int(getattr(_text_config(loaded), "vocab_size", 0) or 0),
                sorted(_eos_ids(loaded)),
            )
        return self._grammars

    def _constraint(
        self,
        loaded: LoadedModel,
        params: GenerationParams,
        tools: list[Tool],
        schema: dict[str, Any],
    ) -> hf_structured.GrammarConstraint | None:
        """The constrained-decoding state for a request: a forced tool call, or the
        ``response_format`` schema; ``None`` when the reply is free text."""
        forced = _forced_tools(params, tools)
        if not forced and not schema:
            return None
        factory = self._grammar_factory(loaded)
        if factory is None:
            logger.debug("hf: llguidance is not installed; the reply is not constrained")
            return None
        if forced:
            template = getattr(loaded.tokenizer, "chat_template", None)
            return factory.for_lark(hf_tools.forced_call_grammar(forced, template))
        return factory.for_schema(schema)

    def prompt_text(self, request: ChatRequest | CompletionRequest) -> str:
        """The exact text the model is given for ``request``: the chat template's rendering,
        with the tools and the structured-output instruction in it (for debugging prompts)."""
        loaded = self._ensure_loaded()
        ids = self._prepare(loaded, request).input_ids
        with self._tokenizer_lock:
            return str(loaded.tokenizer.decode(ids, skip_special_tokens=False))
