"""Declarative conditions on a `ResultMessage`: edge `when:` clauses and router routes.

A condition names a field of the result (default `content`; dotted paths reach into `usage`
and `data`) and exactly one test, or combines conditions::

    {contains: "yes"}                      {regex: "^\\d+$"}        {equals: "stop"}
    {field: error, is_null: true}          {field: data.score, one_of: [1, 2]}
    {route: positive}                      # the route a RouterNode chose
    {all: [...]}  {any: [...]}  {not: {...}}

Nothing from a file is ever evaluated as code: a condition is data, compiled once into a small
predicate when the graph is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nodes.messages import ResultMessage

Predicate = Callable[[ResultMessage], bool]

TESTS = ("equals", "contains", "regex", "is_null", "one_of")
COMBINATORS = ("all", "any", "not_")


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    field: str = "content"
    route: str | None = None
    equals: Any = None
    contains: str | None = None
    regex: str | None = None
    is_null: bool | None = None
    one_of: list[Any] | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None
    not_: Condition | None = Field(default=None, alias="not")

    @field_validator("regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        given = [name for name in ("route", *TESTS, *COMBINATORS) if name in self.model_fields_set]
        if len(given) != 1:
            names = ", ".join(("route", *TESTS, "all", "any", "not"))
            found = f"got {', '.join(n.rstrip('_') for n in given)}" if given else "got none"
            raise ValueError(f"a condition needs exactly one of: {names} ({found})")
        if "field" in self.model_fields_set and given[0] in ("route", *COMBINATORS):
            raise ValueError(f"`field` does not apply to `{given[0].rstrip('_')}`")
        return self

    def to_data(self) -> dict[str, Any]:
        """The YAML form (what `Condition.model_validate` reads back)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def compile(self) -> Predicate:
        """A predicate for the hot loop: attribute lookups and comparisons, nothing else."""
        fs = self.model_fields_set
        if "route" in fs:
            route = self.route
            return lambda r: r.route == route
        if "all" in fs:
            parts = [c.compile() for c in self.all or ()]
            return lambda r: all(p(r) for p in parts)
        if "any" in fs:
            parts = [c.compile() for c in self.any or ()]
            return lambda r: any(p(r) for p in parts)
        if "not_" in fs:
            inner = self.not_.compile()  # type: ignore[union-attr]
            return lambda r: not inner(r)
        get = field_getter(self.field)
        if "is_null" in fs:
            want_null = self.is_null
            return lambda r: (get(r) is None) is want_null
        if "equals" in fs:
            expected = self.equals
            return lambda r: get(r) == expected
        if "contains" in fs:
            needle = self.contains or ""
            return lambda r: needle in _text(get(r))
        if "one_of" in fs:
            options = list(self.one_of or ())
            return lambda r: get(r) in options
        pattern = re.compile(self.regex or "")
        return lambda r: pattern.search(_text(get(r))) is not None


def field_getter(path: str) -> Callable[[ResultMessage], Any]:
    """`content`, `error`, `usage.total_tokens`, `data.score`... → a function reading it (None if absent)."""
    head, *rest = path.split(".")
    if not rest:
        return lambda r: getattr(r, head, None)

    def get(result: ResultMessage) -> Any:
        value: Any = getattr(result, head, None)
        for part in rest:
            if isinstance(value, dict):
                value = value.get(part)
            else:
                value = getattr(value, part, None)
            if value is None:
                return None
        return value

    return get


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)
