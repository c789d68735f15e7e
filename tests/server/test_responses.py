"""``/v1/responses`` of ``llmkit serve`` with the official openai SDK as its client, over a
real socket: the SDK's own types parse every reply and every stream event."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response

import llmkit.errors as E
from llmkit import AsyncClient, Client, RetryPolicy, Usage
from llmkit.server import ResponseStore
from llmkit.testing import Reply

from .conftest import API_KEY, ServeFactory
from .test_openai_sdk import async_sdk, sync_sdk

USAGE = Usage(prompt_tokens=7, completion_tokens=3)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL = {
    "id": "call_w1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
}


def check_sequence(events: list[Any]) -> None:
    """Numbered from 0 without gaps; every item added is done; one terminal event, last."""
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[1].type == "response.in_progress"
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == done == list(range(len(added)))
    terminal = [
        e
        for e in events
        if e.type in ("response.completed", "response.incomplete", "response.failed")
    ]
    assert terminal == [events[-1]]


def test_create(serve: ServeFactory) -> None:
    served = serve([Reply("Paris is the capital.", usage=USAGE)], api_key=API_KEY)
    with sync_sdk(served.base_url) as sdk:
        r = sdk.responses.create(
            model="fake-model",
            instructions="Be brief.",
            input="Capital of France?",
            max_output_tokens=20,
            temperature=0.2,
        )
    assert isinstance(r, Response)
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == "Paris is the capital."
    assert r.usage is not None and (
        r.usage.input_tokens,
        r.usage.output_tokens,
        r.usage.total_tokens,
    ) == (7, 3, 10)
    request = served.fake.requests[0]
    assert [(m.role, m.text) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "Capital of France?"),
    ]  # type: ignore[union-attr]
    assert request.params.max_tokens == 20 and request.params.temperature == 0.2


def test_stream_events_parse_and_are_numbered(serve: ServeFactory) -> None:
    served = serve([Reply("One two three.", reasoning="Count up.", usage=USAGE)])
    with sync_sdk(served.base_url) as sdk:
        events = list(sdk.responses.create(model="fake-model", input="Count", stream=True))
    check_sequence(events)
    types = [e.type for e in events]
    assert "response.reasoning_text.delta" in types and "response.output_text.delta" in types
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "One two three."
    final = events[-1].response
    assert final.status == "completed" and final.output_text == "One two three."
    assert final.output[0].type == "reasoning" and final.output[0].content[0].text == "Count up."


def test_stream_helper_final_response_then_retrieve_input_items_and_delete(
    serve: ServeFactory,
) -> None:
    served = serve([Reply("Hello!", usage=USAGE)])
    with sync_sdk(served.base_url) as sdk:
        with sdk.responses.stream(
            model="fake-model", input=[{"role": "user", "content": "Hi"}]
        ) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        assert final.output_text == "Hello!"
        again = sdk.responses.retrieve(final.id)
        assert again.id == final.id and again.output_text == "Hello!"
        items = sdk.responses.input_items.list(final.id)
        assert [i.type for i in items.data] == ["message"]
        assert items.data[0].content[0].text == "Hi"  # type: ignore[union-attr]
        deleted = httpx.delete(f"{served.v1}/responses/{final.id}")
        assert deleted.json() == {"id": final.id, "object": "response", "deleted": True}
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve(final.id)
        with pytest.raises(openai.NotFoundError):
            sdk.responses.delete(final.id)


def test_previous_response_id_chain(serve: ServeFactory) -> None:
    served = serve([Reply("Hi Ada."), Reply("Your name is Ada.")])
    with sync_sdk(served.base_url) as sdk:
        first = sdk.responses.create(model="fake-model", instructions="Be kind.", input="I am Ada.")
        second = sdk.responses.create(
            model="fake-model", input="What is my name?", previous_response_id=first.id
        )
    assert second.output_text == "Your name is Ada." and second.previous_response_id == first.id
    messages = served.fake.requests[1].messages  # type: ignore[union-attr]
    # Instructions do not carry over (as on OpenAI); the conversation does.
    assert [(m.role, m.text) for m in messages] == [
        ("user", "I am Ada."),
        ("assistant", "Hi Ada."),
        ("user", "What is my name?"),
    ]


def test_tool_call_round_trip(serve: ServeFactory) -> None:
    served = serve([Reply(tool_calls=[CALL]), Reply("It is 21C in Paris.")])
    with sync_sdk(served.base_url) as sdk:
        first = sdk.responses.create(model="fake-model", input="Weather in Paris?", tools=[WEATHER])  # type: ignore[list-item]
        call = first.output[0]
        assert (
            call.type == "function_call"
            and call.name == "get_weather"
            and call.call_id == "call_w1"
        )
        assert call.id != call.call_id
        second = sdk.responses.create(
            model="fake-model",
            previous_response_id=first.id,
            input=[
                {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}
            ],
            tools=[WEATHER],  # type: ignore[list-item]
        )
    assert second.output_text == "It is 21C in Paris."
    tool = served.fake.requests[0].params.tools[0]  # type: ignore[union-attr]
    assert tool.name == "get_weather" and tool.parameters == WEATHER["parameters"]
    messages = served.fake.requests[1].messages  # type: ignore[union-attr]
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].id == "call_w1" and messages[2].tool_call_id == "call_w1"


def test_streamed_tool_call(serve: ServeFactory) -> None:
    served = serve([Reply(tool_calls=[CALL])])
    with (
        sync_sdk(served.base_url) as sdk,
        sdk.responses.stream(model="fake-model", input="Weather?", tools=[WEATHER]) as stream,  # type: ignore[list-item]
    ):
        events = list(stream)
        final = stream.get_final_response()
    check_sequence(events)
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {
        "city": "Paris"
    }


def test_history_with_function_call_items(serve: ServeFactory) -> None:
    served = serve([Reply("Done.")])
    with sync_sdk(served.base_url) as sdk:
        sdk.responses.create(
            model="fake-model",
            store=False,
            input=[
                {"role": "user", "content": "Weather?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "call_1", "output": "21C"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "21C."}]},
                {"role": "user", "content": [{"type": "input_text", "text": "Thanks"}]},
            ],
        )
    messages = served.fake.requests[0].messages  # type: ignore[union-attr]
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[3].text == "21C." and messages[4].text == "Thanks"


def test_store_false_keeps_nothing(serve: ServeFactory) -> None:
    store = ResponseStore()
    served = serve([Reply("a"), Reply("b")], responses_store=store)
    with sync_sdk(served.base_url) as sdk:
        r = sdk.responses.create(model="fake-model", input="x", store=False)
        assert r.store is False and len(store) == 0
        with pytest.raises(openai.NotFoundError):
            sdk.responses.retrieve(r.id)
        with pytest.raises(openai.BadRequestError) as info:
            sdk.responses.create(model="fake-model", input="y", previous_response_id=r.id)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0].type"),
        ({"input": "x", "tools": [{"type": "function", "parameters": {}}]}, "tools[0].name"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "previous_response_id": "resp_nope"}, "previous_response_id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_video", "url": "v"}]}]},
            "input[0].content[0]",
        ),
        ({}, "input"),
    ],
)
def test_bad_input_is_an_openai_shaped_400(
    serve_shared: ServeFactory, body: dict[str, Any], param: str
) -> None:
    served = serve_shared([Reply("unused")])
    reply = httpx.post(f"{served.v1}/responses", json={"model": "fake-model", **body})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_unknown_ids_are_404(serve_shared: ServeFactory) -> None:
    served = serve_shared([])
    for method, path in [("GET", "resp_x"), ("DELETE", "resp_x"), ("GET", "resp_x/input_items")]:
        reply = httpx.request(method, f"{served.v1}/responses/{path}")
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "response_not_found"


def test_cut_reply_is_incomplete(serve: ServeFactory) -> None:
    served = serve([Reply("Cut", finish_reason="length"), Reply("Cut", finish_reason="length")])
    with sync_sdk(served.base_url) as sdk:
        r = sdk.responses.create(model="fake-model", input="x", max_output_tokens=16)
        events = list(sdk.responses.create(model="fake-model", input="x", stream=True))
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    assert events[-1].type == "response.incomplete"


def test_failure_mid_stream_is_response_failed(serve: ServeFactory) -> None:
    boom = E.RateLimitError("upstream says slow down", retry_after=1)
    served = serve([Reply("one two three four", fail_after=2, error=boom)])
    with sync_sdk(served.base_url) as sdk:
        events = list(sdk.responses.create(model="fake-model", input="x", stream=True))
    assert events[-1].type == "response.failed"
    assert (
        events[-1].response.error is not None
        and events[-1].response.error.code == "rate_limit_exceeded"
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_async_sdk_stream_and_create(serve: ServeFactory) -> None:
    served = serve([Reply("Async hello."), Reply("Again.")], api_key=API_KEY)
    async with async_sdk(served.base_url) as sdk:
        events = [
            e async for e in await sdk.responses.create(model="fake-model", input="Hi", stream=True)
        ]
        r = await sdk.responses.create(
            model="fake-model", input="Hi", previous_response_id=events[-1].response.id
        )
    check_sequence(events)
    assert events[-1].response.output_text == "Async hello." and r.output_text == "Again."


def test_auth_applies(serve_shared: ServeFactory) -> None:
    served = serve_shared([], api_key=API_KEY)
    assert (
        httpx.post(f"{served.v1}/responses", json={"model": "fake-model", "input": "x"}).status_code
        == 401
    )


# ------------------------------------------------------------------ llmkit as the client


@pytest.mark.parametrize("streamed", [False, True])
def test_llmkit_rest_client_with_api_responses(serve: ServeFactory, streamed: bool) -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    served = serve(
        [Reply(tool_calls=calls, reasoning="Need data."), Reply("21C.", reasoning="Easy.")]
    )
    with Client("rest:fake-model", base_url=served.v1, api="responses") as client:
        if streamed:
            with client.stream("Weather?", tools=[WEATHER]) as s:
                reasoning = "".join(getattr(e, "reasoning", "") for e in s)
            first = s.response
            assert reasoning == "Need data."
        else:
            first = client.chat("Weather?", tools=[WEATHER])
        assert first.id.startswith("resp_") and first.reasoning == "Need data."
        assert [(c.id, c.name) for c in first.tool_calls] == [("call_1", "get_weather")]
        second = client.chat(
            [{"role": "tool", "tool_call_id": "call_1", "content": "21C"}],
            previous_response_id=first.id,
        )
    assert (second.text, second.reasoning) == ("21C.", "Easy.")
    assert [m.role for m in served.fake.requests[1].messages] == ["user", "assistant", "tool"]  # type: ignore[union-attr]


def test_llmkit_client_raises_on_response_failed(serve: ServeFactory) -> None:
    served = serve(
        [Reply("one two three four", fail_after=2, error=E.ServerError("backend fell over"))]
    )
    with (
        Client(
            "rest:fake-model",
            base_url=served.v1,
            api="responses",
            retry=RetryPolicy(max_attempts=1),
        ) as client,
        pytest.raises(E.ServerError, match="backend fell over"),
        client.stream("x") as s,
    ):
        for _ in s:
            pass


async def test_llmkit_async_client_against_serve(serve: ServeFactory) -> None:
    served = serve([Reply("Hi there.")])
    async with (
        AsyncClient("openai:fake-model", base_url=served.v1, api="responses") as client,
        client.stream("Hi") as s,
    ):
        text = "".join([e.text async for e in s])
    assert text == "Hi there." and s.response.id.startswith("resp_")


def test_text_format_and_reasoning_effort_reach_the_backend(serve: ServeFactory) -> None:
    served = serve([Reply('{"name": "Paris"}')])
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    with sync_sdk(served.base_url) as sdk:
        sdk.responses.create(
            model="fake-model",
            input="Capital?",
            text={
                "format": {"type": "json_schema", "name": "City", "schema": schema, "strict": True}
            },
            reasoning={"effort": "low", "summary": "auto"},
            tool_choice="none",
        )
    params = served.fake.requests[0].params  # type: ignore[union-attr]
    assert params.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "City", "schema": schema, "strict": True},
    }
    assert (params.reasoning_effort, params.tool_choice) == ("low", "none")


@pytest.mark.parametrize("streamed", [False, True])
def test_a_failure_before_the_first_event_is_an_http_error(
    serve: ServeFactory, streamed: bool
) -> None:
    served = serve([E.RateLimitError("upstream busy", retry_after=3)])
    with sync_sdk(served.base_url) as sdk, pytest.raises(openai.RateLimitError) as info:
        if streamed:
            list(sdk.responses.create(model="fake-model", input="x", stream=True))
        else:
            sdk.responses.create(model="fake-model", input="x")
    assert info.value.response.headers["retry-after"] == "3"


def test_input_items_pages(serve: ServeFactory) -> None:
    served = serve([Reply("ok")])
    items = [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    with sync_sdk(served.base_url) as sdk:
        r = sdk.responses.create(model="fake-model", input=items)  # type: ignore[arg-type]
        url = f"{served.v1}/responses/{r.id}/input_items"
        newest_first = httpx.get(url).json()
        texts = [i["content"][0]["text"] for i in newest_first["data"]]
        assert texts == ["three", "two", "one"] and not newest_first["has_more"]
        page = httpx.get(url, params={"order": "asc", "limit": 2}).json()
        assert [i["content"][0]["text"] for i in page["data"]] == ["one", "two"] and page[
            "has_more"
        ]
        rest = httpx.get(url, params={"order": "asc", "after": page["last_id"]}).json()
        assert [i["content"][0]["text"] for i in rest["data"]] == ["three"]
        listed = sdk.responses.input_items.list(r.id, order="asc")
        assert [i.role for i in listed.data] == ["user", "assistant", "user"]  # type: ignore[union-attr]
        bad = httpx.get(url, params={"limit": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"
