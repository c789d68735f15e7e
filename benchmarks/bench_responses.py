"""Per-call and per-chunk cost of ``api="responses"`` next to raw httpx, the raw openai SDK
and llmkit's own chat-completions path.

Everyone talks to the same local mock server (benchmarks/mock_server.py, in a subprocess so it
never competes with the client for the GIL), which answers ``POST /v1/responses`` with a
``response`` object or the Responses event sequence (``event:``/``data:`` lines, N
``response.output_text.delta`` events, ``response.completed``), and ``/v1/chat/completions``
with the equivalent chat reply or N chunks.

* "raw httpx": one pooled ``httpx.Client``, ``json=`` payload, the text picked out of the
  reply; for streams ``iter_lines()`` and ``json.loads`` of each ``data:`` line, keeping the
  deltas -- the least a hand-written client does;
* "openai SDK": ``client.responses.create(...)`` on an injected ``httpx.Client`` (its typed
  events, one pydantic object per event);
* "llmkit openai:/rest: responses": the backends with ``api="responses"``, each call building
  its ``ChatRequest`` as the client does;
* "llmkit openai:/rest: chat": the same backends on chat completions, to compare the
  per-chunk cost of the two wire formats through the same code.

Rounds alternate between the contenders so that drift hits all alike; each figure is the
best round. Wall time and this thread's CPU time; ratios are against raw httpx and the SDK.

    python benchmarks/bench_responses.py
    python benchmarks/bench_responses.py --calls 300 --streams 30 --chunks 200 --rounds 5 --async
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import openai

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_server import MockServer

from llmkit.backends.openai import OpenAIBackend
from llmkit.backends.rest import RestBackend
from llmkit.types import ChatRequest, GenerationParams, Message

MODEL = "gpt-4o-mini"
KEY = "sk-bench-000000000000"
BODY = {"model": MODEL, "input": "Say hello", "max_output_tokens": 64, "temperature": 0.0}


def timed(fn: Callable[[], object], n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - wall) / n, (time.thread_time() - cpu) / n


async def atimed(fn: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - wall) / n, (time.thread_time() - cpu) / n


def request() -> ChatRequest:
    # Built per call, as the client does, so its cost is part of llmkit's figure.
    return ChatRequest(
        model=MODEL,
        messages=[Message.user("Say hello")],
        params=GenerationParams(temperature=0.0, max_tokens=64),
    )


def backends(url: str) -> dict[str, Any]:
    return {
        "llmkit openai: responses": OpenAIBackend(
            MODEL, api_key=KEY, base_url=url, api="responses"
        ),
        "llmkit rest: responses": RestBackend(MODEL, base_url=url, api="responses"),
        "llmkit openai: chat": OpenAIBackend(MODEL, api_key=KEY, base_url=url),
        "llmkit rest: chat": RestBackend(MODEL, base_url=url),
    }


def sync_contenders(url: str, chunks: int) -> dict[str, dict[str, Callable[[], object]]]:
    http = httpx.Client()
    sdk = openai.OpenAI(api_key=KEY, base_url=url, max_retries=0, http_client=httpx.Client())
    # The mock server's default chunk count is ``chunks`` (MockServer(chunks=...)).

    def raw_chat() -> object:
        data = http.post(f"{url}/responses", json=BODY).json()
        return data["output"][0]["content"][0]["text"]

    def raw_stream() -> object:
        out = []
        with http.stream("POST", f"{url}/responses", json={**BODY, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event["type"] == "response.output_text.delta":
                        out.append(event["delta"])
        return out

    def sdk_chat() -> object:
        return sdk.responses.create(**BODY).output_text  # type: ignore[arg-type]

    def sdk_stream() -> object:
        events = sdk.responses.create(**BODY, stream=True)  # type: ignore[arg-type]
        return [e.delta for e in events if e.type == "response.output_text.delta"]

    def chat_of(backend: Any) -> Callable[[], object]:
        return lambda: backend.chat(request()).text

    def stream_of(backend: Any) -> Callable[[], object]:
        return lambda: [e.text for e in backend.stream(request()) if e.text]

    chats: dict[str, Callable[[], object]] = {"raw httpx": raw_chat, "openai SDK": sdk_chat}
    streams: dict[str, Callable[[], object]] = {"raw httpx": raw_stream, "openai SDK": sdk_stream}
    for name, backend in backends(url).items():
        chats[name] = chat_of(backend)
        streams[name] = stream_of(backend)
    return {"chat": chats, "stream": streams}


def async_contenders(
    url: str, chunks: int
) -> dict[str, dict[str, Callable[[], Awaitable[object]]]]:
    sdk = openai.AsyncOpenAI(
        api_key=KEY, base_url=url, max_retries=0, http_client=httpx.AsyncClient()
    )
    openai_backend = OpenAIBackend(MODEL, api_key=KEY, base_url=url, api="responses")

    async def sdk_chat() -> object:
        return (await sdk.responses.create(**BODY)).output_text  # type: ignore[arg-type]

    async def sdk_stream() -> object:
        events = await sdk.responses.create(**BODY, stream=True)  # type: ignore[arg-type]
        return [e.delta async for e in events if e.type == "response.output_text.delta"]

    async def llmkit_chat() -> object:
        return (await openai_backend.achat(request())).text

    async def llmkit_stream() -> object:
        return [e.text async for e in openai_backend.astream(request()) if e.text]

    return {
        "chat": {"openai SDK": sdk_chat, "llmkit openai: responses": llmkit_chat},
        "stream": {"openai SDK": sdk_stream, "llmkit openai: responses": llmkit_stream},
    }


def decoder_cost(chunks: int, repeats: int = 30) -> None:
    """The I/O-free decoders alone, on the mock server's own bytes (one piece per event, as
    the network delivers them): Responses events vs chat-completion chunks, µs per chunk."""
    from mock_server import _Replies

    from llmkit.backends._responses_wire import ResponsesSSE
    from llmkit.backends.rest.dialect_openai import OpenAIStreamParser
    from llmkit.backends.rest.dialect_responses import ResponsesStreamParser

    def pieces(raw: bytes) -> list[bytes]:
        body = raw.split(b"\r\n\r\n", 1)[1]  # chunked transfer encoding: size, data, ...
        return [p for i, p in enumerate(body.split(b"\r\n")) if i % 2 == 1 and p]

    replies = _Replies("tok ")
    responses = pieces(replies.responses(MODEL, chunks, True))
    chat = pieces(replies.chat_stream(MODEL, chunks, True))

    def run(make: Callable[[], Any], data: list[bytes]) -> float:
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            decoder = make()
            for piece in data:
                decoder.feed(piece)
            best = min(best, time.perf_counter() - started)
        return best / chunks * 1e6

    rows = {
        "responses (ResponsesSSE)": run(lambda: ResponsesSSE(backend="b", model=MODEL), responses),
        "responses (rest parser)": run(lambda: ResponsesStreamParser(MODEL), responses),
        "chat (rest parser)": run(lambda: OpenAIStreamParser(MODEL), chat),
    }
    print(f"\nI/O-free decoding only ({chunks} deltas, best of {repeats}), µs per chunk")
    base = rows["chat (rest parser)"]
    for name, value in rows.items():
        print(f"  {name:<26} {value:8.2f}  {value / base:5.2f}x chat")


def report(title: str, results: dict[str, list[tuple[float, float]]], per: int, unit: str) -> None:
    """Best (minimum) over rounds; ratios against the first row and against the SDK."""
    print(f"\n{title}")
    header = f"  {'':<26} {'wall µs/' + unit:>14} {'CPU µs/' + unit:>14}"
    rows = {
        name: (min(w for w, _ in times) / per, min(c for _, c in times) / per)
        for name, times in results.items()
    }
    first = next(iter(rows))
    base_cpu = rows[first][1]
    sdk_wall, sdk_cpu = rows.get("openai SDK", rows[first])
    print(f"{header} {'CPU/row 1':>16} {'CPU/SDK':>9} {'wall/SDK':>9}")
    for name, (wall, cpu) in rows.items():
        print(
            f"  {name:<26} {wall * 1e6:14.1f} {cpu * 1e6:14.1f}"
            f" {cpu / base_cpu:16.2f} {cpu / sdk_cpu:9.2f} {wall / sdk_wall:9.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="non-streamed calls per round")
    parser.add_argument("--streams", type=int, default=20, help="streamed calls per round")
    parser.add_argument("--chunks", type=int, default=200, help="text deltas per stream")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--async", dest="run_async", action="store_true", help="also async")
    args = parser.parse_args()
    print(
        f"openai {openai.__version__}, httpx {httpx.__version__}, Python {sys.version.split()[0]}"
    )
    decoder_cost(args.chunks)
    with MockServer(chunks=args.chunks) as url:
        contenders = sync_contenders(url, args.chunks)
        expected = "tok " * args.chunks
        for kind, fns in contenders.items():  # warm up, and check every answer is whole
            for name, fn in fns.items():
                timed(fn, 5)
                got = fn()
                text = got if isinstance(got, str) else "".join(got)  # type: ignore[arg-type]
                if kind == "stream" and text != expected:
                    raise SystemExit(
                        f"{name}: stream gave {text[:40]!r}..., expected {args.chunks} chunks"
                    )
        results: dict[str, dict[str, list[tuple[float, float]]]] = {
            kind: {name: [] for name in fns} for kind, fns in contenders.items()
        }
        for _ in range(args.rounds):
            for name, fn in contenders["chat"].items():
                results["chat"][name].append(timed(fn, args.calls))
            for name, fn in contenders["stream"].items():
                results["stream"][name].append(timed(fn, args.streams))
        report("sync, non-streamed (per call)", results["chat"], 1, "call")
        report(
            f"sync, streamed ({args.chunks} deltas, per chunk)",
            results["stream"],
            args.chunks,
            "chunk",
        )

        if args.run_async:

            async def run_async() -> None:
                contenders = async_contenders(url, args.chunks)
                for fns in contenders.values():
                    for fn in fns.values():
                        await atimed(fn, 5)
                out: dict[str, dict[str, list[tuple[float, float]]]] = {
                    kind: {name: [] for name in fns} for kind, fns in contenders.items()
                }
                for _ in range(args.rounds):
                    for name, afn in contenders["chat"].items():
                        out["chat"][name].append(await atimed(afn, args.calls))
                    for name, afn in contenders["stream"].items():
                        out["stream"][name].append(await atimed(afn, args.streams))
                report("async, non-streamed (per call)", out["chat"], 1, "call")
                report(
                    f"async, streamed ({args.chunks} deltas, per chunk)",
                    out["stream"],
                    args.chunks,
                    "chunk",
                )

            asyncio.run(run_async())


if __name__ == "__main__":
    main()
