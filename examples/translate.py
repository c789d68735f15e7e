"""Translation with a reusable Prompt template and few-shot examples."""

from _common import client_for, parse_args

from llmkit import Prompt

translate = Prompt(
    system="You translate {source} to {target}. Reply with the translation only.",
    user="{text}",
    examples=[("Good night", "Bonne nuit"), ("Thank you", "Merci")],
)

args = parse_args(__doc__ or "")
with client_for(args.profile) as client:
    for text in ["Good morning", "See you tomorrow"]:
        response = client.chat(
            translate,
            variables={"source": "English", "target": "French", "text": text},
            max_tokens=20,
        )
        print(f"{text} -> {response.text.strip()}")
