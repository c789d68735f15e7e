"""Per-token cost of llmkit's GenerationControl (the stopping criterion that feeds the decoder,
stop strings, deadlines and streaming callbacks of every hf: generate() call), on the CPU,
for one row: one call per new token over a 1000-token answer, as generate() makes them.

usage: python docs/benchmarks/hf_control_cost.py TOKDIR     # SmolLM2's tokenizer folder
"""
import sys, time
import torch
from transformers import AutoTokenizer
from llmkit.backends.hf.generation import GenerationControl, IncrementalDecoder, RowState, StopMatcher

tok = AutoTokenizer.from_pretrained(sys.argv[1])
decode = lambda ids: tok.decode(ids, skip_special_tokens=True)  # noqa: E731
ids = tok("The quick brown fox jumps over the lazy dog and keeps running through the forest until night falls. " * 20)["input_ids"][:1000]


def per_token_us(on_text=None, stops=()):
    row = RowState(prompt_tokens=1, max_new_tokens=10**6, decoder=IncrementalDecoder(decode), matcher=StopMatcher(stops))
    control = GenerationControl([row], eos_token_ids=[0], on_text=on_text)
    x = torch.tensor([[1] + ids])
    t = time.perf_counter()
    for i in range(1, len(ids)):
        control(x[:, : i + 1])
    return (time.perf_counter() - t) / (len(ids) - 1) * 1e6


for _ in range(2):
    print("GenerationControl us/token: plain %.1f, streaming callback %.1f, two stop strings %.1f"
          % (per_token_us(), per_token_us(lambda i, t: None), per_token_us(stops=["User:", "\n\n"])))
