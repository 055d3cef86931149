"""The data that crosses the library's edge: messages in, results out.

Pydantic models, because users build them, serialise them and read them. Costs are `Decimal`
(exact sums; serialised to JSON as numbers); `None` means "price unknown", distinct from a real 0.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, computed_field, model_validator

Role = Literal["system", "user", "assistant", "tool"]
# cancelled: the attempt was sent, then cut off by the caller (a cancel scope, Ctrl-C)
# rejected: the model answered, and the call's validator turned the answer down
Outcome = Literal["success", "error", "timeout", "cancelled", "rejected", "skipped"]

# Decimal keeps totals exact; JSON readers want a number, not a string.
Cost = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


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

    @model_validator(mode="after")
    def _cache_inside_input(self) -> Usage:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                f"cache_read_tokens ({self.cache_read_tokens}) + cache_write_tokens ({self.cache_write_tokens}) "
                f"are part of input_tokens ({self.input_tokens}) and cannot exceed it"
            )
        return self

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


class LLMResult(BaseModel):
    """The answer to one `complete()`/`chat()` call."""

    content: str
    model_name: str
    provider: str
    model: str
    usage: Usage
    cost: Cost | None
    latency: float
    finish_reason: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    cache_hit: bool = False  # served from the result cache: no model was called, usage and cost are 0
    saved_cost: Cost | None = None  # for a cache hit, what the original answer cost

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tokens(self) -> int:
        return self.usage.total_tokens
