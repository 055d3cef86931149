"""Tools, images and structured output on every HTTP wire (Bedrock's Converse included), whole and
streamed, against each wire's fake (strict about tool histories, like the real APIs): exactly what is
sent, what comes back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from amaos_llm.errors import BadRequestError
from amaos_llm.history import safe_call_id
from amaos_llm.providers.base import Provider, ProviderChunk, ProviderRequest, StreamUsage
from amaos_llm.tools import as_tools
from amaos_llm.types import Message, ToolCall
from tests.amaos_llm.providers.wires import (
    ANTHROPIC,
    BEDROCK,
    GOOGLE,
    MODEL,
    OLLAMA,
    OPENAI,
    TOOL_WIRES,
    Wire,
    at,
    make,
)
from tests.support.fakes import FakeServer, GoogleFake

pytestmark = pytest.mark.anyio
every_wire = pytest.mark.parametrize("wire", TOOL_WIRES, ids=str)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 4
PNG_B64 = "iVBORw0KGgoAAAAA"
CALLS = [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "neg", "arguments": {"x": 5}}]
FOREIGN_ID = "toolu_01.x/y"  # made by another provider: a dot and a slash no other wire accepts


def chats(fake: Any) -> list[Any]:
    """What a fake was sent, less Ollama's `/api/show` (asked once when a request carries tools or images)."""
    return [r for r in fake.requests if r.path != "/api/show"]


def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


def neg(x: int) -> int:
    """Negate."""
    return -x


TOOLS = as_tools([add, neg])
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def request(messages: list[Message], **kwargs: Any) -> ProviderRequest:
    return ProviderRequest(messages=messages, model=MODEL, temperature=0.0, max_tokens=64, **kwargs)


def asked(text: str = "add one and two") -> list[Message]:
    return [Message(role="user", content=text)]


async def collect(provider: Provider, req: ProviderRequest) -> list[ProviderChunk]:
    return [chunk async for chunk in provider.stream(req)]


def ids_of(wire: Wire, calls: list[ToolCall]) -> list[str]:
    """Ids as the wire gave them; the id-less wires (Gemini, Ollama) get `call_` + 24 random hex."""
    if wire in (GOOGLE, OLLAMA):
        assert all(re.fullmatch(r"call_[0-9a-f]{24}", c.id) for c in calls)
        return ["(generated)"] * len(calls)
    return [c.id for c in calls]


WIRE_IDS = {"openai": ["call_fake_0", "call_fake_1"], "anthropic": ["toolu_fake_0", "toolu_fake_1"],
            "google": ["(generated)"] * 2, "ollama": ["(generated)"] * 2,
            "bedrock": ["tooluse_fake_0", "tooluse_fake_1"]}


# --- tool calls coming back ----------------------------------------------------------------------
@every_wire
async def test_a_reply_that_calls_tools_carries_them_whole(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    fake.tool_calls = CALLS
    reply = await provider.complete(request(asked(), tools=TOOLS))
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("add", {"a": 1, "b": 2}), ("neg", {"x": 5})]
    assert (ids_of(wire, list(reply.tool_calls)), reply.content, reply.finish_reason) == (
        WIRE_IDS[wire.name], "", "tool_calls")


@every_wire
async def test_streamed_tool_call_fragments_are_joined_into_whole_calls(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.tool_calls = CALLS
    whole = await provider.complete(request(asked(), tools=TOOLS))
    chunks = await collect(provider, request(asked(), tools=TOOLS))
    calls = [c.tool_call for c in chunks if c.tool_call is not None]
    assert [(c.name, c.arguments) for c in calls] == [("add", {"a": 1, "b": 2}), ("neg", {"x": 5})]
    assert ids_of(wire, calls) == WIRE_IDS[wire.name]
    assert "".join(c.text for c in chunks) == ""  # no text: the calls, then the end
    assert chunks[-1] == ProviderChunk(usage=StreamUsage(whole.input_tokens, whole.output_tokens),
                                       finish_reason="tool_calls", model=MODEL)


@every_wire
async def test_google_thought_signatures_come_back_for_gemini_only(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.tool_calls = CALLS
    calls = (await provider.complete(request(asked(), tools=TOOLS))).tool_calls
    expected = [{"google": {"thought_signature": GoogleFake.SIGNATURE}}, None] if wire is GOOGLE else [None, None]
    assert [c.provider_data for c in calls] == expected


# --- tool histories going out --------------------------------------------------------------------
def round_trip(call_id: str = FOREIGN_ID) -> list[Message]:
    return [*asked(), Message(role="assistant", tool_calls=[ToolCall(id=call_id, name="add", arguments={"a": 1})]),
            Message(role="tool", tool_call_id=call_id, content="3")]


RESULT_ECHO = {"openai": "echo: 3", "anthropic": "echo: 3", "ollama": "echo: 3", "google": 'echo: {"output": "3"}',
               "bedrock": "echo: 3"}


@every_wire
async def test_a_foreign_tool_history_goes_through_a_strict_server(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.strict = True
    reply = await provider.complete(request(round_trip(), tools=TOOLS))
    assert (reply.content, list(reply.tool_calls)) == (RESULT_ECHO[wire.name], [])


@every_wire
async def test_a_foreign_tool_history_streams_through_a_strict_server(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.strict = True
    chunks = await collect(provider, request(round_trip(), tools=TOOLS))
    assert "".join(c.text for c in chunks) == RESULT_ECHO[wire.name]


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC, GOOGLE], ids=str)
async def test_the_strict_fake_refuses_a_tool_result_without_its_call_like_the_real_api(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.strict = True
    orphan = [*asked(), Message(role="assistant", content="ok"), Message(role="tool", tool_call_id="c1", content="3",
                                                                         name="add")]
    with pytest.raises(BadRequestError, match=f"^{wire.name}: HTTP 400: "):
        await provider.complete(request(orphan, tools=TOOLS))


SENT_HISTORY = {
    "openai": ("messages", [
        {"role": "user", "content": "add one and two"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "SAFE_ID", "type": "function",
                                                               "function": {"name": "add", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "SAFE_ID", "content": "3"}]),
    "anthropic": ("messages", [
        {"role": "user", "content": "add one and two"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "SAFE_ID", "name": "add",
                                           "input": {"a": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "SAFE_ID",
                                      "content": "3", "is_error": False}]}]),
    "google": ("contents", [
        {"role": "user", "parts": [{"text": "add one and two"}]},
        {"role": "model", "parts": [{"functionCall": {"args": {"a": 1}, "name": "add"},
                                     "thoughtSignature": "c2tpcF90aG91Z2h0X3NpZ25hdHVyZV92YWxpZGF0b3I="}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "add", "response": {"output": "3"}}}]}]),
    "ollama": ("messages", [
        {"role": "user", "content": "add one and two"},
        {"role": "assistant", "tool_calls": [{"function": {"name": "add", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "3", "tool_name": "add"}]),
    "bedrock": ("messages", [
        {"role": "user", "content": [{"text": "add one and two"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "SAFE_ID", "name": "add", "input": {"a": 1}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "SAFE_ID", "content": [{"text": "3"}]}}]}]),
}


@every_wire
async def test_a_tool_history_is_sent_in_the_wire_shape_with_safe_ids(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    await provider.complete(request(round_trip(), tools=TOOLS))
    key, expected = SENT_HISTORY[wire.name]
    sent = json.loads(json.dumps(chats(fake)[0].body[key]).replace(safe_call_id(FOREIGN_ID), "SAFE_ID"))
    assert sent == expected


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC], ids=str)
async def test_a_tool_error_reaches_the_model_as_an_error(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    history = round_trip("c1")
    history[-1] = Message(role="tool", tool_call_id="c1", content="division by zero", is_error=True)
    await provider.complete(request(history, tools=TOOLS))
    last = chats(fake)[0].body["messages"][-1]
    assert last == ({"role": "tool", "tool_call_id": "c1", "content": "Error: division by zero"} if wire is OPENAI else
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1",
                                                  "content": "division by zero", "is_error": True}]})


# --- tool declarations and choice ----------------------------------------------------------------
TOOL_CHOICE = {  # (wire field, "required", a tool's name)
    "openai": ("tool_choice", "required", {"type": "function", "function": {"name": "neg"}}),
    "anthropic": ("tool_choice", {"type": "any"}, {"type": "tool", "name": "neg"}),
    "google": ("toolConfig", {"functionCallingConfig": {"mode": "ANY"}},
               {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["neg"]}}),
    "bedrock": ("toolConfig.toolChoice", {"any": {}}, {"tool": {"name": "neg"}}),
}


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC, GOOGLE, BEDROCK], ids=str)
async def test_tool_choice_required_and_by_name_reach_the_wire(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    await provider.complete(request(asked(), tools=TOOLS, tool_choice="required"))
    await provider.complete(request(asked(), tools=TOOLS, tool_choice="neg"))
    field, required, named = TOOL_CHOICE[wire.name]
    assert [at(r.body, field) for r in chats(fake)] == [required, named]


async def test_ollama_omits_the_tools_for_none_and_cannot_force_one(ollama_fake: FakeServer) -> None:
    provider = make(OLLAMA, ollama_fake.url)
    try:
        await provider.complete(request(asked(), tools=TOOLS, tool_choice="none"))
        with pytest.raises(BadRequestError, match="^ollama: cannot force a tool call"):
            await provider.complete(request(asked(), tools=TOOLS, tool_choice="required"))
    finally:
        await provider.aclose()
    assert [r.body.get("tools") for r in chats(ollama_fake)] == [[]]  # the SDK always sends the key


# --- images --------------------------------------------------------------------------------------
IMAGE_SENT = {
    "openai": ("messages", [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}]}]),
    "anthropic": ("messages", [{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}]}]),
    "google": ("contents", [{"role": "user", "parts": [
        {"text": "what is this"}, {"inlineData": {"data": PNG_B64, "mime_type": "image/png"}}]}]),
    "ollama": ("messages", [{"role": "user", "content": "what is this", "images": [PNG_B64]}]),
    "bedrock": ("messages", [{"role": "user", "content": [
        {"text": "what is this"}, {"image": {"format": "png", "source": {"bytes": PNG_B64}}}]}]),
}


@every_wire
async def test_an_inline_image_is_sent_in_the_wire_shape(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    message = Message(role="user", content=[{"type": "text", "text": "what is this"}, {"type": "image", "data": PNG}])
    await provider.complete(request([message]))
    key, expected = IMAGE_SENT[wire.name]
    assert chats(fake)[0].body[key] == expected


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC], ids=str)
async def test_a_url_image_is_sent_as_a_url(wire: Wire, provider: Provider, fake: FakeServer) -> None:
    url = "https://example.com/cat.png"
    await provider.complete(request([Message(role="user", content=[{"type": "image", "url": url}])]))
    part = chats(fake)[0].body["messages"][0]["content"][0]
    assert part == ({"type": "image_url", "image_url": {"url": url}} if wire is OPENAI else
                    {"type": "image", "source": {"type": "url", "url": url}})


@pytest.mark.parametrize("wire", [GOOGLE, OLLAMA, BEDROCK], ids=str)
async def test_a_url_image_is_refused_where_the_wire_fetches_none(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    message = Message(role="user", content=[{"type": "image", "url": "https://example.com/cat.png"}])
    with pytest.raises(BadRequestError, match=f"^{wire.name}: images must be inline data"):
        await provider.complete(request([message]))
    assert chats(fake) == []


# --- structured output ---------------------------------------------------------------------------
FORMAT_SENT = {
    "openai": ("response_format", {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}),
    "google": ("generationConfig", {"temperature": 0.0, "maxOutputTokens": 64, "responseMimeType": "application/json",
                                    "responseJsonSchema": SCHEMA}),
    "ollama": ("format", SCHEMA),
    "anthropic": ("tool_choice", {"type": "tool", "name": "structured_response"}),
    "bedrock": ("toolConfig", {"tools": [{"toolSpec": {"name": "structured_response", "inputSchema": {"json": SCHEMA},
                                                       "description": "Give the answer in this form."}}],
                               "toolChoice": {"tool": {"name": "structured_response"}}}),
}


@every_wire
async def test_response_format_reaches_the_wire_in_its_own_field(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    await provider.complete(request(asked(), response_format=SCHEMA))
    key, expected = FORMAT_SENT[wire.name]
    assert chats(fake)[0].body[key] == expected


async def test_anthropic_structured_output_is_the_forced_tool_input_as_text(anthropic_fake: FakeServer) -> None:
    anthropic_fake.tool_calls = [{"name": "structured_response", "arguments": {"city": "Oslo"}}]
    provider = make(ANTHROPIC, anthropic_fake.url)
    try:
        reply = await provider.complete(request(asked(), response_format=SCHEMA))
        chunks = [c async for c in provider.stream(request(asked(), response_format=SCHEMA))]
    finally:
        await provider.aclose()
    assert anthropic_fake.requests[0].body["tools"][-1] == {
        "name": "structured_response", "description": "Give the answer in this form.", "input_schema": SCHEMA}
    assert (reply.content, list(reply.tool_calls), reply.finish_reason) == ('{"city": "Oslo"}', [], "stop")
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert ("".join(c.text for c in chunks), calls, chunks[-1].finish_reason) == ('{"city": "Oslo"}', [], "stop")


@pytest.mark.parametrize("wire", [OPENAI, ANTHROPIC, BEDROCK], ids=str)
async def test_arguments_that_are_not_a_json_object_are_kept_for_the_caller_to_turn_down(
    wire: Wire, provider: Provider, fake: FakeServer
) -> None:
    fake.tool_calls = [{"name": "add", "arguments": "one and two"}]
    whole = (await provider.complete(request(asked(), tools=TOOLS))).tool_calls
    streamed = [c.tool_call for c in await collect(provider, request(asked(), tools=TOOLS)) if c.tool_call]
    for calls in (whole, streamed):
        assert [(c.name, c.arguments, c.invalid_arguments) for c in calls] == [  # type: ignore[union-attr]
            ("add", {}, '"one and two"')]
