"""Run the real ``llmkit`` entry point in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment without LLMKIT_* settings that would change the defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKIT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def llmkit(tmp_path: Path, cli_env: dict[str, str]) -> Run:
    """``llmkit(*args, input=None)`` runs ``python -m llmkit.cli`` in a temp directory."""

    def run(
        *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmkit.cli", *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=cli_env,
            timeout=timeout,
        )

    return run
