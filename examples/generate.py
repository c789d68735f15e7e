"""Text generation: stream a short continuation of a prompt."""

from _common import client_for, parse_args

args = parse_args(__doc__ or "")
with (
    client_for(args.profile) as client,
    client.stream("Write two sentences about the sea.", max_tokens=60) as stream,
):
    for event in stream:
        print(event.text, end="", flush=True)
print(f"\n[{stream.response.usage.completion_tokens} tokens from {stream.response.backend}]")
