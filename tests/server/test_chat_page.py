"""The chat page at ``/``, in headless Chromium against a real server on 127.0.0.1: it
streams replies, continues the conversation, stops generation, shows model output as text
only, handles the API key and shows errors."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmkit import AsyncClient, RetryPolicy, errors
from llmkit.server import create_app, run_in_thread
from llmkit.server._page import page_routes
from llmkit.testing import FakeBackend, Reply

from .browser import ChatPage, wait_until
from .conftest import API_KEY, ServeFactory

LONG = " ".join(f"w{i}" for i in range(200))


# ---------------------------------------------------------------------------- without a browser


def test_page_is_served_open_with_strict_headers(serve: ServeFactory) -> None:
    served = serve(["ok"], api_key=API_KEY)
    with httpx.Client(base_url=served.base_url) as http:
        page = http.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        for asset, kind in (("/ui/chat.js", "text/javascript"), ("/ui/chat.css", "text/css")):
            reply = http.get(asset)
            assert reply.status_code == 200 and reply.headers["content-type"].startswith(kind)
        # The page holds no data; the API behind it still needs the key.
        assert http.get("/v1/models").status_code == 401
        assert http.head("/").status_code == 200
    # Everything the page loads is its own: no other host, no inline script.
    assert "http" not in page.text.replace('content="', "")
    assert "<script>" not in page.text


def test_no_ui_turns_the_page_off(serve: ServeFactory) -> None:
    served = serve(["ok"], ui=False, api_key=API_KEY)
    for path in ("/", "/ui/chat.js"):
        reply = httpx.get(
            f"{served.base_url}{path}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    # And without the page its paths are not open: the auth middleware answers first.
    assert httpx.get(f"{served.base_url}/").status_code == 401


# ---------------------------------------------------------------------------- in the browser


def test_conversation_streams_and_continues(browser: Any, serve: ServeFactory) -> None:
    served = serve([Reply("First answer, streamed word by word.", chunk_delay=0.02),
                    Reply("Second answer.", chunk_delay=0.02)])  # fmt: skip
    page = ChatPage(browser, served.base_url).open()
    assert page.js("return document.getElementById('model').value") == "fake-model"
    assert not browser.find_element("id", "key-row").is_displayed()  # no key needed here
    page.set_settings(system="Be brief.", temperature="0.3", max_tokens="42")
    page.send("Hello there")
    first = page.last_reply()
    assert first == {**first, "state": "done", "text": "First answer, streamed word by word."}
    page.fill("prompt", "And then?\n")  # Enter sends, as the placeholder says
    wait_until(lambda: len(page.replies()) == 2, message="the second reply")
    second = page.last_reply()
    assert second["text"] == "Second answer." and second["state"] == "done"
    # The second request carried the whole conversation, the system prompt and the settings.
    request = served.fake.requests[1]
    assert [(m.role, m.content) for m in request.messages] == [  # type: ignore[union-attr]
        ("system", "Be brief."),
        ("user", "Hello there"),
        ("assistant", "First answer, streamed word by word."),
        ("user", "And then?"),
    ]
    assert request.params.temperature == 0.3 and request.params.max_tokens == 42
    assert all(url.startswith(served.base_url) for url in page.resources())
    assert page.console_problems() == []
    # Reset forgets the conversation: the next request starts afresh.
    page.click("reset")
    assert page.replies() == []
    page.send("Fresh start")
    page.last_reply()
    assert len(served.fake.requests[2].messages) == 2  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def tiny_model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from .test_hf import build_tiny_model  # skips without torch/transformers

    folder = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny_model(folder)
    client = AsyncClient(f"hf:{folder}", device="cpu")
    client.backend.load()  # type: ignore[attr-defined]
    with run_in_thread(create_app(client, close_client=True), graceful_timeout=1) as base_url:
        yield base_url


def test_streamed_reply_equals_the_api_answer(browser: Any, tiny_model_server: str) -> None:
    # A real (tiny, random) transformers model, greedy: the page shows exactly what the API
    # answers to the same request, and the second turn is the API's answer to the history.
    import openai

    page = ChatPage(browser, tiny_model_server).open()
    page.set_settings(temperature="0", max_tokens="12")
    sdk = openai.OpenAI(base_url=f"{tiny_model_server}/v1", api_key="-", max_retries=0)
    history: list[Any] = []
    with sdk:
        for turn, text in enumerate(["hello world", "the quick brown fox"], start=1):
            page.send(text)
            wait_until(lambda n=turn: len(page.replies()) == n, message="the reply")  # type: ignore[misc]
            shown = page.last_reply(timeout=30)
            assert shown["state"] == "done"
            history.append({"role": "user", "content": text})
            answer = sdk.chat.completions.create(
                model="tiny", messages=history, temperature=0, max_tokens=12
            )
            expected = answer.choices[0].message.content
            assert expected and shown["text"] == expected
            history.append({"role": "assistant", "content": expected})


def test_stop_aborts_and_the_server_stops_generating(browser: Any, serve: ServeFactory) -> None:
    served = serve([Reply(LONG, chunk_delay=0.2)], max_in_flight=1)
    page = ChatPage(browser, served.base_url).open()
    page.send("Count for a long time")
    wait_until(lambda: len(page.last_reply(finished=False)["text"].split()) >= 3,
               message="the first words")  # fmt: skip
    page.click("stop")
    reply = page.last_reply()
    assert reply["state"] == "stopped" and reply["note"] == "Stopped."
    # The whole reply would take 200 x 0.2 s: only a stop closes the generation within the
    # 10 s the check waits (generous for a loaded machine; it bounds no speed).
    assert wait_until(lambda: served.fake.closed_streams == 1, timeout=10.0)
    assert wait_until(lambda: served.state.limiter.in_flight == 0, timeout=10.0)
    shown = page.last_reply()["text"]
    assert 0 < len(shown.split()) < 200
    time.sleep(0.5)  # past two chunk gaps of the stopped reply
    assert page.last_reply()["text"] == shown  # nothing more arrives
    assert page.js("return document.getElementById('send').disabled") is False


XSS_REPLY = (
    '<script>window.__xss = 1</script> and <img src=x onerror="window.__xss = 2"> '
    '<b>bold?</b>\n```html\n<img src=y onerror="window.__xss = 3">\n```\nafter'
)


def test_model_output_is_text_never_html(browser: Any, serve: ServeFactory) -> None:
    name = '<img src=m onerror="window.__xss = 5">'
    failure = errors.BadRequestError('<img src=e onerror="window.__xss = 6">', status_code=400)
    served = serve([Reply(XSS_REPLY), failure], served_model=name)
    page = ChatPage(browser, served.base_url).open()
    assert page.js("return document.getElementById('model').value") == name
    page.send("Say something dangerous")
    reply = page.last_reply()
    assert reply["text"] == XSS_REPLY  # shown exactly, as text
    assert (
        page.js("return document.querySelectorAll('.msg.assistant .content pre code').length") == 1
    )
    page.send("Fail with markup")
    wait_until(page.error, message="the error")
    assert '<img src=e onerror="window.__xss = 6">' in page.error()
    time.sleep(0.3)  # an image error handler would have run by now
    assert page.js("return document.querySelectorAll('img, b, script:not([src])').length") == 0
    assert page.js("return window.__xss === undefined") is True


def test_api_key_flow(browser: Any, serve: ServeFactory) -> None:
    served = serve(["Hello with a key."], api_key=API_KEY)
    page = ChatPage(browser, served.base_url).open(ready=False)
    wait_until(lambda: "401" in page.error(), message="the 401")
    assert browser.find_element("id", "key-row").is_displayed()
    page.fill("api-key", "wrong-key-0000")
    page.click("use-key")
    wait_until(lambda: "invalid API key" in page.error(), message="the refusal")
    page.fill("api-key", API_KEY)
    page.click("use-key")
    wait_until(lambda: page.js("return document.body.dataset.ready") == "true", message="models")
    assert page.error() == ""
    page.send("hi")
    assert page.last_reply()["text"] == "Hello with a key."
    assert len(served.fake.requests) == 1
    # The key never reaches a URL or the document; it stays in the page's memory.
    assert all(API_KEY not in url for url in page.resources())
    assert API_KEY not in browser.current_url and API_KEY not in browser.page_source


def test_busy_server_429_is_shown_with_retry_after(browser: Any, serve: ServeFactory) -> None:
    served = serve([Reply(LONG, chunk_delay=0.05), "Now there is room."],
                   max_in_flight=1, max_queue=0, retry_after=3)  # fmt: skip
    page = ChatPage(browser, served.base_url).open()
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", f"{served.v1}/chat/completions", json=body) as holder:
        lines = holder.iter_lines()  # kept: dropping the iterator would close the stream
        next(lines)  # this request holds the only slot
        page.send("Are you there?")
        wait_until(page.error, message="the 429")
        assert "busy (429" in page.error() and "Retry after 3 s." in page.error()
        # Nothing was answered: the message is back in the box, ready to send again.
        assert page.replies() == []
        assert page.js("return document.getElementById('prompt').value") == "Are you there?"
    assert wait_until(lambda: served.state.limiter.in_flight == 0)
    page.click("send")
    assert page.last_reply()["text"] == "Now there is room."
    assert page.error() == ""


def test_failure_mid_reply_is_shown(browser: Any, serve: ServeFactory) -> None:
    broken = Reply("one two three four", fail_after=2, error=errors.ServerError("upstream broke"))
    served = serve([broken])
    page = ChatPage(browser, served.base_url).open()
    page.send("Go")
    reply = page.last_reply()
    assert reply["state"] == "error" and reply["text"] == "one two "
    assert "failed mid-reply: upstream broke" in page.error()


_FAKE_REASONS = any(f.name == "reasoning" for f in dataclasses.fields(Reply))


@pytest.mark.skipif(
    not _FAKE_REASONS, reason="needs Reply(reasoning=...) (issue 12's branch); runs once merged"
)
def test_reasoning_from_llmkit_serve(browser: Any, serve: ServeFactory) -> None:
    # The real server end to end: the fake backend's reasoning arrives as ReasoningDelta
    # events, the server sends them as delta.reasoning_content, the page shows them apart.
    thinking = 'Divisors up to 9 only. <img src=t onerror="window.__xss = 8">'
    scripted: dict[str, Any] = {"text": "97 is prime.", "reasoning": thinking}
    served = serve([Reply(**scripted, chunk_delay=0.02)])
    page = ChatPage(browser, served.base_url).open()
    page.send("Is 97 prime?")
    reply = page.last_reply()
    assert (reply["state"], reply["text"]) == ("done", "97 is prime.")
    assert reply["reasoningShown"] is True and reply["reasoning"] == thinking
    assert page.js("return document.querySelectorAll('img').length") == 0


# ---------------------------------------------------------------------------- scripted API
# What llmkit's own backends cannot be made to send on demand: reasoning chunks (from a
# reasoning model), a connection that drops mid-reply. A small app serves the same page in
# front of a scripted API.


def _sse(delta: dict[str, Any]) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "mock",
             "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
    return f"data: {json.dumps(chunk)}\n\n".encode()


REASONING = ["Let me think. ", '<img src=r onerror="window.__xss = 7">', " 97 is odd."]
ANSWER = ["Yes, ", "97 is prime."]


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, list[str]]]:
    script: list[str] = []

    async def models(request: Request) -> Response:
        card = {"id": "mock", "object": "model", "created": 0, "owned_by": "test"}
        return JSONResponse({"object": "list", "data": [card]})

    async def chat(request: Request) -> Response:
        kind = script.pop(0)
        if kind == "json":
            message = {"role": "assistant", "content": "Plain answer.",
                       "reasoning_content": "Thought about it."}  # fmt: skip
            return JSONResponse({"choices": [{"index": 0, "message": message}]})

        async def events() -> AsyncIterator[bytes]:
            if kind == "reasoning":
                for piece in REASONING:
                    yield _sse({"role": "assistant", "reasoning_content": piece})
                    await asyncio.sleep(0.05)
                for piece in ANSWER:
                    yield _sse({"content": piece})
                    await asyncio.sleep(0.05)
                yield b"data: [DONE]\n\n"
            elif kind == "garbage":  # an event that is not JSON
                yield _sse({"role": "assistant", "content": "odd "})
                yield b"data: {not json\n\n"
            elif kind == "truncated":  # the stream ends cleanly, but without [DONE]
                yield _sse({"role": "assistant", "content": "cut "})
            else:  # "drop": the server dies mid-reply (uvicorn aborts the connection)
                yield _sse({"role": "assistant", "content": "partial "})
                await asyncio.sleep(0.1)
                raise RuntimeError("the scripted server drops the connection")

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(
        routes=[
            *page_routes(),
            Route("/v1/models", models),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
    with run_in_thread(app, graceful_timeout=1) as base_url:
        yield base_url, script


def test_reasoning_is_shown_apart_and_collapsible(
    browser: Any, scripted: tuple[str, list[str]]
) -> None:
    base_url, script = scripted
    script[:] = ["reasoning", "json"]
    page = ChatPage(browser, base_url).open()
    page.send("Is 97 prime?")
    reply = page.last_reply()
    assert reply["state"] == "done" and reply["reasoningShown"] is True
    assert reply["reasoning"] == "".join(REASONING) and reply["text"] == "".join(ANSWER)
    details = "document.querySelector('.msg.assistant .reasoning')"
    assert page.js(f"return {details}.open") is False  # folded once the answer started
    browser.find_element("css selector", ".msg.assistant .reasoning summary").click()
    assert page.js(f"return {details}.open") is True
    # A reply that is not streamed carries its reasoning in message.reasoning_content.
    page.send("And without streaming?")
    wait_until(lambda: len(page.replies()) == 2, message="the second reply")
    second = page.last_reply()
    assert (second["reasoning"], second["text"]) == ("Thought about it.", "Plain answer.")
    assert page.js("return document.querySelectorAll('img').length") == 0
    assert page.js("return window.__xss === undefined") is True


def test_dropped_connection_is_shown(browser: Any, scripted: tuple[str, list[str]]) -> None:
    base_url, script = scripted
    script[:] = ["drop", "truncated"]
    page = ChatPage(browser, base_url).open()
    page.send("Tell me everything")
    reply = page.last_reply()
    assert reply["state"] == "error" and reply["text"] == "partial "
    assert "connection dropped" in reply["note"]
    assert "connection dropped" in page.error()
    page.send("Again")
    wait_until(lambda: len(page.replies()) == 2, message="the second reply")
    reply = page.last_reply()
    assert reply["state"] == "error" and reply["text"] == "cut "
    assert "before the reply was complete" in page.error()
    script[:] = ["garbage"]
    page.send("And now?")
    wait_until(lambda: len(page.replies()) == 3, message="the third reply")
    assert page.last_reply()["text"] == "odd "
    assert "failed mid-reply: the server sent an event that is not JSON" in page.error()


def test_server_gone_is_shown(browser: Any) -> None:
    client = AsyncClient(backend=FakeBackend(["unused"]), retry=RetryPolicy(max_attempts=1))
    with run_in_thread(create_app(client), graceful_timeout=1) as base_url:
        page = ChatPage(browser, base_url).open()
    # The server has stopped: the request cannot even connect.
    page.send("Anyone?")
    wait_until(page.error, message="the error")
    assert "connection dropped" in page.error()
    assert page.replies() == [] or page.last_reply()["state"] == "error"
