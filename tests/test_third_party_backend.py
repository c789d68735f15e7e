"""A backend from a separately installed distribution plugs in through the
``llmkit.backends`` entry-point group and is used by spec string, with no edit to llmkit.

The example distribution (``examples/third_party_backend``) is really installed — built by
pip into a folder of its own — and used from a fresh interpreter that has that folder on its
path, so the entry point is found the way an application would find it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "third_party_backend"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
            "--no-build-isolation", "--target", str(target), str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )  # fmt: skip
    assert list(target.glob("llmkit_shout-*.dist-info"))
    return target


def run(site: Path | None, code: str) -> str:
    env = dict(os.environ)
    paths = [str(site)] if site is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_an_installed_backend_is_used_by_its_spec(site: Path) -> None:
    out = run(
        site,
        """
        import asyncio
        from llmkit import AsyncClient, Client, available_backends

        client = Client("shout:loud", suffix="!!")
        r = client.chat("hello there")
        print(r.text, r.backend, r.usage.completion_tokens)
        with client.stream("streamed words") as s:
            print("|".join(ev.text for ev in s if ev.text))
        print(s.response.text)

        async def main():
            async with AsyncClient("shout:loud") as ac:
                print((await ac.chat("async")).text)
        asyncio.run(main())
        print("shout" in available_backends())
        """,
    )
    assert out.splitlines() == [
        "HELLO THERE!! shout:loud 2",
        "STREAMED| WORDS!!",
        "STREAMED WORDS!!",
        "ASYNC!",
        "True",
    ]


def test_a_backend_with_only_the_required_part_is_used_by_its_spec(site: Path) -> None:
    """``whisper`` does not subclass BaseBackend and has no raw completion, embeddings or
    server URL: it is a Backend all the same, and what it cannot do is refused by the client
    before any method of it is called."""
    out = run(
        site,
        """
        import asyncio
        from llmkit import AsyncClient, Client, UnsupportedFeatureError
        from llmkit.backends.base import BaseBackend, Backend, SupportsCompletion

        client = Client("whisper:quiet")
        b = client.backend
        print(type(b).__name__, isinstance(b, BaseBackend), isinstance(b, Backend))
        print(isinstance(b, SupportsCompletion))
        r = client.chat("HELLO There")
        print(r.text, r.backend)
        with client.stream("Streamed WORDS") as s:
            print("|".join(ev.text for ev in s if ev.text))
        for call in (client.complete, lambda p: list(client.stream_complete(p)), client.embed):
            try:
                call("Once")
            except UnsupportedFeatureError as e:
                print("refused:", e)

        async def main():
            async with AsyncClient("whisper:quiet") as ac:
                print((await ac.chat("ASYNC Chat")).text)
                async with ac.stream("Async STREAM") as s:
                    print("|".join([ev.text async for ev in s if ev.text]))
        asyncio.run(main())
        client.close()
        """,
    )
    assert out.splitlines() == [
        "WhisperBackend False True",
        "False",
        "hello there whisper:quiet",
        "streamed |words ",
        "refused: backend 'whisper' does not support raw completion; use chat() instead",
        "refused: backend 'whisper' does not support raw completion; use chat() instead",
        "refused: backend 'whisper:quiet' cannot embed text; use an embedding model "
        "(e.g. hf:minilm, or an openai:/rest: embedding model)",
        "async chat",
        "async |stream ",
    ]


def test_the_client_pipeline_applies_to_it(site: Path) -> None:
    """Errors the plugin raises are typed, and its options are validated by llmkit's helper."""
    out = run(
        site,
        """
        from llmkit import BadRequestError, Client, ConfigError

        try:
            Client("shout:x", volume=11)
        except ConfigError as e:
            print("config:", e)
        try:
            Client("shout:x").chat("   ")
        except BadRequestError as e:
            print("bad request:", e.retryable)
        """,
    )
    assert "config: shout: unknown option(s) 'volume'; allowed: suffix" in out
    assert "bad request: False" in out


def test_without_the_distribution_the_name_is_unknown() -> None:
    """The same code without the installed distribution: the registry names what it knows."""
    out = run(
        None,
        """
        from llmkit import Client, UnknownBackendError
        try:
            Client("shout:x")
        except UnknownBackendError as e:
            print(e)
        """,
    )
    assert "unknown backend 'shout'" in out and "known backends:" in out
