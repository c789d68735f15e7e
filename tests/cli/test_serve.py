"""``llmkit serve`` as a real process: it answers, enforces its key, and stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llmkit.cli import main

from .test_cli import free_port

pytest.importorskip("uvicorn")


def wait_until_up(url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.communicate()[1]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def test_serve_command(tmp_path: Path, cli_env: dict[str, str]) -> None:
    port = free_port()
    env = {**cli_env, "LLMKIT_SERVER_API_KEY": "cli-key-123456"}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkit.cli", "serve", "fake:echo", "--port", str(port),
         "--max-in-flight", "2", "--graceful-timeout", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        body = {"model": "echo", "messages": [{"role": "user", "content": "ping"}]}
        assert httpx.post(f"{url}/v1/chat/completions", json=body).status_code == 401
        page = httpx.get(f"{url}/")  # the chat page is open; the API behind it is not
        assert page.status_code == 200 and "llmkit chat" in page.text
        reply = httpx.post(
            f"{url}/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer cli-key-123456"},
        )
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "ping"
        # A streamed text completion arrives as several chunks while it is generated.
        sdk = openai.OpenAI(
            base_url=f"{url}/v1",
            api_key="cli-key-123456",
            max_retries=0,
            http_client=httpx.Client(),
        )
        with sdk:
            plain = sdk.completions.create(model="echo", prompt="one two three")
            chunks = list(sdk.completions.create(model="echo", prompt="one two three", stream=True))
        texts = [c.choices[0].text for c in chunks]
        assert texts == ["one ", "two ", "three", ""]
        assert "".join(texts) == plain.choices[0].text == "one two three"
        assert chunks[-1].choices[0].finish_reason == "stop"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "serving 'fake:echo' as 'echo'" in stderr
    assert '"POST /v1/chat/completions" 200' in stderr  # the access log
    assert '"POST /v1/completions" 200' in stderr
    assert "cli-key-123456" not in stderr
    assert f"chat page at http://127.0.0.1:{port}/" in stderr


def test_serve_no_ui(tmp_path: Path, cli_env: dict[str, str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkit.cli", "serve", "fake:echo", "--port", str(port), "--no-ui",
         "--responses-max-entries", "1"],
        cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        assert httpx.get(f"{url}/").status_code == 404
        assert httpx.get(f"{url}/v1/models").status_code == 200
        # The store keeps one response: the second evicts the first.
        body = {"model": "echo", "input": "hello"}
        first, second = (httpx.post(f"{url}/v1/responses", json=body).json() for _ in "12")
        assert httpx.get(f"{url}/v1/responses/{first['id']}").status_code == 404
        assert httpx.get(f"{url}/v1/responses/{second['id']}").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert "chat page" not in stderr


def test_serve_warns_without_key_on_public_interface(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface: the warning is printed, then the bind fails,
    # so nothing ever listens beyond loopback.
    result = subprocess.run(
        [sys.executable, "-m", "llmkit.cli", "serve", "fake:echo", "--host", "192.0.2.1",
         "--port", str(free_port())],
        cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 1
    assert "without an API key" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_several_models(tmp_path: Path, cli_env: dict[str, str]) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkit.cli", "serve", "fake:first", "fake:second",
         "--port", str(port), "--graceful-timeout", "1", "--no-ui"],
        cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process)
        models = httpx.get(f"{url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["first", "second"]
        body = {"model": "second", "messages": [{"role": "user", "content": "routed"}]}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body).json()
        assert reply["model"] == "second" and reply["choices"][0]["message"]["content"] == "routed"
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=15)
    assert "'fake:first' as 'first', 'fake:second' as 'second'" in stderr


def test_serve_refuses_two_models_with_one_name(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llmkit.cli", "serve", "fake:same", "fake:same"],
        cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "served as 'same'" in result.stderr


def test_serve_store_flags_reach_the_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # In-process through the real parser and command, up to the point uvicorn would start.
    import llmkit.server
    from llmkit.server import ResponseStore

    apps: list[Any] = []
    monkeypatch.setattr(llmkit.server, "serve_app", lambda app, **options: apps.append(app))
    monkeypatch.chdir(tmp_path)

    def store(*flags: str) -> Any:
        assert main(["serve", "fake:echo", "--no-ui", *flags]) == 0
        [route] = [r for r in apps.pop().routes if getattr(r, "path", "") == "/v1/responses"]
        return route.endpoint.__self__.store

    given = store(
        "--responses-max-entries", "7", "--responses-max-bytes", "4096", "--responses-ttl", "1.5"
    )
    assert (given.max_entries, given.max_bytes, given.ttl) == (7, 4096, 1.5)
    default, fresh = store(), ResponseStore()
    assert (default.max_entries, default.max_bytes, default.ttl) == (
        fresh.max_entries,
        fresh.max_bytes,
        fresh.ttl,
    )
    # The help states the defaults the store really has.
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for value in (fresh.max_entries, fresh.max_bytes, int(fresh.ttl)):
        assert f"default: {value}" in help_text
