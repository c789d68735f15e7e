"""The I/O-free ``<think>`` tag decoder shared by every backend (``llmkit._thinking``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmkit._thinking import ThinkTagDecoder, opens_thinking, split_think
from llmkit.types import ReasoningDelta, TextDelta


def decode(pieces: list[str], *, inside: bool = False) -> tuple[str | None, str, list[str]]:
    """Feed ``pieces`` one by one: (reasoning, text, event kinds in order)."""
    decoder = ThinkTagDecoder(inside=inside)
    events = [e for p in pieces for e in decoder.feed(p)] + decoder.flush()
    assert all(isinstance(e, (ReasoningDelta, TextDelta)) for e in events)
    assert all((e.reasoning if isinstance(e, ReasoningDelta) else e.delta) for e in events)
    reasoning = "".join(e.reasoning for e in events if isinstance(e, ReasoningDelta)) or None
    text = "".join(e.delta for e in events if isinstance(e, TextDelta))
    return reasoning, text, [e.type for e in events]


@pytest.mark.parametrize(
    ("reply", "inside", "expected"),
    [
        ("<think>\nLet me add.\n</think>\n\nThe answer is 4.", False, ("Let me add.", "The answer is 4.")),
        ("  \n<think>a</think>b", False, ("a", "b")),
        ("Plain answer, no tags.", False, (None, "Plain answer, no tags.")),
        ("  Leading spaces stay.", False, (None, "  Leading spaces stay.")),
        ("Text with <think>inside</think> is text.", False, (None, "Text with <think>inside</think> is text.")),
        ("<think>\n\n</think>\n\nNo thinking this time.", False, (None, "No thinking this time.")),
        ("<think>cut off by max_tokens", False, ("cut off by max_tokens", "")),
        ("<thi", False, (None, "<thi")),
        ("", False, (None, "")),
        ("opened by the template\n</think>\n\nanswer", True, ("opened by the template", "answer")),
        ("never closed", True, ("never closed", "")),
        ("<think>a</think>b</think>c", False, ("a", "b</think>c")),
        ("<think>x < y and y </thin k> z</think>ok", False, ("x < y and y </thin k> z", "ok")),
    ],
)  # fmt: skip
def test_whole_replies(reply: str, inside: bool, expected: tuple[str | None, str]) -> None:
    assert split_think(reply, inside=inside) == expected
    assert decode([reply], inside=inside)[:2] == expected


def test_reasoning_streams_before_the_tag_closes() -> None:
    decoder = ThinkTagDecoder()
    assert decoder.feed("<thi") == []  # could still be the tag
    assert decoder.feed("nk>Step one") == [ReasoningDelta(reasoning="Step one")]
    assert decoder.feed(", step two </th") == [ReasoningDelta(reasoning=", step two")]
    assert decoder.feed("ink>\n\nDone") == [TextDelta(delta="Done")]
    assert decoder.passthrough
    assert decoder.feed(" now.") == [TextDelta(delta=" now.")]
    assert decoder.flush() == []


def test_plain_text_is_released_as_soon_as_the_tag_is_ruled_out() -> None:
    decoder = ThinkTagDecoder()
    assert decoder.feed("H") == [TextDelta(delta="H")]
    assert decoder.passthrough


def test_opens_thinking() -> None:
    assert opens_thinking("<|im_start|>assistant\n<think>\n")
    assert not opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert not opens_thinking("<|im_start|>assistant\n")


REPLIES = st.one_of(
    st.tuples(
        st.sampled_from(["", " ", "\n"]),
        st.text(alphabet="ab <>/\nthink", max_size=30),
        st.sampled_from(["</think>", "</think>\n\n", ""]),
        st.text(alphabet="xy <>/\nthink", max_size=30),
    ).map(lambda t: f"{t[0]}<think>{t[1]}{t[2]}{t[3]}"),
    st.text(alphabet="ab <>/\nthink", max_size=60),
)


@settings(max_examples=300, deadline=None)
@given(reply=REPLIES, inside=st.booleans(), data=st.data())
def test_any_split_parses_like_the_whole_reply(
    reply: str, inside: bool, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(reply)), max_size=8)))
    pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)], strict=True)]
    whole = decode([reply], inside=inside)
    split = decode(pieces, inside=inside)
    assert split[:2] == whole[:2] == split_think(reply, inside=inside)
    # Reasoning always comes before the answer, whatever the split.
    kinds = split[2]
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning")


@settings(max_examples=200, deadline=None)
@given(
    reasoning=st.text(alphabet="ab <>/\nthink.", max_size=40),
    answer=st.text(alphabet="xy <>/\n.", max_size=40),
    data=st.data(),
)
def test_reasoning_and_answer_round_trip(reasoning: str, answer: str, data: st.DataObject) -> None:
    """Whatever the model thought (without a closing tag in it) and answered, the decoder
    returns exactly that, stripped of the whitespace around the tags."""
    reasoning = reasoning.replace("</think>", "")
    reply = f"<think>\n{reasoning}\n</think>\n\n{answer}"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(reply)), max_size=6)))
    pieces = [reply[a:b] for a, b in zip([0, *cuts], [*cuts, len(reply)], strict=True)]
    got_reasoning, got_text, _ = decode(pieces)
    assert got_reasoning == (reasoning.strip() or None)
    assert got_text == answer.lstrip()
