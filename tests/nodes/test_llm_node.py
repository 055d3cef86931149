from decimal import Decimal

import pytest

from amaos_llm import LLMManager, Message
from nodes import LLMManagerNode, Payload, ResultMessage, TaskMessage

pytestmark = pytest.mark.anyio


class Model:
    """A callable model that records what it was sent and reports fixed token counts."""

    def __init__(self, reply="answer", input_tokens=120, output_tokens=30):
        self.reply, self.input_tokens, self.output_tokens = reply, input_tokens, output_tokens
        self.calls: list[tuple[list[Message], dict]] = []

    def __call__(self, messages, **params):
        self.calls.append((messages, params))
        return {"content": self.reply, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens}


def manager_with(model, **prices):
    manager = LLMManager(models=[])
    manager.register_model("fake", model, cost_per_1k_input=prices.get("inp", "0.5"),
                           cost_per_1k_output=prices.get("out", "2"))
    return manager


def task(payload, *inputs):
    return TaskMessage(task_id="r:llm", run_id="r", node_id="llm", payload=payload, inputs=inputs)


async def test_the_result_carries_model_usage_and_exact_cost():
    node = LLMManagerNode("llm", manager=manager_with(Model()))
    await node.initialize()
    out = await node.handle(task(Payload(prompt="hi")))
    # 120/1000 × 0.5 + 30/1000 × 2 = 0.06 + 0.06
    assert (out.content, out.model_name, out.provider) == ("answer", "fake", "callable")
    assert (out.usage.input_tokens, out.usage.output_tokens, out.tokens) == (120, 30, 150)
    assert out.cost == Decimal("0.12")
    assert [a.outcome for a in out.attempts] == ["success"]


async def test_per_task_overrides_reach_the_model():
    model = Model()
    node = LLMManagerNode("llm", config={"temperature": 0.9, "max_tokens": 50}, manager=manager_with(model))
    await node.handle(task(Payload(prompt="hi", temperature=0.0, max_tokens=7, system_prompt="be brief")))
    messages, params = model.calls[0]
    assert (params["temperature"], params["max_tokens"]) == (0.0, 7)
    assert messages == [Message(role="system", content="be brief"), Message(role="user", content="hi")]


async def test_node_config_is_the_default_for_unset_overrides():
    model = Model()
    node = LLMManagerNode("llm", config={"temperature": 0.2, "max_tokens": 50, "system_prompt": "sys"},
                          manager=manager_with(model))
    await node.handle(task(Payload(prompt="hi")))
    messages, params = model.calls[0]
    assert (params["temperature"], params["max_tokens"], messages[0].content) == (0.2, 50, "sys")


async def test_force_model_picks_the_named_model():
    first, second = Model("first"), Model("second")
    manager = manager_with(first)
    manager.register_model("other", second, priority=-5)
    node = LLMManagerNode("llm", manager=manager)
    out = await node.handle(task(Payload(prompt="hi", force_model="other")))
    assert (out.content, out.model_name) == ("second", "other")


async def test_the_upstream_content_is_the_prompt():
    model = Model()
    node = LLMManagerNode("llm", manager=manager_with(model))
    up = ResultMessage(task_id="r:p", run_id="r", node_id="p", content="rendered prompt")
    await node.handle(task(Payload(prompt="raw input"), up))
    assert model.calls[0][0][-1] == Message(role="user", content="rendered prompt")


async def test_a_root_given_a_chat_sends_the_chat():
    model = Model()
    node = LLMManagerNode("llm", config={"system_prompt": "sys"}, manager=manager_with(model))
    chat = (
        Message(role="user", content="a"), Message(role="assistant", content="b"), Message(role="user", content="c")
    )
    await node.handle(task(Payload(messages=chat)))
    assert [m.content for m in model.calls[0][0]] == ["sys", "a", "b", "c"]


async def test_all_models_failing_is_an_error_result_with_the_attempts():
    def broken(messages, **params):
        raise RuntimeError("down")

    manager = LLMManager(models=[])
    manager.register_model("fake", broken, max_retries=0)
    out = await LLMManagerNode("llm", manager=manager).handle(task(Payload(prompt="hi")))
    assert out.error.startswith("all models failed")
    assert out.content == ""
    assert [(a.model_name, a.outcome) for a in out.attempts] == [("fake", "error")]


async def test_initialize_builds_the_manager_from_config_path(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("routing: {local_only: false}\nmodels:\n  - {name: fake, provider: callable}\n")
    node = LLMManagerNode("llm", config={"config_path": str(path), "local_only": True, "enable_fallback": False})
    await node.initialize()
    assert [m.name for m in node.manager.list_models()] == ["fake"]
    assert (node.manager.config.routing.local_only, node.manager.config.routing.enable_fallback) == (True, False)
    manager = node.manager
    await node.aclose()  # the manager it built is closed, and kept for the next initialize
    assert node.manager is manager and (await node.handle(task(Payload(prompt="hi")))).error.endswith(
        "the manager is closed")
    await node.initialize()
    assert node.manager is manager


async def test_a_shared_manager_is_not_closed_by_the_node():
    manager = manager_with(Model())
    node = LLMManagerNode("llm", manager=manager)
    await node.aclose()
    assert node.manager is manager
    assert (await node.handle(task(Payload(prompt="hi")))).ok


async def test_an_uninitialized_node_fails_its_task():
    out = await LLMManagerNode("llm").handle(task(Payload(prompt="hi")))
    assert out.error == "node 'llm' is not initialized"


async def test_stats_include_the_manager_stats():
    node = LLMManagerNode("llm", manager=manager_with(Model()))
    await node.handle(task(Payload(prompt="hi")))
    assert node.get_stats()["manager"]["calls"] == 1
