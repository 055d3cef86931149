"""Tools, images and structured output on Bedrock's Converse wire, beyond the shared tables of
test_tools_images_structured.py: the toolConfig in each case, tool errors, the stream's tool events
one by one, image formats, and the fake refusing what Converse refuses."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from amaos_llm.errors import BadRequestError, ProviderConnectionError
from amaos_llm.providers._bedrock_wire import end_reason
from amaos_llm.providers.base import ProviderChunk, ProviderRequest, StreamUsage
from amaos_llm.providers.bedrock import BedrockProvider
from amaos_llm.tools import Tool, as_tools
from amaos_llm.types import Message, ToolCall
from tests.amaos_llm.providers.bedrock_fixtures import MODEL
from tests.support.bedrock_fake import BedrockFake

pytestmark = pytest.mark.anyio
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


TOOLS = as_tools([add])
ADD_SPEC = {"toolSpec": {"name": "add", "description": "Add two numbers.", "inputSchema": {"json": {
    "type": "object", "properties": {"a": {"title": "A", "type": "integer"}, "b": {"title": "B", "type": "integer"}},
    "required": ["a", "b"]}}}}


def request(messages: list[Message], **kwargs: Any) -> ProviderRequest:
    return ProviderRequest(messages=messages, model=MODEL, temperature=0.0, max_tokens=64, **kwargs)


def asked(text: str = "add one and two") -> list[Message]:
    return [Message(role="user", content=text)]


def answered(call_id: str = "tooluse_1", result: str = "3", **result_fields: Any) -> list[Message]:
    return [*asked(), Message(role="assistant", tool_calls=[ToolCall(id=call_id, name="add", arguments={"a": 1})]),
            Message(role="tool", tool_call_id=call_id, content=result, **result_fields)]


async def collect(provider: BedrockProvider, req: ProviderRequest) -> list[ProviderChunk]:
    return [chunk async for chunk in provider.stream(req)]


# --- toolConfig ----------------------------------------------------------------------------------
async def test_tools_go_in_tool_config_with_auto_choice(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    await bedrock.complete(request(asked(), tools=TOOLS))
    assert bedrock_fake.requests[0].body["toolConfig"] == {"tools": [ADD_SPEC], "toolChoice": {"auto": {}}}


async def test_a_tool_without_a_description_is_sent_without_one(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    # the service model's description is a NonEmptyString: botocore would refuse "" before sending
    bare = Tool(name="ping", parameters={"type": "object", "properties": {}})
    await bedrock.complete(request(asked(), tools=[bare]))
    assert bedrock_fake.requests[0].body["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "ping", "inputSchema": {"json": {"type": "object", "properties": {}}}}}]


async def test_tool_choice_none_leaves_the_tools_out(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    reply = await bedrock.complete(request(asked(), tools=TOOLS, tool_choice="none"))
    assert "toolConfig" not in bedrock_fake.requests[0].body
    assert reply.content == "echo: add one and two"


async def test_tool_choice_none_on_a_tool_history_declares_the_tools_without_a_choice(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    reply = await bedrock.complete(request(answered(), tools=TOOLS, tool_choice="none"))
    assert bedrock_fake.requests[0].body["toolConfig"] == {"tools": [ADD_SPEC]}  # Converse refuses tool blocks without
    assert reply.content == "echo: 3"


async def test_a_tool_history_sent_without_tools_declares_the_tools_it_called(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    reply = await bedrock.complete(request(answered()))
    assert bedrock_fake.requests[0].body["toolConfig"] == {"tools": [{"toolSpec": {
        "name": "add", "description": "A tool called earlier in this conversation.",
        "inputSchema": {"json": {"type": "object"}}}}]}
    assert reply.content == "echo: 3"


async def test_a_failed_tool_is_a_tool_result_with_status_error(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    await bedrock.complete(request(answered(result="division by zero", is_error=True), tools=TOOLS))
    assert bedrock_fake.requests[0].body["messages"][-1] == {"role": "user", "content": [{"toolResult": {
        "toolUseId": "tooluse_1", "content": [{"text": "division by zero"}], "status": "error"}}]}


async def test_an_assistant_turn_keeps_its_text_before_its_tool_uses(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    history = answered()
    history[1] = history[1].model_copy(update={"content": "Let me add."})
    await bedrock.complete(request(history, tools=TOOLS))
    assert bedrock_fake.requests[0].body["messages"][1]["content"] == [
        {"text": "Let me add."}, {"toolUse": {"toolUseId": "tooluse_1", "name": "add", "input": {"a": 1}}}]


async def test_results_of_one_turn_travel_in_one_user_turn_with_ids_round_tripping(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "arguments": {"a": 3}}]
    calls = list((await bedrock.complete(request(asked(), tools=TOOLS))).tool_calls)
    history = [*asked(), Message(role="assistant", tool_calls=calls),
               *[Message(role="tool", tool_call_id=c.id, content=str(i)) for i, c in enumerate(calls)]]
    reply = await bedrock.complete(request(history, tools=TOOLS))
    last = bedrock_fake.requests[1].body["messages"][-1]
    assert [b["toolResult"]["toolUseId"] for b in last["content"]] == ["tooluse_fake_0", "tooluse_fake_1"]
    assert (reply.content, reply.finish_reason) == ("echo: 0 1", "stop")


# --- the stream's tool events --------------------------------------------------------------------
async def test_streamed_tool_use_events_become_one_whole_call_then_the_end(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}]
    chunks = await collect(bedrock, request(asked(), tools=TOOLS))
    assert chunks == [ProviderChunk(tool_call=ToolCall(id="tooluse_fake_0", name="add", arguments={"a": 1, "b": 2})),
                      ProviderChunk(usage=StreamUsage(4, 5), finish_reason="tool_calls", model=MODEL)]


async def test_a_stream_cut_inside_a_tool_use_block_is_a_cut_not_a_call(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}]
    bedrock_fake.stream_events = 3  # messageStart, contentBlockStart, one input piece
    chunks: list[ProviderChunk] = []
    cut = r"^bedrock: connection to .* failed: the stream ended without messageStop and metadata$"
    with pytest.raises(ProviderConnectionError, match=cut):
        async for chunk in bedrock.stream(request(asked(), tools=TOOLS)):
            chunks.append(chunk)
    assert chunks == []


# --- structured output ---------------------------------------------------------------------------
async def test_structured_output_is_the_forced_tool_input_as_text_whole_and_streamed(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.tool_calls = [{"name": "structured_response", "arguments": {"city": "Oslo"}}]
    reply = await bedrock.complete(request(asked(), response_format=SCHEMA))
    chunks = await collect(bedrock, request(asked(), response_format=SCHEMA))
    assert (reply.content, list(reply.tool_calls), reply.finish_reason) == ('{"city": "Oslo"}', [], "stop")
    assert "".join(c.text for c in chunks) == '{"city": "Oslo"}'
    assert ([c.tool_call for c in chunks if c.tool_call], chunks[-1].finish_reason) == ([], "stop")
    assert len([c for c in chunks if c.text]) == 3  # the input's pieces, as they came


async def test_structured_output_beside_tools_lets_the_model_choose(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    await bedrock.complete(request(asked(), tools=TOOLS, response_format=SCHEMA))
    config = bedrock_fake.requests[0].body["toolConfig"]
    assert [t["toolSpec"]["name"] for t in config["tools"]] == ["add", "structured_response"]
    assert config["toolChoice"] == {"auto": {}}


async def test_a_tool_named_like_the_answer_tool_is_a_call_without_a_response_format(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.tool_calls = [{"name": "structured_response", "arguments": {"city": "Oslo"}}]
    reply = await bedrock.complete(request(asked(), tools=as_tools([{"name": "structured_response"}])))
    assert ([c.arguments for c in reply.tool_calls], reply.content, reply.finish_reason) == (
        [{"city": "Oslo"}], "", "tool_calls")


# --- images --------------------------------------------------------------------------------------
GIF = b"GIF89a" + b"\x00" * 8
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 8
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 "


async def test_images_arrive_as_their_bytes_in_each_format(bedrock: BedrockProvider, bedrock_fake: BedrockFake) -> None:
    parts = [{"type": "text", "text": "compare"}] + [{"type": "image", "data": d} for d in (PNG, JPEG, GIF, WEBP)]
    await bedrock.complete(request([Message(role="user", content=parts)]))
    sent = bedrock_fake.requests[0].body["messages"][0]["content"]
    assert [b["image"]["format"] for b in sent[1:]] == ["png", "jpeg", "gif", "webp"]
    assert bedrock_fake.images == [("png", PNG), ("jpeg", JPEG), ("gif", GIF), ("webp", WEBP)]


# --- finish reasons ------------------------------------------------------------------------------
@pytest.mark.parametrize(("stop", "calls", "finish"), [
    ("end_turn", 0, "stop"), ("stop_sequence", 0, "stop"), ("max_tokens", 0, "length"),
    ("model_context_window_exceeded", 0, "length"), ("tool_use", 1, "tool_calls"), ("tool_use", 0, "stop"),
    ("guardrail_intervened", 0, "content_filter"), ("content_filtered", 0, "content_filter"), (None, 0, "stop"),
])
def test_stop_reasons_are_normalised_like_the_other_wires(stop: str | None, calls: int, finish: str) -> None:
    assert end_reason(stop, calls) == finish


# --- the fake refuses what Converse refuses ------------------------------------------------------
def user(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


USE = {"toolUse": {"toolUseId": "t1", "name": "add", "input": {}}}
CONFIG = {"tools": [ADD_SPEC]}


def result(tool_use_id: str) -> dict[str, Any]:
    return {"toolResult": {"toolUseId": tool_use_id, "content": [{"text": "3"}]}}


@pytest.mark.parametrize(("body", "refusal"), [
    ({"messages": [assistant({"text": "hi"})]}, "A conversation must start with a user message."),
    ({"messages": [user({"text": "a"}), user({"text": "b"})]}, "A conversation must alternate between user and"),
    ({"messages": [user({"text": " "})]},
     "The text field in the ContentBlock object at messages.0.content.0 is blank."),
    ({"messages": [user({"text": "a"}), assistant(USE), user(result("t1"))]},
     "The toolConfig field must be defined when using toolUse and toolResult content blocks."),
    ({"messages": [user({"text": "a"}), assistant(USE), user({"text": "b"})], "toolConfig": CONFIG},
     "Expected toolResult blocks at messages.2.content for the following Ids: t1"),
    ({"messages": [user({"text": "a"}), assistant(USE), user(result("t1"), result("t2"))], "toolConfig": CONFIG},
     "The number of toolResult blocks at messages.2.content exceeds the number of toolUse blocks of previous turn."),
    ({"messages": [user({"text": "a"}), assistant({"toolUse": {**USE["toolUse"], "toolUseId": "a/b"}})],
      "toolConfig": CONFIG}, "1 validation error detected: Value at 'messages.2.member.content.1.member.toolUse."),
    ({"messages": [user({"text": "a"})], "toolConfig": {**CONFIG, "toolChoice": {"tool": {"name": "neg"}}}},
     "The tool neg in toolChoice is not one of the tools in toolConfig."),
    ({"messages": [user({"image": {"format": "jpeg", "source": {"bytes": base64.b64encode(PNG).decode()}}})]},
     "messages.0.content.0.image: the bytes are not a valid jpeg image."),
    ({"messages": [user({"image": {"format": "png", "source": {"bytes": "not base64!"}}})]},
     "messages.0.content.0.image.source.bytes: not valid base64."),
])
def test_the_fake_refuses_what_converse_refuses(body: dict[str, Any], refusal: str) -> None:
    assert (BedrockFake().request_error(body) or "").startswith(refusal)


def test_the_fake_takes_a_well_formed_tool_round_trip() -> None:
    body = {"messages": [user({"text": "a"}), assistant({"text": "ok"}, USE), user(result("t1"), {"text": "go on"})],
            "toolConfig": CONFIG}
    assert BedrockFake().request_error(body) is None


async def test_a_refused_history_is_a_bad_request_in_bedrocks_words(
    bedrock: BedrockProvider, bedrock_fake: BedrockFake
) -> None:
    orphan = [*asked(), Message(role="assistant", content="ok"), Message(role="tool", tool_call_id="c1", content="3")]
    with pytest.raises(BadRequestError, match=r"^bedrock: ValidationException: The number of toolResult blocks at "
                                              r"messages\.2\.content exceeds"):
        await bedrock.complete(request(orphan, tools=TOOLS))
