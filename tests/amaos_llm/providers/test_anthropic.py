"""What only the Anthropic wire does (the `anthropic` SDK against the Anthropic fake); the rest is in
test_contract.py."""

from __future__ import annotations

import pytest

from amaos_llm.errors import ServerError
from amaos_llm.providers.base import Provider, ProviderRequest
from amaos_llm.types import Message
from tests.amaos_llm.providers.wires import ANTHROPIC, KEY, MODEL, ask
from tests.support.fakes import AnthropicFake

pytestmark = pytest.mark.anyio
WIRE = ANTHROPIC  # the `wire` of the shared `provider` and `fake` fixtures (conftest.py)


async def test_seed_is_not_sent_since_the_api_has_none(provider: Provider, anthropic_fake: AnthropicFake) -> None:
    await provider.complete(ask(seed=42))
    assert "seed" not in anthropic_fake.requests[0].body


async def test_request_carries_the_version_header_and_the_key(
    provider: Provider, anthropic_fake: AnthropicFake
) -> None:
    await provider.complete(ask())
    headers = anthropic_fake.requests[0].headers
    assert "anthropic-version" in headers
    # x-api-key or a bearer token, depending on the SDK version
    assert KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))


async def test_system_messages_are_joined_into_the_system_field(
    provider: Provider, anthropic_fake: AnthropicFake
) -> None:
    messages = [
        Message(role="system", content="be brief"),
        Message(role="system", content="be kind"),
        Message(role="user", content="hi"),
    ]
    await provider.complete(ProviderRequest(messages=messages, model=MODEL, temperature=0.0, max_tokens=64))
    body = anthropic_fake.requests[0].body
    assert body["system"] == "be brief\n\nbe kind"
    assert body["messages"] == [{"role": "user", "content": "hi"}]


async def test_no_system_field_without_system_messages(provider: Provider, anthropic_fake: AnthropicFake) -> None:
    await provider.complete(ask())
    assert "system" not in anthropic_fake.requests[0].body


async def test_cache_reads_and_writes_count_as_input(provider: Provider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.extra_usage = {"cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
    reply = await provider.complete(ask("hello there world"))
    assert (reply.input_tokens, reply.output_tokens) == (3 + 100 + 20, 4)


async def test_529_overloaded_is_server_error(provider: Provider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(529, message="Overloaded")
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "anthropic: HTTP 529: Overloaded"
