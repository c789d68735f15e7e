"""The ``llmkit serve`` per-request overhead on loopback: the server's own CPU time.

Starts the app over an instant :class:`~llmkit.testing.FakeBackend` in a child process (so
the client's CPU does not count), sends plain and streamed chat requests with one keep-alive
httpx client, and reports the server process's CPU time (user + system, from
``/proc/<pid>/stat``) per request, plus the client-observed wall time. Run it before and
after a change to the server and compare::

    PYTHONPATH=. python scripts/bench_server_overhead.py --requests 2000

On a busy machine the socket numbers are noisy; ``--in-process`` calls the ASGI app
directly (no sockets, no uvicorn: only the app's own work, as process CPU time, best of the
rounds), which is steadier for comparing two versions of the app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time

import httpx

SERVER = """
import sys
from llmkit import AsyncClient, RetryPolicy
from llmkit.server import create_app, serve_app
from llmkit.testing import FakeBackend, Reply
text = " ".join(f"w{i}" for i in range(int(sys.argv[2])))
client = AsyncClient(backend=FakeBackend([Reply(text)]), retry=RetryPolicy(max_attempts=1))
serve_app(create_app(client, max_in_flight=64), port=int(sys.argv[1]), log_level="warning")
"""


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _in_process(requests: int, chunks: int, rounds: int) -> None:
    from llmkit import AsyncClient, RetryPolicy
    from llmkit.server import create_app
    from llmkit.testing import FakeBackend, Reply

    text = " ".join(f"w{i}" for i in range(chunks))
    client = AsyncClient(backend=FakeBackend([Reply(text)]), retry=RetryPolicy(max_attempts=1))
    app = create_app(client, max_in_flight=64)
    for label, stream in (("plain", False), ("stream", True)):
        user = {"role": "user", "content": "hi"}
        body = json.dumps({"model": "fake-model", "stream": stream, "messages": [user]})
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2), "headers": [(b"content-type", b"application/json")],
        }  # fmt: skip

        async def one(body: str = body, scope: dict[str, object] = scope) -> None:
            done = asyncio.Event()
            messages = [{"type": "http.request", "body": body.encode(), "more_body": False}]

            async def receive() -> dict[str, object]:
                if messages:
                    return messages.pop()
                await done.wait()
                return {"type": "http.disconnect"}

            async def send(sent: dict[str, object]) -> None:
                if sent["type"] == "http.response.body" and not sent.get("more_body"):
                    done.set()

            await app({**scope, "state": {}}, receive, send)  # type: ignore[arg-type]

        for _ in range(300):
            await one()
        cpu = []
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(requests):
                await one()
            cpu.append((time.process_time() - started) / requests * 1e6)
        print(f"{label:6} app CPU/request (in process): best {min(cpu):5.0f} us, "
              f"median {statistics.median(cpu):5.0f} us")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--chunks", type=int, default=20, help="words (stream chunks) per reply")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="call the ASGI app directly")
    args = parser.parse_args()
    if args.in_process:
        asyncio.run(_in_process(args.requests, args.chunks, args.rounds))
        return
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.chunks)], env=env)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with httpx.Client(timeout=10) as http:
            for _ in range(300):
                try:
                    http.post(url, json=body)
                    break
                except httpx.TransportError:
                    time.sleep(0.05)
            for _ in range(200):  # warm-up
                http.post(url, json=body)
            for label, stream in (("plain", False), ("stream", True)):
                cpu, wall = [], []
                for _ in range(args.rounds):
                    cpu0, wall0 = _cpu_seconds(process.pid), time.perf_counter()
                    for _ in range(args.requests):
                        if stream:
                            with http.stream("POST", url, json={**body, "stream": True}) as s:
                                for _ in s.iter_raw():
                                    pass
                        else:
                            http.post(url, json=body).raise_for_status()
                    cpu.append((_cpu_seconds(process.pid) - cpu0) / args.requests * 1e6)
                    wall.append((time.perf_counter() - wall0) / args.requests * 1e6)
                print(
                    f"{label:6} server CPU/request: {statistics.median(cpu):7.0f} us "
                    f"(rounds {', '.join(f'{c:.0f}' for c in cpu)}); "
                    f"wall/request {statistics.median(wall):6.0f} us"
                )
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
