"""The one typed definition of the per-call options, and how a call's keywords are split."""

from __future__ import annotations

import typing

from llmkit import Client, Message
from llmkit._client.options import PARAM_NAMES, ChatOptions, CompleteOptions
from llmkit.testing import FakeBackend
from llmkit.types import NOT_GIVEN, GenerationParams


def test_every_generation_param_is_a_typed_option() -> None:
    # A field added to GenerationParams must be added to the options too (so it completes
    # in editors and is type-checked); routing it needs no edit (see the next test).
    assert set(GenerationParams.model_fields) <= set(ChatOptions.__optional_keys__)
    assert set(CompleteOptions.__optional_keys__) <= set(ChatOptions.__optional_keys__)
    assert frozenset(GenerationParams.model_fields) == PARAM_NAMES
    effort = typing.get_type_hints(ChatOptions)["reasoning_effort"]
    assert set(typing.get_args(typing.get_args(effort)[0])) == {
        "none",
        "minimal",
        "low",
        "medium",
        "high",
    }


def test_params_by_name_the_rest_to_the_backend(driver) -> None:
    fake = FakeBackend(["ok"])
    driver.chat(
        {"backend": fake},
        "q",
        system="Be brief.",
        temperature=0.5,
        max_tokens=7,
        top_k=40,  # unknown to llmkit: passed through
        seed=NOT_GIVEN,  # explicitly not given
        reasoning_effort="low",
    )
    request = fake.requests[0]
    assert request.messages[0] == Message(role="system", content="Be brief.")
    assert request.params.given() == {
        "temperature": 0.5,
        "max_tokens": 7,
        **({"reasoning_effort": "low"} if "reasoning_effort" in PARAM_NAMES else {}),
    }
    # Until GenerationParams has the field, reasoning_effort travels as a backend option.
    expected_extra = {"top_k": 40}
    if "reasoning_effort" not in PARAM_NAMES:
        expected_extra["reasoning_effort"] = "low"
    assert request.extra == expected_extra


def test_complete_routes_params_and_keeps_the_rest(driver) -> None:
    fake = FakeBackend(["ok"])
    driver.complete({"backend": fake}, "Once upon", max_tokens=3, stop="\n", echo=True)
    request = fake.requests[0]
    assert request.params.given() == {"max_tokens": 3, "stop": ["\n"]}
    assert request.extra == {"echo": True}


def test_batch_options_are_not_shared_between_inputs() -> None:
    fake = FakeBackend()
    Client(backend=fake).batch(["a", "b"], temperature=0.1, top_k=3, concurrency=1)
    first, second = fake.requests
    assert first.extra == second.extra == {"top_k": 3}
    assert first.extra is not second.extra


def test_repeated_options_share_validated_params() -> None:
    fake = FakeBackend()
    client = Client(backend=fake)
    client.chat("a", temperature=0.2, max_tokens=5)
    client.chat("b", max_tokens=5, temperature=0.2)
    client.chat("c", temperature=0.3, max_tokens=5)
    client.chat("d", stop=["x"])  # unhashable: validated, not cached
    first, second, third, fourth = (r.params for r in fake.requests)
    assert first is second and first.temperature == 0.2
    assert third is not first and third.temperature == 0.3
    assert fourth.stop == ["x"]
