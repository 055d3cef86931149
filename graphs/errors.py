"""The graph layer's exceptions::

    GraphError
    ├── TopologyError       a node or edge the graph cannot accept (unknown or duplicate id,
    │                       cycle without max_iterations, type mismatch, unknown route)
    └── RunFailed           a node failed in a `fail_fast` run; `.result` holds what finished

Problems in a YAML pipeline are `amaos_llm.ConfigError`s instead, naming file, line and field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphs.results import RunResult


class GraphError(Exception):
    """Base of the errors the graph layer raises on purpose."""


class TopologyError(GraphError, ValueError):
    """The graph cannot take this node or edge. `field` says which part of an edge is wrong
    (`from`, `to` or `when`) so a YAML loader can point at it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RunFailed(GraphError):
    """A `fail_fast` run stopped at the first failed node."""

    def __init__(self, node_id: str, error: str, result: RunResult) -> None:
        super().__init__(f"node {node_id!r} failed: {error}")
        self.node_id, self.error, self.result = node_id, error, result
