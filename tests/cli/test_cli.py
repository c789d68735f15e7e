"""The ``llmkit`` command line, driven through its real entry point in a subprocess."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import llmkit
from llmkit.cli import main

from .conftest import Run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


# ---------------------------------------------------------------------------- chat


def test_one_shot_prompt(llmkit: Run) -> None:
    result = llmkit("chat", "-m", "fake:echo", "hello there, world")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello there, world\n", "")


def test_prompt_from_stdin(llmkit: Run) -> None:
    result = llmkit("chat", "--model", "fake:echo", input="piped question\n")
    assert (result.returncode, result.stdout) == (0, "piped question\n")
    dash = llmkit("chat", "-m", "fake:echo", "-", input="dash input")
    assert dash.stdout == "dash input\n"


def test_json_output(llmkit: Run) -> None:
    result = llmkit(
        "chat", "-m", "fake:echo", "--json", "--system", "be brief", "-t", "0.5",
        "--max-tokens", "12", "what is json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["object"] == "chat.completion"
    assert data["backend"] == "fake:echo"
    assert data["model"] == "echo"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "what is json"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] > 0


def test_no_stream(llmkit: Run) -> None:
    assert llmkit("chat", "-m", "fake:echo", "--no-stream", "whole").stdout == "whole\n"


def test_interactive_session_keeps_history(llmkit: Run) -> None:
    result = llmkit(
        "chat", "-i", "-m", "fake:echo", input="first\n\nsecond\n/reset\nthird\n/exit\nnot sent\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "first\nsecond\nthird\n"


def test_chat_with_config_profile(llmkit: Run, tmp_path: Path) -> None:
    (tmp_path / "llmkit.toml").write_text(
        'default_profile = "a"\n[profiles.a]\nmodel = "fake:one"\n[profiles.b]\nmodel = "fake:two"\n'
    )
    result = llmkit("chat", "--profile", "b", "--json", "hi")
    assert json.loads(result.stdout)["backend"] == "fake:two"
    result = llmkit("chat", "--config", str(tmp_path / "llmkit.toml"), "--json", "hi")
    assert json.loads(result.stdout)["backend"] == "fake:one"


# ---------------------------------------------------------------------------- other commands


def test_version(llmkit: Run) -> None:
    result = llmkit("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"llmkit {llmkit_version()}")


def llmkit_version() -> str:
    return llmkit.__version__


def test_backends(llmkit: Run) -> None:
    result = llmkit("backends")
    assert result.returncode == 0
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:]}
    assert {"openai", "rest", "hf", "fake"} <= set(rows)
    assert rows["fake"] == "yes" and rows["rest"] == "yes"
    data = json.loads(llmkit("backends", "--json").stdout)
    hf = next(row for row in data if row["name"] == "hf")
    assert hf["extra"] == "hf" and isinstance(hf["installed"], bool)


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "llmkit"
    if not script.exists():
        pytest.skip("the llmkit console script is not installed in this environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == f"llmkit {llmkit.__version__}"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((), "required: COMMAND"),
        (("frobnicate",), "invalid choice"),
        (("chat", "--temperature", "hot", "x"), "--temperature"),
        (("chat", "--temperature", "5", "x"), "between 0 and 2"),
        (("chat", "--max-tokens", "0", "x"), "--max-tokens"),
        (("chat", "--bogus", "x"), "unrecognized arguments"),
        (("serve", "--port", "99999"), "--port"),
        (("serve", "--responses-max-entries", "0"), "--responses-max-entries: must be at least 1"),
        (("serve", "--responses-max-bytes", "lots"), "--responses-max-bytes: invalid integer"),
        (("serve", "--responses-ttl", "0"), "--responses-ttl: must be a positive number"),
        (("serve", "--responses-ttl", "nan"), "--responses-ttl: must be a positive number"),
        (("serve", "--responses-ttl", "soon"), "--responses-ttl: invalid number of seconds"),
        (("chat", "-m", "no-colon", "x"), "invalid model spec"),
        (("chat", "-m", "nosuchbackend:m", "x"), "unknown backend 'nosuchbackend'"),
        (("chat", "--config", "missing.toml", "x"), "does not exist"),
        (("chat", "-m", "fake:echo", "--config", "x.toml", "x"), "not both"),
        (("serve", "no-colon"), "invalid model spec"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: tuple[str, ...],
    needle: str,
) -> None:
    # In-process for speed; the subprocess test below covers the real entry point.
    monkeypatch.chdir(tmp_path)
    for name in ("LLMKIT_MODEL", "LLMKIT_CONFIG", "LLMKIT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    code = main(list(args))
    out, err = capsys.readouterr()
    result = subprocess.CompletedProcess(list(args), code, out, err)
    assert needle in assert_one_line_error(result, 2)


@pytest.mark.parametrize(
    "args",
    [(), ("chat", "--temperature", "hot", "x"), ("chat", "-m", "nosuchbackend:m", "x")],
)
def test_usage_errors_through_the_entry_point(llmkit: Run, args: tuple[str, ...]) -> None:
    assert_one_line_error(llmkit(*args), 2)


def test_empty_stdin_is_a_usage_error(llmkit: Run) -> None:
    assert "empty" in assert_one_line_error(llmkit("chat", "-m", "fake:echo", input="  \n"), 2)


def test_runtime_failure_exits_1_with_one_line(llmkit: Run, tmp_path: Path) -> None:
    config = tmp_path / "down.toml"
    config.write_text(
        f'model = "rest:m"\nbase_url = "http://127.0.0.1:{free_port()}/v1"\n'
        "timeout = 5\nretry = { max_attempts = 1 }\n"
    )
    result = llmkit("chat", "--config", str(config), "hello")
    line = assert_one_line_error(result, 1)
    assert line.startswith("error: ")


def test_debug_shows_the_traceback(llmkit: Run) -> None:
    result = llmkit("--debug", "chat", "-m", "nosuchbackend:m", "x")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_local_model_is_loaded_behind_a_progress_message(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from llmkit.registry import _registered, register_backend
    from llmkit.testing import FakeBackend

    class LoadableBackend(FakeBackend):
        name = "loadable"
        loads = 0

        def load(self) -> None:
            LoadableBackend.loads += 1

    def factory(model: str, **options: object) -> LoadableBackend:
        return LoadableBackend(model=model)

    monkeypatch.chdir(tmp_path)
    register_backend("loadable", factory)  # type: ignore[arg-type]
    try:
        assert main(["chat", "-m", "loadable:tiny", "hi"]) == 0
    finally:
        _registered.pop("loadable", None)
    out, err = capsys.readouterr()
    assert out == "hi\n"
    assert "loading loadable:tiny" in err
    assert LoadableBackend.loads == 1
