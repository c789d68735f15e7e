"""The prompts the hf benchmarks send (bench_hf_speed.py, bench_serve_hf.py): eight of
different lengths, numbered beyond eight so that no two requests are the same."""

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain the difference between TCP and UDP in simple terms.",
    "What are three uses of large language models in medicine?",
    "Translate to French: The weather is lovely today and we are going to the beach.",
    "Write a Python function that returns the factorial of n.",
    "Summarise the plot of Romeo and Juliet in four sentences.",
    "Give me a recipe for a simple tomato soup.",
    "What is the capital of Australia and why was it chosen?",
]


def prompts(n: int) -> list[str]:
    return [PROMPTS[i % len(PROMPTS)] + (f" ({i})" if i >= len(PROMPTS) else "") for i in range(n)]
