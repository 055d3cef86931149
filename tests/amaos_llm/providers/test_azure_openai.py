"""The azure_openai provider through `openai.AsyncAzureOpenAI` against the OpenAI fake at Azure's URL
shape: deployment URLs, `api-version`, the `api-key` header; errors and usage as the openai provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from pydantic import SecretStr

from amaos_llm import LLMConfig, LLMManager
from amaos_llm.config import ModelSpec
from amaos_llm.errors import AuthenticationError, BadRequestError, ConfigError, RateLimitError
from amaos_llm.providers.azure_openai import AzureOpenAIProvider, azure_price_id
from amaos_llm.providers.base import ProviderReply, ProviderRequest
from amaos_llm.providers.registry import provider_info
from amaos_llm.types import Message
from tests.support.azure_fake import AzureOpenAIFake

pytestmark = pytest.mark.anyio
KEY = "azure-test-SECRET-key-123"
VERSION = "2024-10-21"


@pytest.fixture
def azure_fake() -> Iterator[AzureOpenAIFake]:
    with AzureOpenAIFake() as fake:
        yield fake


def azure_spec(url: str | None, **extra: Any) -> ModelSpec:
    return ModelSpec(name="gpt", provider="azure_openai", model="my-gpt", base_url=url,
                     **{"api_version": VERSION, **extra})


@pytest.fixture
async def azure(azure_fake: AzureOpenAIFake) -> AsyncIterator[AzureOpenAIProvider]:
    p = AzureOpenAIProvider(azure_spec(azure_fake.url), SecretStr(KEY))
    yield p
    await p.aclose()


def ask(text: str = "hi", max_tokens: int = 64, model: str = "my-gpt") -> ProviderRequest:
    return ProviderRequest(messages=[Message(role="user", content=text)], model=model, temperature=0.0,
                           max_tokens=max_tokens)


async def test_a_deployment_is_called_at_azures_url_with_the_api_version_and_api_key(
    azure: AzureOpenAIProvider, azure_fake: AzureOpenAIFake
) -> None:
    reply = await azure.complete(ask("one two three"))
    req = azure_fake.requests[0]
    assert (req.method, req.path, req.query) == ("POST", "/openai/deployments/my-gpt/chat/completions",
                                                 {"api-version": VERSION})
    assert req.headers["api-key"] == KEY and "authorization" not in req.headers
    assert (req.body["model"], req.body["max_completion_tokens"], req.body["temperature"]) == ("my-gpt", 64, 0.0)
    assert "max_tokens" not in req.body
    assert reply == ProviderReply(content="echo: one two three", input_tokens=3, output_tokens=4,
                                  finish_reason="stop", model="my-gpt", tool_calls=[])


async def test_a_reasoning_deployment_gets_its_token_limit_as_max_completion_tokens(
    azure: AzureOpenAIProvider, azure_fake: AzureOpenAIFake
) -> None:
    # Azure's o-series deployments refuse `max_tokens` (the fake does as the service does)
    whole = await azure.complete(ask("one two three", max_tokens=2, model="my-o3"))
    streamed = [c async for c in azure.stream(ask("one two three", max_tokens=2, model="my-o3"))]
    assert (whole.content, whole.finish_reason) == ("echo: one", "length")
    assert ("".join(c.text for c in streamed), streamed[-1].finish_reason) == ("echo: one", "length")
    assert [(r.path, r.body["max_completion_tokens"]) for r in azure_fake.requests] == [
        ("/openai/deployments/my-o3/chat/completions", 2)] * 2


async def test_the_fake_refuses_max_tokens_for_a_reasoning_deployment_like_azure(azure_fake: AzureOpenAIFake) -> None:
    import openai

    client = openai.AsyncAzureOpenAI(azure_endpoint=azure_fake.url, api_version=VERSION, api_key=KEY, max_retries=0)
    try:
        with pytest.raises(openai.BadRequestError, match="Use 'max_completion_tokens' instead"):
            await client.chat.completions.create(model="my-o3", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=2)
    finally:
        await client.close()


async def test_errors_map_as_on_the_openai_provider(azure: AzureOpenAIProvider, azure_fake: AzureOpenAIFake) -> None:
    azure_fake.fail(429, retry_after="7")
    with pytest.raises(RateLimitError) as caught:
        await azure.complete(ask())
    assert caught.value.retry_after == 7.0


async def test_an_unknown_deployment_is_a_bad_request(azure: AzureOpenAIProvider) -> None:
    with pytest.raises(BadRequestError, match=r"^azure_openai: HTTP 404: The API deployment for this resource"):
        await azure.complete(ask(model="nobody"))


async def test_a_missing_key_names_the_azure_variable(
    azure_fake: AzureOpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    p = AzureOpenAIProvider(azure_spec(azure_fake.url))
    with pytest.raises(AuthenticationError, match=r"^azure_openai: no API key; set AZURE_OPENAI_API_KEY$"):
        await p.complete(ask())
    await p.aclose()
    assert azure_fake.requests == []


def test_api_version_is_required_before_anything_is_sent(azure_fake: AzureOpenAIFake) -> None:
    with pytest.raises(ConfigError, match=r"^gpt\.api_version: azure_openai needs `api_version:`"):
        AzureOpenAIProvider(azure_spec(azure_fake.url, api_version=None), SecretStr(KEY))


def test_an_endpoint_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    with pytest.raises(ConfigError, match=r"^gpt\.base_url: azure_openai needs `base_url:`"):
        AzureOpenAIProvider(azure_spec(None), SecretStr(KEY))


async def test_health_lists_models_and_never_generates(azure: AzureOpenAIProvider, azure_fake: AzureOpenAIFake) -> None:
    assert await azure.health() is True
    azure_fake.fail(401)
    assert await azure.health() is False
    assert [(r.method, r.path) for r in azure_fake.requests] == [("GET", "/openai/models")] * 2


def test_the_registry_knows_the_key_variable() -> None:
    info = provider_info("azure_openai")
    assert (info.local, info.key_env, info.key_required) == (False, "AZURE_OPENAI_API_KEY", True)


def test_a_deployment_is_priced_by_its_pricing_model_else_its_name() -> None:
    assert azure_price_id(azure_spec(None, pricing_model="gpt-4o")) == ("azure", "gpt-4o")
    assert azure_price_id(azure_spec(None)) == ("azure", "my-gpt")
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert calc_price(usage, "gpt-4o", provider_id="azure").total_price > 0


async def test_through_the_manager_with_the_key_from_the_environment(
    azure_fake: AzureOpenAIFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    config = LLMConfig.model_validate({"models": [{
        "name": "gpt", "provider": "azure_openai", "model": "my-gpt", "base_url": azure_fake.url,
        "api_version": VERSION, "cost_per_1k_input": "2.5", "cost_per_1k_output": "10"}]})
    async with LLMManager(config) as m:
        result = await m.complete("one two three")
    assert (result.content, result.usage.input_tokens, result.usage.output_tokens) == ("echo: one two three", 3, 4)
    assert result.cost == Decimal("0.0475")
    assert [(a.outcome, a.endpoint, a.key_env) for a in result.attempts] == [
        ("success", azure_fake.url, "AZURE_OPENAI_API_KEY")]
    assert azure_fake.requests[0].headers["api-key"] == KEY
