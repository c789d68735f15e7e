"""Per-call and per-chunk cost of llmkit's ``rest`` backend next to raw httpx.

Both talk to the same local OpenAI-compatible mock server (benchmarks/mock_server.py, in a
subprocess so it never competes with the client for the GIL). "raw httpx" is the least a
hand-written client does: one pooled ``httpx.Client``, ``json=`` payload, ``.json()`` on the
reply; for streams ``iter_lines()`` + ``json.loads`` of each ``data:`` line and the delta text
picked out, reading on to the end of the body as the backend does (so both keep their
connections alive; a client that closes the response right after ``[DONE]`` throws its
connection away). The rest backend does all llmkit does per call: build the ``ChatRequest`` (as the
client does), replica selection, timeouts, the SSE decoder, typed events, a validated
``ChatResponse``.

The contenders alternate call by call (the order swapped each time) so drift and load from
elsewhere hit both alike; each figure is the median over rounds. Targets: per call within 15% of raw httpx, per streamed chunk within
50%, and 500 concurrent async requests through one backend without an error.

    python benchmarks/bench_rest.py
    python benchmarks/bench_rest.py --calls 1000 --chunks 500 --streams 20 --rounds 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_server import MockServer

from llmkit.backends.rest import RestBackend
from llmkit.types import ChatRequest, GenerationParams, Message

MODEL = "my-model"
KEY = "sk-bench-000000000000"
PAYLOAD = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "Say hello"}],
    "temperature": 0.0,
    "max_tokens": 64,
}
HEADERS = {"authorization": f"Bearer {KEY}"}


def request() -> ChatRequest:
    # Built per call, as the client does, so its cost is part of llmkit's figure.
    return ChatRequest(
        model=MODEL,
        messages=[Message.user("Say hello")],
        params=GenerationParams(temperature=0.0, max_tokens=64),
    )


# ---------------------------------------------------------------------------- contenders


def raw_chat(client: httpx.Client, url: str) -> str:
    data = client.post(url + "/chat/completions", json=PAYLOAD).json()
    return str(data["choices"][0]["message"]["content"])


async def raw_achat(client: httpx.AsyncClient, url: str) -> str:
    data = (await client.post(url + "/chat/completions", json=PAYLOAD)).json()
    return str(data["choices"][0]["message"]["content"])


def _delta(line: str, out: list[str]) -> bool:
    if not line.startswith("data: "):
        return True
    data = line[6:]
    if data == "[DONE]":
        return False
    obj = json.loads(data)
    for choice in obj.get("choices") or ():
        text = choice["delta"].get("content")
        if text:
            out.append(text)
    return True


def raw_stream(client: httpx.Client, url: str) -> int:
    out: list[str] = []
    payload = {**PAYLOAD, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", url + "/chat/completions", json=payload) as response:
        done = False
        for line in response.iter_lines():  # read to the end: the connection is reused
            done = done or not _delta(line, out)
    return len(out)


async def raw_astream(client: httpx.AsyncClient, url: str) -> int:
    out: list[str] = []
    payload = {**PAYLOAD, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream("POST", url + "/chat/completions", json=payload) as response:
        done = False
        async for line in response.aiter_lines():
            done = done or not _delta(line, out)
    return len(out)


def rest_stream(backend: RestBackend) -> int:
    return sum(1 for event in backend.stream(request()) if event.text)


async def rest_astream(backend: RestBackend) -> int:
    n = 0
    async for event in backend.astream(request()):
        if event.text:
            n += 1
    return n


# ---------------------------------------------------------------------------- timing


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """One call's seconds: wall clock, and CPU time of this (the client's) process."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


async def atimed(fn: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    await fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def report(
    name: str, raws: list[tuple[float, float]], rests: list[tuple[float, float]], target: float
) -> dict[str, Any]:
    """Print medians side by side. The verdict reads wall-clock time; the client process's
    CPU time is shown too, as it is steadier on a busy machine."""
    raw = statistics.median(w for w, _ in raws)
    rest = statistics.median(w for w, _ in rests)
    raw_cpu = statistics.median(c for _, c in raws)
    rest_cpu = statistics.median(c for _, c in rests)
    ratio = rest / raw
    verdict = "ok" if ratio <= 1 + target else "OVER TARGET"
    print(
        f"{name:<24} wall: raw httpx {raw * 1e6:8.1f} us  rest {rest * 1e6:8.1f} us  "
        f"ratio {ratio:4.2f} (target <= {1 + target:.2f}: {verdict})   "
        f"cpu: {raw_cpu * 1e6:7.1f} vs {rest_cpu * 1e6:7.1f} us  ratio {rest_cpu / raw_cpu:4.2f}",
        flush=True,
    )
    return {"name": name, "raw": raw, "rest": rest, "ratio": ratio, "ok": ratio <= 1 + target}


def compare(
    name: str,
    raw: Callable[[], object],
    rest: Callable[[], object],
    n: int,
    per: int,
    rounds: int,
    target: float,
) -> dict[str, Any]:
    """Median seconds per unit (``n`` calls of ``per`` units each, a round) of both.

    The contenders alternate call by call (order swapped each time), so load from elsewhere
    on the machine hits both alike."""
    raws: list[tuple[float, float]] = []
    rests: list[tuple[float, float]] = []
    for _ in range(rounds):
        totals = {"raw": [0.0, 0.0], "rest": [0.0, 0.0]}
        for j in range(n):
            pair = [("raw", raw), ("rest", rest)]
            for key, fn in pair if j % 2 == 0 else pair[::-1]:
                wall, cpu = timed(fn)
                totals[key][0] += wall
                totals[key][1] += cpu
        raws.append((totals["raw"][0] / n / per, totals["raw"][1] / n / per))
        rests.append((totals["rest"][0] / n / per, totals["rest"][1] / n / per))
    return report(name, raws, rests, target)


async def acompare(
    name: str,
    raw: Callable[[], Awaitable[object]],
    rest: Callable[[], Awaitable[object]],
    n: int,
    per: int,
    rounds: int,
    target: float,
) -> dict[str, Any]:
    """:func:`compare` for coroutines."""
    raws: list[tuple[float, float]] = []
    rests: list[tuple[float, float]] = []
    for _ in range(rounds):
        totals = {"raw": [0.0, 0.0], "rest": [0.0, 0.0]}
        for j in range(n):
            pair = [("raw", raw), ("rest", rest)]
            for key, fn in pair if j % 2 == 0 else pair[::-1]:
                wall, cpu = await atimed(fn)
                totals[key][0] += wall
                totals[key][1] += cpu
        raws.append((totals["raw"][0] / n / per, totals["raw"][1] / n / per))
        rests.append((totals["rest"][0] / n / per, totals["rest"][1] / n / per))
    return report(name, raws, rests, target)


async def concurrency(
    url: str, n: int, *, stream: bool, chunks: int
) -> list[tuple[str, int, float]]:
    """``n`` concurrent calls through one backend, then through one raw httpx client:
    ``(who, failures, seconds)`` each. Streams are ``chunks`` long (x-mock-chunks)."""
    headers = {"x-mock-chunks": str(chunks)}
    backend = RestBackend(MODEL, base_url=url, api_key=KEY, headers=headers)
    # The same pool size and budgets as the backend's (httpx's default 5 s pool timeout
    # would fail requests that merely queue for a connection).
    client = httpx.AsyncClient(
        headers={**HEADERS, **headers},
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        timeout=httpx.Timeout(connect=10.0, read=120.0, write=60.0, pool=120.0),
    )
    out = []
    try:
        for who in ("rest", "raw httpx"):

            async def one(who: str = who) -> object:
                if who == "rest":
                    return await (rest_astream(backend) if stream else backend.achat(request()))
                return await (raw_astream(client, url) if stream else raw_achat(client, url))

            start = time.perf_counter()
            results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
            elapsed = time.perf_counter() - start
            failed = [r for r in results if isinstance(r, BaseException)]
            for error in failed[:3]:
                print(f"    {who} error: {error!r}")
            out.append((who, len(failed), elapsed))
    finally:
        await backend.aclose()
        await client.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="plain calls per round")
    parser.add_argument("--chunks", type=int, default=500, help="content chunks per stream")
    parser.add_argument("--streams", type=int, default=20, help="streams per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrent", type=int, default=500)
    args = parser.parse_args()
    # Failover / cool-down warnings, if any, in line with the figures.
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="    log: %(message)s")

    results = []
    with MockServer(chunks=args.chunks) as url:
        print(f"mock server {url}; {args.rounds} rounds, median shown", flush=True)
        backend = RestBackend(MODEL, base_url=url, api_key=KEY)
        client = httpx.Client(headers=HEADERS)
        # Warm up: connections, imports, caches.
        for _ in range(50):
            backend.chat(request())
            raw_chat(client, url)
        assert rest_stream(backend) == raw_stream(client, url) == args.chunks

        results.append(
            compare(
                "sync chat, per call",
                lambda: raw_chat(client, url),
                lambda: backend.chat(request()),
                args.calls,
                1,
                args.rounds,
                0.15,
            )
        )
        results.append(
            compare(
                "sync stream, per chunk",
                lambda: raw_stream(client, url),
                lambda: rest_stream(backend),
                args.streams,
                args.chunks,
                args.rounds,
                0.50,
            )
        )
        client.close()
        backend.close()

        async def async_part() -> None:
            abackend = RestBackend(MODEL, base_url=url, api_key=KEY)
            aclient = httpx.AsyncClient(headers=HEADERS)
            for _ in range(50):
                await abackend.achat(request())
                await raw_achat(aclient, url)
            results.append(
                await acompare(
                    "async chat, per call",
                    lambda: raw_achat(aclient, url),
                    lambda: abackend.achat(request()),
                    args.calls,
                    1,
                    args.rounds,
                    0.15,
                )
            )
            results.append(
                await acompare(
                    "async stream, per chunk",
                    lambda: raw_astream(aclient, url),
                    lambda: rest_astream(abackend),
                    args.streams,
                    args.chunks,
                    args.rounds,
                    0.50,
                )
            )
            await aclient.aclose()
            await abackend.aclose()

            for stream in (False, True):
                kind = "streams" if stream else "chats"
                runs = await concurrency(url, args.concurrent, stream=stream, chunks=20)
                for who, failed, elapsed in runs:
                    print(
                        f"{args.concurrent} concurrent async {kind:<7} via {who:<9}: "
                        f"{args.concurrent - failed} ok, {failed} failed, {elapsed:5.2f} s "
                        f"({args.concurrent / elapsed:.0f}/s)",
                        flush=True,
                    )
                rest_failed = runs[0][1]
                results.append(
                    {"name": f"{args.concurrent} concurrent {kind}", "ok": not rest_failed}
                )

        asyncio.run(async_part())

    failed = [r["name"] for r in results if not r["ok"]]
    print("all targets met" if not failed else f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
