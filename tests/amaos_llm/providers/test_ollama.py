"""OllamaProvider through the official `ollama` SDK against the Ollama fake."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.errors import (
    AuthenticationError,
    BadRequestError,
    ProviderConnectionError,
    RateLimitError,
    ServerError,
)
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.providers.ollama import OllamaProvider
from amaos_llm.types import Message
from tests.support.fakes import OllamaFake

pytestmark = pytest.mark.anyio

MODEL = "llama3.2:1b"


def ask(text: str = "hello there", *, system: str | None = None, **kwargs: object) -> ProviderRequest:
    messages = [Message(role="system", content=system)] if system else []
    messages.append(Message(role="user", content=text))
    params: dict = {"temperature": 0.0, "max_tokens": 64, **kwargs}
    return ProviderRequest(messages=messages, model=MODEL, **params)


def make(base_url: str | None, **spec: object) -> OllamaProvider:
    return OllamaProvider(ModelSpec(name="local", provider="ollama", model=MODEL, base_url=base_url, **spec))


@pytest.fixture
async def provider(ollama_fake: OllamaFake) -> AsyncIterator[OllamaProvider]:
    p = make(ollama_fake.url)
    yield p
    await p.aclose()


async def test_reply_carries_content_usage_finish_reason_and_model(provider: OllamaProvider) -> None:
    reply = await provider.complete(ask("hello there world", system="be brief"))
    assert (reply.content, reply.input_tokens, reply.output_tokens) == ("echo: hello there world", 5, 4)
    assert (reply.finish_reason, reply.model) == ("stop", MODEL)


async def test_temperature_zero_max_tokens_and_seed_reach_options(
    provider: OllamaProvider, ollama_fake: OllamaFake
) -> None:
    await provider.complete(ask(seed=42, max_tokens=7))
    assert ollama_fake.requests[0].body["options"] == {"temperature": 0.0, "num_predict": 7, "seed": 42}


async def test_request_goes_to_api_chat_non_streaming(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    await provider.complete(ask())
    sent = ollama_fake.requests[0]
    assert (sent.method, sent.path, sent.body["stream"], sent.body["model"]) == ("POST", "/api/chat", False, MODEL)


async def test_system_prompt_is_the_first_message(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    await provider.complete(ask("hi", system="be brief"))
    assert ollama_fake.requests[0].body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


async def test_spec_options_merge_into_options_and_keep_alive_goes_top_level(ollama_fake: OllamaFake) -> None:
    p = make(ollama_fake.url, options={"num_ctx": 4096, "keep_alive": "5m"})
    try:
        await p.complete(ask(max_tokens=9))
    finally:
        await p.aclose()
    body = ollama_fake.requests[0].body
    assert body["options"] == {"num_ctx": 4096, "temperature": 0.0, "num_predict": 9}
    assert body["keep_alive"] == "5m"


async def test_reply_cut_at_max_tokens_reports_length(provider: OllamaProvider) -> None:
    reply = await provider.complete(ask("one two three four", max_tokens=2))
    assert (reply.content, reply.output_tokens, reply.finish_reason) == ("echo: one", 2, "length")


async def test_401_is_authentication_error(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.fail(401, message="unauthorized")
    with pytest.raises(AuthenticationError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == ("ollama: HTTP 401: unauthorized", 401)


async def test_429_is_rate_limit_error_without_retry_after(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    # The ollama SDK does not expose response headers, so Retry-After cannot be read.
    ollama_fake.fail(429, retry_after="7", message="too many requests")
    with pytest.raises(RateLimitError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.retry_after) == ("ollama: HTTP 429: too many requests", None)


async def test_500_is_server_error(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.fail(500, message="model runner crashed")
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "ollama: HTTP 500: model runner crashed"


async def test_404_unknown_model_is_bad_request(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.fail(404, message=f"model '{MODEL}' not found")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert (str(caught.value), caught.value.status_code) == (f"ollama: HTTP 404: model '{MODEL}' not found", 404)


async def test_400_is_bad_request(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.fail(400, message="invalid options")
    with pytest.raises(BadRequestError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == "ollama: HTTP 400: invalid options"


async def test_a_failure_is_sent_once_and_the_next_call_succeeds(
    provider: OllamaProvider, ollama_fake: OllamaFake
) -> None:
    ollama_fake.fail(500, times=1)
    with pytest.raises(ServerError):
        await provider.complete(ask())
    assert len(ollama_fake.requests) == 1
    assert (await provider.complete(ask("again"))).content == "echo: again"


async def test_refused_connection_is_connection_error(closed_port: str) -> None:
    p = make(closed_port)
    try:
        with pytest.raises(ProviderConnectionError) as caught:
            await p.complete(ask())
    finally:
        await p.aclose()
    assert str(caught.value).startswith("ollama: connection failed: ConnectionError: Failed to connect to Ollama")


async def test_malformed_json_is_server_error(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.malformed = True
    with pytest.raises(ServerError) as caught:
        await provider.complete(ask())
    assert str(caught.value) == (
        "ollama: malformed reply: JSONDecodeError: Expecting value: line 1 column 16 (char 15)"
    )


async def test_slow_server_call_is_cancellable(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.delay = 30
    with anyio.fail_after(5):
        with anyio.move_on_after(0.2) as scope:
            await provider.complete(ask())
    assert scope.cancelled_caught


async def test_base_url_none_reads_ollama_host(ollama_fake: OllamaFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{ollama_fake.port}")
    p = make(None)
    try:
        reply = await p.complete(ask("via env"))
    finally:
        await p.aclose()
    assert (reply.content, len(ollama_fake.requests)) == ("echo: via env", 1)


async def test_health_is_true_when_tags_list_the_model(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.models = ["other:7b", MODEL]
    assert await provider.health() is True
    assert ollama_fake.requests[0].path == "/api/tags"


async def test_health_accepts_the_implicit_latest_tag(ollama_fake: OllamaFake) -> None:
    ollama_fake.models = ["llama3:latest"]
    p = OllamaProvider(ModelSpec(name="llama3", provider="ollama", base_url=ollama_fake.url))
    try:
        assert await p.health() is True
    finally:
        await p.aclose()


async def test_health_is_false_when_the_model_is_not_pulled(provider: OllamaProvider, ollama_fake: OllamaFake) -> None:
    ollama_fake.models = ["other:7b"]
    assert await provider.health() is False


async def test_health_is_false_when_unreachable(closed_port: str) -> None:
    p = make(closed_port)
    try:
        assert await p.health() is False
    finally:
        await p.aclose()
