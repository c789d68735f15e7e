"""Train → serve → call, end to end on a CPU in about a minute.

1. Train a tiny GPT-2-style model from scratch for a few steps with ``transformers.Trainer``
   on ``data/corpus.txt`` (a byte-level BPE tokenizer is trained on the same text).
2. Save it, and serve it with ``llmkit serve hf:<folder>`` (an OpenAI-compatible REST API).
3. Call it from an application with ``Client("rest:...", base_url=...)``.

    python examples/train_serve_call.py [--steps 60] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llmkit import Client

CORPUS = Path(__file__).with_name("data") / "corpus.txt"


def train(out: Path, steps: int) -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import (
        DataCollatorForLanguageModeling,
        GPT2Config,
        GPT2LMHeadModel,
        PreTrainedTokenizerFast,
        Trainer,
        TrainingArguments,
    )

    torch.manual_seed(0)
    text = CORPUS.read_text()
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        text.splitlines(), vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    lines = [line + tokenizer.eos_token for line in text.splitlines()]
    examples = [tokenizer(line, truncation=True, max_length=64) for line in lines]

    trainer = Trainer(
        model=model,
        args=TrainingArguments(
            output_dir=str(out / "checkpoints"),
            max_steps=steps,
            per_device_train_batch_size=16,
            learning_rate=3e-3,
            warmup_steps=5,
            logging_steps=max(1, steps // 4),
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        ),
        train_dataset=examples,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    result = trainer.train()
    print(f"trained {steps} steps, final loss {result.training_loss:.2f}")
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(model_dir: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "llmkit.cli", "serve", f"hf:{model_dir}", "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llmkit serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit("llmkit serve did not become healthy in time")


def main() -> None:
    parser = argparse.ArgumentParser(description="train -> serve -> call")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", type=Path, default=None, help="where to save the model")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "tiny-gpt2"
        train(out, args.steps)
        port = free_port()
        server = serve(out, port)
        try:
            with Client(f"rest:{out}", base_url=f"http://127.0.0.1:{port}/v1") as client:
                response = client.complete("The cat", max_tokens=12, temperature=0)
                print(
                    f"prompt 'The cat' -> {response.text!r} ({response.usage.completion_tokens} tokens)"
                )
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
