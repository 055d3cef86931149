"""The manager over real HTTP: official SDKs against the protocol fakes on 127.0.0.1."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price
from pydantic import SecretStr

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager, ModelSpec
from tests.support.fakes import AnthropicFake, GoogleFake, OllamaFake, OpenAIFake

pytestmark = pytest.mark.anyio
KEY = SecretStr("sk-test-SECRET-123")


def config(*models: ModelSpec, **defaults: Any) -> LLMConfig:
    return LLMConfig.model_validate({"defaults": {"retry_backoff": 0, **defaults}, "models": list(models)})


async def test_temperature_zero_and_max_tokens_reach_every_wire(
    ollama_fake: OllamaFake, openai_fake: OpenAIFake, anthropic_fake: AnthropicFake, google_fake: GoogleFake
) -> None:
    models = [
        ModelSpec(name="o", provider="ollama", model="test-model", base_url=ollama_fake.url),
        ModelSpec(name="oa", provider="openai", model="test-model", base_url=openai_fake.url, api_key=KEY),
        ModelSpec(name="an", provider="anthropic", model="test-model", base_url=anthropic_fake.url, api_key=KEY),
        ModelSpec(name="g", provider="google", model="test-model", base_url=google_fake.url, api_key=KEY),
    ]
    async with LLMManager(config(*models)) as manager:
        for spec in models:
            await manager.complete("hello there", temperature=0.0, max_tokens=7, force_model=spec.name)
    assert ollama_fake.requests[-1].body["options"]["temperature"] == 0.0
    assert ollama_fake.requests[-1].body["options"]["num_predict"] == 7
    body = openai_fake.requests[-1].body
    assert (body["temperature"], body["max_completion_tokens"]) == (0.0, 7)
    assert (anthropic_fake.requests[-1].body["temperature"], anthropic_fake.requests[-1].body["max_tokens"]) == (0.0, 7)
    generation = google_fake.requests[-1].body["generationConfig"]
    assert (generation["temperature"], generation["maxOutputTokens"]) == (0.0, 7)


async def test_local_only_sends_nothing_to_the_cloud_fake(ollama_fake: OllamaFake, openai_fake: OpenAIFake) -> None:
    models = [
        ModelSpec(name="cloud", provider="openai", model="test-model", base_url=openai_fake.url, api_key=KEY,
                  priority=100),
        ModelSpec(name="local", provider="ollama", model="test-model", base_url=ollama_fake.url),
    ]
    async with LLMManager(config(*models), local_only=True) as manager:
        result = await manager.complete("hi")
    assert result.model_name == "local"
    assert openai_fake.requests == []


async def test_slow_server_times_out_and_the_next_model_answers_quickly(
    openai_fake: OpenAIFake, anthropic_fake: AnthropicFake
) -> None:
    openai_fake.delay = 5.0
    models = [
        ModelSpec(name="slow", provider="openai", model="test-model", base_url=openai_fake.url, api_key=KEY,
                  priority=2, timeout=0.3, max_retries=0),
        ModelSpec(name="backup", provider="anthropic", model="test-model", base_url=anthropic_fake.url,
                  api_key=KEY, priority=1),
    ]
    async with LLMManager(config(*models)) as manager:
        t0 = time.perf_counter()
        result = await manager.complete("hi")
        elapsed = time.perf_counter() - t0
        stats = manager.get_stats()
    assert result.model_name == "backup" and elapsed < 1.0
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("slow", "timeout"), ("backup", "success")]
    assert (stats["timeouts"], stats["fallbacks"], stats["by_model"]["slow"]["timeouts"]) == (1, 1, 1)


async def test_server_error_is_retried_then_falls_back_across_providers(
    ollama_fake: OllamaFake, google_fake: GoogleFake
) -> None:
    ollama_fake.fail(500)
    models = [
        ModelSpec(name="o", provider="ollama", model="test-model", base_url=ollama_fake.url),
        ModelSpec(name="g", provider="google", model="test-model", base_url=google_fake.url, api_key=KEY,
                  source="local"),
    ]
    async with LLMManager(config(*models, max_retries=1)) as manager:
        result = await manager.complete("one two three")
        stats = manager.get_stats()
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("o", "error"), ("o", "error"), ("g", "success")]
    assert (len(ollama_fake.requests), stats["retries"], stats["fallbacks"]) == (2, 1, 1)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (3, 4)  # the fake's word counts


async def test_rate_limit_retry_after_is_waited_then_succeeds(anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(429, times=1, retry_after="1")
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    spec = ModelSpec(name="an", provider="anthropic", model="test-model", base_url=anthropic_fake.url, api_key=KEY)
    async with LLMManager(config(spec, max_retries=1), sleep=fake_sleep) as manager:
        result = await manager.complete("hi")
    assert waits == [1.0]
    assert [a.outcome for a in result.attempts] == ["error", "success"]
    assert "RateLimitError" in (result.attempts[0].error or "")


async def test_unpriced_openai_model_is_priced_by_genai_prices_from_real_usage(openai_fake: OpenAIFake) -> None:
    openai_fake.reply = "four words of reply"
    spec = ModelSpec(name="mini", provider="openai", model="gpt-4o-mini", base_url=openai_fake.url, api_key=KEY)
    async with LLMManager(config(spec)) as manager:
        result = await manager.complete("a b c d e f")
    expected = calc_price(PriceUsage(input_tokens=6, output_tokens=4), "gpt-4o-mini", provider_id="openai")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (6, 4)
    assert result.cost == expected.total_price > Decimal(0)


async def test_auth_failure_is_reported_without_the_key(openai_fake: OpenAIFake) -> None:
    openai_fake.fail(401, message=f"Incorrect API key provided: {KEY.get_secret_value()}")
    spec = ModelSpec(name="oa", provider="openai", model="test-model", base_url=openai_fake.url, api_key=KEY)
    async with LLMManager(config(spec)) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete("hi")
    assert "AuthenticationError" in str(info.value) and "401" in str(info.value)
    assert KEY.get_secret_value() not in str(info.value)
    assert openai_fake.requests[0].headers["authorization"] == f"Bearer {KEY.get_secret_value()}"
