"""The result cache: an answer to a request seen before, served again without calling a model.

The key is the SHA-256 of the canonical JSON of what decides the answer: the messages, the
temperature, max_tokens and force_model the caller asked for, the tools, tool_choice and
response_format when set, and the manager's configuration
version (a change of models or routing makes earlier entries unreachable). Entries are stored in
the form a hit returns (`cache_hit=True`, zero usage and cost, `saved_cost` = what the original
answer cost, no attempts), kept least-recently-used first out at `max_size`, and expire `ttl`
seconds after they were stored, on the manager's clock.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from amaos_llm.structured import response_schema
from amaos_llm.tools import Tool
from amaos_llm.types import LLMResult, Message, Usage

_ZERO = Decimal(0)
_NO_USAGE = Usage()


def cache_key(
    messages: Sequence[Message], temperature: float | None, max_tokens: int | None, force_model: str | None,
    version: int, tools: Sequence[Tool] = (), tool_choice: str = "auto", response_format: Any = None,
) -> str:
    key: list[Any] = [[_canonical(m) for m in messages], temperature, max_tokens, force_model, version]
    if tools or tool_choice != "auto" or response_format is not None:
        # a plain answer must never come back for a tool call or a structured one, nor a dict for a class
        key.append([[t.name, t.description, t.parameters] for t in tools])
        key.append(tool_choice)
        key.append(_format_key(response_format))
    canonical = json.dumps(key, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _format_key(response_format: Any) -> object:
    if isinstance(response_format, type):  # the class decides what `parsed` is, beyond its schema
        return [f"{response_format.__module__}.{response_format.__qualname__}", response_schema(response_format)]
    return response_format


def _canonical(m: Message) -> object:
    # A plain text message keys as it always has; parts and tool fields as the message's JSON.
    if type(m.content) is str and not (m.tool_calls or m.tool_call_id or m.name or m.is_error):
        return [m.role, m.content]
    return m.model_dump(mode="json", exclude_defaults=True)


class ResultCache:
    __slots__ = ("max_size", "ttl", "_clock", "_entries")

    def __init__(self, max_size: int, ttl: float, clock: Callable[[], float]) -> None:
        self.max_size, self.ttl, self._clock = max_size, ttl, clock
        self._entries: OrderedDict[str, tuple[float, LLMResult]] = OrderedDict()

    def get(self, key: str) -> LLMResult | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, result = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return result

    def put(self, key: str, result: LLMResult) -> None:
        stored = result.model_copy(
            update={"cache_hit": True, "usage": _NO_USAGE, "cost": _ZERO, "saved_cost": result.cost, "attempts": []}
        )
        self._entries[key] = (self._clock() + self.ttl, stored)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
