"""Per-call and per-chunk cost of llmkit's openai backend next to the raw openai SDK.

Both talk to the same local mock server (benchmarks/mock_server.py, in a subprocess) over the
same kind of transport: the raw SDK gets a plain ``httpx.Client`` injected exactly as llmkit
does, so the difference measured is llmkit's layer alone. The SDK with its own default HTTP
client (``httpx2`` under openai 3.x) is shown for reference.

Rounds alternate between the contenders so that drift (CPU frequency, other load) hits all of
them alike; each figure is the best round. Wall time and the client thread's CPU time are both
shown; ratios are against the first row (the raw SDK on the same transport).

    python benchmarks/bench_openai.py                    # defaults
    python benchmarks/bench_openai.py --calls 300 --chunks 200 --rounds 7 --async
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable

import httpx
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_server import MockServer

from llmkit.backends.openai import OpenAIBackend
from llmkit.types import ChatRequest, GenerationParams, Message

MODEL = "gpt-4o-mini"
KEY = "sk-bench-000000000000"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """Wall and CPU seconds per call. CPU time is this thread's alone (the server runs in
    another process), so it shows the client's own cost even on a busy machine."""
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - wall) / n, (time.thread_time() - cpu) / n


async def atimed(fn: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - wall) / n, (time.thread_time() - cpu) / n


def request(stream: bool) -> ChatRequest:
    # Built per call, as the client does, so its cost is part of llmkit's figure.
    return ChatRequest(
        model=MODEL,
        messages=[Message.user("Say hello")],
        params=GenerationParams(temperature=0.0, max_tokens=64),
    )


def sync_contenders(url: str, chunks: int) -> dict[str, dict[str, Callable[[], object]]]:
    injected = openai.OpenAI(api_key=KEY, base_url=url, max_retries=0, http_client=httpx.Client())
    default = openai.OpenAI(api_key=KEY, base_url=url, max_retries=0)
    backend = OpenAIBackend(MODEL, api_key=KEY, base_url=url)
    headers = {"x-mock-chunks": str(chunks)}

    def sdk_chat(client: openai.OpenAI) -> Callable[[], object]:
        def run() -> object:
            r = client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                temperature=0.0,
                max_tokens=64,  # type: ignore[arg-type]
            )
            return r.choices[0].message.content

        return run

    def sdk_stream(client: openai.OpenAI) -> Callable[[], object]:
        def run() -> object:
            out = []
            for c in client.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                temperature=0.0,
                max_tokens=64,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
                extra_headers=headers,
            ):
                if c.choices and c.choices[0].delta.content:
                    out.append(c.choices[0].delta.content)
            return out

        return run

    def llmkit_chat() -> object:
        return backend.chat(request(False)).text

    def llmkit_stream() -> object:
        req = request(True)
        req.extra = {"extra_headers": headers}
        return [e.text for e in backend.stream(req) if e.text]

    return {
        "chat": {
            "sdk (httpx.Client)": sdk_chat(injected),
            "sdk (own client)": sdk_chat(default),
            "llmkit backend": llmkit_chat,
        },
        "stream": {
            "sdk (httpx.Client)": sdk_stream(injected),
            "sdk (own client)": sdk_stream(default),
            "llmkit backend": llmkit_stream,
        },
    }


def async_contenders(
    url: str, chunks: int
) -> dict[str, dict[str, Callable[[], Awaitable[object]]]]:
    injected = openai.AsyncOpenAI(
        api_key=KEY, base_url=url, max_retries=0, http_client=httpx.AsyncClient()
    )
    backend = OpenAIBackend(MODEL, api_key=KEY, base_url=url)
    headers = {"x-mock-chunks": str(chunks)}

    async def sdk_chat() -> object:
        r = await injected.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            temperature=0.0,
            max_tokens=64,  # type: ignore[arg-type]
        )
        return r.choices[0].message.content

    async def sdk_stream() -> object:
        out = []
        stream = await injected.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            temperature=0.0,
            max_tokens=64,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
        async for c in stream:
            if c.choices and c.choices[0].delta.content:
                out.append(c.choices[0].delta.content)
        return out

    async def llmkit_chat() -> object:
        return (await backend.achat(request(False))).text

    async def llmkit_stream() -> object:
        req = request(True)
        req.extra = {"extra_headers": headers}
        return [e.text async for e in backend.astream(req) if e.text]

    return {
        "chat": {"sdk (httpx.AsyncClient)": sdk_chat, "llmkit backend": llmkit_chat},
        "stream": {"sdk (httpx.AsyncClient)": sdk_stream, "llmkit backend": llmkit_stream},
    }


def report(title: str, results: dict[str, list[tuple[float, float]]], per: int, unit: str) -> None:
    """Best (minimum) over rounds: the figure least disturbed by other load."""
    print(f"\n{title}")
    print(f"  {'':<26} {'wall µs/' + unit:>14} {'ratio':>7} {'CPU µs/' + unit:>14} {'ratio':>7}")
    rows = {
        name: (min(w for w, _ in times) / per, min(c for _, c in times) / per)
        for name, times in results.items()
    }
    base_wall, base_cpu = next(iter(rows.values()))
    for name, (wall, cpu) in rows.items():
        print(
            f"  {name:<26} {wall * 1e6:14.1f} {wall / base_wall:7.2f}"
            f" {cpu * 1e6:14.1f} {cpu / base_cpu:7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="non-streamed calls per round")
    parser.add_argument("--streams", type=int, default=30, help="streamed calls per round")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--async", dest="run_async", action="store_true", help="also async")
    args = parser.parse_args()

    print(
        f"openai {openai.__version__}, httpx {httpx.__version__}, Python {sys.version.split()[0]}"
    )
    with MockServer(chunks=args.chunks) as url:
        contenders = sync_contenders(url, args.chunks)
        for fns in contenders.values():  # warm up pools, caches and imports
            for fn in fns.values():
                timed(fn, 5)
        chat: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders["chat"]}
        stream: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders["stream"]}
        for _ in range(args.rounds):
            for name, fn in contenders["chat"].items():
                chat[name].append(timed(fn, args.calls))
            for name, fn in contenders["stream"].items():
                stream[name].append(timed(fn, args.streams))
        report("sync, non-streamed chat (per call)", chat, 1, "call")
        report(
            f"sync, streamed chat ({args.chunks} chunks, per chunk)", stream, args.chunks, "chunk"
        )

        if args.run_async:

            async def run_async() -> None:
                contenders = async_contenders(url, args.chunks)
                for fns in contenders.values():
                    for fn in fns.values():
                        await atimed(fn, 5)
                achat: dict[str, list[tuple[float, float]]] = {k: [] for k in contenders["chat"]}
                astream: dict[str, list[tuple[float, float]]] = {
                    k: [] for k in contenders["stream"]
                }
                for _ in range(args.rounds):
                    for name, fn in contenders["chat"].items():
                        achat[name].append(await atimed(fn, args.calls))
                    for name, fn in contenders["stream"].items():
                        astream[name].append(await atimed(fn, args.streams))
                report("async, non-streamed chat (per call)", achat, 1, "call")
                report(
                    f"async, streamed chat ({args.chunks} chunks, per chunk)",
                    astream,
                    args.chunks,
                    "chunk",
                )

            asyncio.run(run_async())


if __name__ == "__main__":
    main()
