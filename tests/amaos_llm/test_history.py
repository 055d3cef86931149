"""Tool histories: checked before sending, rewritten for the wire they are sent to."""

from __future__ import annotations

import hashlib
import re

import pytest

from amaos_llm.errors import InvalidRequest
from amaos_llm.history import check_history, for_wire, safe_call_id
from amaos_llm.types import Message, ToolCall

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def call(id_: str, name: str = "add", **data: object) -> ToolCall:
    return ToolCall(id=id_, name=name, arguments={"a": 1}, provider_data=data or None)


def turn(*calls: ToolCall) -> Message:
    return Message(role="assistant", tool_calls=list(calls))


def result(id_: str, text: str = "2", name: str | None = None) -> Message:
    return Message(role="tool", tool_call_id=id_, content=text, name=name)


USER = Message(role="user", content="add")


def test_a_paired_history_passes() -> None:
    check_history([USER, turn(call("a"), call("b")), result("b"), result("a"), Message(role="user", content="ok")])


@pytest.mark.parametrize(("messages", "problem"), [
    ([USER, result("x")], "messages[1]: tool result for 'x' answers no open tool call"),
    ([USER, turn(call("a")), result("a"), result("a")], "messages[3]: tool result for 'a' answers no open"),
    ([USER, turn(call("a"), call("b")), result("a"), USER], "messages[1]: tool calls 'b' have no result"),
    ([USER, turn(call("a"))], "messages[1]: tool calls 'a' have no result"),
    ([USER, turn(call("a"), call("a"))], "messages[1]: duplicate tool call id 'a'"),
    ([USER, turn(call("a")), Message(role="tool", content="2")], "messages[2]: a tool result needs the tool_call_id"),
    ([Message(role="user", content="x", tool_calls=[call("a")])], "messages[0]: only assistant messages carry"),
    ([Message(role="assistant", content=[{"type": "image", "data": PNG}])], "messages[0]: images go in user"),
])
def test_a_bad_history_is_refused_naming_the_message(messages: list[Message], problem: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(problem)):
        check_history(messages)


def test_a_tool_message_without_a_call_is_plain_text_as_before() -> None:
    check_history([USER, Message(role="tool", content="legacy")])


def test_a_plain_chat_goes_to_the_wire_unchanged() -> None:
    messages = [USER, Message(role="assistant", content="hi")]
    assert for_wire(messages, "openai") == messages


def test_foreign_ids_become_stable_digests_on_both_sides_of_the_pair() -> None:
    foreign = "toolu_01A.B/c=="  # dots, slashes and '=' are outside what every wire accepts
    out = for_wire([USER, turn(call(foreign)), result(foreign)], "openai")
    expected = "call_" + hashlib.sha256(foreign.encode()).hexdigest()[:24]
    assert (out[1].tool_calls[0].id, out[2].tool_call_id) == (expected, expected)  # type: ignore[index]
    check_history(out)


def test_ids_longer_than_40_characters_are_replaced_and_safe_ones_kept() -> None:
    assert safe_call_id("call_abc-123") == "call_abc-123"
    assert re.fullmatch(r"call_[0-9a-f]{24}", safe_call_id("a" * 41))


def test_a_result_gets_the_name_of_the_call_it_answers() -> None:
    out = for_wire([USER, turn(call("a", name="lookup")), result("a")], "google")
    assert out[2].name == "lookup"


def test_provider_data_is_kept_only_for_the_provider_that_made_it() -> None:
    history = [USER, turn(call("a", google={"thought_signature": "sig"})), result("a")]
    assert for_wire(history, "google")[1].tool_calls[0].provider_data == {"google": {"thought_signature": "sig"}}  # type: ignore[index]
    assert for_wire(history, "anthropic")[1].tool_calls[0].provider_data is None  # type: ignore[index]
