"""The OpenAI chat-completions shapes, shared by `openai`, `openai_compatible` and `embedded`
(llama.cpp speaks the same JSON): messages, tools, tool_choice and response_format as sent, and
tool calls as they come back, whole or in streamed fragments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from amaos_llm.content import ImagePart, TextPart
from amaos_llm.history import for_wire
from amaos_llm.types import ToolCall

if TYPE_CHECKING:
    from amaos_llm.providers.base import ProviderRequest
    from amaos_llm.tools import Tool
    from amaos_llm.types import Message

ERROR_PREFIX = "Error: "  # the wire has no error flag on a tool result: the text says it


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    return [_wire_message(m) for m in for_wire(messages, "openai")]


def _wire_message(message: Message) -> dict[str, Any]:
    role, content = message.role, message.content
    if role == "tool":
        if message.tool_call_id is None:  # a plain-text tool message from before tools: user text
            return {"role": "user", "content": message.text}
        text = message.text
        return {"role": "tool", "tool_call_id": message.tool_call_id,
                "content": ERROR_PREFIX + text if message.is_error else text}
    if message.tool_calls:
        return {"role": "assistant", "content": message.text or None,
                "tool_calls": [_wire_call(c) for c in message.tool_calls]}
    if type(content) is str:
        return {"role": role, "content": content}
    return {"role": role, "content": [_wire_part(p) for p in content]}


def _wire_part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    return {"type": "image_url", "image_url": {"url": part.data_url()}}


def _wire_call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}


def wire_tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.parameters}} for t in tools]


def tool_params(request: ProviderRequest) -> dict[str, Any]:
    """`tools`, `tool_choice` and `response_format` for the request body, each only when set."""
    params: dict[str, Any] = {}
    if request.tools:
        params["tools"] = wire_tools(request.tools)
        choice = request.tool_choice
        params["tool_choice"] = choice if choice in ("auto", "required", "none") else {
            "type": "function", "function": {"name": choice}}
    if request.response_format is not None:
        params["response_format"] = json_schema_format(request.response_format)
    return params


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    title = schema.get("title")
    name = title if isinstance(title, str) and title.isidentifier() else "response"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def tool_call(call_id: str | None, name: str, arguments: str | None) -> ToolCall:
    """A whole call from the wire's JSON-text arguments; text that is not a JSON object is kept in
    `invalid_arguments` for the caller to turn down."""
    fields: dict[str, Any] = {"name": name}
    if call_id:
        fields["id"] = call_id
    try:
        parsed = json.loads(arguments) if arguments else {}
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        fields["arguments"] = parsed
    else:
        fields["invalid_arguments"] = arguments or ""
    return ToolCall(**fields)


class ToolCallJoiner:
    """Streamed `delta.tool_calls[index]` fragments, joined: the first fragment of a call carries its
    id and name, every fragment a piece of the arguments text."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[int, list[Any]] = {}  # index -> [id, name, argument pieces]

    def add(self, index: int, call_id: str | None, name: str | None, arguments: str | None) -> None:
        entry = self._calls.get(index)
        if entry is None:
            entry = self._calls[index] = [None, "", []]
        if call_id:
            entry[0] = call_id
        if name:
            entry[1] += name
        if arguments:
            entry[2].append(arguments)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def calls(self) -> list[ToolCall]:
        return [tool_call(i, name, "".join(args)) for _, (i, name, args) in sorted(self._calls.items())]
