"""A text-only ``hf`` model has no vision: an image in a message is refused with
:class:`UnsupportedFeatureError` before anything is generated (issue 15, item 6), through
the real Client, chat and stream, sync and async."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hf_testkit import generate_threads

from llmkit import UnsupportedFeatureError

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
MESSAGE = {
    "role": "user",
    "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG}},
    ],
}


@pytest.mark.parametrize("op", ["chat", "stream"])
def test_an_image_is_refused_before_generating(driver: Any, tiny_llama_dir: Path, op: str) -> None:
    kwargs = {"model": f"hf:{tiny_llama_dir}", "device": "cpu"}
    with pytest.raises(UnsupportedFeatureError, match="images"):
        getattr(driver, op)(kwargs, [MESSAGE], max_tokens=4)
    assert not generate_threads()
