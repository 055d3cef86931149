"""The callable provider: a plain function, an async one, or an async generator of text pieces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.errors import ProviderError
from amaos_llm.providers.base import ProviderChunk, ProviderRequest, StreamUsage
from amaos_llm.providers.callable import CallableProvider
from amaos_llm.tools import as_tools
from amaos_llm.types import Message, ToolCall

pytestmark = pytest.mark.anyio


def provider(fn: Any) -> CallableProvider:
    return CallableProvider(ModelSpec(name="fn", provider="callable", model="fn"), fn=fn)


def ask(**kwargs: Any) -> ProviderRequest:
    return ProviderRequest(messages=[Message(role="user", content="hi")], model="fn", temperature=0.0, max_tokens=8,
                           **kwargs)


async def collect(p: CallableProvider, request: ProviderRequest) -> list[ProviderChunk]:
    return [c async for c in p.stream(request)]


async def test_an_async_generator_streams_its_pieces_then_the_end() -> None:
    async def fn(messages: list[Message], **params: Any) -> AsyncIterator[str]:
        for piece in ("a", "", "b c"):
            yield piece

    assert await collect(provider(fn), ask()) == [
        ProviderChunk(text="a"), ProviderChunk(text="b c"),
        ProviderChunk(usage=StreamUsage(0, 0), finish_reason="stop", model="fn")]
    assert (await provider(fn).complete(ask())).content == "ab c"


async def test_a_plain_reply_streams_as_one_chunk_with_its_counts() -> None:
    def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        return {"content": "whole", "input_tokens": 3, "output_tokens": 1}

    assert await collect(provider(fn), ask()) == [
        ProviderChunk(text="whole"), ProviderChunk(usage=StreamUsage(3, 1), finish_reason="stop", model="fn")]


async def test_tool_calls_returned_by_the_function_come_back_whole() -> None:
    def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        assert (params["tool_choice"], [t.name for t in params["tools"]]) == ("auto", ["f"])
        return {"content": "", "tool_calls": [{"id": "c1", "name": "f", "arguments": {"x": 1}}]}

    def f(x: int) -> int:
        return x

    chunks = await collect(provider(fn), ask(tools=as_tools([f])))
    assert chunks == [ProviderChunk(tool_call=ToolCall(id="c1", name="f", arguments={"x": 1})),
                      ProviderChunk(usage=StreamUsage(0, 0), finish_reason="tool_calls", model="fn")]


async def test_a_function_without_tool_parameters_still_serves_plain_calls() -> None:
    def fn(messages: list[Message], temperature: float, max_tokens: int) -> str:
        return "ok"

    assert (await provider(fn).complete(ask())).content == "ok"


async def test_a_piece_that_is_not_text_fails_the_stream() -> None:
    async def fn(messages: list[Message], **params: Any) -> AsyncIterator[Any]:
        yield "a"
        yield 42

    with pytest.raises(ProviderError, match="^callable model streamed int, not str$"):
        await collect(provider(fn), ask())


async def test_stopping_early_closes_the_user_generator() -> None:
    closed = anyio.Event()

    async def fn(messages: list[Message], **params: Any) -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
        finally:
            closed.set()

    stream = provider(fn).stream(ask())
    assert (await stream.__anext__()).text == "x"  # type: ignore[attr-defined]
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()
