"""AnthropicProvider through the official `anthropic` SDK against the Anthropic fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from pydantic import SecretStr

from amaos_llm.config import ModelSpec
from amaos_llm.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
)
from amaos_llm.providers.anthropic import AnthropicProvider
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.types import Message
from tests.support.fakes import AnthropicFake

pytestmark = pytest.mark.anyio

KEY = "sk-test-SECRET-123"
MODEL = "claude-test"


def ask(text: str = "hello there", *, system: str | None = None, **kwargs: object) -> ProviderRequest:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=text))
    params: dict = {"temperature": 0.0, "max_tokens": 64, **kwargs}
    return ProviderRequest(messages=messages, model=MODEL, **params)


def make(base_url: str | None, key: str | None = KEY, **spec: object) -> AnthropicProvider:
    model_spec = ModelSpec(name="claude", provider="anthropic", model=MODEL, base_url=base_url, **spec)
    return AnthropicProvider(model_spec, SecretStr(key) if key else None)


@pytest.fixture
async def provider(anthropic_fake: AnthropicFake) -> AsyncIterator[AnthropicProvider]:
    p = make(anthropic_fake.url)
    yield p
    await p.aclose()


async def test_reply_carries_content_usage_finish_reason_and_model(provider: AnthropicProvider) -> None:
    reply = await provider.complete(ask("hello there world", system="be brief"))
    assert (reply.content, reply.input_tokens, reply.output_tokens) == ("echo: hello there world", 5, 4)
    assert (reply.finish_reason, reply.model) == ("end_turn", MODEL)


async def test_temperature_zero_and_max_tokens_reach_the_wire(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    await provider.complete(ask(max_tokens=7))
    body = anthropic_fake.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.0, 7)


async def test_seed_is_not_sent_since_the_api_has_none(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    await provider.complete(ask(seed=42))
    assert "seed" not in anthropic_fake.requests[0].body


async def test_request_goes_to_v1_messages_with_version_header(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    await provider.complete(ask())
    sent = anthropic_fake.requests[0]
    assert (sent.method, sent.path, "anthropic-version" in sent.headers) == ("POST", "/v1/messages", True)
    assert KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "").removeprefix("Bearer "))


async def test_system_messages_are_joined_into_the_system_field(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
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


async def test_no_system_field_without_system_messages(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    await provider.complete(ask())
    assert "system" not in anthropic_fake.requests[0].body


async def test_cache_reads_and_writes_count_as_input(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.extra_usage = {"cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}
    reply = await provider.complete(ask("hello there world"))
    assert (reply.input_tokens, reply.output_tokens) == (3 + 100 + 20, 4)


async def test_reply_cut_at_max_tokens_reports_max_tokens(provider: AnthropicProvider) -> None:
    reply = await provider.complete(ask("one two three four", max_tokens=2))
    assert (reply.content, reply.output_tokens, reply.finish_reason) == ("echo: one", 2, "max_tokens")


async def test_missing_key_is_authentication_error_naming_the_env_var(anthropic_fake: AnthropicFake) -> None:
    p = make(anthropic_fake.url, key=None)
    with pytest.raises(AuthenticationError) as caught:
        await p.complete(ask())
    await p.aclose()
    assert (str(caught.value), len(anthropic_fake.requests)) == ("anthropic: no API key; set ANTHROPIC_API_KEY", 0)


async def test_401_is_authentication_error(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(401, message="invalid x-api-key")
    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("anthropic: HTTP 401: invalid x-api-key", 401)


async def test_429_is_rate_limit_error_with_retry_after(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.fail(429, retry_after="7", message="Number of requests has exceeded your rate limit")
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "anthropic: HTTP 429: Number of requests has exceeded your rate limit"
    assert caught.value.retry_after == 7.0


async def test_500_is_server_error(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(500, message="Internal server error")
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("anthropic: HTTP 500: Internal server error", 500)


async def test_529_overloaded_is_server_error(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(529, message="Overloaded")
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "anthropic: HTTP 529: Overloaded"


async def test_400_is_bad_request(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(400, message="max_tokens: Field required")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "anthropic: HTTP 400: max_tokens: Field required"


async def test_a_failure_is_sent_once_and_the_next_call_succeeds(
    provider: AnthropicProvider, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.fail(500, times=1)
    with pytest.raises(ServerError):
        await provider.complete(ask())
    assert len(anthropic_fake.requests) == 1  # the SDK's own retries are off
    assert (await provider.complete(ask("again"))).content == "echo: again"


async def test_refused_connection_is_connection_error(closed_port: str) -> None:
    p = make(closed_port)
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value) == "anthropic: connection failed: APIConnectionError: Connection error."


async def test_malformed_json_is_server_error(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.malformed = True
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == (
        "anthropic: malformed reply: JSONDecodeError: Expecting value: line 1 column 16 (char 15)"
    )


async def test_slow_server_call_is_cancellable(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.delay = 30
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            await provider.complete(ask())
    assert scope.cancelled_caught


async def test_key_never_appears_in_error_or_repr(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    anthropic_fake.fail(401, message=f"invalid x-api-key: {KEY}")
    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "anthropic: HTTP 401: invalid x-api-key: ***"
    assert KEY not in repr(provider)


async def test_base_url_none_reads_anthropic_base_url(
    anthropic_fake: AnthropicFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_fake.url)
    p = make(None)
    try:
        reply = await p.complete(ask("via env"))
    finally:
        await p.aclose()
    assert (reply.content, len(anthropic_fake.requests)) == ("echo: via env", 1)


async def test_health_is_true_when_models_answer(provider: AnthropicProvider, anthropic_fake: AnthropicFake) -> None:
    assert await provider.health() is True
    assert (anthropic_fake.requests[0].method, anthropic_fake.requests[0].path) == ("GET", "/v1/models")


async def test_health_is_false_when_unreachable(closed_port: str) -> None:
    p = make(closed_port)
    try:
        assert await p.health() is False
    finally:
        await p.aclose()
