"""The rows of the hf performance issue on CPU: llmkit's ``hf:`` against raw transformers,
each a ratio of two things measured in one run, interleaved so background load hits both.

    python benchmarks/bench_hf_speed.py                       # hf:smollm2, 32 tokens
    python benchmarks/bench_hf_speed.py --source /path/to/model --concurrency 8,32,64

Rows:

* **one stream, fresh process**: llmkit's ``Client.chat`` in a process whose main thread
  never ran torch, against raw ``model.generate`` in another fresh process; the two kinds of
  child process alternate, ``--repeats`` of each.
* **one stream, after main-thread torch**: one process, whose main thread runs raw
  ``generate`` (so torch's thread pool of the main thread exists) interleaved with
  ``Client.chat`` (which generates on llmkit's worker thread) - the case where the worker
  once fell to 0.6x.
* **N concurrent requests** (``--concurrency``): ``asyncio.gather`` of N ``AsyncClient.chat``
  calls against one left-padded raw ``generate`` of the N prompts and against transformers'
  continuous batching (``generate_batch``), where the installed transformers has it.

Every generation is forced to exactly its token count (``min_new_tokens``), so rates
compare equal work. ``OMP_WAIT_POLICY=PASSIVE`` is set before torch is imported unless
``--omp-active`` (see bench_hf.py: libgomp's busy-waiting on a shared CPU distorts the
main-thread side). The load average is printed: on a shared machine the ratios are the
figures to read, not the rates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
if "--omp-active" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_prompts import PROMPTS, prompts


class Raw:
    """Raw transformers on the folder llmkit loads (the converted GGUF for an alias)."""

    def __init__(self, location: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(location)
        self.model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32).eval()

    def ids(self, prompt: str) -> list[int]:
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def single(self, prompt: str, n: int) -> float:
        ids = self.torch.tensor([self.ids(prompt)])
        start = time.perf_counter()
        with self.torch.inference_mode():
            out = self.model.generate(
                input_ids=ids,
                attention_mask=self.torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        assert out.shape[1] - ids.shape[1] == n
        return n / (time.perf_counter() - start)

    def padded(self, texts: list[str], n: int) -> float:
        self.tok.padding_side = "left"
        rendered = [
            self.tok.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in texts
        ]
        enc = self.tok(rendered, add_special_tokens=False, return_tensors="pt", padding=True)
        start = time.perf_counter()
        with self.torch.inference_mode():
            self.model.generate(
                **enc,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=self.tok.pad_token_id,
            )
        return len(texts) * n / (time.perf_counter() - start)

    def continuous(self, texts: list[str], n: int) -> float | None:
        from transformers import GenerationConfig

        generate_batch = getattr(self.model, "generate_batch", None)
        if generate_batch is None:
            return None
        config = GenerationConfig(
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            eos_token_id=-1,
            pad_token_id=self.tok.pad_token_id,
        )
        ids = [self.ids(p) for p in texts]
        start = time.perf_counter()
        out = generate_batch(inputs=ids, generation_config=config, progress_bar=False)
        values = out.values() if hasattr(out, "values") else out
        tokens = sum(len(getattr(v, "generated_tokens", []) or []) for v in values)
        return tokens / (time.perf_counter() - start)


def location_of(client: Any) -> str:
    from llmkit.backends.hf import loading

    backend = client.backend
    backend.load()
    if backend.source.kind == "gguf":
        return str(loading.gguf_cache_entry(backend.source.location, loading.cache_root()))
    return str(backend.source.location)


def child(kind: str, source: str, n: int) -> None:
    """One measurement in this fresh process (main thread never ran torch before)."""
    from llmkit import Client

    client = Client(f"hf:{source}", device="cpu", dtype="float32")
    if kind == "kit":
        client.chat(PROMPTS[1], max_tokens=4)  # warm-up, on the worker thread like the run
        start = time.perf_counter()
        r = client.chat(PROMPTS[0], max_tokens=n, min_new_tokens=n, temperature=0)
        assert r.usage.completion_tokens == n
        rate = n / (time.perf_counter() - start)
    else:
        raw = Raw(location_of(client))
        raw.single(PROMPTS[1], 4)
        rate = raw.single(PROMPTS[0], n)
    client.close()
    print(json.dumps({"rate": rate}))


def fresh_rates(source: str, n: int, repeats: int) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {"kit": [], "raw": []}
    for i in range(repeats):
        for kind in ("kit", "raw") if i % 2 == 0 else ("raw", "kit"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, "--source", source, "--tokens", str(n)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            rates[kind].append(json.loads(out.strip().splitlines()[-1])["rate"])
    return rates


async def concurrent(client: Any, texts: list[str], n: int) -> float:
    start = time.perf_counter()
    responses = await asyncio.gather(
        *(client.chat(p, max_tokens=n, min_new_tokens=n, temperature=0) for p in texts)
    )
    total = sum(r.usage.completion_tokens for r in responses)
    assert total == n * len(texts)
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="smollm2")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens of a single stream")
    parser.add_argument("--batch-tokens", type=int, default=16, help="new tokens per request")
    parser.add_argument("--concurrency", default="8,32,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--omp-active", action="store_true")
    parser.add_argument("--child", choices=("kit", "raw"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.tokens)
        return

    from llmkit import AsyncClient, Client

    med = statistics.median
    rows: list[tuple[str, str, str, str]] = []
    n = args.tokens
    fresh = fresh_rates(args.source, n, args.repeats)
    rows.append(
        (
            f"one stream, fresh process ({n} tokens)",
            f"{med(fresh['kit']):.1f} tok/s",
            f"{med(fresh['raw']):.1f} tok/s",
            f"{med(fresh['kit']) / med(fresh['raw']):.2f}x raw",
        )
    )

    client = Client(f"hf:{args.source}", device="cpu", dtype="float32")
    raw = Raw(location_of(client))
    raw.single(PROMPTS[1], 4), client.chat(PROMPTS[1], max_tokens=4)  # warm-up
    kit_rates, raw_rates = [], []
    for i in range(args.repeats):
        pairs: list[tuple[list[float], Any]] = [
            (raw_rates, lambda: raw.single(PROMPTS[0], n)),
            (kit_rates, lambda: kit_single(client, n)),
        ]
        for target, fn in pairs if i % 2 == 0 else pairs[::-1]:
            target.append(fn())
    rows.append(
        (
            f"one stream, after main-thread torch ({n} tokens)",
            f"{med(kit_rates):.1f} tok/s",
            f"{med(raw_rates):.1f} tok/s",
            f"{med(kit_rates) / med(raw_rates):.2f}x raw",
        )
    )
    client.close()

    m = args.batch_tokens
    for size in (int(s) for s in args.concurrency.split(",") if s):
        texts = prompts(size)
        loop = asyncio.new_event_loop()
        ac = AsyncClient(f"hf:{args.source}", device="cpu", dtype="float32", max_batch_size=size)
        loop.run_until_complete(ac.chat("hi", max_tokens=2))
        raw.padded(texts[:2], 2)
        has_cb = raw.continuous(texts[:2], 2) is not None
        got: dict[str, list[float]] = {"kit": [], "raw": [], "cb": []}
        for _ in range(max(1, args.repeats - 1)):
            got["raw"].append(raw.padded(texts, m))
            got["kit"].append(loop.run_until_complete(concurrent(ac, texts, m)))
            if has_cb:
                got["cb"].append(raw.continuous(texts, m) or 0.0)
        loop.run_until_complete(ac.aclose())
        loop.close()
        kit, padded = med(got["kit"]), med(got["raw"])
        cb = med(got["cb"]) if got["cb"] else None
        rows.append(
            (
                f"{size} concurrent, {m} tokens each",
                f"{kit:.1f} tok/s",
                f"{padded:.1f} padded batch; " + (f"{cb:.1f} cont. batching" if cb else "no CB"),
                f"{kit / padded:.2f}x padded" + (f", {kit / cb:.2f}x CB" if cb else ""),
            )
        )

    import torch

    print(
        f"\nhf:{args.source} on cpu, float32, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, repeats={args.repeats}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    header = ("measure", "llmkit", "raw transformers", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def kit_single(client: Any, n: int) -> float:
    start = time.perf_counter()
    r = client.chat(PROMPTS[0], max_tokens=n, min_new_tokens=n, temperature=0)
    assert r.usage.completion_tokens == n
    return n / (time.perf_counter() - start)


if __name__ == "__main__":
    main()
