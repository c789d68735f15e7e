"""Tables, target verdicts and the Markdown page of ``python -m benchmarks`` (from its JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PEERS = ("LiteLLM", "any-llm", "any-llm completion()")
LLMKIT = ("llmkit openai:", "llmkit rest:")
BASE = "raw httpx"


def _table(headers: list[str], rows: list[list[str]], *, numeric: bool = True) -> str:
    """A Markdown pipe table, padded so it also reads as plain text; all columns but the
    first right-aligned when ``numeric``."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
            out.append(c.rjust(w) if i and numeric else c.ljust(w))
        return "| " + " | ".join(out) + " |"

    sep = (
        "| "
        + " | ".join(
            "-" * (w - 1) + ":" if i and numeric else "-" * w for i, w in enumerate(widths)
        )
        + " |"
    )
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def _x(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else "-"


def import_table(results: dict[str, Any]) -> str:
    imports = results["imports"]
    bare = {
        env: row["wall"]
        for row in imports.values()
        if row["code"] == "pass"
        for env in [row["env"]]
    }
    kit = imports.get("import llmkit", {}).get("wall")
    rows = []
    for label, row in imports.items():
        over = row["wall"] - bare.get(row["env"], 0.0)
        rows.append(
            [
                f"`{row['code']}`" if row["code"] != "pass" else label,
                f"{row['wall'] * 1e3:.0f}",
                "" if row["code"] == "pass" else f"{over * 1e3:+.0f}",
                f"{row['cpu'] * 1e3:.0f}",
                "" if row["code"] == "pass" else _x(row["wall"], kit),
            ]
        )
    return _table(
        ["cold import", "wall ms", "vs bare python, ms", "CPU ms", "x import llmkit"], rows
    )


def client_table(results: dict[str, Any]) -> str:
    clients = results["clients"]
    base = clients.get(BASE, {})
    rows = []
    for name, row in clients.items():
        cells = [name]
        for op, unit in (("chat", 1e6), ("stream", 1e6)):
            m = row.get(op)
            if not m:
                cells += ["-", "-", "-"]
                continue
            b = base.get(op, {})
            cells += [
                f"{m['wall'] * unit:.1f}",
                f"{m['cpu'] * unit:.1f}",
                _x(m["wall"], b.get("wall")),
            ]
        rows.append(cells)
    return _table(
        [
            "client",
            "per call µs",
            "CPU µs",
            "x raw httpx",
            "per chunk µs",
            "CPU µs",
            "x raw httpx",
        ],
        rows,
    )


def burst_table(results: dict[str, Any]) -> str | None:
    clients = results["clients"]
    base = clients.get(BASE, {}).get("burst", {})
    rows = []
    for name, row in clients.items():
        b = row.get("burst")
        if not b:
            continue
        rows.append(
            [
                name,
                f"{b['wall']:.2f}",
                f"{b['requests'] / b['wall']:.0f}",
                f"{b['cpu']:.2f}",
                str(b["failed"]),
                _x(b["wall"], base.get("wall")),
            ]
        )
    if not rows:
        return None
    n = next(iter(r["burst"]["requests"] for r in clients.values() if r.get("burst")))
    return _table(
        [f"{n:,} concurrent async calls", "wall s", "req/s", "CPU s", "failed", "x raw httpx"], rows
    )


def hf_table(results: dict[str, Any]) -> str | None:
    hf = results.get("hf")
    if not hf:
        return None
    rows = []
    for key, label, unit, fmt in (
        ("tokens_per_s", f"tokens/s, plain ({hf['tokens']} tokens)", 1, "{:.1f}"),
        ("stream_tokens_per_s", "tokens/s, streamed", 1, "{:.1f}"),
        ("ttft_s", "time to first token, ms", 1e3, "{:.0f}"),
    ):
        kit, raw = hf[key]["llmkit"], hf[key]["raw"]
        rows.append([label, fmt.format(kit * unit), fmt.format(raw * unit), f"{kit / raw:.2f}x"])
    return _table([hf["source"], "llmkit", "raw transformers", "llmkit / raw"], rows)


def verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each ``{"target", "value", "ok"}`` (``ok`` None: not measured)."""
    out: list[dict[str, Any]] = []
    imports = results["imports"]
    bare = imports.get("python (bare)", {}).get("wall")
    lite = imports.get("import litellm", {}).get("wall")
    # The target names `import llmkit`, which is lazy; `from llmkit import Client`
    # (what an application runs) is checked against the same bars as the stricter reading.
    for label, code in (
        ("import llmkit", "`import llmkit`"),
        ("from llmkit import Client", "`from llmkit import Client`"),
    ):
        kit = imports.get(label, {}).get("wall")
        if bare and kit:
            over = (kit - bare) * 1e3
            out.append(
                {
                    "target": f"{code} under 100 ms more than bare Python",
                    "value": f"{over:+.0f} ms",
                    "ok": over < 100,
                }
            )
        out.append(
            {
                "target": f"{code} at least 10x faster than `import litellm`",
                "value": f"{lite / kit:.1f}x" if lite and kit else "not measured",
                "ok": (lite / kit >= 10) if lite and kit else None,
            }
        )
    clients = results["clients"]
    peers = [p for p in PEERS if p in clients]
    for op, what in (("chat", "per-call"), ("stream", "per-chunk")):
        for kit_name in LLMKIT:
            mine = clients.get(kit_name, {}).get(op)
            theirs = {p: clients[p][op]["wall"] for p in peers if clients[p].get(op)}
            if not mine or not theirs:
                ok, value = None, "not measured"
            else:
                best = min(theirs, key=lambda p: theirs[p])
                ok = mine["wall"] <= theirs[best]
                value = (
                    f"{mine['wall'] * 1e6:.1f} µs vs {best} {theirs[best] * 1e6:.1f} µs "
                    f"({mine['wall'] / theirs[best]:.2f}x)"
                )
            out.append(
                {
                    "target": f"{kit_name} {what} time at or below every peer's",
                    "value": value,
                    "ok": ok,
                }
            )
    return out


def _mark(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[ok]


def targets_table(results: dict[str, Any]) -> str:
    return _table(
        ["target", "measured", "verdict"],
        [[t["target"], t["value"], _mark(t["ok"])] for t in results["targets"]],
        numeric=False,
    )


def sections(results: dict[str, Any]) -> list[tuple[str, str]]:
    out = [("Cold import time", import_table(results))]
    if results["clients"]:
        chunks = results["settings"]["chunks"]
        out.append(
            (
                f"Per call (non-streamed) and per chunk (streamed, {chunks} chunks), sync",
                client_table(results),
            )
        )
    burst = burst_table(results)
    if burst:
        out.append(("Concurrency", burst))
    hf = hf_table(results)
    if hf:
        out.append(("hf: backend vs raw transformers", hf))
    out.append(("Targets", targets_table(results)))
    return out


def print_tables(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(
        f"\n{results['date']}: {m['cpu_count']} CPUs ({m['cpu']}), Python {m['python']}, "
        f"load average {results['load_average_start']:.1f} -> {results['load_average_end']:.1f}, "
        f"{results['elapsed_s']:.0f} s"
    )
    for title, table in sections(results):
        print(f"\n{title}\n{table}")
    for note in results["notes"]:
        print(f"note: {note}")


INTRO = """\
# Benchmarks

<!-- Written by `python -m benchmarks` (benchmarks/__main__.py and benchmarks/report.py):
     edit those, not this page. -->

One command measures llmkit side by side with the libraries it wraps and with its peers, in
one run, against a local OpenAI-compatible mock server on 127.0.0.1:

```bash
python -m benchmarks              # the full run, about 5 minutes on 2 cores
python -m benchmarks --quick      # fewer rounds, runs, requests and tokens: about 1.5 minutes
python -m benchmarks --skip-hf    # without the hf: part (no torch needed)
python -m benchmarks --no-peers   # without LiteLLM and any-llm
```

It prints the tables below and writes this page, `docs/benchmarks.json` (every figure, with
the settings) and the chart.

## What is measured

- **Cold import time**: a fresh interpreter per run (`python -c "import llmkit"`, ...),
  wall clock from outside (interpreter start-up included) and the child's CPU time, the
  targets interleaved run by run, median of several runs. `import llmkit` loads its public
  names lazily, so `from llmkit import Client` -- what an application runs -- is shown too.
  Each environment's bare interpreter is its own baseline: in the project's `.venv` llmkit is
  installed editable, and that install's path finder adds some 30 ms to every start-up there.
- **Per call**: a non-streamed chat call, sync; **per chunk**: a streamed chat call (each
  stream the same number of content chunks) divided by its chunk count, sync. Each client is
  used the way its documentation shows: the raw `openai` SDK with its own default HTTP client
  and with a plain `httpx.Client` injected (what llmkit does), raw `httpx` as a hand-written
  client would use it (the floor), llmkit's public `Client("openai:...")` and
  `Client("rest:...")` with their defaults (retries, timeouts, typed responses, usage totals),
  LiteLLM's `litellm.completion(model="openai/<name>", api_base=url, api_key=...)`, any-llm's
  `AnyLLM.create("openai", api_base=url, ...)` instance and its module-level
  `any_llm.completion(...)` (a provider built per call; at some 50 ms a call it is left out
  of the concurrency burst and of `--quick`).
- **Concurrency**: a burst of concurrent async chat calls (`asyncio.gather`), each client
  with at most 64 in flight: llmkit's default `max_concurrency`, an `asyncio.Semaphore` of the
  same size for the others (without a cap, a thousand requests queued in httpx's pool end in
  `PoolTimeout`).
- **hf:** tokens per second of a plain and of a streamed answer, and time to first token,
  llmkit's `Client("hf:smollm2")` next to raw transformers `model.generate` (and `generate`
  with a `TextIteratorStreamer` in a thread for the streamed answer) on the same model, prompt
  and dtype, every generation forced to the same number of new tokens.

Every client runs in a process of its own (`benchmarks/peers.py`); the rounds go through them
in turn, the order rotated every round, so load from elsewhere on the machine hits them alike.
Figures are medians over rounds; the batch of calls per round is sized to take about the
same time for every client. LiteLLM and any-llm are installed by the command itself into a
separate environment, `.venv-peers` (`pip install litellm any-llm-sdk`), and run their
contender script there; they bring their own `openai` and `httpx` versions (shown below).
LiteLLM runs with `LITELLM_LOCAL_MODEL_COST_MAP=True` (otherwise every import tries to fetch
a price list from the internet) and with its repeated-chunk guard raised (the mock server's
chunks are all alike, which LiteLLM would take for a looping model).

The mock server answers from pre-rendered replies and costs next to nothing per request, so
the differences between rows are the clients' own cost; a real model server adds its own
latency on top, the same for every client. The machine is small and shared: read ratios, not
absolute figures, and expect a few percent of noise.
"""


def write_markdown(results: dict[str, Any], path: Path, *, chart: bool) -> None:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    peers = ", ".join(f"{k} {v}" for k, v in results.get("peers_versions", {}).items())
    parts = [
        INTRO,
        "## Results\n",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}; the run took {results['elapsed_s']:.0f} s",
        f"- Machine: {m['cpu_count']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}; "
        f"load average {results['load_average_start']:.1f} at the start, "
        f"{results['load_average_end']:.1f} at the end",
        f"- Libraries: {versions}",
    ]
    if peers:
        parts.append(f"- `.venv-peers`: {peers}")
    s = results["settings"]
    parts.append(
        f"- Settings: {s['rounds']} rounds, {s['import_runs']} runs per import figure, "
        f"{s['chunks']} chunks per stream, {s['requests']} requests per burst"
        + (
            f"; hf {results['hf']['tokens']} tokens x {results['hf']['repeats']} repeats, "
            f"{results['hf']['threads']} torch threads"
            if results.get("hf")
            else ""
        )
    )
    parts.append("")
    if chart:
        parts.append("![llmkit and its peers, side by side](benchmarks.png)\n")
    for title, table in sections(results):
        parts.append(f"### {title}\n\n{table}\n")
    if results["notes"]:
        parts.append("### Notes\n")
        parts += [f"- {n}" for n in results["notes"]]
        parts.append("")
    path.write_text("\n".join(parts).rstrip() + "\n")
