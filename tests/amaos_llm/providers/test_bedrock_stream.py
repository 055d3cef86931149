"""The bedrock provider's ConverseStream against the fake's AWS event-stream frames: chunks, exact
usage, in-stream exception events by code, cut and truncated streams, leaving early."""

from __future__ import annotations

import time

import anyio
import pytest

from amaos_llm.errors import ProviderConnectionError, ProviderError, RateLimitError, ServerError
from amaos_llm.providers._bedrock_wire import StreamUsage
from amaos_llm.providers._transport import DEFAULT_MAX_CONNECTIONS
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.providers.bedrock import BedrockProvider, ProviderChunk
from tests.amaos_llm.providers.bedrock_fixtures import MODEL, ask
from tests.support.bedrock_fake import EVENTSTREAM, BedrockFake, event, event_frame, exception_event

pytestmark = pytest.mark.anyio


async def collect(provider: BedrockProvider, request: ProviderRequest) -> list[ProviderChunk]:
    return [chunk async for chunk in provider.stream(request)]


def test_the_fakes_frames_decode_with_botocores_own_parser() -> None:
    from botocore.eventstream import EventStreamBuffer

    buffer = EventStreamBuffer()
    buffer.add_data(event("messageStop", {"stopReason": "end_turn"}) + exception_event("throttlingException", "slow"))
    first, second = list(buffer)
    assert (first.headers[":event-type"], first.headers[":message-type"]) == ("messageStop", "event")
    assert (second.headers[":exception-type"], second.payload) == ("throttlingException", b'{"message": "slow"}')
    assert event_frame({}, b"")[:8] == b"\x00\x00\x00\x10\x00\x00\x00\x00"  # 16 bytes: prelude + CRC only


async def test_stream_yields_the_deltas_then_the_finish_then_the_exact_usage(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    chunks = await collect(bedrock, ask("one two three", system="be brief"))
    req = bedrock_fake.requests[0]
    assert req.path == "/model/anthropic.claude-test-v1%3A0/converse-stream"
    assert req.body["inferenceConfig"] == {"maxTokens": 64, "temperature": 0.0}
    assert chunks == [ProviderChunk(text="echo: "), ProviderChunk(text="one "), ProviderChunk(text="two "),
                      ProviderChunk(text="three"),
                      ProviderChunk(usage=StreamUsage(5, 4), finish_reason="stop", model=MODEL)]


async def test_streamed_usage_includes_the_prompt_cache_and_keeps_it_apart(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.cache_read, bedrock_fake.cache_write = 7, 2
    usage = (await collect(bedrock, ask("one two three")))[-1].usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (
        3 + 7 + 2, 4, 7, 2)


async def test_a_stream_cut_at_max_tokens_finishes_with_length(bedrock: BedrockProvider) -> None:
    chunks = await collect(bedrock, ask("one two three", max_tokens=2))
    assert "".join(c.text for c in chunks) == "echo: one"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["length"]


@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        ("throttlingException", RateLimitError),
        ("modelStreamErrorException", ServerError),
        ("internalServerException", ServerError),
        ("serviceUnavailableException", ServerError),
        ("validationException", ProviderError),
    ],
)
async def test_an_exception_event_maps_by_its_code_like_a_reply_error(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake, exception: str, expected: type[ProviderError]
) -> None:
    bedrock_fake.stream_fault, bedrock_fake.stream_exception = "error", exception
    texts: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for chunk in bedrock.stream(ask("one two three")):
            texts.append(chunk.text)
    code = exception[0].upper() + exception[1:]
    assert isinstance(caught.value, expected)
    assert str(caught.value) == f"bedrock: {code}: The model stream failed."
    assert texts == ["echo: "]


async def test_an_error_before_the_stream_starts_maps_like_a_reply_error(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.fail(429)
    with pytest.raises(RateLimitError, match=r"^bedrock: ThrottlingException: fake failure 429$"):
        await collect(bedrock, ask())


async def test_a_connection_cut_mid_stream_is_a_connection_error_after_send(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.stream_fault = "cut"
    with pytest.raises(ProviderConnectionError) as caught:
        await collect(bedrock, ask("one two three"))
    assert caught.value.connected is True
    assert str(caught.value).startswith(f"bedrock: connection to {bedrock_fake.url} failed: ClientPayloadError")


@pytest.mark.parametrize(("events", "missing"), [(3, "messageStop and metadata"), (7, "metadata")])
async def test_a_stream_that_ends_without_its_end_events_is_not_a_short_answer(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake, events: int, missing: str
) -> None:
    bedrock_fake.stream_events = events  # messageStart, 4 deltas, contentBlockStop, messageStop, metadata
    with pytest.raises(ProviderConnectionError) as caught:
        await collect(bedrock, ask("one two three"))
    assert str(caught.value) == f"bedrock: connection to {bedrock_fake.url} failed: the stream ended without {missing}"
    assert caught.value.connected is True


async def test_leaving_a_stream_early_closes_its_connection_and_frees_the_slot(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.reply = " ".join(["word"] * 20_000)  # megabytes of frames: more than the socket buffers hold
    stream = bedrock.stream(ask(max_tokens=50_000))
    async for _ in stream:
        break
    await stream.aclose()
    assert bedrock.http_slots().free == DEFAULT_MAX_CONNECTIONS
    deadline = time.monotonic() + 5
    while bedrock_fake._connections and time.monotonic() < deadline:  # the server sees the socket close
        await anyio.sleep(0.01)
    assert not bedrock_fake._connections
    bedrock_fake.reply = None
    assert (await bedrock.complete(ask("again"))).content == "echo: again"  # the client is still usable


def test_the_fake_streams_as_aws_does_and_refuses_unsigned_requests(bedrock_fake: BedrockFake) -> None:
    import http.client
    import json

    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})
    signed = ("AWS4-HMAC-SHA256 Credential=AKIAFAKE/20260101/us-east-1/bedrock/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    path = "/model/anthropic.claude-test-v1%3A0/converse-stream"
    answers = []
    for headers in ({"Authorization": signed}, {}):
        conn = http.client.HTTPConnection("127.0.0.1", bedrock_fake.port, timeout=5)
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        answers.append((response.status, response.getheader("content-type"), response.getheader("x-amzn-errortype")))
        response.read()
        conn.close()
    assert answers == [
        (200, EVENTSTREAM, None),
        (403, "application/json",
         "MissingAuthenticationTokenException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
    ]
