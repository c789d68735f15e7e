"""The pytest plugin, run the way users run it: pytest in a subprocess on the example suite
(examples/recorded_tests), recording against ``llmkit serve`` and replaying with it down."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "examples" / "recorded_tests"
KEY = "sk-serve-2b4d6f8h0j"


def run_pytest(suite: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """pytest on ``suite`` in a subprocess, with only the llmkit plugin (explicitly: the
    shared environment's installed metadata may predate its entry point) and no config of
    this repository."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "llmkit.testing.pytest_plugin",
            "-p",
            "no:cacheprovider",
            "-c",
            os.devnull,
            "--rootdir",
            str(suite),
            "-q",
            str(suite),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


def test_example_suite_records_then_replays_with_the_server_down(tmp_path: Path) -> None:
    pytest.importorskip("starlette")
    from llmkit import AsyncClient
    from llmkit.server import create_app, run_in_thread

    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite, ignore=shutil.ignore_patterns("cassettes", "__pycache__"))
    app = create_app(AsyncClient("fake:echo"), api_key=KEY, served_model="support")
    with run_in_thread(app, graceful_timeout=1) as url:
        env = {"EXAMPLE_LLM_URL": f"{url}/v1", "EXAMPLE_LLM_KEY": KEY}
        assert "6 passed" in run_pytest(suite, env=env)
    files = sorted((suite / "cassettes").rglob("*.json"))
    assert [f.relative_to(suite / "cassettes").as_posix() for f in files] == [
        "faq.json",
        "test_support_bot/TestEveryAnswer-test_stays_on_topic-vpn.json",
        "test_support_bot/TestEveryAnswer-test_stays_on_topic-wifi.json",
        "test_support_bot/test_answers_a_question.json",
        "test_support_bot/test_async_application_code.json",
        "test_support_bot/test_streamed_answer_matches_the_final_reply.json",
    ]
    recorded = {f: f.read_bytes() for f in files}
    assert not any(KEY.encode() in data for data in recorded.values())

    # The server is gone (its port refuses connections): replay only, and fail on a miss.
    assert "6 passed" in run_pytest(suite, "--llmkit-record-mode=none", env=env)
    assert {f: f.read_bytes() for f in files} == recorded  # replaying rewrites nothing


def test_a_missing_recording_fails_the_test_in_none_mode(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    shutil.copytree(SUITE, suite, ignore=shutil.ignore_patterns("__pycache__"))
    (suite / "cassettes" / "faq.json").unlink()
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-p", "llmkit.testing.pytest_plugin", "-q"),
            *("-c", os.devnull, "--rootdir", str(suite), str(suite), "--llmkit-record-mode=none"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 1
    assert "5 passed, 1 error" in result.stdout  # the fixture raised at setup
    assert "faq.json does not exist and record='none' only replays" in result.stdout


def test_committed_example_cassettes_replay_offline() -> None:
    """The example as shipped runs without any server."""
    out = run_pytest(SUITE, "--llmkit-record-mode=none", env={"EXAMPLE_LLM_KEY": "unused"})
    assert "6 passed" in out


def test_plugin_entry_point_and_import_cost() -> None:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target = project["entry-points"]["pytest11"]["llmkit.testing.pytest_plugin"]
    assert target == "llmkit.testing.pytest_plugin"
    # pytest imports the plugin in every run of a project with llmkit installed: it must not
    # drag the client, httpx or the backends in.
    code = (
        "import sys, llmkit.testing.pytest_plugin as p; "
        "assert callable(p.pytest_addoption); "
        "print(sorted(m for m in ('llmkit.client', 'httpx', 'openai', 'asyncio', "
        "'llmkit.testing._cassette') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout
    assert out.strip() == "[]"
