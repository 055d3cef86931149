"""Message parts, tool calls, tools built from functions and dicts, and response formats."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from amaos_llm.content import ImagePart, TextPart
from amaos_llm.errors import InvalidRequest
from amaos_llm.inputs import chat_messages, tool_inputs
from amaos_llm.structured import parse_output, response_schema
from amaos_llm.tools import Tool, as_tools, check_tool_choice
from amaos_llm.types import Message, ToolCall

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16


# --- messages ------------------------------------------------------------------------------------
def test_a_plain_text_message_is_built_as_before() -> None:
    m = Message(role="user", content="hi")
    assert (m.role, m.content, m.text, m.tool_calls, m.tool_call_id, m.name, m.is_error) == (
        "user", "hi", "hi", None, None, None, False)


def test_text_joins_the_text_parts_and_skips_images() -> None:
    m = Message(role="user", content=[{"type": "text", "text": "a "}, {"type": "image", "data": PNG},
                                      TextPart(text="b")])
    assert m.text == "a b"
    assert [type(p) for p in m.content] == [TextPart, ImagePart, TextPart]


def test_an_unknown_part_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        Message(role="user", content=[{"type": "audio", "data": "x"}])


@pytest.mark.parametrize(("data", "media_type"), [(PNG, "image/png"), (JPEG, "image/jpeg"),
                                                   (b"GIF89a" + b"\0" * 8, "image/gif"),
                                                   (b"RIFF\0\0\0\0WEBPVP8 ", "image/webp")])
def test_an_image_media_type_is_sniffed_from_its_bytes(data: bytes, media_type: str) -> None:
    assert ImagePart(data=data).media_type == media_type


def test_base64_image_data_is_decoded_once() -> None:
    part = ImagePart(data=base64.b64encode(PNG).decode())
    assert (part.data, part.media_type, part.base64()) == (PNG, "image/png", base64.b64encode(PNG).decode())
    assert part.data_url() == "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.mark.parametrize(("fields", "problem"), [
    ({"data": "not base64!"}, "data: not valid base64"),
    ({"data": b"plain bytes"}, "media_type: not given and not recognised"),
    ({"data": PNG, "media_type": "image/tiff"}, "media_type: must be one of"),
    ({}, "exactly one of 'data' or 'url'"),
    ({"data": PNG, "url": "https://x/y.png"}, "exactly one of 'data' or 'url'"),
    ({"url": "file:///etc/passwd"}, "url: must be http"),
])
def test_a_bad_image_is_refused_naming_the_field(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        ImagePart(**fields)


def test_a_url_image_keeps_its_url() -> None:
    assert ImagePart(url="https://example.com/cat.png").data_url() == "https://example.com/cat.png"


def test_a_tool_call_without_an_id_gets_call_and_24_hex_digits() -> None:
    first, second = ToolCall(name="f"), ToolCall(name="f")
    assert re.fullmatch(r"call_[0-9a-f]{24}", first.id) and first.id != second.id


def test_a_tool_result_message_carries_its_call_id_name_and_error_flag() -> None:
    m = Message(role="tool", tool_call_id="call_1", name="add", content="boom", is_error=True)
    assert (m.tool_call_id, m.name, m.is_error, m.text) == ("call_1", "add", True, "boom")


# --- tools ---------------------------------------------------------------------------------------
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


def test_a_typed_function_becomes_a_tool_with_its_docstring_and_schema() -> None:
    tool = Tool.from_function(add)
    assert (tool.name, tool.description) == ("add", "Add two numbers.")
    assert tool.parameters == {"type": "object", "required": ["a"], "properties": {
        "a": {"title": "A", "type": "integer"}, "b": {"title": "B", "type": "integer", "default": 2}}}


def test_annotated_descriptions_reach_the_schema() -> None:
    def weather(city: Annotated[str, Field(description="the city")]) -> str:
        return city

    assert Tool.from_function(weather).parameters["properties"]["city"]["description"] == "the city"


def test_a_tool_checks_arguments_against_its_signature() -> None:
    tool = Tool.from_function(add)
    assert tool.check_arguments({"a": "3"}) == {"a": 3, "b": 2}
    with pytest.raises(ValidationError):
        tool.check_arguments({"b": 1})


def test_star_args_are_refused() -> None:
    def f(*xs: int) -> None: ...

    with pytest.raises(InvalidRequest, match=re.escape("tool 'f': *xs: a tool takes named parameters only")):
        Tool.from_function(f)


def test_an_unannotated_parameter_is_refused() -> None:
    def f(x) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(InvalidRequest, match=re.escape("tool 'f': parameter 'x' has no type annotation")):
        Tool.from_function(f)


def test_openai_dicts_and_tool_field_dicts_become_tools() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    tools = as_tools([{"type": "function", "function": {"name": "search", "description": "d", "parameters": schema}},
                      {"name": "other", "parameters": schema}])
    assert [(t.name, t.description, t.parameters) for t in tools] == [("search", "d", schema), ("other", "", schema)]


@pytest.mark.parametrize(("tools", "problem"), [
    ([{"name": "bad name"}], "tool 'bad name': name must match"),
    ([{"name": "9lives"}], "tool '9lives': name must match"),
    ([{"name": "x" * 65}], "name must match"),
    ([{"name": "f", "parameters": {"type": "array"}}], "tool 'f': parameters must be an object JSON schema"),
    ([{"name": "f"}, add, {"name": "add"}], "tools[2]: duplicate tool name 'add'"),
    ([{"name": "f", "extra": 1}], "tool 'f': unknown keys ['extra']"),
    ([42], "tools[0]: must be a Tool, a function or a dict, got int"),
])
def test_bad_tools_are_refused_naming_the_culprit(tools: list[object], problem: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(problem)):
        as_tools(tools)  # type: ignore[arg-type]


def test_tool_choice_is_auto_required_none_or_a_known_tool() -> None:
    tools = as_tools([add])
    for ok in ("auto", "required", "none", "add"):
        check_tool_choice(ok, tools)
    with pytest.raises(InvalidRequest, match=re.escape("tool_choice: 'sub' is not a tool; tools: add")):
        check_tool_choice("sub", tools)
    with pytest.raises(InvalidRequest, match=re.escape("tool_choice: 'required' needs tools, none given")):
        check_tool_choice("required", [])


# --- structured output ---------------------------------------------------------------------------
class City(BaseModel):
    name: str
    population: int


def test_a_model_class_gives_its_schema_and_parses_to_an_instance() -> None:
    assert response_schema(City)["required"] == ["name", "population"]
    assert parse_output('{"name": "Oslo", "population": 700000}', City) == City(name="Oslo", population=700000)


def test_a_schema_dict_must_be_an_object_and_parses_to_a_dict() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_schema(schema) == schema
    assert parse_output('{"a": 1}', schema) == {"a": 1}
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        parse_output("[1]", schema)
    with pytest.raises(InvalidRequest, match="must describe an object"):
        response_schema({"type": "string"})


# --- messages as a call receives them ------------------------------------------------------------
@pytest.mark.parametrize(("content", "problem"), [
    ([{"type": "image", "data": "!!"}], "messages[0]: content.0: data: not valid base64"),
    ([{"type": "text", "text": "a"}, {"type": "audio"}],
     "messages[0]: content.1: Input tag 'audio' found using 'type' does not match any of the expected tags"),
    ([{"type": "image", "data": b"xx"}], "messages[0]: content.0: media_type: not given and not recognised"),
])
def test_a_bad_part_is_an_invalid_request_naming_the_message_and_part(content: object, problem: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(problem)):
        chat_messages([{"role": "user", "content": content}])


def test_an_assistant_turn_of_tool_calls_needs_no_content_but_others_do() -> None:
    [turn] = chat_messages([{"role": "assistant", "tool_calls": [{"id": "c", "name": "f", "arguments": {}}]}])
    assert (turn.content, turn.tool_calls) == ("", [ToolCall(id="c", name="f")])
    with pytest.raises(InvalidRequest, match=re.escape("messages[0]: content: Field required")):
        chat_messages([{"role": "user"}])


def test_tool_inputs_checks_tools_choice_and_format_together() -> None:
    tools, schema = tool_inputs([add], "add", City)
    assert ([t.name for t in tools], schema) == (["add"], City.model_json_schema())
    assert tool_inputs(None, "auto", None) == ([], None)
    with pytest.raises(InvalidRequest, match=re.escape("tool_choice: 'sub' is not a tool; tools: add")):
        tool_inputs([add], "sub", None)
    with pytest.raises(InvalidRequest, match="^response_format: must be a pydantic model class or a JSON schema"):
        tool_inputs([add], "auto", 42)


def test_a_message_with_an_image_and_tool_calls_survives_a_json_round_trip() -> None:
    m = Message(role="user", content=[{"type": "text", "text": "see"}, {"type": "image", "data": PNG}])
    calls = Message(role="assistant", tool_calls=[ToolCall(id="c", name="f", arguments={"x": [1]})])
    for message in (m, calls):
        assert Message.model_validate_json(message.model_dump_json()) == message
    assert m.model_dump(mode="json")["content"][1]["data"] == base64.b64encode(PNG).decode()


def test_the_cache_key_of_a_plain_chat_is_unchanged_and_parts_have_their_own() -> None:
    from amaos_llm.cache import cache_key

    plain = [Message(role="user", content="hi")]
    before_parts = json.dumps([[["user", "hi"]], 0.0, 8, None, 1], ensure_ascii=False, separators=(",", ":"))
    assert cache_key(plain, 0.0, 8, None, 1) == hashlib.sha256(before_parts.encode()).hexdigest()
    image = [Message(role="user", content=[{"type": "text", "text": "hi"}, {"type": "image", "data": PNG}])]
    other = [Message(role="user", content=[{"type": "text", "text": "hi"}, {"type": "image", "data": JPEG}])]
    assert len({cache_key(x, 0.0, 8, None, 1) for x in (plain, image, other)}) == 3
