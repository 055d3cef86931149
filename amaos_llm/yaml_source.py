"""YAML loading that remembers where each value came from, so errors can say `file:line: field`.

Shared by the manager's config and the graph pipelines: both validate with pydantic and turn the
first `ValidationError` into a `ConfigError` pointing at the offending line.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from amaos_llm.errors import ConfigError

Loc = tuple[str | int, ...]
MERGE_TAG = "tag:yaml.org,2002:merge"  # the `<<` key


class FieldError(ValueError):
    """A validator's complaint about a field other than the one being validated (e.g. a
    duplicate name found by a whole-config check); `loc` is relative to the validated model."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


def format_loc(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class YamlDocument:
    """A parsed YAML file plus the node tree, to find the line of any value by its path."""

    def __init__(self, path: str, data: Any, root: Any, aliases: frozenset[int] = frozenset()) -> None:
        self.path, self.data, self._root = path, data, root
        self._aliases = aliases  # ids of the nodes that stand where an alias (`*name`) was written

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the value at `loc`, or of the closest enclosing value when `loc` goes missing.

        A value reached through an alias (`key: *name`, `<<: *name`) is placed where the alias is
        used, not at its anchor: the anchor may serve many entries, and the reader fixes this one."""
        node = self._root
        if node is None:
            return None
        for part in loc:
            child = self._child(node, part)
            if child is None:
                break  # the value is missing: point at the mapping (or list) that lacks it
            node, alias_mark = child
            if alias_mark is not None:
                return alias_mark.line + 1
        return node.start_mark.line + 1

    def _child(self, node: Any, part: str | int) -> tuple[Any, Any] | None:
        """`(child node, mark of the alias it was reached through or None)`, or None if absent."""
        import yaml

        if isinstance(node, yaml.SequenceNode):
            if isinstance(part, int) and 0 <= part < len(node.value):
                item = node.value[part]
                return item, self._alias_mark(item)
            return None
        if not isinstance(node, yaml.MappingNode):
            return None
        for key, value in node.value:
            if key.tag != MERGE_TAG and getattr(key, "value", None) == part:
                return value, self._alias_mark(value)
        for key, value in node.value:  # keys written in the mapping win over merged ones
            if key.tag != MERGE_TAG:
                continue
            sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
            for source in sources:  # the first merge that has the key wins, as in PyYAML
                found = self._child(source, part)
                if found is not None:
                    return found[0], self._alias_mark(value) or self._alias_mark(source) or found[1]
        return None

    def _alias_mark(self, node: Any) -> Any:
        return node.start_mark if id(node) in self._aliases else None

    def error(self, loc: Sequence[str | int], message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line_of(loc), field=format_loc(loc) or None)


def load_yaml(path: str | Path) -> YamlDocument:
    """Parse `path` with the safe loader. Syntax errors and a key written twice in one mapping
    (which YAML would settle silently, the last one winning) become a `ConfigError` with the line."""
    import yaml

    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    try:
        root, aliases = _compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path) from None
    duplicate = _duplicate_key(root, (), aliases)
    if duplicate is not None:
        loc, first, again = duplicate
        raise ConfigError(
            f"duplicate key {again.value!r} (first at line {first.start_mark.line + 1})",
            path=path, line=again.start_mark.line + 1, field=format_loc(loc),
        )
    return YamlDocument(path, data, root, aliases)


def _compose(text: str) -> tuple[Any, frozenset[int]]:
    """The node tree, with each alias standing as a copy of its anchor's node that carries the
    alias's own position (PyYAML shares the anchor's node, so its line would be the anchor's)."""
    import yaml

    aliases: set[int] = set()

    class Composer(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if not self.check_event(yaml.AliasEvent):
                return super().compose_node(parent, index)
            mark = self.peek_event().start_mark
            use = copy.copy(super().compose_node(parent, index))
            use.start_mark = mark
            aliases.add(id(use))
            return use

    loader = Composer(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    return root, frozenset(aliases)


def _duplicate_key(node: Any, loc: Loc, aliases: frozenset[int]) -> tuple[Loc, Any, Any] | None:
    """The first key written twice in one mapping, in document order: `(its loc, first key node,
    second key node)`. Merged keys (`<<:`) may repeat a written key: that is what merging is for."""
    import yaml

    if id(node) in aliases:
        return None  # checked where its anchor is written
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            found = _duplicate_key(item, (*loc, i), aliases)
            if found is not None:
                return found
    elif isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], Any] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:
                if (key.tag, key.value) in first:
                    return (*loc, key.value), first[key.tag, key.value], key
                first[key.tag, key.value] = key
            found = _duplicate_key(value, (*loc, key.value if isinstance(key, yaml.ScalarNode) else "?"), aliases)
            if found is not None:
                return found
    return None


def config_error(
    exc: ValidationError, model: type[BaseModel], doc: YamlDocument | None = None, prefix: Loc = ()
) -> ConfigError:
    """The first validation error as a `ConfigError` (with file and line when `doc` is given)."""
    errors = exc.errors()
    err = errors[0]
    loc: Loc = prefix + tuple(err["loc"])
    message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    original = (err.get("ctx") or {}).get("error")
    if isinstance(original, FieldError):
        loc, message = loc + original.loc, str(original)
    elif err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, tuple(err["loc"])[:-1])
        message = f"unknown key {loc[-1]!r}" + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
    elif err["type"] == "missing":
        message = "required field is missing"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    if doc is None:
        return ConfigError(message, field=format_loc(loc) or None)
    return doc.error(loc, message)


def _allowed_keys(model: Any, loc: Loc) -> list[str]:
    """Walk `loc` through the model's annotations to the model that rejected a key."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, str) and isinstance(current, type) and issubclass(current, BaseModel):
            field = _fields_by_key(current).get(part)
            current = field.annotation if field else None
        elif isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(_fields_by_key(current))
    return []


def _fields_by_key(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields under the key a file writes: the alias where there is one (`not`, not `not_`)."""
    return {field.alias or name: field for name, field in model.model_fields.items()}


def _unwrap(tp: Any) -> Any:
    """`X | None` → `X`, so optional sub-models are walked too."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp
