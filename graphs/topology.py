"""The graph's shape: nodes, edges, their validation, and the plan a run executes.

Every check happens here, when a node is added or an edge connected, so that a run never meets a
malformed graph. `compile()` turns the shape into a `Plan`: per node, the edges it feeds and the
number of inputs it waits for, indexed by position so the run loop does list lookups only.

Loops: a cycle is accepted only when one of its nodes sets `max_iterations`. That node is the
loop head; the edges into it from inside the loop are *back edges*. Each message on a back edge
runs the head again (at most `max_iterations` times in all) and re-arms the loop's other nodes.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from pydantic import ValidationError

from amaos_llm.yaml_source import config_error
from graphs.errors import TopologyError
from nodes import Condition, Node, NodeStats, Predicate, ResultMessage, RouterNode, TaskMessage

When = Condition | str | Mapping[str, Any] | Callable[[ResultMessage], bool] | None


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    when: Condition | Callable[[ResultMessage], bool] | None = None

    @property
    def label(self) -> str | None:
        """A short text for diagrams: the route name, the condition, or `fn` for a callable."""
        if self.when is None:
            return None
        if isinstance(self.when, Condition):
            data = self.when.to_data()
            return str(data["route"]) if list(data) == ["route"] else ", ".join(f"{k}: {v}" for k, v in data.items())
        return getattr(self.when, "__name__", "fn")


@dataclass(frozen=True, slots=True)
class Out:
    """One outgoing edge, compiled: destination index, its input slot there, its predicate."""

    dst: int
    slot: int  # position among dst's forward inputs (inputs arrive in connect order); -1: back edge
    test: Predicate | None
    back: bool


@dataclass(frozen=True, slots=True)
class LoopMember:
    """A node inside a loop, and its input slots fed from inside the loop (re-armed each lap)."""

    index: int
    inner_slots: tuple[int, ...]


@dataclass(slots=True)
class Step:
    """One node, compiled."""

    index: int
    node_id: str
    node: Node
    handle: Callable[[TaskMessage], Any]
    stats: NodeStats
    n_inputs: int  # forward in-edges awaited before the first firing
    outs: tuple[Out, ...] = ()
    timeout: float | None = None
    max_iterations: int | None = None
    accepts_errors: bool = False
    loop_body: tuple[LoopMember, ...] = ()  # for a loop head: the nodes to re-arm on each lap
    budget_usd: float | None = None  # what the node may spend per run (an LLM node's `budget_usd`)
    # The one successor, when this node's only edge is unconditional into a node with no other
    # input: the run loop hands the result straight on (-1: take the general path).
    next_only: int = -1


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...]
    index: Mapping[str, int]
    roots: tuple[int, ...]
    leaves: tuple[str, ...]
    node_ids: tuple[str, ...]
    linear: bool  # one chain, no loop: runs inline in the caller's task, no task group needed
    budgeted: bool = False  # some node caps its own spend per run: every run keeps ledgers for its tasks
    # Per step, the arrays each run copies to count inputs still awaited and firings so far.
    n_inputs: array[int] = field(default_factory=lambda: array("q"))
    zeros: array[int] = field(default_factory=lambda: array("q"))


@dataclass
class Topology:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

    def add_node(self, node: Node) -> None:
        if not isinstance(node, Node):
            raise TopologyError(f"expected a Node, got {type(node).__name__}")
        if node.id in self.nodes:
            raise TopologyError(f"duplicate node id {node.id!r}", field="id")
        self.nodes[node.id] = node
        self.graph.add_node(node.id)

    def add_edge(self, src: str, dst: str, when: When = None) -> Edge:
        for end, name in (("from", src), ("to", dst)):
            if name not in self.nodes:
                known = ", ".join(self.nodes) or "(none)"
                raise TopologyError(f"unknown node {name!r}; known nodes: {known}", field=end)
        if self.graph.has_edge(src, dst):
            raise TopologyError(f"{src!r} is already connected to {dst!r}", field="to")
        source, target = self.nodes[src], self.nodes[dst]
        _check_types(source, target)
        if target.max_inputs is not None and self.graph.in_degree(dst) >= target.max_inputs:
            raise TopologyError(f"{dst!r} ({target.type_name}) takes at most {target.max_inputs} input", field="to")
        edge = Edge(src, dst, _condition(when, source))
        self.graph.add_edge(src, dst)
        try:
            _check_cycles(self.graph, self.nodes, src, dst)
        except TopologyError:
            self.graph.remove_edge(src, dst)
            raise
        self.edges.append(edge)
        return edge

    def compile(self) -> Plan:
        ids = list(self.nodes)
        index = {node_id: i for i, node_id in enumerate(ids)}
        back = _back_edges(self.graph, self.nodes)
        n_inputs: dict[str, int] = dict.fromkeys(ids, 0)
        slot_of: dict[tuple[str, str], int] = {}
        outs: dict[str, list[Out]] = {node_id: [] for node_id in ids}
        for edge in self.edges:
            key = (edge.src, edge.dst)
            if key in back:
                slot = -1
            else:
                slot = slot_of[key] = n_inputs[edge.dst]
                n_inputs[edge.dst] += 1
            test = edge.when.compile() if isinstance(edge.when, Condition) else edge.when
            outs[edge.src].append(Out(index[edge.dst], slot, test, key in back))
        steps = tuple(
            Step(
                index=i, node_id=node_id, node=node, handle=node.handle, stats=node.stats,
                n_inputs=n_inputs[node_id], outs=tuple(outs[node_id]), timeout=node.timeout,
                max_iterations=node.max_iterations, accepts_errors=node.accepts_errors,
                loop_body=_loop_body(self.graph, node_id, back, index, slot_of),
                budget_usd=getattr(node.config, "budget_usd", None),
            )
            for i, (node_id, node) in enumerate(self.nodes.items())
        )
        for step in steps:
            if len(step.outs) == 1:
                (out,) = step.outs
                if out.test is None and not out.back and steps[out.dst].n_inputs == 1:
                    step.next_only = out.dst
        roots = tuple(s.index for s in steps if s.n_inputs == 0)
        leaves = tuple(n for n in ids if self.graph.out_degree(n) == 0)
        linear = len(roots) == 1 and not back and all(len(s.outs) <= 1 for s in steps)
        n_inputs = array("q", [s.n_inputs for s in steps])
        budgeted = any(step.budget_usd is not None for step in steps)
        return Plan(steps, index, roots, leaves, tuple(ids), linear, budgeted, n_inputs,
                    array("q", bytes(8 * len(steps))))


def _check_types(source: Node, target: Node) -> None:
    out, accepted = source.output_type, target.input_type
    if out is Any or accepted is Any or out == accepted:
        return
    try:
        fits = issubclass(out, accepted)
    except TypeError:  # typing constructs (list[str], unions): only equality counts
        fits = False
    if not fits:
        raise TopologyError(
            f"type mismatch: {source.id!r} outputs {_type_name(out)} but {target.id!r} accepts {_type_name(accepted)}",
            field="to",
        )


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp)


def _condition(when: When, source: Node) -> Condition | Callable[[ResultMessage], bool] | None:
    if when is None or isinstance(when, Condition):
        cond = when
    elif isinstance(when, str):
        cond = Condition(route=when)
    elif isinstance(when, Mapping):
        try:
            cond = Condition.model_validate(when)
        except ValidationError as exc:
            raise TopologyError(f"invalid condition: {config_error(exc, Condition)}", field="when") from None
    elif callable(when):
        return when
    else:
        raise TopologyError(f"`when` must be a condition, a route name or a callable, not {type(when).__name__}",
                            field="when")
    if cond is not None and cond.route is not None:
        routes = source.route_names if isinstance(source, RouterNode) else None
        if routes is None:
            raise TopologyError(f"`when` names route {cond.route!r}, but {source.id!r} is not a router",
                                field="when")
        if cond.route not in routes:
            raise TopologyError(f"router {source.id!r} has no route {cond.route!r}; its routes: {', '.join(routes)}",
                                field="when")
    return cond


def _back_edges(graph: nx.DiGraph, nodes: Mapping[str, Node]) -> set[tuple[str, str]]:
    back = set()
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1:
            (only,) = component
            if graph.has_edge(only, only) and nodes[only].max_iterations:
                back.add((only, only))
            continue
        for head in component:
            if nodes[head].max_iterations:
                back.update((src, head) for src in graph.predecessors(head) if src in component)
    return back


def _check_cycles(graph: nx.DiGraph, nodes: Mapping[str, Node], src: str, dst: str) -> None:
    forward = graph.copy()
    forward.remove_edges_from(_back_edges(graph, nodes))
    if nx.is_directed_acyclic_graph(forward):
        return
    cycle = [a for a, _ in nx.find_cycle(forward)]
    path = " → ".join([*cycle, cycle[0]])
    raise TopologyError(
        f"edge {src!r} → {dst!r} closes a cycle ({path}); set max_iterations on one of its nodes to allow a loop",
        field="to",
    )


def _loop_body(
    graph: nx.DiGraph,
    head: str,
    back: set[tuple[str, str]],
    index: Mapping[str, int],
    slot_of: Mapping[tuple[str, str], int],
) -> tuple[LoopMember, ...]:
    if not any(dst == head for _, dst in back):
        return ()
    component = next(c for c in nx.strongly_connected_components(graph) if head in c)
    body = []
    for node_id in component:
        if node_id == head:
            continue
        inner = tuple(
            slot_of[(p, node_id)] for p in graph.predecessors(node_id) if p in component and (p, node_id) not in back
        )
        body.append(LoopMember(index[node_id], inner))
    return tuple(sorted(body, key=lambda m: m.index))
