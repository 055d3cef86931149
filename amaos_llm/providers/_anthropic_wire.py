"""The Anthropic Messages shapes: the request body's `system`, `messages`, `tools` and `tool_choice`,
and usage as we count it.

A turn's tool results travel together in one user message right after the turn (the API refuses
results anywhere else), and consecutive messages of one role are merged into one. Structured output
is a forced tool whose input is the answer: its arguments stream as the reply's text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from amaos_llm.content import ImagePart, TextPart
from amaos_llm.history import for_wire
from amaos_llm.structured import RESPONSE_TOOL, RESPONSE_TOOL_DESCRIPTION

if TYPE_CHECKING:
    from amaos_llm.providers.base import ProviderRequest
    from amaos_llm.types import Message

__all__ = ["RESPONSE_TOOL", "UsageCounts", "request_params", "response_json", "wire_messages"]


def request_params(request: ProviderRequest) -> dict[str, Any]:
    """`system`, `messages`, `tools` and `tool_choice` as `messages.create` takes them."""
    messages = for_wire(request.messages, "anthropic")
    system = "\n\n".join(m.text for m in messages if m.role == "system")
    params: dict[str, Any] = {"messages": wire_messages([m for m in messages if m.role != "system"])}
    if system:
        params["system"] = system
    tools = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in request.tools]
    choice: dict[str, Any] | None = None
    if request.tools:
        name = request.tool_choice
        choice = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}.get(
            name, {"type": "tool", "name": name})
    if request.response_format is not None:
        tools.append({"name": RESPONSE_TOOL, "description": RESPONSE_TOOL_DESCRIPTION,
                      "input_schema": request.response_format})
        if not request.tools:  # with tools of its own, the model picks: a tool, or the answer
            choice = {"type": "tool", "name": RESPONSE_TOOL}
    if tools:
        params["tools"] = tools
    if choice is not None:
        params["tool_choice"] = choice
    return params


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        role = "assistant" if m.role == "assistant" else "user"
        blocks = _blocks(m)
        if out and out[-1]["role"] == role:
            previous = out[-1]["content"]
            if isinstance(previous, str):
                previous = out[-1]["content"] = [{"type": "text", "text": previous}]
            previous.extend([{"type": "text", "text": blocks}] if isinstance(blocks, str) else blocks)
        else:
            out.append({"role": role, "content": blocks})
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant" and isinstance(last["content"], str):
        last["content"] = last["content"].rstrip()  # the API refuses a final assistant turn ending in whitespace
    return out


def _blocks(m: Message) -> str | list[dict[str, Any]]:
    if m.role == "tool" and m.tool_call_id is not None:
        return [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text, "is_error": m.is_error}]
    if m.tool_calls:
        text = [{"type": "text", "text": m.text}] if m.text else []
        return text + [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in m.tool_calls]
    content = m.content
    if type(content) is str:
        return content  # a `tool` message without a tool_use_id travels as user text
    return [_part(p) for p in content]


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if part.url is not None:
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": part.media_type, "data": part.base64()}}


def response_json(arguments: Any) -> str:
    """The forced tool's input as the reply's text."""
    return json.dumps(arguments)


class UsageCounts:
    """Usage as the stream reports it, latest value per field (`message_start`, then `message_delta`)."""

    __slots__ = ("input", "output", "cache_read", "cache_write")

    def __init__(self) -> None:
        self.input = self.output = self.cache_read = self.cache_write = 0

    def update(self, usage: Any) -> None:
        if usage.input_tokens is not None:
            self.input = usage.input_tokens
        if usage.output_tokens is not None:
            self.output = usage.output_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write = usage.cache_creation_input_tokens

    @property
    def input_tokens(self) -> int:
        """Anthropic's input leaves cache reads and writes out; ours counts them (all are billed as input)."""
        return self.input + self.cache_read + self.cache_write
