from decimal import Decimal

import pytest
from pydantic import ValidationError

from amaos_llm import Message, Usage
from nodes import Payload, ResultMessage, TaskMessage
from nodes.messages import task_message


def task(**fields):
    return TaskMessage(task_id="r:n", run_id="r", node_id="n", payload=Payload(prompt="hi"), **fields)


def test_a_string_input_is_a_prompt():
    assert Payload.of("hello") == Payload(prompt="hello")


def test_an_input_key_holding_a_string_is_a_prompt():
    assert Payload.of({"input": "hello", "temperature": 0.0}) == Payload(prompt="hello", temperature=0.0)


def test_an_input_key_holding_a_list_is_a_chat():
    payload = Payload.of({"input": [{"role": "user", "content": "hi"}]})
    assert payload.messages == (Message(role="user", content="hi"),)
    assert payload.text == "hi"


def test_a_payload_rejects_unknown_keys():
    with pytest.raises(ValidationError, match="temprature"):
        Payload.of({"prompt": "x", "temprature": 1})


def test_a_payload_rejects_a_temperature_out_of_range():
    with pytest.raises(ValidationError):
        Payload(prompt="x", temperature=3)


def test_a_result_without_llm_call_reports_zero_cost_and_tokens():
    result = ResultMessage(task_id="t", run_id="r", node_id="n", content="x")
    assert (result.cost, result.tokens, result.usage, result.ok) == (Decimal(0), 0, Usage(), True)


def test_reply_builds_a_result_addressed_to_the_task():
    result = task().reply("out", route="a")
    got = (result.task_id, result.run_id, result.node_id, result.content, result.route)
    assert got == ("r:n", "r", "n", "out", "a")


def test_replies_do_not_share_their_data_dict():
    t = task()
    first, second = t.reply("a"), t.reply("b")
    first.data["k"] = 1
    assert second.data == {}


def test_fail_gives_an_error_result_with_empty_content():
    result = task().fail("broken")
    assert (result.ok, result.error, result.content) == (False, "broken", "")


def test_a_trusted_result_equals_a_validated_one():
    built = task().reply("x")
    assert built == ResultMessage(task_id="r:n", run_id="r", node_id="n", content="x")
    assert built.model_dump() == ResultMessage(task_id="r:n", run_id="r", node_id="n", content="x").model_dump()


def test_the_orchestrators_task_builder_equals_a_validated_task():
    upstream = task().reply("up")
    built = task_message("r:m", "r", "m", Payload(prompt="hi"), (upstream,), {"k": 1}, 2)
    validated = TaskMessage(task_id="r:m", run_id="r", node_id="m", payload=Payload(prompt="hi"),
                            inputs=(upstream,), metadata={"k": 1}, iteration=2)
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert built.model_fields_set == validated.model_fields_set


def test_a_string_payload_equals_a_validated_one():
    assert Payload.of("go") == Payload(prompt="go")
    assert Payload.of("go").model_fields_set == {"prompt"}


def test_task_content_joins_several_inputs_in_order():
    a = ResultMessage(task_id="r:a", run_id="r", node_id="a", content="A")
    b = ResultMessage(task_id="r:b", run_id="r", node_id="b", content="B")
    t = task(inputs=(a, b))
    assert t.content == "A\n\nB"
    assert t.source_ids == ("r:a", "r:b")


def test_a_root_task_content_is_the_run_input():
    assert task().content == "hi"


def test_cost_serialises_to_a_json_number():
    result = ResultMessage(task_id="t", run_id="r", node_id="n", cost=Decimal("0.0015"))
    assert '"cost":0.0015' in result.model_dump_json()
