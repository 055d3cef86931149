"""`Provider.stream` on every HTTP wire, against each wire's fake, on both transports: the exact
chunks, usage equal to the non-streamed reply's (cache tokens on), no silent truncation, in-stream
errors, and an abandoned stream closing its connection at once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio
import pytest

from amaos_llm.errors import ProviderConnectionError, RateLimitError, ServerError
from amaos_llm.providers.base import Provider, ProviderChunk, ProviderRequest, StreamUsage
from tests.amaos_llm.providers.wires import MODEL, TRANSPORTS, WIRES, Wire, ask, without_aiohttp
from tests.support.fakes import FakeServer

pytestmark = pytest.mark.anyio
every_wire = pytest.mark.parametrize("wire", WIRES, ids=str)
# What each wire reports of a prompt cache (fake.cache = (read, write)): OpenAI and Gemini report reads
# only, Ollama nothing; Anthropic both, and leaves them out of its input_tokens (we count them in).
CACHE = {"openai": (3, 0), "anthropic": (3, 2), "google": (3, 0), "ollama": (0, 0)}


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "default":
        without_aiohttp(monkeypatch)
    return str(request.param)


async def collect(stream: AsyncIterator[ProviderChunk]) -> list[ProviderChunk]:
    return [chunk async for chunk in stream]


async def text_before_failure(provider: Provider, request: ProviderRequest, seen: list[str]) -> None:
    async for chunk in provider.stream(request):
        if chunk.text:
            seen.append(chunk.text)


def text(piece: str, usage: StreamUsage | None = None) -> ProviderChunk:
    return ProviderChunk(text=piece, usage=usage)


END = ProviderChunk(usage=StreamUsage(5, 4), finish_reason="stop", model=MODEL)
# Usage arrives where each wire reports it: OpenAI and Ollama only at the end; Anthropic's
# message_start first (1 output token so far); Gemini's usageMetadata with every chunk that changes it.
EXACT = {
    "openai": [text("echo: "), text("hello "), text("there "), text("world"), END],
    "ollama": [text("echo: "), text("hello "), text("there "), text("world"), END],
    "anthropic": [ProviderChunk(usage=StreamUsage(5, 1)), text("echo: "), text("hello "), text("there "),
                  text("world"), END],
    "google": [text("echo: ", StreamUsage(5, 0)), text("hello "), text("there "), text("world", StreamUsage(5, 4)),
               END],
}


@every_wire
async def test_a_stream_is_its_text_deltas_then_one_chunk_with_usage_and_finish(
    wire: Wire, provider: Provider
) -> None:
    chunks = await collect(provider.stream(ask("hello there world", system="be brief")))
    assert chunks == EXACT[wire.name]


# What a stream broken after its first delta had reported: what the caller counts for that attempt.
REPORTED_BEFORE_A_BREAK = {"openai": None, "ollama": None, "anthropic": StreamUsage(10, 1, 3, 2),
                           "google": StreamUsage(10, 0, 3)}


@every_wire
async def test_usage_reported_before_a_break_is_in_the_chunks_already_yielded(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.stream_fault, fake.cache = "cut", (3, 2)
    seen: list[ProviderChunk] = []
    with pytest.raises(ProviderConnectionError):
        async for chunk in provider.stream(ask("a b c d e f g h i j")):
            seen.append(chunk)
    usages = [c.usage for c in seen if c.usage is not None]
    assert (usages[-1] if usages else None) == REPORTED_BEFORE_A_BREAK[wire.name]


@every_wire
async def test_a_stream_cut_at_max_tokens_finishes_with_length(wire: Wire, provider: Provider) -> None:
    chunks = await collect(provider.stream(ask("one two three four", max_tokens=2)))
    assert ("".join(c.text for c in chunks), chunks[-1].finish_reason) == ("echo: one", "length")


@every_wire
async def test_streamed_usage_equals_the_whole_reply_usage_with_cache_tokens(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.cache = (3, 2)
    reply = await provider.complete(ask("a b c d e f", system="s"))
    last = (await collect(provider.stream(ask("a b c d e f", system="s"))))[-1]
    read, write = CACHE[wire.name]
    assert last.usage == StreamUsage(reply.input_tokens, reply.output_tokens, read, write)
    assert (reply.input_tokens, reply.output_tokens, reply.cache_read_tokens, reply.cache_write_tokens) == (
        7, 7, read, write)


@every_wire
async def test_an_error_event_mid_stream_is_a_server_error_after_the_text_before_it(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.stream_fault, fake.fault_after = "error", 2
    seen: list[str] = []
    with pytest.raises(ServerError, match=f"^{wire.name}: (error in reply|HTTP 503): "):
        await text_before_failure(provider, ask("hello there world"), seen)
    assert seen == ["echo: ", "hello "]


@every_wire
async def test_a_stream_cut_mid_body_is_a_connection_error_worth_retrying(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.stream_fault = "cut"
    seen: list[str] = []
    with pytest.raises(ProviderConnectionError) as caught:
        await text_before_failure(provider, ask("hello there world"), seen)
    assert (seen, caught.value.retryable) == (["echo: "], True)


@every_wire
async def test_a_stream_that_ends_without_its_end_marker_is_not_a_whole_reply(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.stream_fault, fake.fault_after = "close", 3
    seen: list[str] = []
    with pytest.raises(ProviderConnectionError, match=f"^{wire.name}: stream ended without .*: the reply was cut$"):
        await text_before_failure(provider, ask("hello there world"), seen)
    assert seen == ["echo: ", "hello ", "there "]


@every_wire
async def test_a_stall_before_the_first_token_still_delivers_the_whole_stream(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.stall_before = 0.3
    started = time.monotonic()
    chunks = await collect(provider.stream(ask("hi")))
    assert ("".join(c.text for c in chunks), time.monotonic() - started >= 0.3) == ("echo: hi", True)


@every_wire
async def test_abandoning_a_stream_closes_its_connection_at_once(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.stall_after = 10.0
    stream = provider.stream(ask("hello there world"))
    first = await stream.__anext__()  # type: ignore[attr-defined]
    while not first.text:  # Anthropic's usage comes first
        first = await stream.__anext__()  # type: ignore[attr-defined]
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.text == "echo: "
    assert await anyio.to_thread.run_sync(fake.disconnected.wait, 3.0)


@every_wire
async def test_cancelling_the_consumer_closes_the_connection(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    fake.stall_after = 10.0
    with anyio.move_on_after(0.5):
        await collect(provider.stream(ask("hello there world")))
    assert await anyio.to_thread.run_sync(fake.disconnected.wait, 3.0)


@every_wire
async def test_an_http_error_before_the_first_chunk_is_mapped_as_for_a_whole_reply(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.fail(429, retry_after="7", message="slow down")
    with pytest.raises(RateLimitError, match=f"^{wire.name}: HTTP 429: slow down$") as caught:
        await collect(provider.stream(ask()))
    assert caught.value.retry_after == wire.retry_after


@every_wire
async def test_a_server_that_hangs_up_before_answering_a_stream_is_a_connection_error(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.reply_fault = "hang_up"
    with pytest.raises(ProviderConnectionError, match=f"^{wire.name}: connection to .* failed: "):
        await collect(provider.stream(ask()))
