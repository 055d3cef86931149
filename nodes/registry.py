"""Which node `type` names a pipeline may use: the built-ins plus `amaos.nodes` entry points.

A YAML file names a type, never an import path: a plugin package declares, in its
pyproject.toml, ``[project.entry-points."amaos.nodes"] my_type = "my_pkg.nodes:MyNode"``.
"""

from __future__ import annotations

from functools import cache

from amaos_llm import ConfigError
from nodes.base import Node
from nodes.flow import JoinNode, RouterNode
from nodes.llm import LLMManagerNode
from nodes.text import InputNode, OutputNode, PromptTemplateNode

ENTRY_POINT_GROUP = "amaos.nodes"

_BUILTINS: dict[str, type[Node]] = {
    cls.type_name: cls for cls in (InputNode, PromptTemplateNode, LLMManagerNode, RouterNode, JoinNode, OutputNode)
}
_registered: dict[str, type[Node]] = {}


@cache
def _plugins() -> dict[str, type[Node]]:
    from importlib.metadata import entry_points

    found: dict[str, type[Node]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTINS:
            continue  # a plugin cannot shadow a built-in
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Node)):
            raise ConfigError(f"entry point {ep.name!r} ({ep.value}) is not a Node subclass")
        found[ep.name] = cls
    return found


def register_node_type(cls: type[Node], name: str | None = None) -> type[Node]:
    """Make `cls` loadable from YAML as `name` (default `cls.type_name`) in this process.

    Usable as a class decorator; entry points are the way for installed packages.
    """
    name = name or cls.type_name
    if not name:
        raise ValueError(f"{cls.__name__} has no type_name")
    if name in _BUILTINS and _BUILTINS[name] is not cls:
        raise ValueError(f"node type {name!r} is built in")
    _registered[name] = cls
    return cls


def known_node_types() -> list[str]:
    return sorted({*_BUILTINS, *_registered, *_plugins()})


def node_class(type_name: str) -> type[Node]:
    cls = _BUILTINS.get(type_name) or _registered.get(type_name)
    if cls is None:
        cls = _plugins().get(type_name)  # entry points are read only for a name not built in
    if cls is not None:
        return cls
    if type_name == "function":
        raise ConfigError(
            "`function` nodes wrap a Python callable and cannot be loaded from YAML; "
            f"register a node type under the {ENTRY_POINT_GROUP!r} entry points; known types: "
            + ", ".join(known_node_types())
        )
    raise ConfigError(f"unknown node type {type_name!r}; known types: {', '.join(known_node_types())}")
