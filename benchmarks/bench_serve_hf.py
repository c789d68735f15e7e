"""``llmkit serve hf:...`` against ``transformers serve`` (transformers' own OpenAI-compatible
server) on the same model folder and machine: N concurrent streamed chat requests.

    python benchmarks/bench_serve_hf.py                          # hf:smollm2, 32 clients, CPU
    python benchmarks/bench_serve_hf.py --source /path/to/folder --device cuda --max-tokens 128
    python benchmarks/bench_serve_hf.py --servers llmkit,transformers,transformers-cb --json out.json

Both servers run as subprocesses on 127.0.0.1 for the whole run, each loaded and warmed up
(one request, then one burst) before the timed rounds; the rounds alternate between them so
background load hits each alike. A round is ``--concurrency`` streamed ``/v1/chat/completions``
requests sent at once through one httpx client (greedy, the same prompts and ``max_tokens``,
``stream_options.include_usage``). Per round and server:

* **aggregate tokens/s**: completion tokens of all requests (the servers' usage chunks) over
  the wall time of the burst;
* **time to first token**: from sending a request to its first non-empty content delta,
  median and 90th percentile over the burst's requests;
* **server CPU time per token**: the user + system time of the server's processes over the
  burst (Linux), per completion token.

The ratios (llmkit over each other server: above 1 for tokens/s and below 1 for time to first
token favour llmkit) are of the medians over the rounds. Servers:
``llmkit`` (``python -m llmkit serve hf:SOURCE`` with ``--max-in-flight`` and
``--max-queue`` at the concurrency, so the server's admission limits do not hold requests
back; ``--kit-option KEY=VALUE`` sets an hf backend option such as ``max_batch_size``, whose
default is 16 on a CPU), ``transformers`` (``transformers serve FOLDER``) and
``transformers-cb`` (``transformers serve FOLDER --continuous-batching``). Both load the model
with the same dtype (float32 on CPU; ``--dtype``). Greedy answers may end at EOS before
``max_tokens``; the usage counts make the rates fair all the same, and the token counts of both
are printed. ``transformers serve`` needs transformers' ``serving`` extra (fastapi besides the
uvicorn, starlette, pydantic and openai llmkit's extras bring); ``--ts-path DIR`` puts a folder
of extra packages on that server's ``PYTHONPATH`` only (e.g. ``pip install --target DIR
fastapi``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_prompts import prompts  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def model_folder(source: str) -> str:
    """The folder ``hf:SOURCE`` loads (for an alias: llmkit's conversion of its GGUF), so
    both servers read the same weights."""
    if os.path.isdir(source):
        return os.path.abspath(source)
    from llmkit import Client
    from llmkit.backends.hf import loading

    client = Client(f"hf:{source}", device="cpu")
    backend: Any = client.backend
    backend.load()
    folder = backend.source.location
    if backend.source.kind == "gguf":
        folder = str(loading.gguf_cache_entry(backend.source.location, loading.cache_root()))
    client.close()
    return str(folder)


def cpu_seconds(session: int) -> float | None:
    """User + system CPU time of the processes of a session (threads included; transformers
    serve generates in a child process), from /proc; None where there is no /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    """One server subprocess in its own session (so stopping it stops what it started)."""

    def __init__(self, name: str, argv: list[str], model: str, env: dict[str, str]) -> None:
        self.name, self.model, self.port = name, model, free_port()
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.log = open(f"/tmp/bench_serve_hf-{name}-{self.port}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        # transformers before 5.2x refuses stream_options (and always sends usage at the end)
        self.usage_option = True

    def body(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        if self.usage_option:
            body["stream_options"] = {"include_usage": True}
        return body

    async def wait_ready(self, http: httpx.AsyncClient, timeout: float) -> float:
        start = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}); see {self.log.name}"
                )
            try:
                await one_request(http, self, "hi", 2)
                return time.perf_counter() - start
            except (httpx.HTTPError, RuntimeError) as exc:
                if "stream_options" in str(exc) and self.usage_option:
                    self.usage_option = False
                    continue
                if time.perf_counter() - start > timeout:
                    raise RuntimeError(
                        f"{self.name} not ready in {timeout:.0f}s; see {self.log.name}"
                    ) from None
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def one_request(
    http: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int
) -> tuple[float | None, int]:
    """Time to the first content delta (None if none came) and the completion tokens."""
    start = time.perf_counter()
    first: float | None = None
    tokens = deltas = 0
    async with http.stream("POST", server.url, json=server.body(prompt, max_tokens)) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{server.name}: HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            chunk = json.loads(line[5:])
            for choice in chunk.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    deltas += 1
                    if first is None:
                        first = time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return first, tokens or deltas


async def burst(
    http: httpx.AsyncClient, server: Server, texts: list[str], max_tokens: int
) -> dict[str, Any]:
    cpu0 = cpu_seconds(server.proc.pid)
    start = time.perf_counter()
    got = await asyncio.gather(*(one_request(http, server, t, max_tokens) for t in texts))
    wall = time.perf_counter() - start
    cpu1 = cpu_seconds(server.proc.pid)
    ttfts = sorted(f for f, _ in got if f is not None)
    tokens = sum(n for _, n in got)
    return {
        "tok_s": tokens / wall,
        "tokens": tokens,
        "wall_s": wall,
        "ttft_median_s": statistics.median(ttfts) if ttfts else None,
        "ttft_p90_s": ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))] if ttfts else None,
        "server_cpu_s": None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
    }


def transformers_argv(args: argparse.Namespace, folder: str, cb: bool) -> list[str]:
    exe = shutil.which("transformers", path=os.path.dirname(sys.executable))
    head = [exe] if exe else [sys.executable, "-m", "transformers.cli.transformers"]
    argv = [*head, "serve", folder, "--host", "127.0.0.1", "--port", "{port}"]
    argv += ["--device", args.device, "--dtype", args.dtype, "--log-level", "warning"]
    if cb and args.cb_memory is not None:
        # by default it takes most of the free GPU memory for its KV cache, leaving llmkit's
        # server (on the same GPU) none for its own
        argv += ["--cb-max-memory-percent", str(args.cb_memory)]
    return argv + (["--continuous-batching"] if cb else [])


async def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = model_folder(args.source)
    spec = f"hf:{args.source}" if not os.path.isdir(args.source) else f"hf:{folder}"
    # this checkout's llmkit first, then what the caller put on the path (carried wheels)
    path = [ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(path))
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ts_env = dict(env)
    if args.ts_path:
        ts_env["PYTHONPATH"] = os.pathsep.join([args.ts_path, *path])
    n = args.concurrency
    kit_argv = [sys.executable, "-m", "llmkit", "serve", spec, "--port", "{port}"]
    kit_argv += ["--served-model", "bench", "--max-in-flight", str(n), "--max-queue", str(n)]
    kit_argv += ["--no-ui", "--log-level", "warning"]
    options = {"device": args.device, "dtype": args.dtype}
    options.update(item.split("=", 1) for item in args.kit_option)
    if any(value != "auto" for value in options.values()):
        profile = f"/tmp/bench_serve_hf-{os.getpid()}.toml"
        with open(profile, "w") as f:
            f.write(f'[profiles.bench]\nmodel = "{spec}"\n[profiles.bench.options]\n')
            for key, value in options.items():  # numbers stay numbers, the rest are strings
                f.write(f"{key} = {value if value.isdigit() else json.dumps(value)}\n")
        # the spec's place on the command line is taken by the profile
        kit_argv = [*kit_argv[:4], "--config", profile, "--profile", "bench", *kit_argv[5:]]
    factories = {
        "llmkit": lambda: Server("llmkit", kit_argv, "bench", env),
        "transformers": lambda: Server(
            "transformers", transformers_argv(args, folder, False), folder, ts_env
        ),
        "transformers-cb": lambda: Server(
            "transformers-cb", transformers_argv(args, folder, True), folder, ts_env
        ),
    }
    names = [s for s in args.servers.split(",") if s]
    servers: list[Server] = []
    texts = prompts(n)
    result: dict[str, Any] = {
        "source": args.source,
        "folder": folder,
        "device": args.device,
        "dtype": args.dtype,
        "concurrency": n,
        "kit_options": args.kit_option,
        "max_tokens": args.max_tokens,
        "rounds": {},
    }
    limits = httpx.Limits(max_connections=n + 8, max_keepalive_connections=n + 8)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        try:
            for name in names:  # one at a time: loads do not compete
                server = factories[name]()
                servers.append(server)
                try:
                    ready = await server.wait_ready(http, args.start_timeout)
                    start = time.perf_counter()
                    await burst(http, server, texts, min(args.max_tokens, 8))
                except (RuntimeError, httpx.HTTPError) as exc:  # the others still run
                    print(f"{name}: left out: {exc}", flush=True)
                    result.setdefault("errors", {})[name] = str(exc)
                    server.stop()
                    servers.remove(server)
                    continue
                print(
                    f"{name}: ready in {ready:.1f}s, warm-up burst {time.perf_counter() - start:.1f}s"
                )
            for server in servers:
                result["rounds"][server.name] = []
            for i in range(args.rounds):
                order = servers if i % 2 == 0 else servers[::-1]
                for server in order:
                    row = await burst(http, server, texts, args.max_tokens)
                    result["rounds"][server.name].append(row)
                    if args.json:  # kept round by round, so a run cut short keeps its rounds
                        with open(args.json, "w") as f:
                            json.dump(result, f, indent=1)
                    print(
                        f"round {i + 1} {server.name}: {row['tok_s']:.1f} tok/s "
                        f"({row['tokens']} tokens in {row['wall_s']:.1f}s), "
                        f"TTFT median {row['ttft_median_s'] or 0:.2f}s",
                        flush=True,
                    )
        finally:
            for server in servers:
                server.stop()
    return result


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    med = statistics.median
    summary: dict[str, Any] = {}
    for name, rows in result["rounds"].items():
        ttft = [r["ttft_median_s"] for r in rows if r["ttft_median_s"] is not None]
        p90 = [r["ttft_p90_s"] for r in rows if r["ttft_p90_s"] is not None]
        cpu = [r["server_cpu_s"] / r["tokens"] for r in rows if r["server_cpu_s"] and r["tokens"]]
        summary[name] = {
            "tok_s": med(r["tok_s"] for r in rows),
            "tokens": med(r["tokens"] for r in rows),
            "ttft_median_s": med(ttft) if ttft else None,
            "ttft_p90_s": med(p90) if p90 else None,
            "server_cpu_ms_per_token": 1000 * med(cpu) if cpu else None,
        }
    kit = summary.get("llmkit")
    if kit:
        for name, other in summary.items():
            if name == "llmkit":
                continue
            other["llmkit_tok_s_ratio"] = kit["tok_s"] / other["tok_s"] if other["tok_s"] else None
            if kit["ttft_median_s"] and other["ttft_median_s"]:
                other["llmkit_ttft_ratio"] = kit["ttft_median_s"] / other["ttft_median_s"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="smollm2", help="an hf: alias or a model folder")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default="llmkit,transformers")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (both servers)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16, ... (both servers)")
    parser.add_argument(
        "--kit-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an hf backend option for llmkit serve, e.g. max_batch_size=32 (repeatable)",
    )
    parser.add_argument(
        "--cb-memory", type=float, help="transformers-cb's KV cache share of GPU memory (0-1)"
    )
    parser.add_argument("--ts-path", help="extra packages for transformers serve (PYTHONPATH)")
    parser.add_argument("--start-timeout", type=float, default=300.0)
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument("--json", help="write the rounds and the summary here")
    args = parser.parse_args()

    def terminated(signum: int, frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")  # so the servers are stopped too

    signal.signal(signal.SIGTERM, terminated)
    result = asyncio.run(run(args))
    result["summary"] = summarize(result)
    result["load_average"] = os.getloadavg()[0]
    print(
        f"\n{args.concurrency} concurrent streamed requests, max_tokens={args.max_tokens}, "
        f"{args.device}/{args.dtype}, {args.rounds} rounds, load average {os.getloadavg()[0]:.1f}\n"
    )
    header = (
        "server",
        "tok/s",
        "tokens",
        "TTFT median",
        "TTFT p90",
        "CPU ms/token",
        "llmkit / this",
    )
    lines = [header]
    for name, s in result["summary"].items():
        ratio = ""
        if "llmkit_tok_s_ratio" in s:
            ratio = f"{s['llmkit_tok_s_ratio']:.2f}x tok/s"
            if "llmkit_ttft_ratio" in s:
                ratio += f", {s['llmkit_ttft_ratio']:.2f}x TTFT"  # below 1: llmkit answers first
        cpu = s["server_cpu_ms_per_token"]
        lines.append(
            (
                name,
                f"{s['tok_s']:.1f}",
                f"{s['tokens']:.0f}",
                f"{s['ttft_median_s'] or 0:.2f}s",
                f"{s['ttft_p90_s'] or 0:.2f}s",
                "-" if cpu is None else f"{cpu:.1f}",
                ratio,
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    for row in [lines[0], tuple("-" * w for w in widths), *lines[1:]]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
