"""The OpenAI chat-completions shapes, shared by `openai`, `openai_compatible` and `embedded`
(llama.cpp speaks the same JSON): messages, tools, tool_choice and response_format as sent."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from amaos_llm.content import ImagePart, TextPart
from amaos_llm.history import for_wire

if TYPE_CHECKING:
    from amaos_llm.providers.base import ProviderRequest
    from amaos_llm.tools import Tool
    from amaos_llm.types import Message, ToolCall

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
