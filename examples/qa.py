"""Question answering with a system prompt."""

from _common import client_for, parse_args

args = parse_args(__doc__ or "")
with client_for(args.profile) as client:
    response = client.chat(
        "What is the capital of France?",
        system="You are a concise assistant. Answer in one short sentence.",
        max_tokens=30,
    )
    print(response.text)
    print(f"[{response.finish_reason}; {response.usage.total_tokens} tokens; {response.backend}]")
