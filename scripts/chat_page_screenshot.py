"""Take ``docs/chat-page.png``: the chat page of ``llmkit serve`` in headless Chromium.

Serves a model (default: the embedded ``hf:smollm2``; ``--model fake:echo`` needs nothing)
on 127.0.0.1, holds a two-turn conversation through the page, and saves a screenshot::

    PYTHONPATH=. python scripts/chat_page_screenshot.py [--model SPEC] [--out PATH]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from llmkit import AsyncClient
from llmkit.server import create_app, run_in_thread

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1000,900", "--force-device-scale-factor=1",
)  # fmt: skip

TURNS = ("What is the capital of France?", "Write a Python one-liner that prints it.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hf:smollm2")
    parser.add_argument("--out", default="docs/chat-page.png")
    args = parser.parse_args()
    client = AsyncClient(args.model)
    load = getattr(client.backend, "load", None)
    if load is not None:
        load()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in FLAGS:
        options.add_argument(flag)
    with (
        tempfile.TemporaryDirectory() as profile,
        run_in_thread(create_app(client, max_tokens_cap=96, close_client=True)) as base_url,
    ):
        options.add_argument(f"--user-data-dir={profile}")
        service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
        driver = webdriver.Chrome(options=options, service=service)
        try:
            driver.get(f"{base_url}/")
            _wait(lambda: driver.execute_script("return document.body.dataset.ready") == "true")
            driver.execute_script("document.getElementById('settings-panel').open = true")
            driver.find_element("id", "system").send_keys("You are a concise assistant.")
            driver.find_element("id", "temperature").send_keys("0")
            for turn in TURNS:
                driver.find_element("id", "prompt").send_keys(turn)
                driver.find_element("id", "send").click()
                _wait(lambda: driver.execute_script("return document.body.dataset.busy") == "false")
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
            print(f"wrote {args.out}")
        finally:
            driver.quit()


def _wait(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    time.sleep(0.2)
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        time.sleep(0.1)


if __name__ == "__main__":
    main()
