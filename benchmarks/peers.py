"""One contender of ``python -m benchmarks`` in a process of its own, driven over stdin/stdout.

Every contender -- raw httpx, the raw openai SDK, llmkit's ``openai:`` and ``rest:`` backends,
LiteLLM, any-llm -- runs in its own process, so none pays for another's imports, threads or
heap, and the orchestrator (benchmarks/__main__.py) can interleave them round by round: only
one worker runs at a time, the others wait on their stdin. LiteLLM and any-llm run under the
interpreter of ``.venv-peers``, which has neither llmkit nor its dependencies; this module
therefore imports nothing outside the standard library at the top, and each contender imports
its own library when it is built.

    python benchmarks/peers.py NAME URL CHUNKS

Protocol: the worker builds its contender, warms it up and checks its answers (a chat gives
``CHUNKS`` times ``"tok "``, a stream ``CHUNKS`` deltas), then writes one JSON line
``{"ready": true, "versions": {...}}`` (or ``{"error": "..."}``). Each line it then reads is a
command, answered by one JSON line:

    {"op": "chat", "n": 200}     -> {"wall": s, "cpu": s}   per non-streamed call
    {"op": "stream", "n": 10}    -> {"wall": s, "cpu": s}   per streamed call (CHUNKS chunks)
    {"op": "burst", "n": 1000}   -> {"wall": s, "cpu": s, "failed": k, "error": "..."}
                                    n concurrent async calls, at most CAP in flight

``cpu`` is this process's CPU time (all its threads: any-llm runs its async core on a loop
thread, LiteLLM logs on worker threads); the mock server runs in another process. Anything a
library prints goes to stderr, so stdout carries the protocol alone.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "gpt-4o-mini"
KEY = "sk-bench-000000000000"
MESSAGES = [{"role": "user", "content": "Say hello"}]
# The in-flight cap every contender gets in the concurrency test: llmkit's default
# ``max_concurrency`` (llmkit.client.DEFAULT_MAX_CONCURRENCY). The raw and peer contenders get
# an asyncio.Semaphore of the same size, as a careful hand-written client would have.
CAP = 64
# LiteLLM fetches its model price list from GitHub at import unless told not to (the machine
# has no internet: without this every import waits for three failed attempts), and it aborts
# a stream that repeats one chunk 100 times -- the mock server's chunks are all "tok ".
PEER_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "REPEATED_STREAMING_CHUNK_LIMIT": "1000000000",
}


class Contender:
    """One library's way of making a plain call, a streamed call and an async call."""

    packages: tuple[str, ...] = ()

    def chat(self) -> str:
        raise NotImplementedError

    def stream(self) -> list[str]:
        raise NotImplementedError

    async def achat(self) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _gate(fn: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
    """``fn`` behind a semaphore of ``CAP`` (created lazily, inside the running loop)."""
    gate: list[asyncio.Semaphore] = []

    async def gated() -> str:
        if not gate:
            gate.append(asyncio.Semaphore(CAP))
        async with gate[0]:
            return await fn()

    return gated


# ---------------------------------------------------------------------------- main venv


class RawHttpx(Contender):
    """Hand-written httpx: the floor (bench_rest.py's raw contender)."""

    packages = ("httpx",)

    def __init__(self, url: str, chunks: int) -> None:
        import httpx

        sys.path.insert(0, HERE)
        import bench_rest

        self.url, self.mod = url, bench_rest
        self.client = httpx.Client(headers=bench_rest.HEADERS)
        self.aclient = httpx.AsyncClient(headers=bench_rest.HEADERS, timeout=60)
        self._achat = _gate(lambda: bench_rest.raw_achat(self.aclient, url))

    def chat(self) -> str:
        return str(self.mod.raw_chat(self.client, self.url))

    def stream(self) -> list[str]:
        return ["tok "] * self.mod.raw_stream(self.client, self.url)

    async def achat(self) -> str:
        return await self._achat()

    async def aclose(self) -> None:
        await self.aclient.aclose()


class RawOpenAI(Contender):
    """The official openai SDK as a user constructs it (``injected=False``: its own default
    HTTP client, ``httpx2`` under openai 3.x) or with a plain ``httpx.Client`` injected, as
    llmkit does (bench_openai.py's contenders)."""

    packages = ("openai", "httpx")

    def __init__(self, url: str, chunks: int, injected: bool) -> None:
        sys.path.insert(0, HERE)
        import bench_openai

        key = "sdk (httpx.Client)" if injected else "sdk (own client)"
        sync = bench_openai.sync_contenders(url, chunks)
        self._chat, self._stream = sync["chat"][key], sync["stream"][key]
        if injected:
            acontenders = bench_openai.async_contenders(url, chunks)
            self._achat = _gate(acontenders["chat"]["sdk (httpx.AsyncClient)"])
        else:
            import openai

            client = openai.AsyncOpenAI(api_key=KEY, base_url=url, max_retries=0)

            async def achat() -> str:
                r = await client.chat.completions.create(
                    model=MODEL, messages=MESSAGES, temperature=0.0, max_tokens=64
                )
                return str(r.choices[0].message.content)

            self._achat = _gate(achat)

    def chat(self) -> str:
        return str(self._chat())

    def stream(self) -> list[str]:
        return list(self._stream())  # type: ignore[call-overload]

    async def achat(self) -> str:
        return await self._achat()


class Llmkit(Contender):
    """llmkit's public ``Client`` / ``AsyncClient`` with its defaults (retries, timeouts,
    concurrency cap, typed responses, usage totals): ``backend`` is ``openai`` or ``rest``;
    ``api`` is ``chat`` or ``responses`` (the Responses API, ``/v1/responses``)."""

    packages = ("llmkit", "openai", "httpx")

    def __init__(self, url: str, chunks: int, backend: str, api: str = "chat") -> None:
        from llmkit import AsyncClient, Client

        spec = f"{backend}:{MODEL}"
        self.client = Client(spec, base_url=url, api_key=KEY, api=api)
        self.aclient = AsyncClient(spec, base_url=url, api_key=KEY, api=api)

    def chat(self) -> str:
        return self.client.chat(MESSAGES, temperature=0.0, max_tokens=64).text

    def stream(self) -> list[str]:
        with self.client.stream(MESSAGES, temperature=0.0, max_tokens=64) as s:
            return [event.text for event in s if event.text]

    async def achat(self) -> str:
        return (await self.aclient.chat(MESSAGES, temperature=0.0, max_tokens=64)).text

    async def aclose(self) -> None:
        await self.aclient.aclose()


class RawOpenAIResponses(Contender):
    """The openai SDK's ``responses.create`` on an injected ``httpx.Client`` (the raw
    contender of bench_responses.py)."""

    packages = ("openai", "httpx")

    def __init__(self, url: str, chunks: int) -> None:
        sys.path.insert(0, HERE)
        import bench_responses

        sync = bench_responses.sync_contenders(url, chunks)
        self._chat, self._stream = sync["chat"]["openai SDK"], sync["stream"]["openai SDK"]
        self._achat = _gate(bench_responses.async_contenders(url, chunks)["chat"]["openai SDK"])

    def chat(self) -> str:
        return str(self._chat())

    def stream(self) -> list[str]:
        return list(self._stream())  # type: ignore[call-overload]

    async def achat(self) -> str:
        return await self._achat()


# ---------------------------------------------------------------------------- .venv-peers


class LiteLLM(Contender):
    """``litellm.completion(model="openai/<name>", api_base=url, ...)``, as its docs show for
    an OpenAI-compatible server; ``acompletion`` for async. Default settings otherwise."""

    packages = ("litellm", "openai", "httpx")

    def __init__(self, url: str, chunks: int) -> None:
        import litellm

        litellm.telemetry = False
        litellm.suppress_debug_info = True
        self.litellm = litellm
        self.kwargs = {
            "model": f"openai/{MODEL}",
            "messages": MESSAGES,
            "api_base": url,
            "api_key": KEY,
            "temperature": 0.0,
            "max_tokens": 64,
        }
        self._achat = _gate(self._acall)

    def chat(self) -> str:
        r = self.litellm.completion(**self.kwargs)
        return str(r.choices[0].message.content)

    def stream(self) -> list[str]:
        out = []
        for c in self.litellm.completion(
            **self.kwargs, stream=True, stream_options={"include_usage": True}
        ):
            if c.choices and c.choices[0].delta.content:
                out.append(c.choices[0].delta.content)
        return out

    async def _acall(self) -> str:
        r = await self.litellm.acompletion(**self.kwargs)
        return str(r.choices[0].message.content)

    async def achat(self) -> str:
        return await self._achat()


class AnyLLM(Contender):
    """any-llm: one ``AnyLLM.create("openai", api_base=url, ...)`` instance reused for every
    call (``instance=True``, its documented way to keep a client), or the module-level
    ``any_llm.completion(...)`` that builds a provider per call (``instance=False``)."""

    packages = ("any-llm-sdk", "openai", "httpx")

    def __init__(self, url: str, chunks: int, instance: bool) -> None:
        import any_llm

        if instance:
            llm = any_llm.AnyLLM.create("openai", api_key=KEY, api_base=url)
            self._sync, self._async = llm.completion, llm.acompletion
            self.kwargs: dict[str, Any] = {}
        else:
            self._sync, self._async = any_llm.completion, any_llm.acompletion
            self.kwargs = {"provider": "openai", "api_key": KEY, "api_base": url}
        self.kwargs.update(model=MODEL, messages=MESSAGES, temperature=0.0, max_tokens=64)
        self._achat = _gate(self._acall)

    def chat(self) -> str:
        r = self._sync(**self.kwargs)
        return str(r.choices[0].message.content)

    def stream(self) -> list[str]:
        out = []
        for c in self._sync(**self.kwargs, stream=True, stream_options={"include_usage": True}):
            if c.choices and c.choices[0].delta.content:
                out.append(c.choices[0].delta.content)
        return out

    async def _acall(self) -> str:
        r = await self._async(**self.kwargs)
        return str(r.choices[0].message.content)

    async def achat(self) -> str:
        return await self._achat()


# name -> (which venv, factory); the orchestrator shows them in this order.
CONTENDERS: dict[str, tuple[str, Callable[[str, int], Contender]]] = {
    "raw httpx": ("main", RawHttpx),
    "openai SDK": ("main", lambda url, chunks: RawOpenAI(url, chunks, injected=False)),
    "openai SDK + httpx.Client": ("main", lambda url, chunks: RawOpenAI(url, chunks, True)),
    "llmkit openai:": ("main", lambda url, chunks: Llmkit(url, chunks, "openai")),
    "llmkit rest:": ("main", lambda url, chunks: Llmkit(url, chunks, "rest")),
    "openai SDK responses": ("main", RawOpenAIResponses),
    "llmkit openai: responses": ("main", lambda url, c: Llmkit(url, c, "openai", "responses")),
    "llmkit rest: responses": ("main", lambda url, c: Llmkit(url, c, "rest", "responses")),
    "LiteLLM": ("peers", LiteLLM),
    "any-llm": ("peers", lambda url, chunks: AnyLLM(url, chunks, instance=True)),
    "any-llm completion()": ("peers", lambda url, chunks: AnyLLM(url, chunks, instance=False)),
}


# ---------------------------------------------------------------------------- the worker


def _versions(packages: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _timed(fn: Callable[[], object], n: int) -> dict[str, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    return {"wall": (time.perf_counter() - wall) / n, "cpu": (time.process_time() - cpu) / n}


async def _burst(contender: Contender, n: int) -> dict[str, Any]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(contender.achat() for _ in range(n)), return_exceptions=True)
    out: dict[str, Any] = {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
    }
    failed = [r for r in results if isinstance(r, BaseException) or not r]
    out["failed"] = len(failed)
    if failed:
        out["error"] = repr(failed[0])[:300]
    return out


def worker(name: str, url: str, chunks: int) -> int:
    # stdout is the protocol: keep a private copy of it and send fd 1 to stderr, so that
    # whatever a library prints cannot break a reply.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")

    runner = asyncio.Runner()
    try:
        contender = CONTENDERS[name][1](url, chunks)
        expected = "tok " * chunks
        for _ in range(20):  # warm up: connections, caches, lazy imports
            got = contender.chat()
        if got != expected:
            raise RuntimeError(f"chat answered {got[:60]!r}, expected {chunks} x 'tok '")
        for _ in range(3):
            parts = contender.stream()
        if len(parts) != chunks or "".join(parts) != expected:
            raise RuntimeError(f"stream gave {len(parts)} deltas, expected {chunks}")
        send({"ready": True, "versions": _versions(contender.packages)})
    except BaseException as exc:
        traceback.print_exc()
        send({"error": f"{type(exc).__name__}: {exc}"[:500]})
        return 1

    warmed = False
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["op"] == "chat":
                send(_timed(contender.chat, cmd["n"]))
            elif cmd["op"] == "stream":
                send(_timed(contender.stream, cmd["n"]))
            elif cmd["op"] == "burst":
                if not warmed:  # fill the pool once before the first timed burst
                    runner.run(_burst(contender, min(cmd["n"], 100)))
                    warmed = True
                send(runner.run(_burst(contender, cmd["n"])))
            elif cmd["op"] == "quit":
                break
        except Exception as exc:
            traceback.print_exc()
            send({"error": f"{type(exc).__name__}: {exc}"[:500]})
    runner.run(contender.aclose())
    runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1], sys.argv[2], int(sys.argv[3])))
