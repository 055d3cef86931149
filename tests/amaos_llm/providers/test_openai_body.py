"""The OpenAI provider sends through the SDK's `post()` rather than `chat.completions.create()`
(openai.py says why): the same request on the wire, and the same reply read from its JSON."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from amaos_llm.errors import ServerError
from amaos_llm.providers.base import ProviderRequest
from amaos_llm.providers.openai import OpenAIProvider
from amaos_llm.tools import as_tools
from amaos_llm.types import Message, ToolCall
from tests.amaos_llm.providers.wires import KEY, MODEL, OPENAI, make
from tests.support.fake_server import Recorded, Reply
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 4
SCHEMA = {"title": "Answer", "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
HISTORY = [
    Message(role="system", content="be brief"),
    Message(role="user", content="add 1 and 2"),
    Message(role="assistant", content="", tool_calls=[ToolCall(id="call_1", name="add", arguments={"a": 1, "b": 2})]),
    Message(role="tool", content="3", tool_call_id="call_1"),
]
REQUESTS = {
    "text": ProviderRequest(messages=[Message(role="user", content="hi")], model=MODEL, temperature=0.2,
                            max_tokens=9, seed=7),
    "image": ProviderRequest(messages=[Message(role="user", content=[
        {"type": "text", "text": "what is it?"}, {"type": "image", "data": PNG},
        {"type": "image", "url": "https://example.com/cat.png"}])], model=MODEL, temperature=0.0, max_tokens=9),
    "tools": ProviderRequest(messages=HISTORY, model=MODEL, temperature=0.0, max_tokens=9, tools=as_tools([add]),
                             tool_choice="add"),
    "structured": ProviderRequest(messages=[Message(role="user", content="n?")], model=MODEL, temperature=0.0,
                                  max_tokens=9, response_format=SCHEMA, options={"top_k": 20, "temperature": 0.5}),
}
# headers that say how a request was made, not what it asks
VARYING = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length"}


def _create_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """`body` as `create()`'s arguments: the fields it names, the rest as `extra_body`."""
    import openai

    named = set(inspect.signature(openai.AsyncOpenAI(api_key="x").chat.completions.create).parameters)
    kwargs = {k: v for k, v in body.items() if k in named}
    extra = {k: v for k, v in body.items() if k not in named}
    return {**kwargs, "extra_body": extra or None}


def _same_request(ours: Recorded, sdk: Recorded) -> None:
    assert (ours.method, ours.path, ours.query, ours.body) == (sdk.method, sdk.path, sdk.query, sdk.body)
    mine = {k: v for k, v in ours.headers.items() if k not in VARYING}
    theirs = {k: v for k, v in sdk.headers.items() if k not in VARYING}
    assert mine == theirs


@pytest.mark.parametrize("kind", REQUESTS)
@pytest.mark.parametrize("provider", ["openai", "openai_compatible"])
async def test_the_wire_is_what_create_sends(kind: str, provider: str, openai_fake: OpenAIFake) -> None:
    p = make(OPENAI, openai_fake.url, provider=provider, options={"top_p": 0.9})
    assert isinstance(p, OpenAIProvider)
    request = REQUESTS[kind]
    body = p._body(request)
    try:
        await p.complete(request)
        async for _ in p.stream(request):
            pass
        client = p._client()
        await client.chat.completions.create(**_create_kwargs(body))
        stream = await client.chat.completions.create(**_create_kwargs(body), stream=True,
                                                      stream_options={"include_usage": True})
        async for _ in stream:
            pass
    finally:
        await p.aclose()
    ours, ours_stream, sdk, sdk_stream = openai_fake.requests
    _same_request(ours, sdk)
    _same_request(ours_stream, sdk_stream)
    assert ours.body["top_p"] == 0.9 and ours.headers["authorization"].startswith("Bearer ")
    if kind == "structured":  # request options win over the spec's and over our own fields
        assert (ours.body["top_k"], ours.body["temperature"]) == (20, 0.5)


@pytest.mark.parametrize("kind", REQUESTS)
@pytest.mark.parametrize("stream", [False, True])
async def test_the_sdk_transform_leaves_our_bodies_as_they_are(kind: str, stream: bool) -> None:
    # create() runs its body through this before sending; post() does not: an SDK that starts to
    # rename or reformat a field we send fails here
    from openai._utils._transform import async_maybe_transform
    from openai.types.chat import completion_create_params as params

    p = make(OPENAI, "http://127.0.0.1:1/v1", options={"top_p": 0.9})
    body = p._body(REQUESTS[kind])
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    shape = params.CompletionCreateParamsStreaming if stream else params.CompletionCreateParamsNonStreaming
    assert await async_maybe_transform(body, shape) == body


async def test_the_reply_is_read_like_the_sdk_reads_it(openai_fake: OpenAIFake) -> None:
    openai_fake.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}, "id": "call_9"}]
    openai_fake.cache = (5, 0)
    p = make(OPENAI, openai_fake.url)
    try:
        request = REQUESTS["text"]
        reply = await p.complete(request)
        completion = await p._client().chat.completions.create(**_create_kwargs(p._body(request)))
    finally:
        await p.aclose()
    usage, message = completion.usage, completion.choices[0].message
    assert usage is not None and message.tool_calls
    assert (reply.input_tokens, reply.output_tokens, reply.cache_read_tokens) == (
        usage.prompt_tokens, usage.completion_tokens, 5)
    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [("call_9", "add", {"a": 1, "b": 2})]
    assert (reply.finish_reason, reply.model, reply.content) == ("tool_calls", completion.model, "")


class _OddFake(OpenAIFake):
    """Answers 200 with JSON that is not a chat completion."""

    body: Any = None

    def route(self, req: Recorded) -> Reply:
        return Reply(body=self.body)


@pytest.mark.parametrize("body", [[1, 2], {"object": "error", "detail": KEY}, {"choices": [{"index": 0}]}, "text"],
                         ids=["list", "no-choices", "no-message", "string"])
async def test_json_that_is_not_a_chat_completion_is_a_malformed_reply(body: Any) -> None:
    with _OddFake() as fake:
        fake.body = body
        p = make(OPENAI, fake.url)
        try:
            with pytest.raises(ServerError, match=r"^openai: malformed reply: not a chat completion") as caught:
                await p.complete(REQUESTS["text"])
        finally:
            await p.aclose()
    assert KEY not in str(caught.value)


async def test_null_usage_and_empty_choices_read_as_zero_and_empty(openai_fake: OpenAIFake) -> None:
    class Bare(OpenAIFake):
        def route(self, req: Recorded) -> Reply:
            return Reply(body={"id": "x", "object": "chat.completion", "model": MODEL, "choices": [], "usage": None})

    with Bare() as fake:
        p = make(OPENAI, fake.url, provider="openai_compatible")
        try:
            reply = await p.complete(REQUESTS["text"])
        finally:
            await p.aclose()
    assert (reply.content, reply.input_tokens, reply.output_tokens, reply.tool_calls) == ("", 0, 0, [])
