"""Benchmark the hf backend against raw transformers on the same model, prompt and dtype.

    python benchmarks/bench_hf.py                       # hf:smollm2 on CPU, float32
    python benchmarks/bench_hf.py --source /path/to/model --tokens 128 --repeats 5

Measured side by side in one process, runs interleaved so background load hits both:

* warm load time (the GGUF already converted: llmkit's cache vs from_pretrained on it);
* tokens/s of a non-streamed answer (``backend.chat`` vs ``model.generate``);
* tokens/s of a streamed answer (``backend.stream`` vs generate + ``TextIteratorStreamer``
  in a thread, the usual recipe) and time to first token;
* throughput of 8 prompts: ``backend.batch`` vs 8 sequential ``backend.chat`` calls, and
  8 concurrent independent ``backend.chat`` calls from 8 threads (dynamic batching; also
  with ``batch_window=0``, to show what the collection window buys), next to raw batched
  generate();
* peak RSS of the process.

Every generation is forced to exactly ``--tokens`` new tokens (``min_new_tokens``) so the
rates compare equal work.

``OMP_WAIT_POLICY=PASSIVE`` is set (unless already set) before torch is imported: on a CPU
shared with other busy processes, libgomp's default busy-waiting makes generate() in the
main thread 3-4x slower than the same call in a worker thread, which would distort the
llmkit-vs-raw comparison either way. Pass ``--omp-active`` to measure without it. Targets: chat >= 0.95x raw generate, stream >= 0.9x chat, warm
load <= 2.5 s, batch of 8 >= 4x sequential.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
if "--omp-active" not in sys.argv:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROMPT = "Write a short story about a lighthouse keeper and a storm."
BATCH_PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain what a CPU does in two sentences.",
    "Give me three tips for learning Python.",
    "What is the boiling point of water?",
    "Describe the colour blue to someone who cannot see.",
    "Why is the sky blue?",
    "Name five animals that live in the ocean.",
]


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--source", default="smollm2", help="hf source (alias, folder, hub id, .gguf)"
    )
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per generation")
    parser.add_argument("--batch-tokens", type=int, default=32, help="new tokens per batch row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument(
        "--omp-active", action="store_true", help="keep libgomp's default busy-waiting"
    )
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from llmkit.backends.hf import HuggingFaceBackend
    from llmkit.backends.hf import loading as _hf_loading
    from llmkit.types import ChatRequest, GenerationParams, Message

    options: dict[str, Any] = {"device": args.device, "dtype": args.dtype}
    rows: list[tuple[str, str, str, str]] = []

    # ---- load: make sure the conversion is done, then time warm loads of both.
    start = time.perf_counter()
    HuggingFaceBackend(args.source, **options).load().close()
    first_load = time.perf_counter() - start
    gc.collect()
    backend = HuggingFaceBackend(args.source, **options)
    start = time.perf_counter()
    backend.load()
    warm_llmkit = time.perf_counter() - start
    location = backend.source.location
    if backend.source.kind == "gguf":
        location = str(_hf_loading.gguf_cache_entry(location, _hf_loading.cache_root()))
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=dtype).to(args.device).eval()
    warm_raw = time.perf_counter() - start
    rows.append(("load (first, incl. any GGUF conversion)", f"{first_load:.2f} s", "", ""))
    rows.append(("warm load", f"{warm_llmkit:.2f} s", f"{warm_raw:.2f} s", "target <= 2.5 s"))

    n = args.tokens
    messages = [{"role": "user", "content": PROMPT}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(args.device)
    request = ChatRequest(
        model=args.source,
        messages=[Message.user(PROMPT)],
        params=GenerationParams(max_tokens=n),
        extra={"min_new_tokens": n},
    )

    def raw_generate() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        assert out.shape[1] - inputs["input_ids"].shape[1] == n
        return n / (time.perf_counter() - start)

    def llmkit_chat() -> float:
        start = time.perf_counter()
        response = backend.chat(request)
        assert response.usage.completion_tokens == n
        return n / (time.perf_counter() - start)

    ttft: dict[str, list[float]] = {"llmkit": [], "raw": []}

    def llmkit_stream() -> float:
        start = time.perf_counter()
        first = None
        for event in backend.stream(request):
            if first is None and event.text:
                first = time.perf_counter() - start
        ttft["llmkit"].append(first or 0.0)
        return n / (time.perf_counter() - start)

    def raw_stream() -> float:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(
            **inputs,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            streamer=streamer,
            pad_token_id=tokenizer.pad_token_id,
        )
        start = time.perf_counter()
        worker = threading.Thread(target=lambda: model.generate(**kwargs))
        worker.start()
        first = None
        for piece in streamer:
            if first is None and piece:
                first = time.perf_counter() - start
        worker.join()
        ttft["raw"].append(first or 0.0)
        return n / (time.perf_counter() - start)

    llmkit_chat(), raw_generate()  # warm-up (first calls allocate and fill caches)
    chat_rates, raw_rates, stream_rates, raw_stream_rates = [], [], [], []
    for _ in range(args.repeats):
        raw_rates.append(raw_generate())
        chat_rates.append(llmkit_chat())
        stream_rates.append(llmkit_stream())
        raw_stream_rates.append(raw_stream())
    chat, raw = statistics.median(chat_rates), statistics.median(raw_rates)
    streamed, raw_streamed = statistics.median(stream_rates), statistics.median(raw_stream_rates)
    rows.append(
        (
            f"tokens/s, non-streamed ({n} tokens)",
            f"{chat:.1f}",
            f"{raw:.1f}",
            f"{chat / raw:.2f}x raw (target >= 0.95x)",
        )
    )
    rows.append(
        (
            "tokens/s, streamed",
            f"{streamed:.1f}",
            f"{raw_streamed:.1f} (TextIteratorStreamer)",
            f"{streamed / chat:.2f}x non-streamed (target >= 0.9x)",
        )
    )
    rows.append(
        (
            "time to first token",
            f"{statistics.median(ttft['llmkit']) * 1000:.0f} ms",
            f"{statistics.median(ttft['raw']) * 1000:.0f} ms",
            "",
        )
    )

    # ---- batch of 8 prompts vs 8 sequential calls.
    b = args.batch_tokens
    requests = [
        ChatRequest(
            model=args.source,
            messages=[Message.user(p)],
            params=GenerationParams(max_tokens=b),
            extra={"min_new_tokens": b},
        )
        for p in BATCH_PROMPTS
    ]

    def sequential() -> float:
        start = time.perf_counter()
        total = sum(backend.chat(r).usage.completion_tokens for r in requests)
        return total / (time.perf_counter() - start)

    def batched() -> float:
        start = time.perf_counter()
        total = sum(r.usage.completion_tokens for r in backend.batch(requests))
        return total / (time.perf_counter() - start)

    def raw_batched() -> float:
        texts = [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
            )
            for p in BATCH_PROMPTS
        ]
        tokenizer.padding_side = "left"
        enc = tokenizer(texts, add_special_tokens=False, return_tensors="pt", padding=True).to(
            args.device
        )
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(
                **enc,
                max_new_tokens=b,
                min_new_tokens=b,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        return len(texts) * b / (time.perf_counter() - start)

    pool = ThreadPoolExecutor(max_workers=len(requests))
    scheduler = backend._scheduler  # benchmark-only: read batch sizes, flip the window
    window = scheduler.window
    seen_sizes: dict[str, list[int]] = {}

    def concurrent(batch_window: float, label: str) -> Callable[[], float]:
        def run() -> float:
            scheduler.window = batch_window
            before = len(scheduler.sizes)
            start = time.perf_counter()
            total = sum(r.usage.completion_tokens for r in pool.map(backend.chat, requests))
            rate = total / (time.perf_counter() - start)
            seen_sizes.setdefault(label, []).extend(list(scheduler.sizes)[before:])
            scheduler.window = window
            return rate

        return run

    batched()  # warm-up
    # Rounds interleave the variants, so a change in background load hits them all.
    variants = {
        "sequential": sequential,
        "batch": batched,
        "raw": raw_batched,
        "concurrent": concurrent(window, "window"),
        "no window": concurrent(0.0, "none"),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(max(1, args.repeats - 1)):
        for name, fn in variants.items():
            rates[name].append(fn())
    pool.shutdown()
    seq_rate, batch_rate, raw_batch_rate, concurrent_rate, no_window_rate = (
        statistics.median(rates[name]) for name in variants
    )
    rows.append(
        (
            f"8 prompts x {b} tokens: sequential chat()",
            f"{seq_rate:.1f} tok/s",
            "",
            "",
        )
    )
    rows.append(
        (
            "8 prompts: batch()",
            f"{batch_rate:.1f} tok/s",
            f"{raw_batch_rate:.1f} tok/s (batched generate)",
            f"{batch_rate / seq_rate:.2f}x sequential (target >= 4x)",
        )
    )
    rows.append(
        (
            f"8 concurrent chat() (threads), batch_window={window * 1000:g} ms",
            f"{concurrent_rate:.1f} tok/s",
            f"{raw_batch_rate / seq_rate:.2f}x sequential (raw batched)",
            f"{concurrent_rate / seq_rate:.2f}x sequential; batches {seen_sizes['window']}",
        )
    )
    rows.append(
        (
            "8 concurrent chat() (threads), batch_window=0",
            f"{no_window_rate:.1f} tok/s",
            "",
            f"{no_window_rate / seq_rate:.2f}x sequential; batches {seen_sizes['none']}",
        )
    )
    rows.append(("peak RSS (both models loaded)", f"{_peak_rss_mb():.0f} MB", "", ""))

    print(
        f"\nhf:{args.source} on {args.device}, {args.dtype}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, repeats={args.repeats}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}, "
        f"load average {os.getloadavg()[0]:.1f}\n"
    )
    header = ("measure", "llmkit", "raw transformers", "ratio / target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    backend.close()


if __name__ == "__main__":
    main()
