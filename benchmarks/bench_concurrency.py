"""1,000 concurrent requests: llmkit's ``AsyncClient`` (``rest:`` backend) next to raw httpx.

Both send the same burst -- ``--requests`` chat calls started at once with
``asyncio.gather`` -- to the same local OpenAI-compatible mock server
(benchmarks/mock_server.py, in a subprocess so it never competes with the client for the GIL).

- "raw httpx" is what a careful hand-written client does: one ``httpx.AsyncClient()`` with its
  default pool, an ``asyncio.Semaphore`` with llmkit's ``max_concurrency`` in front of it (without
  a cap, 1,000 requests queued inside httpcore's pool take minutes and end in ``PoolTimeout``),
  ``json=`` payload, ``.json()`` on the reply and the content picked out;
- "raw httpx, llmkit's client" is the same hand-written code on the ``httpx.AsyncClient``
  llmkit itself uses (``llmkit._http.build_async_client``: llmkit's pool limits, and its
  quicker idle-connection check, see llmkit/_http/pool.py), to separate what llmkit's HTTP set-up
  saves from what llmkit's own code costs. This is the like-for-like comparison for
  llmkit's code; the plain "raw httpx" one is what a user switching to llmkit sees (with
  httpx's default ``keepalive_expiry`` of 5 s its idle connections also expire while the
  other contenders run their bursts, so it reconnects at the start of every burst);
- "llmkit" is ``AsyncClient("rest:MODEL", base_url=...)`` with its defaults (a
  ``max_concurrency`` cap in front of the pool, retries, timeouts, typed responses, usage
  totals), ``await client.chat(prompt)`` per request.

Each round times one burst per contender, the order swapped every round so drift hits both
alike. Reported: the median wall time, the median CPU time of this (client) process -- far
less sensitive than wall time to other load on a shared machine, and the honest measure of
client overhead, since the server runs in another process -- and the median of the per-round
ratios (each round's llmkit burst against the raw burst run right next to it), and llmkit's
CPU per request over raw httpx's. Peak memory is measured in separate passes with tracemalloc
(it slows Python down, so it never overlaps a timed pass): the peak of Python allocations
during one burst, client construction excluded, the median of three passes per contender
(interleaved: the peak depends on how many replies happen to be in flight at once). Both sides keep the same thing per request
(the reply's text) and start all requests at once, so what differs is what each holds per
request while it waits for a slot or a reply. Target: llmkit within 10% of raw httpx on wall
time.

    python benchmarks/bench_concurrency.py
    python benchmarks/bench_concurrency.py --requests 1000 --rounds 7 --stream
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_server import MockServer

from llmkit import AsyncClient, Timeout
from llmkit._http import build_async_client
from llmkit.client import DEFAULT_MAX_CONCURRENCY

MODEL = "my-model"

Burst = Callable[[int], Awaitable[list[str]]]


def _payload(i: int, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"request {i}"}],
    }
    if stream:
        body["stream"] = True
    return body


def raw_burst(client: httpx.AsyncClient, url: str, stream: bool, cap: int) -> Burst:
    """The raw httpx contender: a plain POST per request (or a hand-rolled SSE loop), at most
    ``cap`` in flight."""

    async def one(i: int) -> str:
        async with gate:
            return await send(i)

    async def send(i: int) -> str:
        if not stream:
            response = await client.post(url + "/chat/completions", json=_payload(i, False))
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"])
        parts: list[str] = []
        async with client.stream(
            "POST", url + "/chat/completions", json=_payload(i, True)
        ) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:]).get("choices") or ():
                    parts.append(choice["delta"].get("content") or "")
        return "".join(parts)

    async def burst(n: int) -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(n))))

    gate = asyncio.Semaphore(cap)
    return burst


def llmkit_burst(client: AsyncClient, stream: bool) -> Burst:
    """The llmkit contender: ``client.chat`` (or ``client.stream``) per request."""

    async def one(i: int) -> str:
        if not stream:
            return (await client.chat(f"request {i}")).text
        async with client.stream(f"request {i}") as s:
            return "".join([event.text async for event in s])

    async def burst(n: int) -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(n))))

    return burst


async def timed(burst: Burst, n: int) -> tuple[float, float]:
    """Wall and CPU seconds of one burst."""
    gc.collect()
    cpu = time.process_time()
    started = time.perf_counter()
    results = await burst(n)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if len(results) != n or not all(results):
        raise RuntimeError("a request came back empty")
    return elapsed, cpu


async def peak_memory(burst: Burst, n: int) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        await burst(n)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def run(args: argparse.Namespace, url: str) -> None:
    raw_client = httpx.AsyncClient(timeout=60)
    raw_pooled = build_async_client(timeout=Timeout(60))
    cap = args.max_concurrency or DEFAULT_MAX_CONCURRENCY
    kit_client = AsyncClient(f"rest:{MODEL}", base_url=url, max_concurrency=cap)
    contenders: dict[str, Burst] = {
        "raw httpx": raw_burst(raw_client, url, args.stream, cap),
        "raw httpx, llmkit's client": raw_burst(raw_pooled, url, args.stream, cap),
        "llmkit": llmkit_burst(kit_client, args.stream),
    }
    try:
        for burst in contenders.values():  # warm-up: pools filled, code paths imported
            await burst(min(args.requests, 200))
        times: dict[str, list[float]] = {name: [] for name in contenders}
        cpus: dict[str, list[float]] = {name: [] for name in contenders}
        names = list(contenders)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                wall, cpu = await timed(contenders[name], args.requests)
                times[name].append(wall)
                cpus[name].append(cpu)
        samples: dict[str, list[int]] = {name: [] for name in contenders}
        for _ in range(3):
            for name, burst in contenders.items():
                samples[name].append(await peak_memory(burst, args.requests))
        peaks = {name: statistics.median(values) for name, values in samples.items()}
    finally:
        await raw_client.aclose()
        await raw_pooled.aclose()
        await kit_client.aclose()

    kind = "streamed" if args.stream else "plain"
    print(
        f"{args.requests} concurrent {kind} chat requests, median of {args.rounds} rounds "
        f"(mock server in a subprocess, chunks={args.chunks}, max_concurrency={cap})"
    )
    header = f"{'':28} {'wall (s)':>9} {'req/s':>7} {'min (s)':>8} {'CPU (s)':>8} {'peak MiB':>9}"
    print(header)
    for name in contenders:
        med = statistics.median(times[name])
        print(
            f"{name:28} {med:9.3f} {args.requests / med:7.0f} {min(times[name]):8.3f} "
            f"{statistics.median(cpus[name]):8.3f} {peaks[name] / 2**20:9.1f}"
        )

    n = args.requests

    def paired(a: dict[str, list[float]], b: str) -> float:
        return statistics.median(x / y for x, y in zip(a["llmkit"], a[b], strict=True))

    for baseline in ("raw httpx", "raw httpx, llmkit's client"):
        wall_ratio, cpu_ratio = paired(times, baseline), paired(cpus, baseline)
        verdict = "within" if wall_ratio <= 1.10 else "OUTSIDE"
        extra = (statistics.median(cpus["llmkit"]) - statistics.median(cpus[baseline])) / n
        print(
            f"llmkit / {baseline}: wall {wall_ratio:.2f}x ({verdict} the 10% target), "
            f"CPU {cpu_ratio:.2f}x ({extra * 1e6:+.0f} us CPU per request)"
        )
    for baseline in ("raw httpx", "raw httpx, llmkit's client"):
        extra_mem = (peaks["llmkit"] - peaks[baseline]) / n / 1024
        print(
            f"peak memory llmkit / {baseline}: {peaks['llmkit'] / peaks[baseline]:.2f}x "
            f"({extra_mem:+.1f} KiB per request)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per reply")
    parser.add_argument("--stream", action="store_true", help="streamed replies (SSE)")
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=0,
        help="requests in flight, for llmkit and the raw cap (default: llmkit's default)",
    )
    args = parser.parse_args()
    with MockServer(chunks=args.chunks) as url:
        asyncio.run(run(args, url))


if __name__ == "__main__":
    main()
