"""OpenAIProvider (`openai` and `openai_compatible`) through the official `openai` SDK against the fake."""

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
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.providers.openai import OpenAIProvider
from amaos_llm.types import Message
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio

KEY = "sk-test-SECRET-123"
MODEL = "gpt-test"


def ask(text: str = "hello there", *, system: str | None = None, **kwargs: object) -> ProviderRequest:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=text))
    params: dict = {"temperature": 0.0, "max_tokens": 64, **kwargs}
    return ProviderRequest(messages=messages, model=MODEL, **params)


def make(base_url: str | None, key: str | None = KEY, provider: str = "openai", **spec: object) -> OpenAIProvider:
    model_spec = ModelSpec(name="gpt", provider=provider, model=MODEL, base_url=base_url, **spec)
    return OpenAIProvider(model_spec, SecretStr(key) if key else None)


@pytest.fixture
async def provider(openai_fake: OpenAIFake) -> AsyncIterator[OpenAIProvider]:
    p = make(openai_fake.url)
    yield p
    await p.aclose()


async def test_reply_carries_content_usage_finish_reason_and_model(provider: OpenAIProvider) -> None:
    reply = await provider.complete(ask("hello there world", system="be brief"))
    assert (reply.content, reply.input_tokens, reply.output_tokens) == ("echo: hello there world", 5, 4)
    assert (reply.finish_reason, reply.model) == ("stop", MODEL)


async def test_openai_sends_temperature_zero_max_completion_tokens_and_seed(
    provider: OpenAIProvider, openai_fake: OpenAIFake
) -> None:
    await provider.complete(ask(max_tokens=7, seed=42))
    body = openai_fake.requests[0].body
    assert (body["temperature"], body["max_completion_tokens"], body["seed"]) == (0.0, 7, 42)
    assert "max_tokens" not in body


async def test_compatible_server_gets_max_tokens(openai_fake: OpenAIFake) -> None:
    p = make(openai_fake.url, provider="openai_compatible")
    try:
        await p.complete(ask(max_tokens=7))
    finally:
        await p.aclose()
    body = openai_fake.requests[0].body
    assert (body["temperature"], body["max_tokens"]) == (0.0, 7)
    assert "max_completion_tokens" not in body


async def test_request_goes_to_chat_completions_with_bearer_key(
    provider: OpenAIProvider, openai_fake: OpenAIFake
) -> None:
    await provider.complete(ask())
    sent = openai_fake.requests[0]
    assert (sent.method, sent.path, sent.headers["authorization"]) == ("POST", "/v1/chat/completions", f"Bearer {KEY}")


async def test_system_prompt_is_the_first_message(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    await provider.complete(ask("hi", system="be brief"))
    assert openai_fake.requests[0].body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


async def test_spec_options_travel_as_extra_body_fields(openai_fake: OpenAIFake) -> None:
    p = make(openai_fake.url, provider="openai_compatible", options={"top_k": 20})
    try:
        await p.complete(ask())
    finally:
        await p.aclose()
    assert openai_fake.requests[0].body["top_k"] == 20


async def test_reply_cut_at_max_tokens_reports_length(provider: OpenAIProvider) -> None:
    reply = await provider.complete(ask("one two three four", max_tokens=2))
    assert (reply.content, reply.output_tokens, reply.finish_reason) == ("echo: one", 2, "length")


async def test_openai_without_key_is_authentication_error_naming_the_env_var(openai_fake: OpenAIFake) -> None:
    p = make(openai_fake.url, key=None)
    with pytest.raises(AuthenticationError) as caught:
        await p.complete(ask())
    await p.aclose()
    assert (str(caught.value), len(openai_fake.requests)) == ("openai: no API key; set OPENAI_API_KEY", 0)


async def test_compatible_server_without_key_gets_a_placeholder(openai_fake: OpenAIFake) -> None:
    p = make(openai_fake.url, key=None, provider="openai_compatible")
    try:
        await p.complete(ask())
    finally:
        await p.aclose()
    assert openai_fake.requests[0].headers["authorization"] == "Bearer unused"


async def test_401_is_authentication_error(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(401, message="Incorrect API key provided")
    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("openai: HTTP 401: Incorrect API key provided", 401)


async def test_429_is_rate_limit_error_with_retry_after(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(429, retry_after="7", message="Rate limit reached")
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.retry_after) == ("openai: HTTP 429: Rate limit reached", 7.0)


async def test_500_is_server_error(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(500, message="The server had an error")
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("openai: HTTP 500: The server had an error", 500)


async def test_400_is_bad_request(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(400, message="Unsupported parameter: 'max_tokens'")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "openai: HTTP 400: Unsupported parameter: 'max_tokens'"


async def test_a_failure_is_sent_once_and_the_next_call_succeeds(
    provider: OpenAIProvider, openai_fake: OpenAIFake
) -> None:
    openai_fake.fail(500, times=1)
    with pytest.raises(ServerError):
        await provider.complete(ask())
    assert len(openai_fake.requests) == 1  # the SDK's own retries are off
    assert (await provider.complete(ask("again"))).content == "echo: again"


async def test_refused_connection_is_connection_error(closed_port: str) -> None:
    p = make(f"{closed_port}/v1")
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value) == "openai: connection failed: APIConnectionError: Connection error."


async def test_malformed_json_is_server_error(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.malformed = True
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == (
        "openai: malformed reply: JSONDecodeError: Expecting value: line 1 column 16 (char 15)"
    )


async def test_slow_server_call_is_cancellable(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.delay = 30
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            await provider.complete(ask())
    assert scope.cancelled_caught


async def test_key_never_appears_in_error_or_repr(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(401, message=f"Incorrect API key provided: {KEY}")
    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "openai: HTTP 401: Incorrect API key provided: ***"
    assert KEY not in repr(provider)


async def test_base_url_none_reads_openai_base_url(openai_fake: OpenAIFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_fake.url)
    p = make(None)
    try:
        reply = await p.complete(ask("via env"))
    finally:
        await p.aclose()
    assert (reply.content, len(openai_fake.requests)) == ("echo: via env", 1)


async def test_health_is_true_when_models_answer(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    assert await provider.health() is True
    assert (openai_fake.requests[0].method, openai_fake.requests[0].path) == ("GET", "/v1/models")


async def test_health_is_false_when_the_key_is_refused(provider: OpenAIProvider, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(401)
    assert await provider.health() is False


async def test_health_is_false_when_unreachable(closed_port: str) -> None:
    p = make(f"{closed_port}/v1")
    try:
        assert await p.health() is False
    finally:
        await p.aclose()
