"""What cassettes (llmkit.testing) cost: nothing per call while none is active.

* **idle seam**: the ``rest`` backend against the local mock server, per call (chat, and a
  streamed reply), with clients that never saw a cassette next to clients that had one
  active and ended (their transports swapped back); alternating call by call, median per
  call. The two should be equal within noise: no cassette code runs on a request's path.
* **client build**: what remembering each new httpx client costs (a ``WeakSet.add``).
* **replay**: a call answered from a cassette next to the same call over loopback HTTP.

    python benchmarks/bench_cassette.py [--calls 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_server import MockServer

from llmkit._http import build_client, tap
from llmkit.backends.rest import RestBackend
from llmkit.testing import cassette
from llmkit.types import ChatRequest, GenerationParams, Message


def request() -> ChatRequest:
    return ChatRequest(
        model="m", messages=[Message.user("Say hello")], params=GenerationParams(max_tokens=64)
    )


def chat(backend: RestBackend) -> None:
    backend.chat(request())


def stream(backend: RestBackend) -> None:
    for _ in backend.stream(request()):
        pass


def alternate(a: Callable[[], None], b: Callable[[], None], calls: int) -> tuple[float, float]:
    """Median seconds per call of ``a`` and ``b``, interleaved (order swapped each time)."""
    ta: list[float] = []
    tb: list[float] = []
    for i in range(calls):
        for fn, out in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def median_call(fn: Callable[[], None], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with MockServer(chunks=20) as url, tempfile.TemporaryDirectory() as tmp:
        fresh = RestBackend("m", base_url=url)
        used = RestBackend("m", base_url=url)
        chat(fresh), chat(used)  # both open their connection first
        with cassette(Path(tmp) / "warm.json", record="all"):
            chat(used)  # its client is wrapped while the cassette is active ...
        assert tap.active_tap() is None  # ... and handed back afterwards
        print(f"idle seam, {args.calls} calls each (median per call):")
        for name, fn in (("chat", chat), ("stream (20 chunks)", stream)):
            a, b = alternate(lambda fn=fn: fn(fresh), lambda fn=fn: fn(used), args.calls)
            print(
                f"  {name:20s} never wrapped {a * 1e6:7.0f} us   after a cassette {b * 1e6:7.0f} us"
            )

        n = 300
        start = time.perf_counter()
        clients = [build_client(verify=False) for _ in range(n)]  # no CA bundle to load
        built = (time.perf_counter() - start) / n
        start = time.perf_counter()
        for c in clients:
            tap.track(c)  # a second time: the cost of the one call build_client makes
        tracked = (time.perf_counter() - start) / n
        for c in clients:
            c.close()
        print(f"client build: {built * 1e6:.0f} us, of which tracking {tracked * 1e6:.2f} us")

        path = Path(tmp) / "replay.json"
        calls = min(args.calls, 200)
        with cassette(path, allow_repeats=True):
            chat(fresh)
        live = median_call(lambda: chat(fresh), calls)
        with cassette(path, allow_repeats=True):
            replay = median_call(lambda: chat(fresh), calls)
        print(f"per chat call (median): live {live * 1e6:.0f} us, replayed {replay * 1e6:.0f} us")
        fresh.close(), used.close()


if __name__ == "__main__":
    main()
