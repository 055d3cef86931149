"""What only the Gemini wire does (the `google-genai` SDK against the Gemini fake); the rest is in
test_contract.py."""

from __future__ import annotations

import aiohttp
import pytest
from google.genai.models import AsyncModels

from amaos_llm.errors import BadRequestError, ProviderConnectionError, ProviderError, ProviderTimeout
from amaos_llm.providers.base import Provider, ProviderRequest
from amaos_llm.types import Message
from tests.amaos_llm.providers.wires import GOOGLE, MODEL, ask, make
from tests.support.fakes import GoogleFake

pytestmark = pytest.mark.anyio
WIRE = GOOGLE  # the `wire` of the shared `provider` and `fake` fixtures (conftest.py)


async def test_generation_config_holds_exactly_temperature_max_output_tokens_and_seed(
    provider: Provider, google_fake: GoogleFake
) -> None:
    await provider.complete(ask(max_tokens=7, seed=42))
    assert google_fake.requests[0].body["generationConfig"] == {"temperature": 0.0, "maxOutputTokens": 7, "seed": 42}


async def test_assistant_turns_have_role_model(provider: Provider, google_fake: GoogleFake) -> None:
    messages = [
        Message(role="user", content="hi"),
        Message(role="assistant", content="hello"),
        Message(role="user", content="again"),
    ]
    await provider.complete(ProviderRequest(messages=messages, model=MODEL, temperature=0.0, max_tokens=64))
    assert [c["role"] for c in google_fake.requests[0].body["contents"]] == ["user", "model", "user"]


async def test_spec_options_become_generation_config_fields(google_fake: GoogleFake) -> None:
    p = make(GOOGLE, google_fake.url, options={"top_k": 20})
    try:
        await p.complete(ask())
    finally:
        await p.aclose()
    assert google_fake.requests[0].body["generationConfig"]["topK"] == 20


async def test_unknown_option_is_bad_request_before_sending(google_fake: GoogleFake) -> None:
    p = make(GOOGLE, google_fake.url, options={"no_such_field": 1})
    try:
        with pytest.raises(BadRequestError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value).startswith("google: invalid options: 1 validation error for GenerateContentConfig")
    assert len(google_fake.requests) == 0


async def test_thinking_tokens_count_as_output(provider: Provider, google_fake: GoogleFake) -> None:
    google_fake.extra_usage = {"thoughtsTokenCount": 50}
    reply = await provider.complete(ask("hello there world"))
    assert (reply.input_tokens, reply.output_tokens) == (3, 4 + 50)


async def test_two_calls_share_one_client(provider: Provider, google_fake: GoogleFake) -> None:
    await provider.complete(ask("first"))
    reply = await provider.complete(ask("second"))
    assert (reply.content, len(google_fake.requests)) == ("echo: second", 2)


async def test_health_is_false_for_an_unknown_model(provider: Provider, google_fake: GoogleFake) -> None:
    google_fake.models = ["other"]
    assert await provider.health() is False


@pytest.mark.parametrize(
    ("raised", "error", "message"),
    [
        (aiohttp.ServerDisconnectedError(), ProviderConnectionError,
         "google: connection to {url} failed: ServerDisconnectedError: Server disconnected"),
        (aiohttp.ClientPayloadError("Response payload is not completed"), ProviderConnectionError,
         "google: connection to {url} failed: ClientPayloadError: Response payload is not completed"),
        (aiohttp.ServerTimeoutError("Timeout on reading data from socket"), ProviderTimeout,
         "google: timed out: ServerTimeoutError: Timeout on reading data from socket"),
        (TimeoutError(), ProviderTimeout, "google: timed out: TimeoutError"),  # aiohttp's total timeout
    ],
    ids=["disconnected", "payload", "server-timeout", "total-timeout"],
)
async def test_aiohttp_errors_map_like_httpx_ones(
    raised: Exception, error: type[ProviderError], message: str, closed_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def generate_content(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(AsyncModels, "generate_content", generate_content)
    p = make(GOOGLE, closed_port)
    try:
        with pytest.raises(error) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert (type(caught.value), str(caught.value)) == (error, message.format(url=closed_port))


async def test_thought_parts_are_dropped_whole_and_streamed(google_fake: GoogleFake) -> None:
    google_fake.thought = "Let me think about this carefully."
    p = make(GOOGLE, google_fake.url)
    try:
        whole = await p.complete(ask("hi"))
        streamed = "".join([c.text async for c in p.stream(ask("hi"))])
    finally:
        await p.aclose()
    assert (whole.content, streamed) == ("echo: hi", "echo: hi")
