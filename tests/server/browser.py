"""Headless Chromium for the chat page's tests: the system browser and its chromedriver,
driven by selenium (nothing is downloaded: the driver path is given, Selenium Manager is
kept offline).

When the browser is missing the tests are skipped with a loud reason -- unless
``LLMKIT_REQUIRE_BROWSER=1`` (``scripts/test.sh`` sets it once chromium is installed), where
a missing or broken browser fails them instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,800",
)


def _unavailable(reason: str) -> None:
    if os.environ.get("LLMKIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"LLMKIT_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason} (apt-get install chromium chromium-driver)")


def chromium_paths() -> tuple[str, str]:
    """The browser and driver executables (skips or fails when either is missing)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        _unavailable("chromium and/or chromedriver are not installed")
    assert browser is not None and driver is not None
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium per test module (a fresh profile)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed (the 'dev' extra has it)")
    binary, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not fetch anything
        try:
            driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
        except Exception as exc:  # a browser that is installed but cannot start
            _unavailable(f"chromium did not start: {type(exc).__name__}: {exc}")
    driver.set_script_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, message: str = "condition"
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.05)


class ChatPage:
    """The page's controls, as a person would use them."""

    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    def open(self, *, ready: bool = True) -> ChatPage:
        self.driver.get(f"{self.base_url}/")
        if ready:
            wait_until(lambda: self.js("return document.body.dataset.ready") == "true",
                       message="the model list")  # fmt: skip
        return self

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def fill(self, element_id: str, text: str) -> None:
        element = self.driver.find_element("id", element_id)
        element.clear()
        if text:
            element.send_keys(text)

    def set_settings(
        self, *, system: str = "", temperature: str = "", max_tokens: str = ""
    ) -> None:
        self.js("document.getElementById('settings-panel').open = true")
        self.fill("system", system)
        self.fill("temperature", temperature)
        self.fill("max-tokens", max_tokens)

    def send(self, text: str) -> None:
        wait_until(lambda: self.js("return !document.getElementById('send').disabled"),
                   message="the send button")  # fmt: skip
        self.fill("prompt", text)
        self.driver.find_element("id", "send").click()

    def click(self, element_id: str) -> None:
        self.driver.find_element("id", element_id).click()

    def replies(self) -> list[dict[str, str]]:
        """Every assistant message: its state, text, reasoning and note."""
        return list(
            self.js(
                """return [...document.querySelectorAll('.msg.assistant')].map((m) => ({
                    state: m.dataset.state,
                    text: m.querySelector('.content').textContent,
                    reasoning: m.querySelector('.reasoning-text').textContent,
                    reasoningShown: !m.querySelector('.reasoning').hidden,
                    note: m.querySelector('.note').textContent,
                }))"""
            )
        )

    def last_reply(self, *, finished: bool = True, timeout: float = 10.0) -> dict[str, str]:
        def ready() -> dict[str, str] | None:
            replies = self.replies()
            if not replies:
                return None
            if finished and replies[-1]["state"] == "streaming":
                return None
            return replies[-1]

        return dict(wait_until(ready, timeout, "the reply"))

    def error(self) -> str:
        return str(
            self.js(
                "const e = document.getElementById('error'); return e.hidden ? '' : e.textContent"
            )
        )

    def resources(self) -> list[str]:
        """Every URL the page has requested (documents, scripts, fetches)."""
        return list(
            self.js(
                "return [location.href, ...performance.getEntriesByType('resource').map((e) => e.name)]"
            )
        )

    def console_problems(self) -> list[str]:
        """Script errors and Content-Security-Policy violations logged by the browser."""
        entries = self.driver.get_log("browser")
        return [
            e["message"]
            for e in entries
            if "Content Security Policy" in e["message"] or "Uncaught" in e["message"]
        ]


def screenshot(driver: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
