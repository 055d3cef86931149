"""LLMManagerNode inside a graph: model metadata and exact costs reach downstream nodes and totals."""

from decimal import Decimal

import pytest

from amaos_llm import LLMManager
from graphs import GraphOrchestrator
from nodes import FunctionNode, LLMManagerNode, OutputNode, PromptTemplateNode

pytestmark = pytest.mark.anyio


def model(reply, input_tokens, output_tokens, seen=None):
    def fn(messages, **params):
        if seen is not None:
            seen.append((messages, params))
        return {"content": reply, "input_tokens": input_tokens, "output_tokens": output_tokens}
    return fn


def manager(reply="summary", input_tokens=200, output_tokens=50, seen=None):
    m = LLMManager(models=[])
    m.register_model("fake", model(reply, input_tokens, output_tokens, seen),
                     cost_per_1k_input=Decimal("0.5"), cost_per_1k_output=Decimal("1.5"))
    return m


async def test_the_issue_example_shouts_the_llm_answer_with_its_cost():
    orchestrator = GraphOrchestrator()
    await orchestrator.initialize()
    seen = []
    await orchestrator.register_node(LLMManagerNode(id="main_llm", name="Main LLM", manager=manager(seen=seen)))
    received = []
    await orchestrator.register_node(FunctionNode(id="shout", fn=lambda r: received.append(r) or r.content.upper()))
    orchestrator.connect("main_llm", "shout")
    run = await orchestrator.run({"main_llm": "Summarise: ..."})

    assert run.outputs["shout"].content == "SUMMARY"
    # 200/1000 × 0.5 + 50/1000 × 1.5 = 0.1 + 0.075
    assert run.total_cost == Decimal("0.175")
    assert run.total_tokens == 250
    assert run.cost_by_node == {"main_llm": Decimal("0.175"), "shout": Decimal(0)}
    upstream = received[0]
    assert (upstream.model_name, upstream.provider, upstream.usage.input_tokens, upstream.usage.output_tokens,
            upstream.cost) == ("fake", "callable", 200, 50, Decimal("0.175"))
    assert upstream.latency > 0
    assert seen[0][0][-1].content == "Summarise: ..."


async def test_each_llm_call_is_counted_once_however_many_nodes_pass_it_on():
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(LLMManagerNode("llm", manager=manager()))
    orchestrator.add_node(FunctionNode("same", fn=lambda r: r))
    orchestrator.add_node(OutputNode("out"))
    orchestrator.connect("llm", "same")
    orchestrator.connect("same", "out")
    run = await orchestrator.run("x")
    assert (run.total_cost, run.total_tokens) == (Decimal("0.175"), 250)
    assert run.outputs["out"].content == "summary"


async def test_per_run_overrides_reach_a_model_behind_a_template():
    seen = []
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(PromptTemplateNode("prompt", config={"template": "Summarise: {input}"}))
    orchestrator.add_node(LLMManagerNode("llm", config={"temperature": 0.9}, manager=manager(seen=seen)))
    orchestrator.connect("prompt", "llm")
    await orchestrator.run({"prompt": "the text", "temperature": 0.0, "max_tokens": 9})
    messages, params = seen[0]
    assert messages[-1].content == "Summarise: the text"
    assert (params["temperature"], params["max_tokens"]) == (0.0, 9)


async def test_two_llm_branches_add_up_exactly():
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(LLMManagerNode("a", manager=manager("A", 1000, 0)))
    orchestrator.add_node(LLMManagerNode("b", manager=manager("B", 0, 1000)))
    orchestrator.add_node(FunctionNode("join", fn=lambda rs: "+".join(r.content for r in rs)))
    orchestrator.connect("a", "join")
    orchestrator.connect("b", "join")
    run = await orchestrator.run("x")
    assert run.outputs["join"].content == "A+B"
    assert run.cost_by_node == {"a": Decimal("0.5"), "b": Decimal("1.5"), "join": Decimal(0)}
    assert run.total_cost == Decimal("2.0")


async def test_a_failed_llm_call_is_an_error_result_not_a_crash():
    def down(messages, **params):
        raise ConnectionError("refused")

    m = LLMManager(models=[])
    m.register_model("fake", down, max_retries=0)
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(LLMManagerNode("llm", manager=m))
    orchestrator.add_node(OutputNode("out"))
    orchestrator.connect("llm", "out")
    run = await orchestrator.run("x")
    assert list(run.errors) == ["llm"]
    assert run.results["llm"].attempts[0].outcome == "error"
    assert run.outputs["out"].error.startswith("upstream 'llm' failed: all models failed")


async def test_llm_node_over_real_http_sends_overrides_and_carries_real_usage_downstream(
    tmp_path, monkeypatch, openai_fake, anthropic_fake
):
    """YAML model config → LLMManagerNode → official SDKs → fakes on 127.0.0.1: the fallback, the
    wire's token counts and the exact cost all reach the downstream node."""
    openai_fake.fail(500)
    anthropic_fake.reply = "three word answer"
    config = tmp_path / "models.yaml"
    config.write_text(
        "defaults: {max_retries: 0}\n"
        "models:\n"
        f"  - {{name: first, provider: openai, model: test-model, base_url: '{openai_fake.url}',"
        " api_key_env: AMAOS_TEST_KEY, priority: 2}\n"
        f"  - {{name: second, provider: anthropic, model: test-model, base_url: '{anthropic_fake.url}',"
        " api_key_env: AMAOS_TEST_KEY, priority: 1, cost_per_1k_input: 2, cost_per_1k_output: 4}\n"
    )
    monkeypatch.setenv("AMAOS_TEST_KEY", "sk-test-graph-key")
    orchestrator = GraphOrchestrator()
    orchestrator.add_node(LLMManagerNode("llm", config={"config_path": str(config), "max_tokens": 9}))
    received = []
    orchestrator.add_node(FunctionNode("after", fn=lambda r: received.append(r) or "done"))
    orchestrator.connect("llm", "after")
    async with orchestrator:
        run = await orchestrator.run({"prompt": "one two three four", "temperature": 0.0})
    upstream = received[0]
    assert [(a.model_name, a.outcome) for a in upstream.attempts] == [("first", "error"), ("second", "success")]
    assert (upstream.model_name, upstream.provider, upstream.content) == ("second", "anthropic", "three word answer")
    assert (upstream.usage.input_tokens, upstream.usage.output_tokens) == (4, 3)
    assert upstream.cost == Decimal("0.02")  # 4/1000 × 2 + 3/1000 × 4
    assert (run.total_cost, run.total_tokens) == (Decimal("0.02"), 7)
    assert anthropic_fake.requests[0].body["temperature"] == 0.0
    assert anthropic_fake.requests[0].body["max_tokens"] == 9


async def test_a_streaming_node_tells_observers_each_token_and_passes_one_result_on():
    async def pieces(messages, **params):
        for part in ("sum", "ma", "ry"):
            yield part

    m = LLMManager(models=[])
    m.register_model("fake", pieces)
    orchestrator = GraphOrchestrator()
    await orchestrator.initialize()
    await orchestrator.register_node(LLMManagerNode(id="llm", config={"stream": True}, manager=m))
    await orchestrator.register_node(FunctionNode(id="shout", fn=lambda r: r.content.upper()))
    orchestrator.connect("llm", "shout")
    events = []
    orchestrator.subscribe(events.append)
    run = await orchestrator.run({"llm": "Summarise"})
    assert run.outputs["shout"].content == "SUMMARY"
    tokens = [(e.node_id, e.text) for e in events if e.kind == "token"]
    assert tokens == [("llm", "sum"), ("llm", "ma"), ("llm", "ry")]
    assert all(e.task_id and e.run_id == run.run_id for e in events if e.kind == "token")


async def test_a_streaming_node_restarts_on_another_model_and_says_so():
    async def cut(messages, **params):
        yield "partial"
        raise RuntimeError("connection lost")

    m = LLMManager(models=[])
    m.register_model("first", cut, priority=2)
    m.register_model("second", model("whole", 1, 1), priority=1)
    orchestrator = GraphOrchestrator()
    await orchestrator.register_node(
        LLMManagerNode(id="llm", config={"stream": True, "mid_stream": "restart"}, manager=m))
    events = []
    orchestrator.subscribe(events.append)
    async with orchestrator:
        run = await orchestrator.run({"llm": "hi"})
    assert [(e.kind, e.text) for e in events if e.kind in ("token", "stream_reset")] == [
        ("token", "partial"), ("stream_reset", ""), ("token", "whole")]
    assert run.outputs["llm"].content == "whole" and run.outputs["llm"].model_name == "second"
