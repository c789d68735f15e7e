"""No raw exception from user-supplied callables or values reaches the caller (issue 15, item 1).

The SDK calls an Azure ``azure_ad_token_provider`` itself, so whatever it raises (an
azure-identity failure, a ``RuntimeError``) used to escape unwrapped: the backend only caught
``openai.OpenAIError`` and ``httpx.HTTPError``. A value in ``extra_body`` that is not JSON
failed inside httpx's encoder with a bare ``TypeError``.
"""

from __future__ import annotations

import asyncio

import pytest
import respx
from openai_testkit import KEY, call, chat_request, collect, completion_body, completion_request

import llmkit.errors as E
from llmkit.backends.openai import AzureOpenAIBackend, OpenAIBackend

ENDPOINT = "https://my-resource.openai.azure.com"
VERSION = "2024-10-21"
SECRET = "eyJ.leaked.token-in-message"


@pytest.fixture
def azure_mock() -> respx.MockRouter:
    with respx.mock(assert_all_called=False) as router:
        router.post(url__startswith=ENDPOINT).respond(json=completion_body())
        yield router


def _failing_provider() -> str:
    raise RuntimeError(f"token service down (sent Authorization: Bearer {SECRET})")


async def _failing_async_provider() -> str:
    await asyncio.sleep(0)
    raise RuntimeError("token service down")


@pytest.mark.parametrize("operation", ["chat", "stream", "complete"])
async def test_a_failing_token_provider_is_an_authentication_error(
    azure_mock: respx.MockRouter, mode: str, operation: str
) -> None:
    backend = AzureOpenAIBackend(
        "d", endpoint=ENDPOINT, api_version=VERSION, azure_ad_token_provider=_failing_provider
    )
    with pytest.raises(E.AuthenticationError) as info:
        if operation == "chat":
            await call(backend, mode, chat_request(model="d"))
        elif operation == "complete":
            await call(backend, mode, completion_request())
        else:
            await collect(backend, mode, chat_request(model="d"))
    message = str(info.value)
    assert "azure_ad_token_provider" in message and "RuntimeError" in message
    assert "token service down" in message
    assert SECRET not in message and SECRET not in repr(info.value)
    assert info.value.retryable is False
    assert isinstance(info.value.__cause__, RuntimeError)
    assert not azure_mock.calls  # nothing was sent without a credential
    await backend.aclose()


async def test_an_async_token_provider_that_fails_is_wrapped(azure_mock: respx.MockRouter) -> None:
    backend = AzureOpenAIBackend(
        "d",
        endpoint=ENDPOINT,
        api_version=VERSION,
        azure_ad_token_provider=_failing_async_provider,
    )
    with pytest.raises(E.AuthenticationError, match="azure_ad_token_provider"):
        await backend.achat(chat_request(model="d"))
    await backend.aclose()


async def test_a_working_async_token_provider_still_works(azure_mock: respx.MockRouter) -> None:
    async def provider() -> str:
        return "eyJ.async.token"

    backend = AzureOpenAIBackend(
        "d", endpoint=ENDPOINT, api_version=VERSION, azure_ad_token_provider=provider
    )
    await backend.achat(chat_request(model="d"))
    assert azure_mock.calls.last.request.headers["authorization"] == "Bearer eyJ.async.token"
    await backend.aclose()


async def test_extra_body_that_is_not_json_is_invalid_input(mode: str) -> None:
    backend = OpenAIBackend("gpt-4o-mini", api_key=KEY)
    with respx.mock(assert_all_called=False) as router:
        route = router.post(url__regex=r".*/chat/completions").respond(json=completion_body())
        with pytest.raises(E.InvalidInputError, match="JSON") as info:
            await call(backend, mode, chat_request(extra={"custom_field": {1, 2}}))
        assert "custom_field" in str(info.value)
        assert not route.called
    await backend.aclose()
