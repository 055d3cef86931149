"""Structured output: a `response_format` (a pydantic model class or an object JSON schema) as the
schema a wire sends, and a reply checked against it (and against the call's tools) before the
attempt loop accepts it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from amaos_llm.errors import InvalidRequest

if TYPE_CHECKING:
    from amaos_llm.tools import Tool
    from amaos_llm.types import ToolCall

# Wires without a schema field of their own (Anthropic, Bedrock) force a tool call whose input is
# the answer: this tool, declared with the schema as its input.
RESPONSE_TOOL = "structured_response"
RESPONSE_TOOL_DESCRIPTION = "Give the answer in this form."

def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The object JSON schema `response_format` stands for (None for None)."""
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_json_schema()
    if isinstance(response_format, Mapping):
        if response_format.get("type") != "object":
            raise InvalidRequest("response_format: a JSON schema must describe an object (type: object)")
        return dict(response_format)
    raise InvalidRequest(
        f"response_format: must be a pydantic model class or a JSON schema dict, got {type(response_format).__name__}"
    )


def schema_name(response_format: Any) -> str:
    """A name for the schema where a wire wants one (OpenAI's `json_schema.name`, Anthropic's forced tool)."""
    if isinstance(response_format, type):
        return response_format.__name__
    title = response_format.get("title") if isinstance(response_format, Mapping) else None
    return title if isinstance(title, str) and title.isidentifier() else "response"


def parse_output(text: str, response_format: Any) -> Any:
    """The reply as the validated instance (a dict for a schema). Raises `ValueError` (a JSON error or
    a `pydantic.ValidationError`) when it does not fit; a schema dict is only checked to be an object."""
    if isinstance(response_format, type) and issubclass(response_format, BaseModel):
        return response_format.model_validate_json(text)
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


MAX_PROBLEM = 300  # characters of a parse error kept in the reason (it is sent back to the model)


def output_problem(
    content: str, tool_calls: Sequence[ToolCall], tools: Sequence[Tool], response_format: Any
) -> tuple[Any, str | None]:
    """(the parsed instance, None) for a reply that fits the call, else (None, "invalid output: ...").

    A reply fits when every tool call names a declared tool with an object of arguments, and, with
    a `response_format` and no tool calls, its text parses into it. The reason is what the model is
    told on the re-ask, so it names the culprit."""
    declared = {t.name for t in tools}
    for call in tool_calls:
        if call.name not in declared:
            offered = ", ".join(sorted(declared)) or "none"
            return None, f"invalid output: tool {call.name!r} is not declared (tools: {offered})"
        if call.invalid_arguments is not None:
            return None, (f"invalid output: the arguments of tool {call.name!r} are not a JSON object: "
                          f"{call.invalid_arguments[:MAX_PROBLEM]!r}")
    if response_format is None or tool_calls:
        return None, None
    try:
        return parse_output(content, response_format), None
    except ValueError as exc:  # JSONDecodeError and pydantic's ValidationError are ValueErrors
        problem = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return None, f"invalid output: {problem[:MAX_PROBLEM]}"
