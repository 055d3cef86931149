"""Run and node budgets: the ledgers each task carries, downgrades within a run, a node's budget
over a loop, a cap shared by many runs, and what a node that nothing fits returns."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amaos_llm import Budget, LLMConfig, LLMManager, Message
from graphs import GraphOrchestrator, RunFailed
from nodes import FunctionNode, LLMManagerNode, Node, ResultMessage, TaskMessage

pytestmark = pytest.mark.anyio
D = Decimal

# $1 per 1k input, $2 per 1k output; every answer is 1 token in, 10 out: $0.021.
CHEAP = {"cost_per_1k_input": 1, "cost_per_1k_output": 2}
REAL = D("0.021")


def answer(text: str) -> Any:
    async def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        return {"content": text, "input_tokens": 1, "output_tokens": 10}
    return fn


def manager(**models: dict[str, Any]) -> LLMManager:
    m = LLMManager(LLMConfig.model_validate({"defaults": {"retry_jitter": 0, "max_retries": 0, "max_tokens": 10}}))
    for name, options in models.items():
        m.register_model(name, answer(name), **options)
    return m


async def worst_case(m: LLMManager, prompt: str, model: str) -> Decimal:
    return next(e.worst_case for e in m.estimate(prompt, max_tokens=10) if e.model_name == model)


class Ledgers(Node):
    """Records the ledgers each of its tasks carries."""

    type_name = "ledgers"

    def __init__(self, id: str, seen: list[tuple[Any, ...]], **config: Any) -> None:
        super().__init__(id)
        self.seen = seen

    async def handle(self, task: TaskMessage) -> ResultMessage:
        self.seen.append(task.budget)
        return task.reply("x")


async def test_without_a_cap_tasks_carry_no_ledger_and_the_run_reports_none():
    seen: list[tuple[Any, ...]] = []
    o = GraphOrchestrator()
    o.add_node(Ledgers("a", seen))
    run = await o.run("x")
    assert seen == [()]
    assert (run.budget_usd, run.budget_remaining, run.downgraded) == (None, None, ())


async def test_each_run_gets_a_fresh_ledger_for_its_cap_and_the_task_dump_leaves_it_out():
    seen: list[tuple[Any, ...]] = []
    o = GraphOrchestrator(budget_usd=0.5)
    o.add_node(Ledgers("a", seen))
    first, second = await o.run("x"), await o.run("x", budget_usd="0.25")
    (one,), (two,) = seen
    assert (one.limit, one.scope, two.limit) == (D("0.5"), "run", D("0.25"))
    assert (first.budget_usd, first.budget_remaining, second.budget_usd) == (D("0.5"), D("0.5"), D("0.25"))


async def test_a_node_budget_is_one_ledger_per_run_kept_across_the_laps_of_a_loop():
    seen: list[tuple[Any, ...]] = []
    llm = LLMManagerNode("llm", config={"budget_usd": 0.3, "max_iterations": 3}, manager=manager(m=CHEAP))
    o = GraphOrchestrator()
    o.add_node(llm)
    o.add_node(Ledgers("b", seen))
    o.connect("llm", "b")
    o.connect("b", "llm")
    first = await o.run("x")
    second = await o.run("x")
    assert first.errors == second.errors == {"llm": "stopped after max_iterations=3: the loop did not exit"}
    assert seen[:3] == [(), (), ()]  # the node without a budget of its own carries none
    # Three laps of $0.021 on one node ledger per run: the second run starts again from $0.3.
    assert first.cost_by_node["llm"] == second.cost_by_node["llm"] == 3 * REAL
    assert (first.budget_usd, second.budget_remaining) == (None, None)


async def test_a_node_budget_stops_a_loop_that_spends_until_nothing_fits():
    m = manager(m=CHEAP)
    worst = await worst_case(m, "x", "m")
    budget = D("0.2")
    llm = LLMManagerNode("llm", config={"budget_usd": float(budget), "max_iterations": 50}, manager=m)
    o = GraphOrchestrator()
    o.add_node(llm)
    o.add_node(FunctionNode("again", fn=lambda r: "x"))
    o.connect("llm", "again", {"field": "error", "is_null": True})  # a failed lap ends the loop
    o.connect("again", "llm")
    run = await o.run("x")
    expected, spent = 0, D(0)
    while spent + worst <= budget:  # a lap is sent while its worst case fits what is left
        expected, spent = expected + 1, spent + REAL
    laps = [r for r in run.trace if r.node_id == "llm"]
    assert 1 < expected < 50
    assert len(laps) == expected + 1  # the last lap is the refusal
    assert run.cost_by_node["llm"] == spent <= budget
    assert run.errors["llm"].startswith("over budget (node): worst case $")
    assert (laps[-1].attempts[0].error or "").startswith("over budget (node): worst case $")
    assert m.get_stats()["budget"] is None  # the node's cap is the run's, not the manager's


async def test_a_run_budget_skips_a_dear_model_for_a_cheap_one_and_reports_the_downgrade():
    m = manager(dear={"priority": 2, "cost_per_1k_input": 10, "cost_per_1k_output": 10},
                cheap={"priority": 1, **CHEAP})
    o = GraphOrchestrator(budget_usd="0.1")
    o.add_node(LLMManagerNode("llm", manager=m))
    o.add_node(FunctionNode("after", fn=lambda r: r.content))
    o.connect("llm", "after")
    run = await o.run("x")
    assert run.outputs["after"].content == "cheap"
    attempts = run.results["llm"].attempts
    assert [(a.model_name, a.outcome) for a in attempts] == [("dear", "skipped"), ("cheap", "success")]
    assert (run.results["llm"].attempts[0].error or "").startswith("over budget (run): worst case $")
    assert run.downgraded == ("llm",)
    assert (run.budget_usd, run.budget_remaining) == (D("0.1"), D("0.1") - REAL)
    roomy = await o.run("x", budget_usd=10)  # a cap of this run only, in place of the orchestrator's
    assert roomy.outputs["after"].content == "dear" and roomy.downgraded == ()


async def test_a_node_nothing_fits_fails_and_the_run_goes_on_unless_fail_fast():
    m = manager(m=CHEAP)
    o = GraphOrchestrator(budget_usd="0.001")
    o.add_node(LLMManagerNode("llm", manager=m))
    o.add_node(FunctionNode("other", fn=lambda r: "still ran"))
    run = await o.run({"llm": "x", "other": "y"})
    assert run.errors["llm"].startswith("over budget (run): worst case $")
    assert run.results["other"].content == "still ran"
    with pytest.raises(RunFailed) as caught:
        await o.run({"llm": "x", "other": "y"}, fail_fast=True)
    assert caught.value.node_id == "llm"


async def test_run_many_total_budget_caps_all_runs_together():
    m = manager(m=CHEAP)
    worst = await worst_case(m, "x", "m")
    o = GraphOrchestrator()
    o.add_node(LLMManagerNode("llm", manager=m))
    total = REAL * 2 + worst - D("0.000001")  # room for two answers, not for a third's worst case
    runs = await o.run_many(["x"] * 5, concurrency=1, total_budget_usd=total)
    assert [r.ok for r in runs] == [True, True, False, False, False]
    assert sum(r.total_cost for r in runs) == 2 * REAL
    assert runs[0].budget_usd == total
    assert runs[-1].budget_remaining == total - 2 * REAL


async def test_run_many_shares_a_given_budget_and_each_run_keeps_its_own_cap():
    shared = Budget("1")
    m = manager(dear={"priority": 2, "cost_per_1k_input": 10, "cost_per_1k_output": 10},
                cheap={"priority": 1, **CHEAP})
    o = GraphOrchestrator(budget_usd="0.1")
    o.add_node(LLMManagerNode("llm", manager=m))
    runs = await o.run_many(["x"] * 3, concurrency=3, total_budget_usd=shared)
    assert [r.outputs["llm"].content for r in runs] == ["cheap"] * 3  # each run's own cap downgrades it
    assert shared.spent == 3 * REAL and shared.reserved == 0


async def test_a_negative_run_budget_is_refused_before_the_run():
    o = GraphOrchestrator()
    o.add_node(FunctionNode("a", fn=lambda r: "x"))
    with pytest.raises(ValueError, match="budget_usd"):
        await o.run("x", budget_usd=-1)
    with pytest.raises(ValueError, match="budget_usd"):
        GraphOrchestrator(budget_usd=-0.5)


async def test_a_streaming_node_spends_from_the_run_budget_too():
    async def pieces(messages: list[Message], **params: Any) -> Any:
        for part in ("che", "ap"):
            yield part

    m = manager(dear={"priority": 2, "cost_per_1k_input": 10, "cost_per_1k_output": 10})
    m.register_model("cheap", pieces, priority=1, **CHEAP)
    o = GraphOrchestrator(budget_usd="0.1")
    o.add_node(LLMManagerNode("llm", config={"stream": True}, manager=m))
    run = await o.run("x")
    assert run.outputs["llm"].content == "cheap"
    assert (run.results["llm"].attempts[0].error or "").startswith("over budget (run): worst case $")
    assert run.downgraded == ("llm",)


async def test_a_tool_loop_node_spends_every_step_from_the_run_budget():
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    steps = iter([{"content": "", "tool_calls": [{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 5}}]},
                  {"content": "seven"}])

    def scripted(messages: list[Message], **params: Any) -> dict[str, Any]:
        return {"input_tokens": 1, "output_tokens": 10, **next(steps)}

    m = manager()
    m.register_model("m", scripted, **CHEAP)
    o = GraphOrchestrator(budget_usd=10)
    o.add_node(LLMManagerNode("llm", manager=m, tools=[add]))
    run = await o.run("add 2 and 5")
    assert run.outputs["llm"].content == "seven"
    assert run.budget_remaining == 10 - 2 * REAL  # both steps were held to the run's ledger
