"""``python -m benchmarks``: llmkit side by side with the raw libraries and its peers, one run.

Against one local OpenAI-compatible mock server on 127.0.0.1 (benchmarks/mock_server.py, in
a subprocess of its own), for raw httpx, the raw openai SDK, llmkit's ``openai:`` and
``rest:`` backends, LiteLLM and any-llm:

* cold import time: a fresh interpreter per run, median of several runs, interleaved;
* per-call time of a non-streamed chat and per-chunk time of a streamed one (sync);
* a burst of 1,000 concurrent async chat calls;
* the ``Client``'s CPU time per call and per streamed chunk next to raw httpx, sync and
  async (benchmarks/bench_cpu.py: the CPU time of the client's process, which wall time
  hides behind the server and the loopback; ``--skip-cpu`` leaves it out);

and, for the ``hf:`` backend, tokens per second and time to first token next to raw
transformers ``generate`` on the same model and prompt (benchmarks/hf_compare.py).

LiteLLM and any-llm are installed by this command into ``.venv-peers`` (``python -m venv
.venv-peers && .venv-peers/bin/pip install litellm any-llm-sdk``), not into the project's
environment; when that fails they are left out with a note. Every contender runs in a process
of its own (benchmarks/peers.py), and the rounds go through the contenders in turn, the order
rotated every round, so background load hits them alike; each figure is the median over
rounds, wall clock and CPU time both. Results: a table on stdout, docs/benchmarks.md,
docs/benchmarks.json and the chart docs/benchmarks.png (drawn with matplotlib from whichever
environment has it; ``.venv-peers`` gets it installed).

    python -m benchmarks              # the full run (about 5 minutes on 2 cores)
    python -m benchmarks --quick      # fewer rounds, runs, requests, tokens (about 1.5 minutes)
    python -m benchmarks --skip-hf --no-peers --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from mock_server import MockServer  # noqa: E402
from peers import CONTENDERS, PEER_ENV  # noqa: E402
from report import print_tables, verdicts, write_markdown  # noqa: E402

PEER_PACKAGES = ("litellm", "any-llm-sdk")
# (label, environment, code) of each cold-import measurement, in the order shown.
IMPORTS = [
    ("python (bare)", "main", "pass"),
    ("import llmkit", "main", "import llmkit"),
    ("from llmkit import Client", "main", "from llmkit import Client"),
    ("import httpx", "main", "import httpx"),
    ("import openai", "main", "import openai"),
    ("python (bare, .venv-peers)", "peers", "pass"),
    ("import litellm", "peers", "import litellm"),
    ("import any_llm", "peers", "import any_llm"),
]


STARTED = time.perf_counter()


def log(msg: str) -> None:
    """Progress on stderr, with the seconds since the start."""
    print(f"[{time.perf_counter() - STARTED:4.0f} s] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- .venv-peers


def _peer_versions(python: Path, names: tuple[str, ...]) -> dict[str, str]:
    code = (
        "import json, sys\nfrom importlib import metadata\nout = {}\n"
        "for n in sys.argv[1:]:\n    try: out[n] = metadata.version(n)\n"
        "    except metadata.PackageNotFoundError: pass\nprint(json.dumps(out))"
    )
    r = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, timeout=60
    )
    return json.loads(r.stdout) if r.returncode == 0 else {}


def ensure_peers(venv: Path, install: bool, notes: list[str]) -> tuple[Path | None, set[str]]:
    """The interpreter of ``venv`` and the peer packages usable there, installing them (and
    matplotlib, for the chart) when missing and ``install`` allows."""
    python = venv / "bin" / "python"
    if not python.exists():
        if not install:
            notes.append(f"{venv.name} does not exist and --no-install was given: peers skipped")
            return None, set()
        log(f"creating {venv.name} ...")
        r = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
        if r.returncode != 0:
            notes.append(f"could not create {venv.name}: peers skipped")
            return None, set()
    wanted = (*PEER_PACKAGES, "matplotlib")
    have = _peer_versions(python, wanted)
    missing = [p for p in wanted if p not in have]
    if missing and install:
        log(f"installing {' '.join(missing)} into {venv.name} (once; a few minutes) ...")
        start = time.perf_counter()
        for group in ([p for p in missing if p != "matplotlib"], ["matplotlib"]):
            group = [p for p in group if p in missing]
            if not group:
                continue
            try:
                r = subprocess.run(
                    [str(python), "-m", "pip", "install", "-q", *group],
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                failed = r.returncode != 0
                detail = (r.stderr.strip().splitlines() or ["?"])[-1]
            except subprocess.TimeoutExpired:
                failed, detail = True, "timed out after 900 s"
            if failed:
                notes.append(f"`pip install {' '.join(group)}` into {venv.name} failed: {detail}")
        log(f"  done in {time.perf_counter() - start:.0f} s")
        have = _peer_versions(python, wanted)
    for p in PEER_PACKAGES:
        if p not in have:
            notes.append(f"{p} is not installable here: left out")
    return python, {p for p in PEER_PACKAGES if p in have} | (
        {"matplotlib"} if "matplotlib" in have else set()
    )


# ---------------------------------------------------------------------------- import time


def time_imports(pythons: dict[str, Path], runs: int) -> dict[str, dict[str, Any]]:
    """Fresh interpreter per run; the targets interleaved run by run (the order reversed
    every other run), median of ``runs``. Wall time from outside (interpreter start-up
    included), CPU time (user + system) of that child alone."""
    targets = [(label, env, code) for label, env, code in IMPORTS if env in pythons]
    env = {**os.environ, **PEER_ENV}
    samples: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in targets}
    for i in range(runs):
        for label, venv, code in targets if i % 2 == 0 else targets[::-1]:
            start = time.perf_counter()
            proc = subprocess.Popen(
                [str(pythons[venv]), "-c", code],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"`{code}` failed in {pythons[venv]}")
            samples[label].append((wall, usage.ru_utime + usage.ru_stime))
    return {
        label: {
            "env": venv,
            "code": code,
            "wall": statistics.median(w for w, _ in samples[label]),
            "cpu": statistics.median(c for _, c in samples[label]),
            "runs": runs,
        }
        for label, venv, code in targets
    }


# ---------------------------------------------------------------------------- workers


class Worker:
    """A contender in its own process (benchmarks/peers.py), one JSON line per command."""

    def __init__(self, name: str, python: Path, url: str, chunks: int, logfile: Any) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "peers.py"), name, url, str(chunks)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=logfile,
            text=True,
            cwd=ROOT,
            env={**os.environ, **PEER_ENV},
        )
        self.hello: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        self.hello = self._read()
        return self.hello

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            return {"error": f"worker exited ({self.proc.wait()})"}
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ask(self, op: str, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"op": op, "n": n}) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            return {"error": f"worker gone: {exc}"}
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def calibrate(worker: Worker, op: str, seconds: float, lowest: int) -> int:
    """How many calls of ``op`` take about ``seconds`` (a short warm-up run measures it)."""
    probe = worker.ask(op, 3)
    if "error" in probe:
        raise RuntimeError(probe["error"])
    return max(lowest, min(2000, round(seconds / max(probe["wall"], 1e-6))))


def run_clients(
    workers: dict[str, Worker], args: argparse.Namespace, results: dict[str, Any]
) -> None:
    """Per call and per chunk, all contenders interleaved; then the concurrent bursts."""
    notes = results["notes"]
    sizes = {}
    for name, w in list(workers.items()):
        try:
            sizes[name] = {
                "chat": calibrate(w, "chat", args.seconds, 5),
                "stream": calibrate(w, "stream", args.seconds, 2),
            }
        except RuntimeError as exc:
            notes.append(f"{name}: left out, it failed: {exc}")
            w.close()
            del workers[name]
    names = list(workers)
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"chat": [], "stream": []} for name in names
    }
    for r in range(args.rounds):
        log(f"  round {r + 1}/{args.rounds}")
        order = names[r % len(names) :] + names[: r % len(names)]
        for op in ("chat", "stream"):
            for name in order:
                reply = workers[name].ask(op, sizes[name][op])
                if "error" not in reply:
                    samples[name][op].append(reply)
                else:
                    notes.append(f"{name}: a round of {op} failed: {reply['error']}")
    for name in names:
        row: dict[str, Any] = {"versions": workers[name].hello.get("versions", {})}
        for op, per in (("chat", 1), ("stream", args.chunks)):
            got = samples[name][op]
            if got:
                row[op] = {
                    "wall": statistics.median(s["wall"] for s in got) / per,
                    "cpu": statistics.median(s["cpu"] for s in got) / per,
                    "best_wall": min(s["wall"] for s in got) / per,
                    "calls_per_round": sizes[name][op],
                    "rounds": len(got),
                }
        results["clients"][name] = row

    if not args.requests:
        return
    bursting = [n for n in names if n not in SLOW_BURSTS]
    log(f"  {args.requests} concurrent requests x {len(bursting)} contenders")
    bursts: dict[str, list[dict[str, Any]]] = {name: [] for name in bursting}
    for r in range(args.burst_rounds):
        for name in bursting if r % 2 == 0 else bursting[::-1]:
            bursts[name].append(workers[name].ask("burst", args.requests))
    for name in bursting:
        ok = [b for b in bursts[name] if "error" not in b or b.get("failed")]
        if not ok:
            notes.append(f"{name}: the concurrent burst failed: {bursts[name][0]['error']}")
            continue
        results["clients"][name]["burst"] = {
            "requests": args.requests,
            "wall": statistics.median(b["wall"] for b in ok),
            "cpu": statistics.median(b["cpu"] for b in ok),
            "failed": max(b.get("failed", 0) for b in ok),
            "error": next((b["error"] for b in ok if b.get("error")), None),
            "rounds": len(ok),
        }


# any-llm's module-level completion() builds a provider per call (~50 ms): a 1,000-request
# burst of it takes most of a minute and says nothing the per-call figure doesn't.
SLOW_BURSTS = {"any-llm completion()"}


# ---------------------------------------------------------------------------- the rest


def run_hf(args: argparse.Namespace, notes: list[str]) -> dict[str, Any] | None:
    cmd = [sys.executable, str(HERE / "hf_compare.py")]
    cmd += ["--tokens", str(args.hf_tokens), "--repeats", str(args.hf_repeats)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    except subprocess.TimeoutExpired:
        notes.append("hf: timed out after 600 s")
        return None
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        notes.append(f"hf: benchmarks/hf_compare.py failed: {tail}")
        return None
    result: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def run_cpu(args: argparse.Namespace, notes: list[str]) -> list[dict[str, Any]] | None:
    """The client's CPU time per call and per chunk next to raw httpx (bench_cpu.py, in a
    subprocess with its own mock server): the figures wall time hides."""
    calls = 300 if args.quick else 1000
    cmd = [sys.executable, str(HERE / "bench_cpu.py"), "--json", "--calls", str(calls)]
    cmd += ["--chunks", str(args.chunks), "--rounds", str(args.rounds)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    except subprocess.TimeoutExpired:
        notes.append("client CPU time: timed out after 900 s")
        return None
    if not r.stdout.strip():
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        notes.append(f"client CPU time: benchmarks/bench_cpu.py failed: {tail}")
        return None
    lines = r.stdout.strip().splitlines()
    for line in lines[:-1]:
        log(line)
    result: list[dict[str, Any]] = json.loads(lines[-1])
    return result


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for name in ("llmkit", "openai", "httpx", "httpx2", "torch", "transformers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def draw_chart(json_path: Path, png_path: Path, peers_python: Path | None) -> str | None:
    """Draw with matplotlib from whichever environment has it; None (no chart) if neither."""
    for python in (Path(sys.executable), peers_python):
        if python is None:
            continue
        has = subprocess.run([str(python), "-c", "import matplotlib"], capture_output=True)
        if has.returncode == 0:
            r = subprocess.run(
                [str(python), str(HERE / "chart.py"), str(json_path), str(png_path)],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                return None
            return f"chart failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    return "matplotlib is in neither environment: no chart"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="llmkit side by side with the raw libraries and its peers, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, runs and requests")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the hf: part")
    parser.add_argument(
        "--skip-cpu", action="store_true", help="leave out the client CPU-time part"
    )
    parser.add_argument("--no-peers", action="store_true", help="leave out LiteLLM and any-llm")
    parser.add_argument(
        "--no-install", action="store_true", help="use .venv-peers as it is, install nothing"
    )
    parser.add_argument("--rounds", type=int, help="rounds of per-call/per-chunk timing")
    parser.add_argument(
        "--seconds", type=float, help="about how long one contender's batch of calls takes"
    )
    parser.add_argument("--import-runs", type=int, help="fresh interpreters per import figure")
    parser.add_argument("--requests", type=int, help="concurrent requests per burst (0: none)")
    parser.add_argument("--burst-rounds", type=int, help="bursts per contender")
    parser.add_argument("--chunks", type=int, default=200, help="content chunks per stream")
    parser.add_argument("--hf-tokens", type=int, help="new tokens per hf generation")
    parser.add_argument("--hf-repeats", type=int, help="interleaved hf repeats")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where results go")
    parser.add_argument("--no-write", action="store_true", help="print only, write nothing")
    args = parser.parse_args(argv)
    defaults = {
        # name: (full run, --quick)
        "rounds": (7, 3),
        "seconds": (0.25, 0.1),
        "import_runs": (5, 3),
        "requests": (1000, 100),
        "burst_rounds": (1, 1),
        "hf_tokens": (48, 16),
        "hf_repeats": (3, 1),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    started = time.perf_counter()
    notes: list[str] = []
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks", *argv]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load_average_start": os.getloadavg()[0],
        "settings": {
            k: getattr(args, k)
            for k in (
                "quick",
                "rounds",
                "seconds",
                "import_runs",
                "requests",
                "burst_rounds",
                "chunks",
            )
        },
        "imports": {},
        "clients": {},
        "hf": None,
        "client_cpu": None,
        "notes": notes,
    }
    # --quick leaves out the slowest contender (about 50 ms a call, and 5 s to start).
    skip = {"any-llm completion()"} if args.quick else set()

    pythons: dict[str, Path] = {"main": Path(sys.executable)}
    peer_packages: set[str] = set()
    peers_python = None
    if not args.no_peers:
        peers_python, peer_packages = ensure_peers(ROOT / ".venv-peers", not args.no_install, notes)
        if peers_python is not None and peer_packages & set(PEER_PACKAGES):
            pythons["peers"] = peers_python
    results["peers_versions"] = (
        _peer_versions(peers_python, ("litellm", "any-llm-sdk", "openai", "httpx"))
        if "peers" in pythons
        else {}
    )

    log(f"import times: {args.import_runs} fresh interpreters each ...")
    imports = time_imports(pythons, args.import_runs)
    if "litellm" not in peer_packages:
        imports.pop("import litellm", None)
    if "any-llm-sdk" not in peer_packages:
        imports.pop("import any_llm", None)
    results["imports"] = imports

    need = {"LiteLLM": "litellm", "any-llm": "any-llm-sdk", "any-llm completion()": "any-llm-sdk"}
    with MockServer(chunks=args.chunks) as url:
        log(f"mock server {url}; starting the contenders ...")
        workers: dict[str, Worker] = {}
        # The workers' stderr (library chatter, tracebacks) for a look when one fails.
        logpath = Path(tempfile.gettempdir()) / "llmkit-benchmarks-workers.log"
        with open(logpath, "w") as logfile:
            try:
                # Started all at once (their start-up is not measured), then used one at a time.
                for name, (venv, _) in CONTENDERS.items():
                    if name in skip or venv not in pythons:
                        continue
                    if venv == "peers" and need[name] not in peer_packages:
                        continue
                    workers[name] = Worker(name, pythons[venv], url, args.chunks, logfile)
                for name, w in list(workers.items()):
                    if "error" in w.wait_ready():
                        notes.append(f"{name}: could not start: {w.hello['error']} ({logpath})")
                        w.close()
                        del workers[name]
                log(f"{len(workers)} contenders ready; per call / per chunk: {args.rounds} rounds")
                run_clients(workers, args, results)
            finally:
                for w in workers.values():
                    w.close()

    if not args.skip_cpu:
        log("client CPU time per call and per chunk (bench_cpu.py) ...")
        results["client_cpu"] = run_cpu(args, notes)

    if not args.skip_hf:
        log(f"hf: {args.hf_tokens} tokens x {args.hf_repeats} repeats ...")
        results["hf"] = run_hf(args, notes)

    results["load_average_end"] = os.getloadavg()[0]
    results["elapsed_s"] = time.perf_counter() - started
    results["targets"] = verdicts(results)
    print_tables(results)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        json_path, png_path = args.out / "benchmarks.json", args.out / "benchmarks.png"
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        problem = draw_chart(json_path, png_path, peers_python)
        if problem:
            notes.append(problem)
            json_path.write_text(json.dumps(results, indent=2) + "\n")
        write_markdown(results, args.out / "benchmarks.md", chart=png_path.exists() and not problem)
        log(
            f"wrote {json_path}, {args.out / 'benchmarks.md'}"
            + ("" if problem else f", {png_path}")
        )
    log(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
