"""A coding assistant: a multi-turn conversation in OpenAI message shape."""

from _common import client_for, parse_args

args = parse_args(__doc__ or "")
history = [
    {"role": "system", "content": "You are a helpful Python programming assistant. Be brief."},
    {"role": "user", "content": "Write a Python function that returns the square of a number."},
]
with client_for(args.profile) as client:
    first = client.chat(history, max_tokens=60)
    print(first.text)
    history += [first.message.to_openai(), {"role": "user", "content": "Now add a docstring."}]
    second = client.chat(history, max_tokens=60)
    print("---")
    print(second.text)
