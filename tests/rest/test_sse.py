"""The I/O-free SSE / NDJSON decoders and the OpenAI chunk decoder: byte streams split at
every position, CR/LF/CRLF, comments, multi-line data, event:, flush at EOF."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit._http.decoders import NDJSONDecoder, ServerSentEvent, SSEDecoder
from llmkit.backends._openai_wire import ChunkDecoder, error_in_payload
from llmkit.errors import ProtocolError, ServerError

SAMPLE = (
    b": this is a comment\n"
    b"event: delta\n"
    b"id: 7\n"
    b"retry: 1500\n"
    b'data: {"text": "h\xc3\xa9llo \xe2\x9c\x93"}\n'
    b"\n"
    b"data: line one\n"
    b"data: line two\n"
    b"\n"
    b"data\n"
    b"data:\n"
    b"\n"
    b"unknown: field\n"
    b"data:no space\n"
    b"\n"
    b"data: [DONE]\n"
    b"\n"
)
EXPECTED = [
    ServerSentEvent(data='{"text": "héllo ✓"}', event="delta", id="7", retry=1500),
    ServerSentEvent(data="line one\nline two", id="7"),
    ServerSentEvent(data="\n", id="7"),
    ServerSentEvent(data="no space", id="7"),
    ServerSentEvent(data="[DONE]", id="7"),
]


def decode(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.flush())
    return events


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_split_at_every_position(ending: bytes) -> None:
    payload = SAMPLE.replace(b"\n", ending)
    for position in range(len(payload) + 1):
        assert decode([payload[:position], payload[position:]]) == EXPECTED, position


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_byte_by_byte(ending: bytes) -> None:
    payload = SAMPLE.replace(b"\n", ending)
    assert decode([bytes([b]) for b in payload]) == EXPECTED


def test_mixed_line_endings_and_crlf_split_across_pieces() -> None:
    assert decode([b"data: a\r", b"\ndata: b\r", b"\r", b"data: c\n\n"]) == [
        ServerSentEvent(data="a\nb"),
        ServerSentEvent(data="c"),
    ]


@given(st.lists(st.integers(min_value=0, max_value=len(SAMPLE)), max_size=12))
@settings(max_examples=200, deadline=None)
def test_any_split(cuts: list[int]) -> None:
    bounds = [0, *sorted(cuts), len(SAMPLE)]
    pieces = [SAMPLE[a:b] for a, b in itertools.pairwise(bounds)]
    assert decode(pieces) == EXPECTED


def test_flush_dispatches_unterminated_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a": 1}') == []
    assert decoder.flush() == [ServerSentEvent(data='{"a": 1}')]
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\n") == []
    assert decoder.flush() == [ServerSentEvent(data="x")]
    assert SSEDecoder().flush() == []


def test_event_without_data_is_not_dispatched() -> None:
    # A keep-alive "event: ping" block must not become an event with empty data (which a
    # JSON consumer would then fail on); the event type does not leak into the next event.
    assert decode([b"event: ping\n\n", b"data: x\n\n"]) == [ServerSentEvent(data="x")]


def test_line_separators_inside_data_do_not_split() -> None:
    # JSON allows U+2028/U+2029/U+0085 unescaped; only CR and LF end an SSE line.
    text = "a\u2028b\u2029c\x85d\x0ce\x1cf"
    payload = ("data: " + json.dumps({"t": text}, ensure_ascii=False) + "\n\n").encode()
    for position in range(len(payload) + 1):
        events = decode([payload[:position], payload[position:]])
        assert [json.loads(e.data)["t"] for e in events] == [text]


def test_byte_order_mark_is_ignored() -> None:
    assert decode([b"\xef\xbb", b"\xbfdata: x\n\n"]) == [ServerSentEvent(data="x")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode([b"data: \xff\n\n"]) == [ServerSentEvent(data="\ufffd")]


def test_event_json_error_quotes_data() -> None:
    with pytest.raises(ProtocolError, match="not json"):
        ServerSentEvent(data="not json").json(backend="rest")


NDJSON = '{"a": 1}\n\n{"b": "\u00e9\u2028"}\r\n{"c": [1, 2]}\r{"d": null}'.encode()


def test_ndjson_split_at_every_position() -> None:
    expected = [{"a": 1}, {"b": "\u00e9\u2028"}, {"c": [1, 2]}, {"d": None}]
    for position in range(len(NDJSON) + 1):
        decoder = NDJSONDecoder(backend="rest")
        out = decoder.feed(NDJSON[:position]) + decoder.feed(NDJSON[position:]) + decoder.flush()
        assert out == expected, position


def test_ndjson_malformed_line() -> None:
    decoder = NDJSONDecoder(backend="rest")
    with pytest.raises(ProtocolError, match="oops") as info:
        decoder.feed(b'{"a": 1}\n{"oops\n')
    assert info.value.backend == "rest"
    long_line = b'{"x": "' + b"y" * 1000 + b"\n"
    with pytest.raises(ProtocolError) as info:
        NDJSONDecoder().feed(long_line)
    assert len(str(info.value)) < 300


def test_chunk_decoder_tolerances() -> None:
    decoder = ChunkDecoder(backend="rest", model="m")
    events = decoder.feed(
        {
            "id": "3f1c2a9e-4b7d",
            "model": "m-q4",
            "error": None,
            "choices": [{"index": 0, "delta": {"content": "a"}}],
        }
    )
    assert [e.text for e in events] == ["a"]
    decoder.feed(
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    )
    closing = decoder.finish()
    assert closing[0].type == "usage" and closing[0].usage.total_tokens == 2
    assert (
        closing[1].finish_reason == "length"
        and closing[1].model == "m-q4"
        and closing[1].id == "3f1c2a9e-4b7d"
    )


def test_error_in_payload_shapes() -> None:
    assert error_in_payload({"error": None, "usage": {}}, backend="rest", model=None) is None
    assert error_in_payload({"choices": [], "error": "x"}, backend="rest", model=None) is None
    err = error_in_payload({"error": {"message": "boom"}}, backend="rest", model="m")
    assert isinstance(err, ServerError) and "boom" in str(err)


def test_invalid_utf8_is_replaced_and_the_next_piece_decodes() -> None:
    # Whole pieces skip the incremental decoder; one with bad bytes or a cut character
    # goes through it, and the pieces after it decode as before.
    assert decode([b"data: a\xff", b"b\n\n", b"data: \xe2\x9c", b"\x93\n\n"]) == [
        ServerSentEvent(data="a\ufffdb"),
        ServerSentEvent(data="\u2713"),
    ]
