"""GoogleProvider through the official `google-genai` SDK against the Gemini fake."""

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
from amaos_llm.providers.google import GoogleProvider
from amaos_llm.types import Message
from tests.support.fakes import GoogleFake

pytestmark = pytest.mark.anyio

KEY = "sk-test-SECRET-123"
MODEL = "gemini-test"


def ask(text: str = "hello there", *, system: str | None = None, **kwargs: object) -> ProviderRequest:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=text))
    params: dict = {"temperature": 0.0, "max_tokens": 64, **kwargs}
    return ProviderRequest(messages=messages, model=MODEL, **params)


def make(base_url: str | None, key: str | None = KEY, **spec: object) -> GoogleProvider:
    model_spec = ModelSpec(name="gemini", provider="google", model=MODEL, base_url=base_url, **spec)
    return GoogleProvider(model_spec, SecretStr(key) if key else None)


@pytest.fixture
async def provider(google_fake: GoogleFake) -> AsyncIterator[GoogleProvider]:
    p = make(google_fake.url)
    yield p
    await p.aclose()


async def test_reply_carries_content_usage_finish_reason_and_model(provider: GoogleProvider) -> None:
    reply = await provider.complete(ask("hello there world", system="be brief"))
    assert (reply.content, reply.input_tokens, reply.output_tokens) == ("echo: hello there world", 5, 4)
    assert (reply.finish_reason, reply.model) == ("STOP", MODEL)


async def test_temperature_zero_max_tokens_and_seed_reach_generation_config(
    provider: GoogleProvider, google_fake: GoogleFake
) -> None:
    await provider.complete(ask(max_tokens=7, seed=42))
    assert google_fake.requests[0].body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 7, "seed": 42}


async def test_request_goes_to_generate_content_with_the_key_header(
    provider: GoogleProvider, google_fake: GoogleFake
) -> None:
    await provider.complete(ask())
    sent = google_fake.requests[0]
    assert (sent.method, sent.path) == ("POST", f"/v1/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == KEY


async def test_system_messages_become_the_system_instruction(
    provider: GoogleProvider, google_fake: GoogleFake
) -> None:
    await provider.complete(ask("hi", system="be brief"))
    body = google_fake.requests[0].body
    assert body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "hi"}]}]


async def test_assistant_turns_have_role_model(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    messages = [
        Message(role="user", content="hi"),
        Message(role="assistant", content="hello"),
        Message(role="user", content="again"),
    ]
    await provider.complete(ProviderRequest(messages=messages, model=MODEL, temperature=0.0, max_tokens=64))
    assert [c["role"] for c in google_fake.requests[0].body["contents"]] == ["user", "model", "user"]


async def test_spec_options_become_generation_config_fields(google_fake: GoogleFake) -> None:
    p = make(google_fake.url, options={"top_k": 20})
    try:
        await p.complete(ask())
    finally:
        await p.aclose()
    assert google_fake.requests[0].body["generationConfig"]["topK"] == 20


async def test_unknown_option_is_bad_request_before_sending(google_fake: GoogleFake) -> None:
    p = make(google_fake.url, options={"no_such_field": 1})
    try:
        with pytest.raises(BadRequestError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value).startswith("google: invalid options: 1 validation error for GenerateContentConfig")
    assert len(google_fake.requests) == 0


async def test_thinking_tokens_count_as_output(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.extra_usage = {"thoughtsTokenCount": 50}
    reply = await provider.complete(ask("hello there world"))
    assert (reply.input_tokens, reply.output_tokens) == (3, 4 + 50)


async def test_reply_cut_at_max_tokens_reports_max_tokens(provider: GoogleProvider) -> None:
    reply = await provider.complete(ask("one two three four", max_tokens=2))
    assert (reply.content, reply.output_tokens, reply.finish_reason) == ("echo: one", 2, "MAX_TOKENS")


async def test_missing_key_is_authentication_error_naming_the_env_var(google_fake: GoogleFake) -> None:
    p = make(google_fake.url, key=None)
    with pytest.raises(AuthenticationError) as caught:
        await p.complete(ask())
    await p.aclose()
    assert (str(caught.value), len(google_fake.requests)) == ("google: no API key; set GOOGLE_API_KEY", 0)


async def test_401_is_authentication_error(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.fail(401, message="API key not valid")
    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("google: HTTP 401: API key not valid", 401)


async def test_429_is_rate_limit_error_with_retry_after(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.fail(429, retry_after="7", message="Resource has been exhausted")
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.retry_after) == ("google: HTTP 429: Resource has been exhausted", 7.0)


async def test_500_is_server_error(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.fail(500, message="Internal error encountered")
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("google: HTTP 500: Internal error encountered", 500)


async def test_400_is_bad_request(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.fail(400, message="Invalid value at 'generation_config.temperature'")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "google: HTTP 400: Invalid value at 'generation_config.temperature'"


async def test_a_failure_is_sent_once_and_the_next_call_succeeds(
    provider: GoogleProvider, google_fake: GoogleFake
) -> None:
    google_fake.fail(503, times=1)
    with pytest.raises(ServerError):
        await provider.complete(ask())
    assert len(google_fake.requests) == 1  # the SDK does not retry by default
    assert (await provider.complete(ask("again"))).content == "echo: again"


async def test_refused_connection_is_connection_error(closed_port: str) -> None:
    p = make(closed_port)
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value).startswith("google: connection failed: ConnectError")


async def test_malformed_json_is_server_error(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.malformed = True
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == (
        "google: malformed reply: JSONDecodeError: Expecting value: line 1 column 16 (char 15)"
    )


async def test_slow_server_call_is_cancellable(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.delay = 30
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            await provider.complete(ask())
    assert scope.cancelled_caught


async def test_key_never_appears_in_error_or_repr(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.fail(400, message=f"API key not valid: {KEY}")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "google: HTTP 400: API key not valid: ***"
    assert KEY not in repr(provider)


async def test_base_url_none_reads_google_gemini_base_url(
    google_fake: GoogleFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", google_fake.url)
    p = make(None)
    try:
        reply = await p.complete(ask("via env"))
    finally:
        await p.aclose()
    assert (reply.content, len(google_fake.requests)) == ("echo: via env", 1)


async def test_two_calls_share_one_client(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    await provider.complete(ask("first"))
    reply = await provider.complete(ask("second"))
    assert (reply.content, len(google_fake.requests)) == ("echo: second", 2)


async def test_health_is_true_when_the_model_is_known(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.models = [MODEL]
    assert await provider.health() is True
    assert (google_fake.requests[0].method, google_fake.requests[0].path) == ("GET", f"/v1/models/{MODEL}")


async def test_health_is_false_for_an_unknown_model(provider: GoogleProvider, google_fake: GoogleFake) -> None:
    google_fake.models = ["other"]
    assert await provider.health() is False


async def test_health_is_false_when_unreachable(closed_port: str) -> None:
    p = make(closed_port)
    try:
        assert await p.health() is False
    finally:
        await p.aclose()
