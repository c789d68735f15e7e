"""Extra GPU checks for issue 20, run before gpu_hf_bench.py: the worker-thread cause
(cuDNN attention) on raw generate, compile=True warm-up and speed, and batch sizes of a
64-request burst. Writes OUTDIR/gpu_hf_extra.json."""
import asyncio, json, os, sys, threading, time
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
TOK, OUTDIR = sys.argv[1], sys.argv[2]
SMALL = "--small" in sys.argv
dev = "cuda" if torch.cuda.is_available() else "cpu"
res = []
def emit(**kw):
    res.append(kw); print(json.dumps(kw), flush=True)
    json.dump(res, open(os.path.join(OUTDIR, "gpu_hf_extra.json"), "w"), indent=1)
name = "tiny" if SMALL else "smollm2-135m"
shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2) if SMALL else dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3)
folder = f"/tmp/gpu-models/{name}"
if not os.path.exists(folder + "/config.json"):
    cfg = AutoConfig.from_pretrained(TOK)
    for k, v in shape.items(): setattr(cfg, k, v)
    cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
    torch.manual_seed(0)
    with torch.device(dev):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if dev == "cuda" else torch.float32)
    m.save_pretrained(folder); AutoTokenizer.from_pretrained(TOK).save_pretrained(folder); del m
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if dev == "cuda" else torch.float32).to(dev).eval()
def sync():
    if dev == "cuda": torch.cuda.synchronize()
P = ["Write a short story about a robot who learns to paint.", "Explain the difference between TCP and UDP in simple terms.", "What are three uses of large language models in medicine?"]
def raw(i, n):
    enc = tok.apply_chat_template([{"role": "user", "content": P[i % 3]}], add_generation_prompt=True, return_tensors="pt", return_dict=True).to(dev)
    sync(); t = time.perf_counter()
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    sync(); return n / (time.perf_counter() - t)
def in_thread(fn, *a):
    r = []; th = threading.Thread(target=lambda: r.append(fn(*a))); th.start(); th.join(); return r[0]
from llmkit.backends.hf import runtime
def raw_no_cudnn(i, n):
    with runtime.generation_attention(dev):
        return raw(i, n)
N = 32 if SMALL else 128
raw(0, 8)
for i in range(2):
    emit(what="raw generate tok/s", new_tokens=N, main=round(raw(i + 1, N), 1), new_thread=round(in_thread(raw, i + 1, N), 1),
         new_thread_cudnn_off=round(in_thread(raw_no_cudnn, i + 1, N), 1), main_cudnn_off=round(raw_no_cudnn(i + 1, N), 1))
from llmkit import AsyncClient, Client
N = 32 if SMALL else 256
for opts in ({}, {"compile": True}):
    kit = Client(f"hf:{folder}", **opts)
    t = time.perf_counter(); kit.chat("hi", max_tokens=2); first = time.perf_counter() - t
    t = time.perf_counter(); kit.chat(P[0], temperature=0, max_tokens=N, min_new_tokens=N); second = time.perf_counter() - t
    rates, rrates = [], []
    for i in range(3):
        rrates.append(raw(i, N))
        t = time.perf_counter(); r = kit.chat(P[i], temperature=0, max_tokens=N, min_new_tokens=N)
        rates.append(r.usage.completion_tokens / (time.perf_counter() - t))
    emit(what="kit single stream", opts=opts, new_tokens=N, kit=[round(x, 1) for x in rates], raw_main=[round(x, 1) for x in rrates],
         kit_vs_raw=round(sorted(rates)[1] / sorted(rrates)[1], 3), first_call_s=round(first, 2), first_full_call_s=round(second, 2),
         compile_warmups=kit.backend.compile_warmups if hasattr(kit.backend, "compile_warmups") else None)
    kit.close()
async def burst(n):
    async with AsyncClient(f"hf:{folder}") as ac:
        await ac.chat("hi", max_tokens=2)
        t = time.perf_counter()
        rs = await asyncio.gather(*(ac.chat(P[i % 3] + f" ({i})", temperature=0, max_tokens=16) for i in range(n)))
        dt = time.perf_counter() - t
        emit(what="burst batch sizes", requests=n, sizes=list(ac.backend._scheduler.sizes)[1:], s=round(dt, 2),
             max_batch_size=ac.backend._scheduler.max_batch_size)
asyncio.run(burst(64))
emit(what="extra done")
