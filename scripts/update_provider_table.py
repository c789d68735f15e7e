"""Rewrite the provider table in README.md from llmkit's provider data
(tests/test_providers.py fails when the two differ)."""

from __future__ import annotations

from pathlib import Path

from llmkit._providers import markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"
lines = README.read_text().splitlines(keepends=True)
start = next(i for i, line in enumerate(lines) if line.startswith("| provider | backend |"))
end = start
while end < len(lines) and lines[end].startswith("|"):
    end += 1
README.write_text("".join(lines[:start]) + markdown_table() + "".join(lines[end:]))
