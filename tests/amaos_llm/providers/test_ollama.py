"""What only the Ollama wire does (the `ollama` SDK against the Ollama fake); the rest is in test_contract.py."""

from __future__ import annotations

import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.errors import BadRequestError
from amaos_llm.providers.base import Provider
from amaos_llm.providers.ollama import OllamaProvider
from tests.amaos_llm.providers.wires import MODEL, OLLAMA, ask, make
from tests.support.fakes import OllamaFake

pytestmark = pytest.mark.anyio
WIRE = OLLAMA  # the `wire` of the shared `provider` and `fake` fixtures (conftest.py)


async def test_request_is_non_streaming_and_names_the_model(provider: Provider, ollama_fake: OllamaFake) -> None:
    await provider.complete(ask())
    body = ollama_fake.requests[0].body
    assert (body["stream"], body["model"]) == (False, MODEL)


async def test_options_hold_exactly_temperature_num_predict_and_seed(
    provider: Provider, ollama_fake: OllamaFake
) -> None:
    await provider.complete(ask(seed=42, max_tokens=7))
    assert ollama_fake.requests[0].body["options"] == {"temperature": 0.0, "num_predict": 7, "seed": 42}


async def test_spec_options_merge_into_options_and_keep_alive_goes_top_level(ollama_fake: OllamaFake) -> None:
    p = make(OLLAMA, ollama_fake.url, options={"num_ctx": 4096, "keep_alive": "5m"})
    try:
        await p.complete(ask(max_tokens=9))
    finally:
        await p.aclose()
    body = ollama_fake.requests[0].body
    assert body["options"] == {"num_ctx": 4096, "temperature": 0.0, "num_predict": 9}
    assert body["keep_alive"] == "5m"


async def test_404_unknown_model_is_bad_request(provider: Provider, ollama_fake: OllamaFake) -> None:
    ollama_fake.fail(404, message=f"model '{MODEL}' not found")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == (f"ollama: HTTP 404: model '{MODEL}' not found", 404)


async def test_health_accepts_the_implicit_latest_tag(ollama_fake: OllamaFake) -> None:
    ollama_fake.models = ["llama3:latest"]
    p = OllamaProvider(ModelSpec(name="llama3", provider="ollama", base_url=ollama_fake.url))
    try:
        assert await p.health() is True
    finally:
        await p.aclose()


async def test_health_is_false_when_the_model_is_not_pulled(provider: Provider, ollama_fake: OllamaFake) -> None:
    ollama_fake.models = ["other:7b"]
    assert await provider.health() is False
