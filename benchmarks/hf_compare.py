"""The hf part of ``python -m benchmarks``: llmkit's ``hf:`` backend vs raw transformers.

The core of bench_hf.py (same prompt, same dtype, the same recipe for the raw side:
``model.generate`` for a plain answer, ``generate`` in a thread with a ``TextIteratorStreamer``
for a streamed one) without its slower batch and memory parts, printing JSON for the
orchestrator: tokens per second of a plain and of a streamed answer, and time to first token,
each the median over ``--repeats`` interleaved runs. Every generation is forced to exactly
``--tokens`` new tokens (``min_new_tokens``) so the rates compare equal work. llmkit is driven
through its public ``Client``.

    python benchmarks/hf_compare.py --tokens 64 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# Imported first: it sets OMP_WAIT_POLICY=PASSIVE before torch is imported (see its docstring).
from bench_hf import PROMPT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default="smollm2")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

    from llmkit import Client
    from llmkit.backends.hf import loading as _hf_loading

    n = args.tokens
    start = time.perf_counter()
    client = Client(f"hf:{args.source}", device="cpu", dtype="float32")
    backend = client.backend
    backend.load()  # type: ignore[attr-defined]
    load_llmkit = time.perf_counter() - start
    location = backend.source.location  # type: ignore[attr-defined]
    if backend.source.kind == "gguf":  # type: ignore[attr-defined]
        location = str(_hf_loading.gguf_cache_entry(location, _hf_loading.cache_root()))
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(location)
    model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32).eval()
    load_raw = time.perf_counter() - start

    messages = [{"role": "user", "content": PROMPT}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    gen = {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False}

    def raw_chat() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, **gen, pad_token_id=tokenizer.pad_token_id)
        assert out.shape[1] - inputs["input_ids"].shape[1] == n
        return n / (time.perf_counter() - start)

    def llmkit_chat() -> float:
        start = time.perf_counter()
        r = client.chat(PROMPT, max_tokens=n, min_new_tokens=n)
        assert r.usage.completion_tokens == n, r.usage
        return n / (time.perf_counter() - start)

    ttft: dict[str, list[float]] = {"llmkit": [], "raw": []}

    def llmkit_stream() -> float:
        start = time.perf_counter()
        first = None
        with client.stream(PROMPT, max_tokens=n, min_new_tokens=n) as s:
            for event in s:
                if first is None and event.text:
                    first = time.perf_counter() - start
        ttft["llmkit"].append(first or 0.0)
        return n / (time.perf_counter() - start)

    def raw_stream() -> float:
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {**inputs, **gen, "streamer": streamer, "pad_token_id": tokenizer.pad_token_id}
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

    llmkit_chat(), raw_chat()  # warm-up: the first calls allocate and fill caches
    runs: dict[str, list[float]] = {"llmkit": [], "raw": [], "llmkit_s": [], "raw_s": []}
    for i in range(args.repeats):
        pairs = [("raw", raw_chat), ("llmkit", llmkit_chat)]
        pairs += [("llmkit_s", llmkit_stream), ("raw_s", raw_stream)]
        for key, fn in pairs if i % 2 == 0 else pairs[::-1]:
            runs[key].append(fn())
    med = {key: statistics.median(values) for key, values in runs.items()}
    result = {
        "source": f"hf:{args.source}",
        "tokens": n,
        "repeats": args.repeats,
        "device": "cpu",
        "dtype": "float32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "warm_load_s": {"llmkit": load_llmkit, "raw": load_raw},
        "tokens_per_s": {"llmkit": med["llmkit"], "raw": med["raw"]},
        "stream_tokens_per_s": {"llmkit": med["llmkit_s"], "raw": med["raw_s"]},
        "ttft_s": {key: statistics.median(values) for key, values in ttft.items()},
    }
    client.close()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
