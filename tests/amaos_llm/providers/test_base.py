"""The provider contract's defaults: a provider that only implements `complete` still streams, and
finish reasons are normalised the same way for every wire."""

from __future__ import annotations

import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.providers.base import (
    Provider,
    ProviderChunk,
    ProviderReply,
    ProviderRequest,
    StreamUsage,
    finish_reason,
)
from amaos_llm.types import Message, ToolCall

pytestmark = pytest.mark.anyio
CALL = ToolCall(id="c1", name="f", arguments={"x": 1})


class WholeReplies(Provider):
    """A plugin written before streaming existed: `complete` only."""

    def __init__(self, reply: ProviderReply) -> None:
        super().__init__(ModelSpec(name="p", provider="callable", model="m"))
        self.reply = reply

    async def complete(self, request: ProviderRequest) -> ProviderReply:
        return self.reply


REQUEST = ProviderRequest(messages=[Message(role="user", content="hi")], model="m", temperature=0.0, max_tokens=8)


async def test_the_default_stream_is_the_whole_reply_then_its_usage_and_finish() -> None:
    reply = ProviderReply("hello", 7, 1, "end_turn", "m", cache_read_tokens=2, cache_write_tokens=1)
    chunks = [c async for c in WholeReplies(reply).stream(REQUEST)]
    assert chunks == [ProviderChunk(text="hello"),
                      ProviderChunk(usage=StreamUsage(7, 1, 2, 1), finish_reason="stop", model="m")]


async def test_the_default_stream_yields_each_tool_call_whole() -> None:
    reply = ProviderReply("", 3, 2, "stop", "m", tool_calls=(CALL,))
    chunks = [c async for c in WholeReplies(reply).stream(REQUEST)]
    assert chunks == [ProviderChunk(tool_call=CALL),
                      ProviderChunk(usage=StreamUsage(3, 2), finish_reason="tool_calls", model="m")]


@pytest.mark.parametrize(("wire", "ours"), [
    ("stop", "stop"), ("end_turn", "stop"), ("STOP", "stop"), (None, "stop"), ("something_new", "stop"),
    ("length", "length"), ("max_tokens", "length"), ("MAX_TOKENS", "length"),
    ("tool_calls", "tool_calls"), ("tool_use", "tool_calls"),
    ("content_filter", "content_filter"), ("refusal", "content_filter"), ("SAFETY", "content_filter"),
])
def test_finish_reasons_are_normalised(wire: str | None, ours: str) -> None:
    assert finish_reason(wire) == ours


def test_a_reply_with_tool_calls_finishes_in_tool_calls_whatever_the_wire_said() -> None:
    assert finish_reason("STOP", has_tool_calls=True) == "tool_calls"  # Gemini and Ollama say stop
