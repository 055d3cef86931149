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

    def put(self, key: str, result: LLMResult) -> LLMResult:
        """Keep `result` in a hit's form; that form, for a shared cache to keep too."""
        stored = result.model_copy(
            update={"cache_hit": True, "usage": _NO_USAGE, "cost": _ZERO, "saved_cost": result.cost, "attempts": []}
        )
        self.keep(key, stored)
        return stored

    def keep(self, key: str, stored: LLMResult) -> None:
        self._entries[key] = (self._clock() + self.ttl, stored)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class SharedResultCache:
    """The result cache shared by every manager on one Redis (`state: {backend: redis}`): entries
    stored as they are kept here (a hit's form), expiring `ttl` s after they were stored. Checked
    after the process's own cache; a Redis that fails leaves the process cache working alone, with
    a warning (a cache is an optimisation: it never fails a call)."""

    __slots__ = ("_store", "_ttl", "_warned")

    def __init__(self, store: object, ttl: float) -> None:
        self._store, self._ttl, self._warned = store, ttl, False

    async def get(self, key: str) -> LLMResult | None:
        from amaos_llm.errors import StateStoreError

        try:
            raw = await self._store.cache_get(key)  # type: ignore[attr-defined]
        except StateStoreError as exc:
            self._warn(exc)
            return None
        if raw is None:
            return None
        return LLMResult.model_validate(json.loads(raw))

    async def put(self, key: str, stored: LLMResult) -> None:
        from amaos_llm.errors import StateStoreError

        # Decimals as strings: the JSON form of a result gives floats, and a saved cost must stay exact.
        data = json.dumps(stored.model_dump(), default=str, separators=(",", ":"))
        try:
            await self._store.cache_put(key, data, self._ttl)  # type: ignore[attr-defined]
        except StateStoreError as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            import logging

            self._warned = True
            logging.getLogger("amaos_llm").warning("shared result cache unavailable (%s): this process's cache "
                                                   "goes on alone", exc)
