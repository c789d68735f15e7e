"""Retrieval-augmented question answering over a few local documents.

The documents are embedded once (offline with the embedded all-MiniLM-L6-v2, ``hf:minilm``),
the question is embedded too, the closest documents by cosine similarity become the context,
and a chat model answers from it (offline with ``hf:smollm2``). Both models are profiles of
examples/llmkit.toml: ``--embed-profile openai-embed --profile openai`` runs the same code on
OpenAI, ``--profile served`` on a model behind ``llmkit serve``.
"""

from __future__ import annotations

import argparse
import math
import os

from _common import client_for

DOCUMENTS = [
    "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
    "Mount Fuji is the highest mountain in Japan, at 3,776 metres.",
    "The Great Barrier Reef lies off the coast of Queensland, Australia.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "The Rhine flows from the Swiss Alps to the North Sea through Germany.",
    "Penguins live almost only in the Southern Hemisphere, many in Antarctica.",
]


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("question", nargs="?", default="When was the Eiffel Tower finished?")
parser.add_argument("--profile", default=os.environ.get("LLMKIT_PROFILE", "local"))
parser.add_argument("--embed-profile", default="embed-local")
parser.add_argument("--top", type=int, default=2, help="documents given as context")
args = parser.parse_args()

with client_for(args.embed_profile) as embedder, client_for(args.profile) as chat:
    vectors = embedder.embed(DOCUMENTS).vectors  # one call; batched and ordered by llmkit
    query = embedder.embed(args.question).vectors[0]
    ranked = sorted(range(len(DOCUMENTS)), key=lambda i: -cosine(query, vectors[i]))
    context = [DOCUMENTS[i] for i in ranked[: args.top]]
    for line in context:
        print(f"context: {line}")
    answer = chat.chat(
        f"Context:\n{chr(10).join(context)}\n\nQuestion: {args.question}",
        system="Answer the question in one short sentence, using only the context.",
        temperature=0,
        max_tokens=40,
    )
    print(f"answer: {answer.text.strip()}")
    print(f"[{embedder.backend.spec} + {answer.backend}]")
