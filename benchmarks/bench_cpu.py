"""Client CPU time per call and per streamed chunk: ``Client("rest:...")`` next to raw httpx.

:mod:`bench_rest` times the ``rest`` backend alone; this one times the whole client (input
normalisation, options, the call plan, slots, hooks, usage totals, the response) as an
application sees it. The figure is the CPU time of this process (``time.process_time``):
the mock server runs in a subprocess, so what is counted is only what the client spends,
and it is steadier than wall time on a shared machine (wall time also counts the server and
the loopback, which hide the client's share). The contenders alternate call by call, order
swapped each time; each figure is the median over rounds.

Targets (issue 14): per call <= 1.15x raw httpx, per stream chunk <= 1.3x.

    python benchmarks/bench_cpu.py
    python benchmarks/bench_cpu.py --calls 2000 --chunks 200 --streams 20 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_rest import HEADERS, KEY, MODEL, raw_achat, raw_astream, raw_chat, raw_stream
from mock_server import MockServer

from llmkit import AsyncClient, Client, RetryPolicy

TARGETS = {"call": 1.15, "chunk": 1.30}


def _cpu_ratio(name: str, raws: list[float], clients: list[float], target: float) -> dict[str, Any]:
    raw, ours = statistics.median(raws), statistics.median(clients)
    ratio = ours / raw
    verdict = "ok" if ratio <= target else "OVER TARGET"
    print(
        f"{name:<26} cpu: raw httpx {raw * 1e6:7.1f} us  llmkit {ours * 1e6:7.1f} us  "
        f"ratio {ratio:4.2f} (target <= {target:.2f}: {verdict})",
        flush=True,
    )
    return {"name": name, "raw": raw, "llmkit": ours, "ratio": ratio, "ok": ratio <= target}


def compare(
    name: str, raw: Callable[[], object], ours: Callable[[], object], n: int, per: int,
    rounds: int, target: float,
) -> dict[str, Any]:  # fmt: skip
    raws: list[float] = []
    clients: list[float] = []
    for _ in range(rounds):
        totals = {"raw": 0.0, "llmkit": 0.0}
        pair = [("raw", raw), ("llmkit", ours)]
        for j in range(n):
            for key, fn in pair if j % 2 == 0 else pair[::-1]:
                cpu = time.process_time()
                fn()
                totals[key] += time.process_time() - cpu
        raws.append(totals["raw"] / n / per)
        clients.append(totals["llmkit"] / n / per)
    return _cpu_ratio(name, raws, clients, target)


async def acompare(
    name: str, raw: Callable[[], Awaitable[object]], ours: Callable[[], Awaitable[object]],
    n: int, per: int, rounds: int, target: float,
) -> dict[str, Any]:  # fmt: skip
    raws: list[float] = []
    clients: list[float] = []
    for _ in range(rounds):
        totals = {"raw": 0.0, "llmkit": 0.0}
        pair = [("raw", raw), ("llmkit", ours)]
        for j in range(n):
            for key, fn in pair if j % 2 == 0 else pair[::-1]:
                cpu = time.process_time()
                await fn()
                totals[key] += time.process_time() - cpu
        raws.append(totals["raw"] / n / per)
        clients.append(totals["llmkit"] / n / per)
    return _cpu_ratio(name, raws, clients, target)


def run(calls: int, chunks: int, streams: int, rounds: int) -> list[dict[str, Any]]:
    """All four figures (sync and async; per call and per chunk) against one mock server."""
    results: list[dict[str, Any]] = []
    # The same retry policy as the default, spelled out: the figure includes the plan.
    options = {"base_url": None, "api_key": KEY, "retry": RetryPolicy()}
    with MockServer(chunks=chunks) as url:
        options["base_url"] = url
        raw = httpx.Client(headers=HEADERS)
        with Client(f"rest:{MODEL}", **options) as client:

            def chat() -> str:
                return client.chat("Say hello", temperature=0.0, max_tokens=64).text

            def stream() -> int:
                with client.stream("Say hello", temperature=0.0, max_tokens=64) as s:
                    return sum(1 for event in s if event.text)

            for _ in range(50):  # warm up: connections, imports, caches
                chat()
                raw_chat(raw, url)
            assert stream() == raw_stream(raw, url) == chunks
            results.append(
                compare(
                    "sync chat, per call",
                    lambda: raw_chat(raw, url),
                    chat,
                    calls,
                    1,
                    rounds,
                    TARGETS["call"],
                )
            )
            results.append(
                compare(
                    "sync stream, per chunk",
                    lambda: raw_stream(raw, url),
                    stream,
                    streams,
                    chunks,
                    rounds,
                    TARGETS["chunk"],
                )
            )
        raw.close()

        async def async_part() -> None:
            araw = httpx.AsyncClient(headers=HEADERS)
            async with AsyncClient(f"rest:{MODEL}", **options) as aclient:

                async def achat() -> str:
                    r = await aclient.chat("Say hello", temperature=0.0, max_tokens=64)
                    return r.text

                async def astream() -> int:
                    n = 0
                    async with aclient.stream("Say hello", temperature=0.0, max_tokens=64) as s:
                        async for event in s:
                            n += bool(event.text)
                    return n

                for _ in range(50):
                    await achat()
                    await raw_achat(araw, url)
                results.append(
                    await acompare(
                        "async chat, per call",
                        lambda: raw_achat(araw, url),
                        achat,
                        calls,
                        1,
                        rounds,
                        TARGETS["call"],
                    )
                )
                results.append(
                    await acompare(
                        "async stream, per chunk",
                        lambda: raw_astream(araw, url),
                        astream,
                        streams,
                        chunks,
                        rounds,
                        TARGETS["chunk"],
                    )
                )
            await araw.aclose()

        asyncio.run(async_part())
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="plain calls per round")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--streams", type=int, default=20, help="streams per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="a last line of JSON results")
    args = parser.parse_args()
    results = run(args.calls, args.chunks, args.streams, args.rounds)
    if args.json:
        print(json.dumps(results))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
