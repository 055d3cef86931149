from typing import Any

import pytest

from graphs import GraphOrchestrator, TopologyError
from nodes import FunctionNode, InputNode, LLMManagerNode, RouterNode

from .graph_builders import build, tag


def test_connecting_an_unknown_node_names_the_known_ones():
    orchestrator = build([("a", "b")])
    with pytest.raises(TopologyError, match="unknown node 'c'; known nodes: a, b") as caught:
        orchestrator.connect("b", "c")
    assert caught.value.field == "to"


def test_an_unknown_source_is_reported_as_the_from_end():
    with pytest.raises(TopologyError) as caught:
        build([("a", "b")]).connect("x", "a")
    assert caught.value.field == "from"


def test_a_duplicate_node_id_is_rejected():
    orchestrator = build([("a", "b")])
    with pytest.raises(TopologyError, match="duplicate node id 'a'"):
        orchestrator.add_node(tag("a"))


def test_a_cycle_is_rejected_with_its_path():
    orchestrator = build([("a", "b"), ("b", "c")])
    with pytest.raises(TopologyError, match=r"edge 'c' → 'a' closes a cycle \(a → b → c → a\); set max_iterations"):
        orchestrator.connect("c", "a")
    assert [(e.src, e.dst) for e in orchestrator.edges] == [("a", "b"), ("b", "c")]


def test_a_self_loop_is_a_cycle():
    with pytest.raises(TopologyError, match="closes a cycle"):
        build([("a", "a")])


def test_a_cycle_through_a_node_with_max_iterations_is_a_loop():
    head = FunctionNode("a", fn=lambda r: "x", max_iterations=3)
    orchestrator = build([("a", "b"), ("b", "a")], nodes=[head])
    plan = orchestrator.plan
    assert [(o.dst, o.back) for o in plan.steps[plan.index["b"]].outs] == [(plan.index["a"], True)]


def test_a_type_mismatch_is_rejected_when_connected():
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(FunctionNode("f", fn=dict, output_type=dict))
    orchestrator.add_node(LLMManagerNode("llm"))
    with pytest.raises(TopologyError, match="type mismatch: 'f' outputs dict but 'llm' accepts str"):
        orchestrator.connect("f", "llm")


def test_any_fits_every_type():
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(FunctionNode("f", fn=str, output_type=Any))
    orchestrator.add_node(LLMManagerNode("llm"))
    orchestrator.connect("f", "llm")


def test_a_subclass_output_fits_its_base_input():
    class Text(str):
        pass

    orchestrator = GraphOrchestrator()
    orchestrator.add_node(FunctionNode("f", fn=str, output_type=Text))
    orchestrator.add_node(FunctionNode("g", fn=str, input_type=str))
    orchestrator.connect("f", "g")


def test_an_edge_cannot_be_added_twice():
    with pytest.raises(TopologyError, match="'a' is already connected to 'b'"):
        build([("a", "b"), ("a", "b")])


def test_a_route_name_needs_a_router_source():
    with pytest.raises(TopologyError, match="`when` names route 'x', but 'a' is not a router"):
        build([("a", "b", "x")])


def test_an_unknown_route_lists_the_routes():
    router = RouterNode("r", config={"routes": {"yes": {"equals": "y"}}, "default": "no"})
    with pytest.raises(TopologyError, match="router 'r' has no route 'maybe'; its routes: yes, no"):
        build([("r", "b", "maybe")], nodes=[router])


def test_a_router_takes_one_input():
    router = RouterNode("r", config={"routes": {"yes": {"equals": "y"}}})
    with pytest.raises(TopologyError, match="takes at most 1 input"):
        build([("a", "r"), ("b", "r")], nodes=[router])


def test_an_invalid_condition_is_rejected():
    with pytest.raises(TopologyError, match="invalid condition: .*exactly one of"):
        build([("a", "b", {"contains": "x", "equals": "y"})])


def test_a_non_node_is_rejected():
    with pytest.raises(TopologyError, match="expected a Node, got str"):
        GraphOrchestrator().add_node("a")  # type: ignore[arg-type]


def test_the_plan_knows_roots_leaves_and_awaited_inputs():
    plan = build([("a", "c"), ("b", "c"), ("c", "d")]).plan
    assert [plan.steps[i].node_id for i in plan.roots] == ["a", "b"]
    assert plan.leaves == ("d",)
    assert plan.steps[plan.index["c"]].n_inputs == 2
    assert plan.linear is False


def test_a_single_chain_is_planned_to_run_inline():
    assert build([("a", "b"), ("b", "c")]).plan.linear is True


def test_the_plan_is_recompiled_after_a_change():
    orchestrator = build([("a", "b")])
    first = orchestrator.plan
    orchestrator.add_node(InputNode("z"))
    assert orchestrator.plan is not first
