"""YAML loading that remembers where each value came from, so errors can say `file:line: field`.

Shared by the manager's config and the graph pipelines: both validate with pydantic and turn the
first `ValidationError` into a `ConfigError` pointing at the offending line.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from amaos_llm.errors import ConfigError

Loc = tuple[str | int, ...]


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

    def __init__(self, path: str, data: Any, root: Any) -> None:
        self.path, self.data, self._root = path, data, root

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        import yaml

        node, line = self._root, None
        for part in loc:
            if node is None:
                break
            line = node.start_mark.line + 1
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
                if node is None:  # point at the key itself when the value is missing
                    return line
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
            else:
                break
        return node.start_mark.line + 1 if node is not None else line

    def error(self, loc: Sequence[str | int], message: str) -> ConfigError:
        return ConfigError(message, path=self.path, line=self.line_of(loc), field=format_loc(loc) or None)


def load_yaml(path: str | Path) -> YamlDocument:
    """Parse `path` with the safe loader. Syntax errors become a `ConfigError` with the line."""
    import yaml

    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", path=path, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path) from None
    return YamlDocument(path, data, root)


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
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        elif isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        if current is None:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """`X | None` → `X`, so optional sub-models are walked too."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp
