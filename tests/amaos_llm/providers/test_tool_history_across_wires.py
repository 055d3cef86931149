"""A tool chat begun on one wire goes on on any other: the calls one provider returned (its ids, its
opaque data) and their results, sent to every other wire's strict fake, are accepted, whole and
streamed. This is the fallback case that 400s elsewhere (foreign ids, results in the wrong place)."""

from __future__ import annotations

import itertools

import pytest

from amaos_llm.providers.base import ProviderRequest
from amaos_llm.tools import as_tools
from amaos_llm.types import Message
from tests.amaos_llm.providers.wires import MODEL, TOOL_WIRES, Wire, make

pytestmark = pytest.mark.anyio
PAIRS = [(a, b) for a, b in itertools.product(TOOL_WIRES, TOOL_WIRES)]


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def neg(x: int) -> int:
    """Negate."""
    return -x


TOOLS = as_tools([add, neg])


def request(messages: list[Message]) -> ProviderRequest:
    return ProviderRequest(messages=messages, model=MODEL, temperature=0.0, max_tokens=64, tools=TOOLS)


@pytest.mark.parametrize(("first", "then"), PAIRS, ids=[f"{a}-then-{b}" for a, b in PAIRS])
async def test_a_tool_chat_moves_between_wires_without_a_400(
    first: Wire, then: Wire, request_fixture: pytest.FixtureRequest
) -> None:
    start = request_fixture.getfixturevalue(first.fixture)
    start.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "neg", "arguments": {"x": 5}}]
    a = make(first, start.url)
    try:
        calls = (await a.complete(request([Message(role="user", content="add, then negate")]))).tool_calls
    finally:
        await a.aclose()
    history = [Message(role="user", content="add, then negate"), Message(role="assistant", tool_calls=list(calls)),
               *[Message(role="tool", tool_call_id=c.id, content=str(i)) for i, c in enumerate(calls)]]
    # a second fake of the `then` wire when both are the same wire: a fresh, strict one
    if then is first:
        target = type(start)().start()
        target.models = list(start.models)
    else:
        target = request_fixture.getfixturevalue(then.fixture)
    target.strict = True
    b = make(then, target.url)
    try:
        whole = await b.complete(request(history))
        streamed = "".join([c.text async for c in b.stream(request(history))])
    finally:
        await b.aclose()
        if then is first:
            target.stop()
    assert whole.content == streamed and whole.content.startswith("echo: ")
    # Anthropic, Gemini and Bedrock carry both results in one message after the calls; the others one each
    sent = 3 if then.name in ("anthropic", "google", "bedrock") else 4
    chats = [r for r in target.requests if r.path != "/api/show"]  # Ollama is asked once what the model can do
    assert [len(r.body.get("messages") or r.body.get("contents")) for r in chats] == [sent, sent]
