"""Streams from a real model over real HTTP: llama.cpp (xllamacpp) serving SmolLM2 on 127.0.0.1,
read through the official OpenAI and Anthropic SDKs by our providers."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from amaos_llm.config import ModelSpec
from amaos_llm.providers.anthropic import AnthropicProvider
from amaos_llm.providers.base import Provider, ProviderRequest
from amaos_llm.providers.openai import OpenAIProvider
from amaos_llm.types import Message

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("cls", "provider", "suffix"), [(OpenAIProvider, "openai_compatible", "/v1"),
                                                         (AnthropicProvider, "anthropic", "")])
async def test_a_real_stream_joins_to_the_whole_reply_with_the_same_usage(
    llama_server: str, cls: type[Provider], provider: str, suffix: str
) -> None:
    spec = ModelSpec(name="smol-http", provider=provider, model="smollm2", base_url=llama_server + suffix)
    p = cls(spec, SecretStr("sk-local-test"))
    request = ProviderRequest(messages=[Message(role="user", content="Name three colours.")], model="smollm2",
                              temperature=0.0, max_tokens=12, seed=3)
    try:
        whole = await p.complete(request)
        chunks = [c async for c in p.stream(request)]
    finally:
        await p.aclose()
    texts = [c.text for c in chunks if c.text]
    last = chunks[-1]
    assert len(texts) >= 2 and "".join(texts) == whole.content
    assert last.usage is not None and (last.usage.input_tokens, last.usage.output_tokens) == (
        whole.input_tokens, whole.output_tokens)
    assert whole.input_tokens > 5 and whole.output_tokens > 0
    assert last.finish_reason == whole.finish_reason
