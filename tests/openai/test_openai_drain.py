"""A transport error while draining the body after ``[DONE]`` (issue 15, item 6).

Servers end the body right after ``data: [DONE]``; the backends read on to the end (so
httpx's generators finish), and a connection that drops in that last read must not turn a
complete reply into an error. Checked for the openai backend and for the rest backend's
OpenAI-compatible dialect, sync and async, through the Client.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx
from openai_testkit import KEY, Pieces, chunk, sse, sse_response, text_stream_chunks

from llmkit import ConnectionError, RetryPolicy

URL = "http://llm.test/v1"
TARGETS = {
    "openai": {"model": "openai:gpt-4o-mini", "api_key": KEY, "base_url": URL},
    "rest": {"model": "rest:m", "base_url": URL},
}


@pytest.mark.parametrize("failure", [httpx.ReadError("reset"), httpx.RemoteProtocolError("eof")])
@pytest.mark.parametrize("target", list(TARGETS))
def test_an_error_after_done_keeps_the_complete_reply(
    driver: Any, target: str, failure: Exception
) -> None:
    body = sse(*text_stream_chunks())  # ends with data: [DONE]
    stream = Pieces([body], fail=failure)
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{URL}/chat/completions").mock(return_value=sse_response(stream))
        kwargs = {**TARGETS[target], "retry": RetryPolicy(max_attempts=1)}
        events, response = driver.stream(kwargs, "Hi")
    assert "".join(e.text for e in events) == "Hi there!" == response.text
    assert response.finish_reason == "stop"
    assert response.usage.completion_tokens == 3
    assert stream.closed


@pytest.mark.parametrize("target", list(TARGETS))
def test_an_error_before_done_is_still_an_error(driver: Any, target: str) -> None:
    # The other side of the rule: the same drop one event earlier fails the stream.
    stream = Pieces([sse(chunk({"content": "Hi"}), done=False)], fail=httpx.ReadError("reset"))
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{URL}/chat/completions").mock(return_value=sse_response(stream))
        kwargs = {**TARGETS[target], "retry": RetryPolicy(max_attempts=1)}
        with pytest.raises(ConnectionError):
            driver.stream(kwargs, "Hi")
