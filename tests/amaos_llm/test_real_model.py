"""A real model over real HTTP: llama.cpp (xllamacpp) serving SmolLM2 on 127.0.0.1, reached through
the official OpenAI and Anthropic SDKs via the manager."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amaos_llm import LLMManager, ModelSpec

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("provider", "suffix"),
    [("openai_compatible", "/v1"), ("anthropic", "")],
)
async def test_real_model_answers_with_real_tokens_and_exact_cost(
    llama_server: str, provider: str, suffix: str
) -> None:
    spec = ModelSpec(
        name="smol-http", provider=provider, model="smollm2", base_url=llama_server + suffix,
        api_key="sk-local-test", cost_per_1k_input=Decimal("0.5"), cost_per_1k_output=Decimal("1.5"),
        max_tokens=12, seed=3,
    )
    async with LLMManager(models=[spec]) as manager:
        result = await manager.complete("What is the capital of France?", temperature=0.0)
    usage = result.usage
    assert result.content.strip() != ""
    assert usage.input_tokens > 5 and 0 < usage.output_tokens <= 12
    assert result.cost == (usage.input_tokens * Decimal("0.5") + usage.output_tokens * Decimal("1.5")) / 1000
    assert (result.provider, result.model_name) == (provider, "smol-http")


@pytest.mark.parametrize(("provider", "suffix"), [("openai_compatible", "/v1"), ("anthropic", "")])
async def test_a_prompt_over_the_servers_context_is_a_context_window_error_not_retried(
    llama_server: str, provider: str, suffix: str
) -> None:
    from amaos_llm import AllModelsFailed

    spec = ModelSpec(name="smol-http", provider=provider, model="smollm2", base_url=llama_server + suffix,
                     api_key="sk-local-test", max_tokens=8, max_retries=2)
    async with LLMManager(models=[spec]) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete("dragons " * 3000)
        sent = manager.get_stats()["by_model"]["smol-http"]["calls"]
    (attempt,) = info.value.attempts
    assert (attempt.error or "").startswith(f"ContextWindowExceeded: {provider}: HTTP 400: ")
    assert sent == 1
