"""A tool loop: the model calls Python functions, sees their results, then answers.

The default profile is ``scripted``: a scripted model that behaves like a tool-calling one,
so the output is the same every time. ``--profile local`` runs the embedded 135M model: its
call is always valid (``tool_choice="required"`` is enforced by constrained decoding), but
its final answer tends to repeat the tool's result. Use ``--profile openai`` (or any
tool-capable server) for a real model.
"""

import json

from _common import client_for, parse_args

from llmkit import Client
from llmkit.testing import FakeBackend, Reply


def get_weather(city: str, unit: str = "celsius") -> dict[str, object]:
    """Get the current weather in a city.

    Args:
        city: the city name.
        unit: celsius or fahrenheit.
    """
    return {"city": city, "temperature": 21 if unit == "celsius" else 70, "unit": unit}


def scripted_model(request):  # type: ignore[no-untyped-def]
    """Call get_weather once, then answer from its result."""
    last = request.messages[-1]
    if last.role == "tool":
        data = json.loads(last.text)
        return Reply(f"It is {data['temperature']} degrees {data['unit']} in {data['city']}.")
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    return Reply(tool_calls=[call])


args = parse_args(__doc__ or "", default_profile="scripted")
client = (
    Client(backend=FakeBackend([scripted_model]))
    if args.profile == "scripted"
    else client_for(args.profile)
)
with client:
    # "required" forces a call on the first turn only; run_tools then lets the model answer.
    response = client.run_tools(
        "What's the weather in Paris?", tools=[get_weather], tool_choice="required"
    )
    print(response.text)
