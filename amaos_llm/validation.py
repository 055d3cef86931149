"""Answers checked before they are accepted: the caller's validator, and the re-ask after a rejection.

`validator(result)` gets the `LLMResult` the call would return and says True (accept), or False or
a reason `str` (reject); it may be async. Anything else it returns is a `TypeError`, and whatever
it raises reaches the caller as it is: a broken validator is the caller's bug, not the model's. A
rejected answer is re-asked at once on the same model with the rejected reply and the reason
appended (each later re-ask carries every earlier pair), at most `validation_retries` times; the
next model starts again from the original messages.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from amaos_llm.types import LLMResult, Message

Validator = Callable[[LLMResult], "bool | str | Awaitable[bool | str]"]
REJECTED = "rejected by the validator"


def check_validator(validator: Any) -> Validator | None:
    if validator is not None and not callable(validator):
        raise TypeError(f"validator: must be callable (result) -> bool | str, got {type(validator).__name__}")
    return validator  # type: ignore[no-any-return]


async def judge(validator: Validator, result: LLMResult) -> str | None:
    """None when the validator accepts `result`; else the reason it gave."""
    verdict = validator(result)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    if verdict is True:
        return None
    if verdict is False:
        return REJECTED
    if isinstance(verdict, str):
        return verdict or REJECTED
    raise TypeError(f"a validator returns True, False or a reason (str), got {type(verdict).__name__}")


def reask(messages: Sequence[Message], rejected: str, reason: str) -> list[Message]:
    """The conversation to send again: the rejected answer, then what was wrong with it."""
    return [
        *messages,
        Message(role="assistant", content=rejected),
        Message(role="user", content=f"That answer was not accepted: {reason}. Please answer again."),
    ]
