"""The guard itself: an unexpected skip fails the run, an expected kind passes, a slow test
gets its own limit (run in a child pytest, so this run's own counts stay untouched)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_skips():
    pytest.skip("{reason}")

def test_passes():
    pass
"""


def _run(pytester: pytest.Pytester, reason: str, expected: str = "") -> pytest.RunResult:
    pytester.makeconftest('pytest_plugins = ["suite_guard"]')
    pytester.makepyfile(SKIPPING.format(reason=reason))
    env = os.environ.get("LLMKIT_EXPECTED_SKIPS")
    os.environ["LLMKIT_EXPECTED_SKIPS"] = expected
    try:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider")
    finally:
        os.environ.pop("LLMKIT_EXPECTED_SKIPS")
        if env is not None:
            os.environ["LLMKIT_EXPECTED_SKIPS"] = env


@pytest.fixture
def guarded(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    # The child pytest must find suite_guard.py (tests/ is not a package), and loads only the
    # plugins named (pytest-timeout below), not whatever the environment has installed.
    here = str(request.path.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def test_an_unexpected_skip_fails_the_run(guarded: pytest.Pytester) -> None:
    result = _run(guarded, "the import broke")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*unexpected skips*", "*test_skips: Skipped: the import broke*"])


def test_an_expected_kind_of_skip_passes_only_where_named(guarded: pytest.Pytester) -> None:
    reason = "could not import 'torch': No module named 'torch'"
    assert _run(guarded, reason, expected="no-hf").ret == pytest.ExitCode.OK
    assert _run(guarded, reason).ret == pytest.ExitCode.TESTS_FAILED


def test_a_slow_test_gets_its_own_limit(guarded: pytest.Pytester) -> None:
    guarded.makeconftest('pytest_plugins = ["suite_guard"]')
    guarded.makeini(
        "[pytest]\ntimeout = 1\nasyncio_default_fixture_loop_scope = function\nmarkers =\n    slow: slow\n"
    )
    guarded.makepyfile(
        "import time, pytest\n"
        "@pytest.fixture\n"
        "def setup_takes_time():\n    time.sleep(1.5)\n"
        "@pytest.mark.slow\n"
        "def test_slow(setup_takes_time):\n    pass\n"
        "def test_fast(setup_takes_time):\n    pass\n"
    )
    result = guarded.runpytest_subprocess("-p", "no:cacheprovider", "-p", "pytest_timeout")
    result.assert_outcomes(passed=1, errors=1)  # the fast one hits the global limit in setup
    result.stdout.fnmatch_lines(["*test_fast*Timeout*"])
