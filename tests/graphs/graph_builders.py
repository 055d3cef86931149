"""Small builders shared by the graph tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from graphs import GraphOrchestrator
from nodes import FunctionNode, Node, Payload, ResultMessage


def text_of(arg: ResultMessage | list[ResultMessage] | Payload) -> str:
    if isinstance(arg, Payload):
        return arg.text
    if isinstance(arg, list):
        return "+".join(r.content for r in arg)
    return arg.content


def tag(node_id: str) -> FunctionNode:
    """A node that appends its id to its input text: a chain a → b → c yields `x.a.b.c`."""
    return FunctionNode(node_id, fn=lambda arg: f"{text_of(arg)}.{node_id}")


def build(
    edges: Iterable[tuple[str, str] | tuple[str, str, Any]],
    nodes: Iterable[Node] = (),
    **settings: Any,
) -> GraphOrchestrator:
    """An orchestrator with the given nodes, plus a `tag` node for every other id the edges name."""
    orchestrator = GraphOrchestrator(**settings)
    given = {node.id: node for node in nodes}
    edges = list(edges)
    for edge in edges:
        for node_id in edge[:2]:
            if node_id not in given:
                given[node_id] = tag(node_id)
    for node in given.values():
        orchestrator.add_node(node)
    for edge in edges:
        orchestrator.connect(*edge)
    return orchestrator


def raising(message: str = "boom") -> Callable[[Any], Any]:
    def fn(arg: Any) -> Any:
        raise RuntimeError(message)

    return fn
