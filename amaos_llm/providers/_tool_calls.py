"""Tool calls read off a wire: whole, from JSON-text arguments, or joined from streamed fragments
(OpenAI's `delta.tool_calls[index]`, llama.cpp's same, Anthropic's `input_json_delta`)."""

from __future__ import annotations

import json
from typing import Any

from amaos_llm.types import ToolCall


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
