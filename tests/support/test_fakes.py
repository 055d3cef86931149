"""Self-checks of the fakes: each official SDK reads their streams as it reads the real servers',
and the injected stream faults surface as WIRE.md says they do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import anyio
import httpx
import httpx2
import ollama
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.support.fakes import AnthropicFake, GoogleFake, OllamaFake, OpenAIFake

pytestmark = pytest.mark.anyio

HI = "hello there world"


@pytest.fixture
async def openai_client(openai_fake: OpenAIFake) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=openai_fake.url, api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
async def anthropic_client(anthropic_fake: AnthropicFake) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=anthropic_fake.url, api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
async def google_client(google_fake: GoogleFake) -> AsyncIterator[genai.Client]:
    # An explicit httpx2 transport, or google-genai sends through aiohttp when it is installed (the
    # `fast` extra) and these checks, which name httpx2's errors, would see aiohttp's.
    transport = httpx2.AsyncHTTPTransport()
    options = genai_types.HttpOptions(base_url=google_fake.url, async_client_args={"transport": transport})
    client = genai.Client(api_key="k", http_options=options)
    yield client
    await client.aio.aclose()
    client.close()


@pytest.fixture
async def ollama_client(ollama_fake: OllamaFake) -> AsyncIterator[ollama.AsyncClient]:
    client = ollama.AsyncClient(host=ollama_fake.url)
    yield client
    await client.close()


async def openai_stream(client: openai.AsyncOpenAI, **kwargs: Any) -> tuple[str, Any]:
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": HI}], stream=True, **kwargs
    )
    text, usage = "", None
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    return text, usage


async def anthropic_stream(client: anthropic.AsyncAnthropic) -> list[Any]:
    stream = await client.messages.create(
        model="m", max_tokens=64, messages=[{"role": "user", "content": HI}], stream=True
    )
    return [event async for event in stream]


async def google_stream(client: genai.Client) -> list[Any]:
    stream = await client.aio.models.generate_content_stream(model="m", contents=HI)
    return [chunk async for chunk in stream]


async def ollama_stream(client: ollama.AsyncClient) -> list[Any]:
    stream = await client.chat(model="m", messages=[{"role": "user", "content": HI}], stream=True)
    return [part async for part in stream]


async def test_openai_stream_ends_with_usage_when_asked(openai_client: openai.AsyncOpenAI) -> None:
    text, usage = await openai_stream(openai_client, stream_options={"include_usage": True})
    assert (text, usage.prompt_tokens, usage.completion_tokens) == ("echo: hello there world", 3, 4)


async def test_openai_stream_has_no_usage_unless_asked(openai_client: openai.AsyncOpenAI) -> None:
    assert await openai_stream(openai_client) == ("echo: hello there world", None)


async def test_openai_stream_error_event_raises_api_error(
    openai_client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.stream_fault = "error"
    with pytest.raises(openai.APIError) as caught:
        await openai_stream(openai_client)
    assert not isinstance(caught.value, openai.APIStatusError)


async def test_openai_stream_cut_raises_connection_error(
    openai_client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.stream_fault = "cut"
    with pytest.raises(openai.APIConnectionError):
        await openai_stream(openai_client)


async def test_anthropic_stream_follows_the_event_sequence(anthropic_client: anthropic.AsyncAnthropic) -> None:
    events = await anthropic_stream(anthropic_client)
    assert [e.type for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]  # the SDK drops `ping`
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    usage = (events[0].message.usage.input_tokens, events[-2].usage.output_tokens, events[-2].delta.stop_reason)
    assert (text, usage) == ("echo: hello there world", (3, 4, "end_turn"))


async def test_anthropic_stream_error_event_raises_status_error_200(
    anthropic_client: anthropic.AsyncAnthropic, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.stream_fault = "error"
    with pytest.raises(anthropic.APIStatusError) as caught:
        await anthropic_stream(anthropic_client)
    assert (caught.value.status_code, caught.value.body["error"]["type"]) == (200, "overloaded_error")


async def test_anthropic_stream_cut_raises_raw_remote_protocol_error(
    anthropic_client: anthropic.AsyncAnthropic, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.stream_fault = "cut"
    with pytest.raises(httpx2.RemoteProtocolError):
        await anthropic_stream(anthropic_client)


async def test_google_stream_ends_with_finish_reason_and_usage(google_client: genai.Client) -> None:
    chunks = await google_stream(google_client)
    last = chunks[-1]
    usage = (last.usage_metadata.prompt_token_count, last.usage_metadata.candidates_token_count)
    assert ("".join(c.text for c in chunks), last.candidates[0].finish_reason.value, usage) == (
        "echo: hello there world", "STOP", (3, 4))


async def test_google_stream_error_chunk_raises_server_error_503(
    google_client: genai.Client, google_fake: GoogleFake
) -> None:
    google_fake.stream_fault = "error"
    with pytest.raises(genai_errors.ServerError) as caught:
        await google_stream(google_client)
    assert caught.value.code == 503


async def test_google_stream_cut_raises_raw_remote_protocol_error(
    google_client: genai.Client, google_fake: GoogleFake
) -> None:
    google_fake.stream_fault = "cut"
    with pytest.raises(httpx2.RemoteProtocolError):
        await google_stream(google_client)


async def test_ollama_stream_ends_with_done_and_counts(ollama_client: ollama.AsyncClient) -> None:
    parts = await ollama_stream(ollama_client)
    last = parts[-1]
    assert ("".join(p.message.content for p in parts), last.done, last.done_reason) == (
        "echo: hello there world", True, "stop")
    assert (last.prompt_eval_count, last.eval_count) == (3, 4)


async def test_ollama_stream_error_line_raises_response_error(
    ollama_client: ollama.AsyncClient, ollama_fake: OllamaFake
) -> None:
    ollama_fake.stream_fault = "error"
    with pytest.raises(ollama.ResponseError) as caught:
        await ollama_stream(ollama_client)
    assert caught.value.status_code == -1


async def test_ollama_stream_cut_raises_raw_httpx_error(
    ollama_client: ollama.AsyncClient, ollama_fake: OllamaFake
) -> None:
    ollama_fake.stream_fault = "cut"
    with pytest.raises(httpx.RemoteProtocolError):
        await ollama_stream(ollama_client)


async def test_failing_k_times_then_answering(openai_client: openai.AsyncOpenAI, openai_fake: OpenAIFake) -> None:
    openai_fake.fail(503, times=2)
    outcomes = []
    for _ in range(3):
        try:
            await openai_client.chat.completions.create(model="m", messages=[{"role": "user", "content": HI}])
            outcomes.append("ok")
        except openai.InternalServerError as exc:
            outcomes.append(exc.status_code)
    assert (outcomes, len(openai_fake.requests)) == ([503, 503, "ok"], 3)


# --- tool calls, cache usage, strict histories: read by the SDKs' own accumulating helpers ---------
TOOLS = [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "neg", "arguments": {"x": 5}}]
OPENAI_TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("add", "neg")]


async def test_openai_streamed_tool_call_fragments_rebuild_in_the_sdk_helper(
    openai_client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.tool_calls = TOOLS
    async with openai_client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": HI}], tools=OPENAI_TOOLS,  # type: ignore[list-item]
    ) as stream:
        final = await stream.get_final_completion()
    message = final.choices[0].message
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []] == [  # type: ignore[union-attr]
        ("call_fake_0", "add", '{"a": 1, "b": 2}'), ("call_fake_1", "neg", '{"x": 5}')]
    assert final.choices[0].finish_reason == "tool_calls"


async def test_anthropic_streamed_tool_use_rebuilds_in_the_sdk_helper_with_cache_usage(
    anthropic_client: anthropic.AsyncAnthropic, anthropic_fake: AnthropicFake
) -> None:
    anthropic_fake.tool_calls, anthropic_fake.cache = TOOLS, (3, 2)
    async with anthropic_client.messages.stream(
        model="m", max_tokens=50, messages=[{"role": "user", "content": "a b c d e f g h"}],
    ) as stream:
        final = await stream.get_final_message()
    assert [(b.type, b.id, b.name, b.input) for b in final.content] == [  # type: ignore[union-attr]
        ("tool_use", "toolu_fake_0", "add", {"a": 1, "b": 2}), ("tool_use", "toolu_fake_1", "neg", {"x": 5})]
    u = final.usage
    assert (final.stop_reason, u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (
        "tool_use", 3, 3, 2)


async def test_a_strict_fake_answers_an_orphan_tool_result_with_the_real_400(
    openai_client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.strict = True
    with pytest.raises(openai.BadRequestError) as caught:
        await openai_client.chat.completions.create(model="m", messages=[
            {"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "3"}])
    assert caught.value.status_code == 400 and "must be a response to a preceeding message" in str(caught.value)


async def test_the_fake_sees_a_client_hang_up_during_a_stall(
    openai_client: openai.AsyncOpenAI, openai_fake: OpenAIFake
) -> None:
    openai_fake.stall_after = 10.0
    stream = await openai_client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": HI}], stream=True)
    async for _ in stream:
        break
    await stream.close()
    assert await anyio.to_thread.run_sync(openai_fake.disconnected.wait, 3.0)
