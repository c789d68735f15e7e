"""compile=True on a GPU (issue 20): one stream of llmkit's hf: backend with a static KV cache
(transformers compiles the forward with torch.compile, CUDA graphs) against the eager backend,
raw generate, and raw generate with transformers' own static cache, for SmolLM2-135M and
SmolLM2-1.7B shapes; then, time allowing, raw generate with cuDNN attention off (as llmkit runs
it) and llmkit with cudnn_attention=True, to tell whether the attention kernel is what keeps
eager llmkit below raw on the 1.7B model (random weights, bf16). The warm-up (first call of the cache bucket,
compilation included) is reported apart from the steady rates.

usage: python gpu_hf_compile.py TOKDIR OUTDIR [--small] [--budget SECONDS] [--tokens N] [--only NAME]
Writes OUTDIR/gpu_hf_compile.json (one record per line printed). Models are cached in
/tmp/gpu-models/NAME, the same folders gpu_hf_bench.py makes.
"""
import json, os, sys, time, traceback
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

TOK, OUTDIR = sys.argv[1], sys.argv[2]
SMALL = "--small" in sys.argv
BUDGET = float(sys.argv[sys.argv.index("--budget") + 1]) if "--budget" in sys.argv else 240.0
N = int(sys.argv[sys.argv.index("--tokens") + 1]) if "--tokens" in sys.argv else (16 if SMALL else 128)
T0 = time.time()
dev = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if dev == "cuda" else torch.float32
res = []


def emit(**kw):
    kw["t"] = round(time.time() - T0, 1)
    res.append(kw); print(json.dumps(kw), flush=True)
    json.dump(res, open(os.path.join(OUTDIR, "gpu_hf_compile.json"), "w"), indent=1)


def left():
    return BUDGET - (time.time() - T0)


SHAPES = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3),
    "smollm2-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32, num_key_value_heads=32),
}
if SMALL:
    SHAPES = {"tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)}
P = ["Write a short story about a robot who learns to paint.", "Explain the difference between TCP and UDP in simple terms.", "What are three uses of large language models in medicine?"]


def make_model(name, shape):  # as gpu_hf_bench.py, so both share the folder
    folder = f"/tmp/gpu-models/{name}"
    if os.path.exists(folder + "/config.json"):
        return folder
    cfg = AutoConfig.from_pretrained(TOK)
    for k, v in shape.items():
        setattr(cfg, k, v)
    cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
    torch.manual_seed(0)
    with torch.device(dev):
        m = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    m.save_pretrained(folder); AutoTokenizer.from_pretrained(TOK).save_pretrained(folder)
    return folder


def sync():
    if dev == "cuda":
        torch.cuda.synchronize()


def raw(model, tok, i, n, **kw):
    enc = tok.apply_chat_template([{"role": "user", "content": P[i % 3]}], add_generation_prompt=True, return_tensors="pt", return_dict=True).to(dev)
    sync(); t = time.perf_counter()
    with torch.inference_mode():
        o = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id, **kw)
    sync(); return (o.shape[1] - enc["input_ids"].shape[1]) / (time.perf_counter() - t)


def kit_rate(kit, i, n):
    t = time.perf_counter(); r = kit.chat(P[i % 3], temperature=0, max_tokens=n, min_new_tokens=n)
    return r.usage.completion_tokens / (time.perf_counter() - t)


def med(xs):
    return round(sorted(xs)[len(xs) // 2], 1)


from llmkit import Client  # noqa: E402

emit(what="env", device=dev, torch=torch.__version__, transformers=__import__("transformers").__version__, new_tokens=N)
ONLY = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
for name, shape in SHAPES.items():
    if ONLY and name != ONLY:
        continue
    if left() < 40:
        emit(what="skipped", model=name, why="budget"); break
    try:
        folder = make_model(name, shape)
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(dev).eval()
        eager, comp = Client(f"hf:{folder}"), Client(f"hf:{folder}", compile=True)
        raw(model, tok, 0, 8); eager.chat("hi", max_tokens=2)
        t = time.perf_counter(); warm = comp.backend.warmup(16)
        emit(what="kit compile warm-up", model=name, s=round(time.perf_counter() - t, 2), compile_warmups=warm)
        t = time.perf_counter(); second = kit_rate(comp, 0, N)
        emit(what="kit compile second call", model=name, tok_s=round(second, 1), s=round(time.perf_counter() - t, 2),
             compile_warmups=comp.backend.compile_warmups)
        rates = {"raw": [], "kit": [], "kit_compile": []}
        for i in range(3):
            if left() < 15:
                break
            rates["raw"].append(raw(model, tok, i, N))
            rates["kit"].append(kit_rate(eager, i, N))
            rates["kit_compile"].append(kit_rate(comp, i, N))
        if rates["kit_compile"]:
            emit(what="single stream tok/s", model=name, new_tokens=N, **{k: [round(x, 1) for x in v] for k, v in rates.items()},
                 kit_vs_raw=round(med(rates["kit"]) / med(rates["raw"]), 3), compile_vs_raw=round(med(rates["kit_compile"]) / med(rates["raw"]), 3),
                 compile_vs_kit=round(med(rates["kit_compile"]) / med(rates["kit"]), 3), compile_warmups=comp.backend.compile_warmups)
        comp.close()
        if left() > 45 and rates["kit"]:  # why eager llmkit trails raw on 1.7B (0.94x last time)
            from llmkit.backends.hf import runtime
            cudnn = Client(f"hf:{folder}", cudnn_attention=True); cudnn.chat("hi", max_tokens=2)
            diag = {"raw_cudnn_off": [], "kit_cudnn_on": [], "kit": []}
            for i in range(3):
                if left() < 25:
                    break
                with runtime.generation_attention(dev):
                    diag["raw_cudnn_off"].append(raw(model, tok, i, N))
                diag["kit_cudnn_on"].append(kit_rate(cudnn, i, N))
                diag["kit"].append(kit_rate(eager, i, N))
            cudnn.close()
            emit(what="attention diag tok/s", model=name, new_tokens=N, **{k: [round(x, 1) for x in v] for k, v in diag.items()},
                 raw_cudnn_on=[round(x, 1) for x in rates["raw"]])
        eager.close()
        if left() > 60:  # transformers' own compiled path: a static cache on CUDA compiles itself
            t = time.perf_counter(); first = raw(model, tok, 0, N, cache_implementation="static")
            warm_s = time.perf_counter() - t
            rs = [raw(model, tok, i, N, cache_implementation="static") for i in range(3) if left() > 15]
            emit(what="raw static cache tok/s", model=name, new_tokens=N, first_call_s=round(warm_s, 2), first_tok_s=round(first, 1),
                 rates=[round(x, 1) for x in rs], compile_vs_raw_static=round(med(rates["kit_compile"]) / med(rs), 3) if rs and rates["kit_compile"] else None)
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()
    except Exception as e:
        emit(what="error", model=name, error=f"{type(e).__name__}: {e}", tb=traceback.format_exc()[-1500:])
emit(what="done", total_s=round(time.time() - T0, 1))
