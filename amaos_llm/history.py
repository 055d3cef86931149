"""A chat's tool turns: checked before sending, and rewritten for the wire it is sent to.

Both are pure functions over `Message`s. `check_history` refuses what every API refuses with a 400
(a tool result answering no call, a call left unanswered before the chat goes on), so the caller
hears it before any model is paid. `for_wire` makes a history written on one provider acceptable to
another: ids that wire would reject are replaced by a stable digest (the same on a call and its
result, so pairs hold), each result gets its tool's name (Gemini matches results by name), and
opaque per-provider data (Gemini's thought signature) is kept only for the provider that made it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

from amaos_llm.errors import InvalidRequest
from amaos_llm.types import Message, ToolCall

SAFE_CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")  # what OpenAI, Anthropic and Gemini all accept


def check_history(messages: Sequence[Message]) -> None:
    """Raise `InvalidRequest` naming `messages[i]` when tool calls and results do not pair up.

    Every result (`role="tool"` with a `tool_call_id`) must answer a call of the assistant turn before
    it, once; every call must be answered before the next non-tool message. A `tool` message without
    `tool_call_id` while no call is open is plain text (as before tools existed)."""
    open_calls: dict[str, int] = {}  # id -> index of the assistant message that made the call
    for i, m in enumerate(messages):
        if m.role == "tool":
            if m.tool_call_id is None:
                if open_calls:
                    raise InvalidRequest(f"messages[{i}]: a tool result needs the tool_call_id of the call it answers")
                continue
            if m.tool_call_id not in open_calls:
                raise InvalidRequest(f"messages[{i}]: tool result for {m.tool_call_id!r} answers no open tool call")
            del open_calls[m.tool_call_id]
            if m.images:
                raise InvalidRequest(f"messages[{i}]: a tool result carries text only, not images")
            continue
        if open_calls:
            ids = ", ".join(repr(c) for c in open_calls)
            raise InvalidRequest(f"messages[{min(open_calls.values())}]: tool calls {ids} have no result")
        if m.images and m.role != "user":
            raise InvalidRequest(f"messages[{i}]: images go in user messages, not {m.role}")
        if m.tool_calls:
            if m.role != "assistant":
                raise InvalidRequest(f"messages[{i}]: only assistant messages carry tool_calls")
            for call in m.tool_calls:
                if call.id in open_calls:
                    raise InvalidRequest(f"messages[{i}]: duplicate tool call id {call.id!r}")
                open_calls[call.id] = i
    if open_calls:
        ids = ", ".join(repr(c) for c in open_calls)
        raise InvalidRequest(f"messages[{min(open_calls.values())}]: tool calls {ids} have no result")


def safe_call_id(call_id: str) -> str:
    """`call_id` when every wire accepts it, else `call_` + the first 24 hex digits of its sha256."""
    if SAFE_CALL_ID.match(call_id):
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:24]


def for_wire(messages: Sequence[Message], provider: str) -> list[Message]:
    """A copy of `messages` the `provider` wire accepts (see the module docstring); plain chats come
    back as they are, message for message."""
    if not any(m.tool_calls or m.tool_call_id for m in messages):
        return list(messages)
    names: dict[str, str] = {}
    out: list[Message] = []
    for m in messages:
        if m.tool_calls:
            calls = [_call_for(c, provider) for c in m.tool_calls]
            names.update((c.id, c.name) for c in m.tool_calls)
            m = m.model_copy(update={"tool_calls": calls})
        elif m.role == "tool" and m.tool_call_id is not None:
            name = m.name or names.get(m.tool_call_id)
            m = m.model_copy(update={"tool_call_id": safe_call_id(m.tool_call_id), "name": name})
        out.append(m)
    return out


def _call_for(call: ToolCall, provider: str) -> ToolCall:
    data = call.provider_data
    kept = {provider: data[provider]} if data and provider in data else None
    if call.id == safe_call_id(call.id) and kept == data:
        return call
    return call.model_copy(update={"id": safe_call_id(call.id), "provider_data": kept})
