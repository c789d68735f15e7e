"""An example third-party backend: it "answers" with the last user message in capitals.

It shows the contract a backend implements (the spec is :mod:`llmkit.backends.base`):

* subclass :class:`~llmkit.backends.base.BaseBackend`, set ``name`` and ``capabilities``
  (``llmkit_shout.plain`` shows the same without the base class: the protocol's required
  part written out);
* accept ``(model, **options)`` and reject unknown options with ``ConfigError``
  (:func:`~llmkit.backends.base.validate_options` does it from a pydantic model);
* implement ``chat`` (one attempt, errors mapped to :mod:`llmkit.errors`) and ``stream``
  (a generator whose last event is a ``FinishEvent``). The async forms default to running
  these in a worker thread; retries, timeouts, fallbacks and hooks are the client's job;
* declare optional abilities and nothing more: this backend leaves
  ``capabilities.completion`` off and implements no ``complete()``, so the client refuses a
  raw completion with ``UnsupportedFeatureError`` before calling it. A backend that takes
  raw prompts turns it on and implements ``complete`` / ``stream_complete``
  (:class:`~llmkit.backends.base.SupportsCompletion`); one that talks to a server names it
  in a ``server_url`` property, for telemetry.

Registered in this distribution's ``pyproject.toml``::

    [project.entry-points."llmkit.backends"]
    shout = "llmkit_shout:ShoutBackend"
    whisper = "llmkit_shout.plain:WhisperBackend"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmkit import ChatResponse, Message, Usage
from llmkit.backends.base import BaseBackend, Capabilities, validate_options
from llmkit.errors import BadRequestError
from llmkit.types import ChatRequest, FinishEvent, StreamEvent, TextDelta, UsageEvent

__all__ = ["ShoutBackend"]


class ShoutSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    suffix: str = "!"


class ShoutBackend(BaseBackend):
    name = "shout"
    capabilities = Capabilities(streaming=True)

    def __init__(self, model: str, **options: Any) -> None:
        super().__init__(model)
        self.settings = validate_options(ShoutSettings, self.name, options)

    def _answer(self, request: ChatRequest) -> str:
        users = [m.text for m in request.messages if m.role == "user"]
        if not users or not users[-1].strip():
            raise BadRequestError("shout: nothing to shout; send a non-empty user message")
        return users[-1].upper() + self.settings.suffix

    def _usage(self, request: ChatRequest, text: str) -> Usage:
        prompt = sum(len(m.text.split()) for m in request.messages)
        return Usage(prompt_tokens=prompt, completion_tokens=len(text.split()))

    def chat(self, request: ChatRequest) -> ChatResponse:
        text = self._answer(request)
        return ChatResponse(
            message=Message(role="assistant", content=text),
            usage=self._usage(request, text),
            model=self.model,
            backend=self.spec,
        )

    def stream(self, request: ChatRequest) -> Iterator[StreamEvent]:
        text = self._answer(request)
        for i, word in enumerate(text.split(" ")):
            yield TextDelta(delta=word if i == 0 else " " + word)
        yield UsageEvent(usage=self._usage(request, text))
        yield FinishEvent(finish_reason="stop", model=self.model)
