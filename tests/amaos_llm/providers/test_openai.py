"""What only the OpenAI wire does (`openai` and `openai_compatible` through the `openai` SDK against
the fake); the rest is in test_contract.py."""

from __future__ import annotations

import re

import pytest

from amaos_llm.errors import ProviderConnectionError
from amaos_llm.providers.base import Provider, ProviderChunk, StreamUsage
from tests.amaos_llm.providers.wires import AIOHTTP_REFUSED, KEY, OPENAI, ask, exactly, make
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio
WIRE = OPENAI  # the `wire` of the shared `provider` and `fake` fixtures (conftest.py)


async def test_openai_sends_max_completion_tokens_not_max_tokens(provider: Provider, openai_fake: OpenAIFake) -> None:
    await provider.complete(ask(max_tokens=7))
    body = openai_fake.requests[0].body
    assert (body["max_completion_tokens"], "max_tokens" in body) == (7, False)


async def test_compatible_server_gets_max_tokens(openai_fake: OpenAIFake) -> None:
    p = make(OPENAI, openai_fake.url, provider="openai_compatible")
    try:
        await p.complete(ask(max_tokens=7))
    finally:
        await p.aclose()
    body = openai_fake.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.0, 7)
    assert "max_completion_tokens" not in body


async def test_spec_options_travel_as_extra_body_fields(openai_fake: OpenAIFake) -> None:
    p = make(OPENAI, openai_fake.url, provider="openai_compatible", options={"top_k": 20})
    try:
        await p.complete(ask())
    finally:
        await p.aclose()
    assert openai_fake.requests[0].body["top_k"] == 20


async def test_compatible_server_without_key_gets_a_placeholder(openai_fake: OpenAIFake) -> None:
    p = make(OPENAI, openai_fake.url, key=None, provider="openai_compatible")
    try:
        await p.complete(ask())
    finally:
        await p.aclose()
    assert openai_fake.requests[0].headers["authorization"] == "Bearer unused"


async def test_health_is_false_when_the_key_is_refused(provider: Provider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(401)
    assert await provider.health() is False


async def test_a_refused_compatible_server_is_named_by_its_url(closed_port: str) -> None:
    p = make(OPENAI, f"{closed_port}/v1", key=None, provider="openai_compatible")
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    # on aiohttp (installed for the tests) the provider names aiohttp's error: the SDK calls it a timeout
    message = str(caught.value)
    assert re.fullmatch(exactly(f"openai_compatible: connection to {closed_port}/v1 failed: ") + AIOHTTP_REFUSED,
                        message), message


async def test_on_aiohttp_user_info_in_the_url_is_refused_before_sending_without_showing_the_key(
    openai_fake: OpenAIFake,
) -> None:
    # aiohttp will not send both the Bearer header and credentials from the URL; httpx2 sends the header
    host = openai_fake.url.removeprefix("http://")
    p = make(OPENAI, f"http://user:{KEY}@{host}")
    try:
        with pytest.raises(ValueError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert (str(caught.value), len(openai_fake.requests)) == (
        "Cannot combine AUTHORIZATION header with AUTH argument or credentials encoded in URL", 0
    )


async def test_openai_streams_without_the_usage_chunk_are_cut(openai_fake: OpenAIFake) -> None:
    openai_fake.stream_usage = False
    p = make(OPENAI, openai_fake.url)
    try:
        with pytest.raises(ProviderConnectionError, match="^openai: stream ended without its usage chunk: "):
            _ = [c async for c in p.stream(ask())]
    finally:
        await p.aclose()


async def test_a_compatible_server_sending_no_usage_streams_at_0_tokens_with_one_warning(
    openai_fake: OpenAIFake, caplog: pytest.LogCaptureFixture
) -> None:
    openai_fake.stream_usage = False
    p = make(OPENAI, openai_fake.url, provider="openai_compatible", name="no-usage-server")
    try:
        first = [c async for c in p.stream(ask("hi"))]
        second = [c async for c in p.stream(ask("hi"))]
    finally:
        await p.aclose()
    assert first[-1] == second[-1] == ProviderChunk(usage=StreamUsage(0, 0), finish_reason="stop", model="test-model")
    assert [r.getMessage() for r in caplog.records if r.name == "amaos_llm.providers.openai"] == [
        "no-usage-server: the server sent no usage in its stream; counting 0 tokens"]


async def test_openai_sends_include_usage_on_every_stream(provider: Provider, openai_fake: OpenAIFake) -> None:
    _ = [c async for c in provider.stream(ask())]
    body = openai_fake.requests[0].body
    assert (body["stream"], body["stream_options"]) == (True, {"include_usage": True})
