"""Tools a model may call: `Tool`, built from a typed function, a dict, or given as is.

A function becomes a tool by its signature: the docstring is the description, the parameters become a
JSON schema through pydantic (a parameter without a default is required). Everything a wire needs is
`name`, `description` and `parameters` (an object schema); `fn` is kept only so that the tool loop can
run the function. Every problem is an `InvalidRequest` naming the tool, raised before any request.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PydanticSchemaGenerationError, ValidationError, create_model

from amaos_llm.errors import InvalidRequest

TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
TOOL_CHOICES = ("auto", "required", "none")
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class Tool(BaseModel):
    """A tool as the model sees it. `fn`, when set, is the function `run_tools` calls."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(EMPTY_PARAMETERS))
    fn: Callable[..., Any] | None = Field(default=None, exclude=True, repr=False)
    # pydantic model of the function's parameters: validates the arguments a model sends
    arguments_model: type[BaseModel] | None = Field(default=None, exclude=True, repr=False)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None) -> Tool:
        """The tool a typed function stands for; `*args`, `**kwargs` and unannotated parameters are refused."""
        tool_name = name or getattr(fn, "__name__", "")
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except (NameError, TypeError) as exc:
            raise InvalidRequest(f"tool {tool_name!r}: annotations not resolvable: {exc}") from None
        fields: dict[str, Any] = {}
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                star = "*" if param.kind is param.VAR_POSITIONAL else "**"
                raise InvalidRequest(f"tool {tool_name!r}: {star}{param.name}: a tool takes named parameters only")
            if param.name not in hints:
                raise InvalidRequest(f"tool {tool_name!r}: parameter {param.name!r} has no type annotation")
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints[param.name], default)
        try:
            model = create_model(f"{tool_name}_arguments", **fields)
            schema = model.model_json_schema()
        except (PydanticSchemaGenerationError, TypeError) as exc:
            raise InvalidRequest(f"tool {tool_name!r}: parameters have no JSON schema: {exc}") from None
        schema.pop("title", None)
        tool = cls(name=tool_name, description=inspect.getdoc(fn) or "", parameters=schema, fn=fn,
                   arguments_model=model)
        check_tool(tool)
        return tool

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tool:
        """OpenAI's `{"type": "function", "function": {name, description, parameters}}` or Tool's fields."""
        if data.get("type") == "function" and isinstance(data.get("function"), Mapping):
            data = data["function"]
        unknown = set(data) - {"name", "description", "parameters"}
        if unknown:
            raise InvalidRequest(f"tool {data.get('name')!r}: unknown keys {sorted(unknown)}")
        try:
            tool = cls.model_validate(dict(data))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise InvalidRequest(f"tool {data.get('name')!r}: {where}: {err['msg']}") from None
        check_tool(tool)
        return tool

    def check_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments validated against the function's signature (as given for a schema-only tool).
        Raises `pydantic.ValidationError` when they do not fit."""
        if self.arguments_model is None:
            return dict(arguments)
        return self.arguments_model.model_validate(dict(arguments)).model_dump()


def check_tool(tool: Tool) -> None:
    if not TOOL_NAME.match(tool.name):
        raise InvalidRequest(f"tool {tool.name!r}: name must match {TOOL_NAME.pattern}")
    if tool.parameters.get("type") != "object":
        raise InvalidRequest(f"tool {tool.name!r}: parameters must be an object JSON schema (type: object)")


def as_tools(tools: Iterable[Tool | Callable[..., Any] | Mapping[str, Any]] | None) -> list[Tool]:
    """Tools from `Tool`s, typed functions and dicts, in order; names must be unique."""
    if tools is None:
        return []
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
        raise InvalidRequest(f"tools: must be a list of tools, got {type(tools).__name__}")
    out: list[Tool] = []
    seen: set[str] = set()
    for i, item in enumerate(tools):
        if isinstance(item, Tool):
            check_tool(item)
            tool = item
        elif isinstance(item, Mapping):
            tool = Tool.from_dict(item)
        elif callable(item):
            tool = Tool.from_function(item)
        else:
            raise InvalidRequest(f"tools[{i}]: must be a Tool, a function or a dict, got {type(item).__name__}")
        if tool.name in seen:
            raise InvalidRequest(f"tools[{i}]: duplicate tool name {tool.name!r}")
        seen.add(tool.name)
        out.append(tool)
    return out


def check_tool_choice(choice: Any, tools: Sequence[Tool]) -> None:
    """`auto`, `required`, `none`, or the name of one of `tools`; forcing needs tools."""
    if choice in ("auto", "none"):
        return
    if not isinstance(choice, str):
        raise InvalidRequest(f"tool_choice: must be 'auto', 'required', 'none' or a tool name, got {choice!r}")
    if not tools:
        raise InvalidRequest(f"tool_choice: {choice!r} needs tools, none given")
    if choice != "required" and choice not in {t.name for t in tools}:
        raise InvalidRequest(
            f"tool_choice: {choice!r} is not a tool; tools: {', '.join(t.name for t in tools)}"
        )
