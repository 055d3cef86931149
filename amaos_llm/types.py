"""The data that crosses the library's edge: messages in, results out.

Pydantic models, because users build them, serialise them and read them. Costs are `Decimal`
(exact sums; serialised to JSON as numbers); `None` means "price unknown", distinct from a real 0.
"""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field

from amaos_llm.content import ImagePart, Part, TextPart

Role = Literal["system", "user", "assistant", "tool"]
# cancelled: the attempt was sent, then cut off by the caller (a cancel scope, Ctrl-C)
# rejected: the model answered, and the call's validator turned the answer down
Outcome = Literal["success", "error", "timeout", "cancelled", "rejected", "skipped"]

# Decimal keeps totals exact; JSON readers want a number, not a string.
Cost = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


def new_call_id() -> str:
    """An id for a tool call whose wire gave none (Gemini, Ollama): `call_` + 24 random hex digits."""
    return "call_" + secrets.token_hex(12)


class ToolCall(BaseModel):
    """One call of a tool, as the model asked for it."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_call_id)
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    # What the wire needs back verbatim on the next turn (Gemini's `thought_signature`), keyed by
    # provider name; replayed to that provider only.
    provider_data: dict[str, Any] | None = None
    # The arguments text as the model sent it when it was not a JSON object (`arguments` is then {}):
    # such a call is turned down and the model asked again, not run.
    invalid_arguments: str | None = None


class Message(BaseModel):
    """One chat message.

    `content` is a str, or a list of `TextPart`/`ImagePart` (images in a user turn). An assistant turn
    that calls tools carries `tool_calls`; each result follows as `role="tool"` with the call's
    `tool_call_id` (and optionally the tool's `name`), `is_error` when the tool failed. No validators
    here: a plain text message is built on every call, and `amaos_llm.history` checks whole chats.
    """

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str | list[Part] = ""
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    @property
    def text(self) -> str:
        """The text of `content`: the string itself, or the text parts joined."""
        content = self.content
        if type(content) is str:
            return content
        return "".join(p.text for p in content if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        content = self.content
        return [] if type(content) is str else [p for p in content if isinstance(p, ImagePart)]


class Usage(BaseModel):
    """Token counts as the provider reported them.

    `cache_read_tokens` (prompt tokens served from the provider's prompt cache) and
    `cache_write_tokens` (prompt tokens written to it) are parts of `input_tokens`, not additions:
    OpenAI's `cached_tokens`, Anthropic's `cache_read/creation_input_tokens`, Gemini's
    `cachedContentTokenCount`. Each is priced at its own rate.
    """

    model_config = ConfigDict(frozen=True)

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cache_read_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)

    def model_post_init(self, context: object, /) -> None:
        # Here, not in a model validator: that would run again each time a result or an attempt
        # takes this instance in (three times a call); this runs once, when counts are given.
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"cache_read_tokens ({self.cache_read_tokens}) + cache_write_tokens ({self.cache_write_tokens}) "
                f"are part of input_tokens ({self.input_tokens}) and cannot exceed it"
            )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        # Sums of valid counts are valid, so this skips validation: it runs for every answer, and
        # building the instance by hand (what `model_construct` does, minus its overhead) costs a
        # third of a validated construction.
        total = object.__new__(Usage)
        _set = object.__setattr__
        _set(total, "__dict__", {
            "input_tokens": self.input_tokens + other.input_tokens,
            "output_tokens": self.output_tokens + other.output_tokens,
            "cache_read_tokens": self.cache_read_tokens + other.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens + other.cache_write_tokens,
        })
        _set(total, "__pydantic_fields_set__", set(_USAGE_FIELDS))
        _set(total, "__pydantic_extra__", None)
        _set(total, "__pydantic_private__", None)
        return total


_USAGE_FIELDS = frozenset(Usage.model_fields)


class Attempt(BaseModel):
    """One model tried (or passed over) while serving a call."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    provider: str
    outcome: Outcome
    error: str | None = None
    latency: float = 0.0
    usage: Usage | None = None  # what this attempt was billed for, when the model answered
    cost: Cost | None = None
    endpoint: str | None = None  # the URL sent to (None: the SDK's default, or an in-process model)
    key_env: str | None = None  # the variable holding the API key sent with, when the model has one


class LLMResult(BaseModel):
    """The answer to one `complete()`/`chat()` call."""

    content: str
    model_name: str
    provider: str
    model: str
    usage: Usage
    cost: Cost | None
    latency: float
    finish_reason: str | None = None  # stop | length | tool_calls | content_filter
    attempts: list[Attempt] = Field(default_factory=list)
    cache_hit: bool = False  # served from the result cache: no model was called, usage and cost are 0
    saved_cost: Cost | None = None  # for a cache hit, what the original answer cost
    warnings: list[str] = Field(default_factory=list)  # e.g. a parameter dropped by feature_fallback
    tool_calls: list[ToolCall] = Field(default_factory=list)  # the tools the model asks to be run
    # With `response_format`: the answer validated into it (the model's instance, or a dict for a schema).
    parsed: Any = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens(self) -> int:
        return self.usage.total_tokens
