"""spoon_ai's documented LLMManager calls work on ours as written: `chat(messages, provider=...)`,
`completion`, `set_provider_weight`, `set_fallback_chain(providers)`, `reset_provider(provider)`,
`health_check_all`, `get_provider_status`, `cleanup`. (Streams and tools: see the streaming issue.)"""

from __future__ import annotations

from typing import Any

import pytest

from amaos_llm import LLMConfig, LLMManager, Message, ModelNotFound
from tests.support.fakes import AnthropicFake, OpenAIFake

pytestmark = pytest.mark.anyio


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-12345678")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-12345678")


def two_providers(openai_url: str, anthropic_url: str) -> LLMManager:
    return LLMManager(LLMConfig.model_validate({"models": [
        {"name": "gpt", "provider": "openai", "model": "test-model", "base_url": openai_url, "priority": 2},
        {"name": "gpt-mini", "provider": "openai", "model": "test-model", "base_url": openai_url, "priority": 1},
        {"name": "claude", "provider": "anthropic", "model": "test-model", "base_url": anthropic_url},
    ], "defaults": {"max_retries": 0}}))


async def test_the_seeds_chat_examples(keys: None) -> None:
    with OpenAIFake() as openai_fake, AnthropicFake() as anthropic_fake:
        llm_manager = two_providers(openai_fake.url, anthropic_fake.url)
        messages = [Message(role="user", content="Hello, how are you?")]
        response = await llm_manager.chat(messages)
        assert response.content == "echo: Hello, how are you?" and response.model_name == "gpt"
        response = await llm_manager.chat(messages, provider="anthropic")
        assert response.provider == "anthropic"
        response = await llm_manager.completion("Hello", provider="claude")
        assert response.model_name == "claude"
        await llm_manager.cleanup()


async def test_provider_keeps_the_call_to_its_models_with_fallback_among_them(keys: None) -> None:
    with OpenAIFake() as openai_fake, AnthropicFake() as anthropic_fake:
        openai_fake.fail(500, times=1)
        async with two_providers(openai_fake.url, anthropic_fake.url) as m:
            result = await m.chat([{"role": "user", "content": "hi"}], provider="openai")
        assert [(a.model_name, a.outcome) for a in result.attempts] == [("gpt", "error"), ("gpt-mini", "success")]
        assert anthropic_fake.requests == []


async def test_an_unknown_provider_names_both_kinds_of_name(keys: None) -> None:
    async with two_providers("http://127.0.0.1:9/v1", "http://127.0.0.1:9") as m:
        with pytest.raises(ModelNotFound) as caught:
            await m.chat([{"role": "user", "content": "hi"}], provider="mistral")
    assert str(caught.value) == ("unknown model or provider 'mistral'; known models: gpt, gpt-mini, claude; "
                                 "known providers: anthropic, openai")


async def test_provider_names_in_the_routing_calls(keys: None) -> None:
    with OpenAIFake() as openai_fake, AnthropicFake() as anthropic_fake:
        async with two_providers(openai_fake.url, anthropic_fake.url) as m:
            m.set_fallback_chain(["anthropic", "openai"])
            assert m.config.routing.fallback_chain == ["claude", "gpt", "gpt-mini"]
            assert (await m.complete("hi")).model_name == "claude"
            m.set_provider_weight("openai", 3)
            assert {s.name: s.weight for s in m.list_models()} == {"gpt": 3.0, "gpt-mini": 3.0, "claude": 1.0}
            assert await m.health_check_all() == {"gpt": True, "gpt-mini": True, "claude": True}
            assert m.get_provider_status()["claude"]["client"] == "ready"
            await m.reset_provider("anthropic")
            status: dict[str, Any] = m.get_provider_status()
            assert status["claude"]["client"] == "unbuilt" and status["gpt"]["client"] == "ready"
