"""A call's own arguments: their allowed ranges, defined once, and the check made before sending.

YAML configs, graph payloads and library calls all use these ranges: pydantic models annotate their
fields with `MaxTokens` / `Temperature`, and the manager runs `prompt_messages` / `chat_messages`
and `check_sampling` on every call (plain comparisons: a call must not pay for a pydantic model).
Every violation is an `InvalidRequest` naming the argument and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Any, get_args

from pydantic import Field, ValidationError

from amaos_llm.errors import InvalidRequest
from amaos_llm.structured import response_schema
from amaos_llm.tools import Tool, as_tools, check_tool_choice
from amaos_llm.types import Message, Role

MIN_MAX_TOKENS = 1
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0

MaxTokens = Annotated[int, Field(ge=MIN_MAX_TOKENS)]
Temperature = Annotated[float, Field(ge=MIN_TEMPERATURE, le=MAX_TEMPERATURE)]

ROLES = get_args(Role)


def check_sampling(temperature: Any, max_tokens: Any) -> None:
    """`temperature` in [0, 2] and `max_tokens` ≥ 1, each when given."""
    if max_tokens is not None and (
        type(max_tokens) is not int or max_tokens < MIN_MAX_TOKENS  # bool is an int subclass: refused too
    ):
        raise InvalidRequest(f"max_tokens: must be an int >= {MIN_MAX_TOKENS}, got {max_tokens!r}")
    if temperature is not None and (
        type(temperature) not in (float, int) or not MIN_TEMPERATURE <= temperature <= MAX_TEMPERATURE  # NaN fails
    ):
        raise InvalidRequest(
            f"temperature: must be a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, got {temperature!r}"
        )


def prompt_messages(prompt: Any, system_prompt: Any) -> list[Message]:
    """The chat that a prompt (and an optional system prompt) stands for."""
    if type(prompt) is not str:
        raise InvalidRequest(f"prompt: must be a str, got {type(prompt).__name__}")
    messages = [Message(role="user", content=prompt)]
    if system_prompt is not None:
        if type(system_prompt) is not str:
            raise InvalidRequest(f"system_prompt: must be a str or None, got {type(system_prompt).__name__}")
        messages.insert(0, Message(role="system", content=system_prompt))
    return messages


def chat_messages(messages: Any) -> list[Message]:
    """`Message`s or mappings with a known `role` and a `content` (a str or a list of parts; an assistant
    turn of `tool_calls` may leave it out); at least one."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise InvalidRequest(
            f"messages: must be a list of messages ({{'role': ..., 'content': ...}}), got {type(messages).__name__}"
        )
    out = []
    for i, m in enumerate(messages):
        if isinstance(m, Message):
            out.append(m)
            continue
        try:
            message = Message.model_validate(m)
        except ValidationError as exc:
            raise InvalidRequest(f"messages[{i}]: {_first_problem(exc)}") from None
        # `content` defaults to "" only so that an assistant turn of tool calls needs none
        if isinstance(m, Mapping) and "content" not in m and not message.tool_calls:
            raise InvalidRequest(f"messages[{i}]: content: Field required")
        out.append(message)
    if not out:
        raise InvalidRequest("messages: must hold at least one message")
    return out


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors()
    # `content` is a str or a list of parts: for a list, the str branch's complaint says nothing
    parts = [e for e in errors if len(e["loc"]) > 2 and e["loc"][0] == "content"]
    err = parts[0] if parts else errors[0]
    if parts:  # name the part by its index, not by pydantic's description of the union
        err = {**err, "loc": ("content", *[p for p in err["loc"][2:] if p not in ("text", "image")])}
        err["msg"] = err["msg"].removeprefix("Value error, ")
    field = ".".join(str(p) for p in err["loc"])
    if field == "role":
        return f"role: must be one of {', '.join(ROLES)}, got {err.get('input')!r}"
    if err["type"] == "model_type":
        return f"must be a mapping with 'role' and 'content', got {type(err.get('input')).__name__}"
    return f"{field}: {err['msg']}" if field else err["msg"]


def system_and_messages(messages: Any, system_prompt: str | None) -> list[Message]:
    """`chat_messages(messages)`, after a system message when `system_prompt` is given."""
    out = chat_messages(messages)
    return out if system_prompt is None else [Message(role="system", content=system_prompt), *out]


def tool_inputs(tools: Any, tool_choice: Any, response_format: Any) -> tuple[list[Tool], dict[str, Any] | None]:
    """A call's tools (typed functions, dicts or `Tool`s; unique names), its `tool_choice` checked
    against them, and the object JSON schema its `response_format` stands for (None without one).
    With `chat_messages` and `history.check_history`, everything a tool call can get wrong is an
    `InvalidRequest` before any model is asked."""
    checked = as_tools(tools)
    check_tool_choice(tool_choice, checked)
    return checked, response_schema(response_format)
