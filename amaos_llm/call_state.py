"""What the attempt loop knows of one call while it runs: its settings, its attempts so far, and
what its answers cost (every answer is paid for, one a validator rejected too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from amaos_llm.types import Attempt, Message, Usage
from amaos_llm.validation import Validator


@dataclass(slots=True)
class CallState:
    messages: list[Message]
    temperature: float | None
    max_tokens: int | None
    start: float  # the clock reading when the call began
    until: float | None  # the clock reading at which the call's deadline runs out
    validator: Validator | None
    validation_retries: int
    attempts: list[Attempt] = field(default_factory=list)  # every model tried or passed over, in order
    usage: Usage | None = None  # every answer's tokens so far
    cost: Decimal | None = None  # their cost; None as soon as one answer's price is unknown

    def pay(self, usage: Usage, cost: Decimal | None) -> None:
        if self.usage is None:
            self.usage, self.cost = usage, cost
        else:
            self.usage += usage
            self.cost = None if cost is None or self.cost is None else self.cost + cost


def estimate_prompt_tokens(messages: list[Message]) -> int:
    # Only for ordering by estimated cost; billing uses the provider's own counts.
    return sum(len(m.content) for m in messages) // 4 + 4 * len(messages)
