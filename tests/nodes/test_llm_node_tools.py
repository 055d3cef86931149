"""`LLMManagerNode` with tools and structured output: config dicts, functions run in a tool loop, and
what the result carries for downstream nodes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amaos_llm import LLMManager, Message
from nodes import LLMManagerNode, Payload, TaskMessage

pytestmark = pytest.mark.anyio
ADD = {"type": "function", "function": {"name": "add", "description": "Add two integers.", "parameters": {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}}


class Scripted:
    """A callable model answering from a list (the last answer repeats), 10 input and 5 output tokens each."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[Message], dict[str, Any]]] = []

    def __call__(self, messages: list[Message], **params: Any) -> Any:
        self.calls.append((messages, params))
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        return {"input_tokens": 10, "output_tokens": 5, **answer}


def manager_with(model: Scripted) -> LLMManager:
    manager = LLMManager(models=[])
    manager.register_model("fake", model, cost_per_1k_input="1", cost_per_1k_output="2")
    return manager


def task(payload: Payload) -> TaskMessage:
    return TaskMessage(task_id="r:llm", run_id="r", node_id="llm", payload=payload, inputs=())


CALL = {"content": "", "tool_calls": [{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 5}}]}


async def test_config_tools_reach_the_model_and_its_calls_ride_on_the_result() -> None:
    model = Scripted(CALL)
    node = LLMManagerNode("llm", config={"tools": [ADD], "tool_choice": "required"}, manager=manager_with(model))
    out = await node.handle(task(Payload(prompt="add 2 and 5")))
    params = model.calls[0][1]
    assert ([t.name for t in params["tools"]], params["tool_choice"]) == (["add"], "required")
    assert out.data["tool_calls"] == [{"id": "c1", "name": "add", "arguments": {"a": 2, "b": 5},
                                       "provider_data": None, "invalid_arguments": None}]
    assert (out.data["finish_reason"], out.data["parsed"]) == ("tool_calls", None)


async def test_response_format_gives_the_parsed_answer_in_data() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    model = Scripted({"content": '{"city": "Oslo"}'})
    node = LLMManagerNode("llm", config={"response_format": schema}, manager=manager_with(model))
    out = await node.handle(task(Payload(prompt="a city")))
    assert out.data["parsed"] == {"city": "Oslo"}
    assert model.calls[0][1]["response_format"] == schema


async def test_functions_run_in_a_tool_loop_and_the_result_sums_every_step() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = Scripted(CALL, {"content": "seven"})
    node = LLMManagerNode("llm", config={"system_prompt": "use tools"}, manager=manager_with(model), tools=[add])
    out = await node.handle(task(Payload(prompt="add 2 and 5")))
    assert out.content == "seven"
    assert [m.role for m in model.calls[1][0]] == ["system", "user", "assistant", "tool"]
    assert model.calls[1][0][-1].content == "7"
    assert (out.usage.input_tokens, out.usage.output_tokens) == (20, 10)
    assert out.cost == Decimal("0.040")  # 2 × (10/1000 × 1 + 5/1000 × 2)
    assert [c["name"] for c in out.data["tool_calls"]] == ["add"]
    assert (out.data["steps"], len(out.attempts)) == (2, 2)


async def test_a_tool_loop_past_max_tool_steps_is_an_error_result() -> None:
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = Scripted(CALL)
    node = LLMManagerNode("llm", config={"max_tool_steps": 2}, manager=manager_with(model), tools=[add])
    out = await node.handle(task(Payload(prompt="loop")))
    assert out.error == "the model still called tools after max_steps=2 steps"
    assert len(out.attempts) == 2


def test_tools_as_functions_and_as_config_dicts_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        LLMManagerNode("llm", config={"tools": [ADD]}, tools=[print])
