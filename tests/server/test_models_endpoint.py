"""``GET /v1/models/{id}`` through the official openai SDK (issue 15, item 6): the served
model is found by its name, an unknown one is a 404 the SDK maps to ``NotFoundError``."""

from __future__ import annotations

import openai
import pytest

from .conftest import ServeFactory
from .test_openai_sdk import sync_sdk


def test_retrieve_the_served_model(serve: ServeFactory) -> None:
    served = serve(model="fake-model")
    with sync_sdk(served.base_url) as sdk:
        card = sdk.models.retrieve("fake-model")
        assert card.id == "fake-model" and card.object == "model"
        assert [m.id for m in sdk.models.list()] == ["fake-model"]
        with pytest.raises(openai.NotFoundError) as info:
            sdk.models.retrieve("no-such-model")
    assert "no-such-model" in str(info.value)
