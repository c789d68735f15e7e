"""``llmkit chat`` shows a reasoning model's reasoning set apart (dim on a terminal), before
the answer, unless ``--hide-reasoning``; ``-r/--reasoning-effort`` is passed to the call."""

from __future__ import annotations

import sys

import pytest

from llmkit import Client, Message
from llmkit.cli import _answer, build_parser
from llmkit.testing import FakeBackend, Reply

from .conftest import Run

DIM, RESET = "\x1b[2m", "\x1b[0m"


def answer(argv: list[str], reply: Reply) -> FakeBackend:
    args = build_parser().parse_args(["chat", *argv, "2+2?"])
    fake = FakeBackend([reply])
    kwargs = {"reasoning_effort": args.reasoning_effort} if args.reasoning_effort else {}
    with Client(backend=fake) as client:
        _answer(client, [Message.user("2+2?")], args, kwargs)
    return fake


@pytest.mark.parametrize("stream", [True, False])
def test_reasoning_is_dim_on_a_terminal(
    stream: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    answer([] if stream else ["--no-stream"], Reply("Four.", reasoning="Two and two."))
    assert capsys.readouterr().out == f"{DIM}Two and two.{RESET}\n\nFour.\n"


def test_reasoning_is_plain_when_piped_and_hidden_on_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    answer([], Reply("Four.", reasoning="Two and two."))
    assert capsys.readouterr().out == "Two and two.\n\nFour.\n"
    answer(["--hide-reasoning"], Reply("Four.", reasoning="Two and two."))
    assert capsys.readouterr().out == "Four.\n"
    answer([], Reply("No reasoning here."))
    assert capsys.readouterr().out == "No reasoning here.\n"


def test_reasoning_effort_flag(llmkit: Run) -> None:
    fake = answer(["-r", "low", "--hide-reasoning"], Reply("ok"))
    assert fake.requests[0].params.reasoning_effort == "low"
    result = llmkit("chat", "-m", "fake:echo", "--reasoning-effort", "high", "hello")
    assert (result.returncode, result.stdout) == (0, "hello\n")
    bad = llmkit("chat", "-m", "fake:echo", "--reasoning-effort", "max", "hello")
    assert bad.returncode == 2 and "reasoning-effort" in bad.stderr
