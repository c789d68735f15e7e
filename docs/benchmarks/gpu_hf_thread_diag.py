"""GPU diagnosis: why does generate() in a worker thread run slower than in the main thread?"""
import json, os, sys, threading, time
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
TOK, OUT, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
N = 64
dev = "cuda" if torch.cuda.is_available() else "cpu"
folder = "/tmp/gpu-models/smollm2-135m" if dev == "cuda" else "/tmp/gpu-models/tiny"
if dev == "cpu": N = 8
if not os.path.exists(folder + "/config.json"):
    cfg = AutoConfig.from_pretrained(TOK)
    for k, v in (dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3) if dev == "cuda" else dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).items():
        setattr(cfg, k, v)
    cfg.head_dim = cfg.hidden_size // cfg.num_attention_heads
    torch.manual_seed(0)
    with torch.device(dev):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if dev == "cuda" else torch.float32)
    m.save_pretrained(folder); AutoTokenizer.from_pretrained(TOK).save_pretrained(folder); del m
tok = AutoTokenizer.from_pretrained(folder)
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16 if dev == "cuda" else torch.float32).to(dev).eval()
enc = tok.apply_chat_template([{"role": "user", "content": "Write a story about a robot."}], add_generation_prompt=True, return_tensors="pt", return_dict=True).to(dev)

def sync():
    if dev == "cuda": torch.cuda.synchronize()

def cpu_ticks():
    d = {}
    for t in os.listdir('/proc/self/task'):
        try:
            f = open(f'/proc/self/task/{t}/stat').read().split(') ')[1].split()
        except OSError:
            continue
        d[t] = int(f[11]) + int(f[12])
    return d

def gen(n=N, prep=None):
    if prep: prep()
    a = cpu_ticks(); sync(); t = time.perf_counter()
    with torch.inference_mode():
        model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    sync(); dt = time.perf_counter() - t; b = cpu_ticks()
    busy = sorted(((b[k] - a.get(k, 0)) for k in b), reverse=True)[:4]
    return round(n / dt, 1), busy

def thread(fn, *a, **k):
    r = []
    th = threading.Thread(target=lambda: r.append(fn(*a, **k))); th.start(); th.join(); return r[0]

def poll_thread(fn):
    r = []
    th = threading.Thread(target=lambda: r.append(fn())); th.start()
    while th.is_alive(): time.sleep(0.001)
    return r[0]

res = {}
def note(k, v):
    res.setdefault(k, []).append(v); print(k, v, flush=True)

if MODE == "variants":
    gen(8)
    import queue
    q = queue.Queue()
    def persistent():
        while True:
            f = q.get()
            if f is None: return
            f()
    pt = threading.Thread(target=persistent, daemon=True); pt.start()
    def in_persistent():
        r = []; ev = threading.Event(); q.put(lambda: (r.append(gen()), ev.set())); ev.wait(); return r[0]
    for rep in range(2):
        note("main", gen())
        note("thread", thread(gen))
        note("persistent thread", in_persistent())
        note("thread set_num_threads(1)", thread(gen, prep=lambda: torch.set_num_threads(1)))
        torch.set_num_threads(os.cpu_count())
        note("thread set_device", thread(gen, prep=lambda: torch.cuda.set_device(0) if dev == "cuda" else None))
        note("thread, main polls", poll_thread(gen))
    # profiler: which ops get slower in the thread
    from torch.profiler import profile, ProfilerActivity
    def prof():
        with profile(activities=[ProfilerActivity.CPU]) as p:
            gen(16)
        return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18)
    open(os.path.join(OUT, "prof.txt"), "w").write("== main\n" + prof() + "\n== thread\n" + thread(prof))
    q.put(None)
    try:
        from llmkit import Client
        kit = Client(f"hf:{folder}")
        kit.chat("hi", max_tokens=2)
        for rep in range(2):
            t = time.perf_counter(); r = kit.chat("Write a story about a robot.", temperature=0, max_tokens=N, min_new_tokens=N)
            note("kit chat", round(r.usage.completion_tokens / (time.perf_counter() - t), 1))
            note("main again", gen())
        kit.close()
    except Exception as e:
        note("kit error", repr(e))
    json.dump(res, open(os.path.join(OUT, "diag.json"), "w"), indent=1)
else:  # py-spy target: one mode for ~10 s
    gen(8)
    end = time.time() + 8
    while time.time() < end:
        print(MODE, thread(gen) if MODE == "thread" else gen(), flush=True)
