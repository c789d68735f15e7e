"""Draw the chart of ``python -m benchmarks`` from its JSON (needs matplotlib only).

    python benchmarks/chart.py docs/benchmarks.json docs/benchmarks.png

The orchestrator runs this with whichever interpreter has matplotlib (the project's own
environment does not need it; ``.venv-peers`` gets it installed).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter

LLMKIT = "#1f6feb"
RAW = "#8b949e"
PEER = "#d29922"


def colour(name: str) -> str:
    if "bare" in name:
        return RAW
    if name.startswith(("llmkit", "import llmkit", "from llmkit")):
        return LLMKIT
    if any(p in name.lower() for p in ("litellm", "any-llm", "any_llm", "peers")):
        return PEER
    return RAW


def bars(ax: Any, title: str, items: list[tuple[str, float]], unit: str) -> None:
    names = [n for n, _ in items][::-1]
    values = [v for _, v in items][::-1]
    ax.barh(names, values, color=[colour(n) for n in names])
    # A log scale only where the values span more than a decade and a bit.
    log = max(values) > 20 * min(values)
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        unit += " (log scale)"
    top = max(values)
    for y, v in enumerate(values):
        label = f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
        ax.text(
            v * (1.05 if log else 1) + (0 if log else top * 0.01), y, label, va="center", fontsize=8
        )
    ax.set_xlim(right=top * (4 if log else 1.25))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(unit, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def main() -> None:
    with open(sys.argv[1]) as f:
        results = json.load(f)
    clients = results["clients"]
    panels: list[tuple[str, list[tuple[str, float]], str]] = []
    imports = results["imports"]
    if imports:
        panels.append(
            (
                "cold import (fresh interpreter, wall)",
                [
                    (label if row["code"] == "pass" else row["code"], row["wall"] * 1e3)
                    for label, row in imports.items()
                ],
                "ms",
            )
        )
    for op, title in (("chat", "per non-streamed call"), ("stream", "per streamed chunk")):
        items = [(n, r[op]["wall"] * 1e6) for n, r in clients.items() if r.get(op)]
        if items:
            panels.append((title + ", sync (lower is better)", items, "µs"))
    items = [
        (n, r["burst"]["requests"] / r["burst"]["wall"])
        for n, r in clients.items()
        if r.get("burst")
    ]
    if items:
        n = next(r["burst"]["requests"] for r in clients.values() if r.get("burst"))
        panels.append((f"{n:,} concurrent async calls (higher is better)", items, "requests/s"))
    hf = results.get("hf")
    if hf:
        items = [
            ("llmkit hf:, plain", hf["tokens_per_s"]["llmkit"]),
            ("raw generate, plain", hf["tokens_per_s"]["raw"]),
            ("llmkit hf:, streamed", hf["stream_tokens_per_s"]["llmkit"]),
            ("raw generate + streamer", hf["stream_tokens_per_s"]["raw"]),
        ]
        panels.append((f"{hf['source']} tokens/s (higher is better)", items, "tokens/s"))
        items = [
            ("llmkit hf: stream", hf["ttft_s"]["llmkit"] * 1e3),
            ("raw generate + streamer", hf["ttft_s"]["raw"] * 1e3),
        ]
        panels.append((f"{hf['source']} time to first token (lower is better)", items, "ms"))

    cols = 2
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3.4 * rows), squeeze=False)
    for ax, (title, items, unit) in zip(axes.flat, panels, strict=False):
        bars(ax, title, items, unit)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    m = results["machine"]
    fig.suptitle(
        f"python -m benchmarks, {results['date']}: {m['cpu_count']} CPUs, Python {m['python']}"
        "  (blue: llmkit, grey: raw libraries, orange: peers)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
