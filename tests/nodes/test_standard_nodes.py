from decimal import Decimal

import pytest

from amaos_llm import ConfigError, Usage
from nodes import (
    FunctionNode,
    InputNode,
    JoinNode,
    OutputNode,
    Payload,
    PromptTemplateNode,
    ResultMessage,
    RouterNode,
    TaskMessage,
)
from tests.support.backends import BACKENDS

pytestmark = pytest.mark.anyio


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    # Standard nodes only, no SDK or HTTP fake: runs on asyncio and trio (tests/support/backends.py).
    return request.param


def upstream(node_id, content="", **fields):
    return ResultMessage(task_id=f"r:{node_id}", run_id="r", node_id=node_id, content=content, **fields)


def task(*inputs, prompt="the input", node_id="n", metadata=None):
    return TaskMessage(task_id=f"r:{node_id}", run_id="r", node_id=node_id, payload=Payload(prompt=prompt),
                       inputs=inputs, metadata=metadata or {})


async def test_input_node_emits_the_run_input():
    assert (await InputNode("in").handle(task())).content == "the input"


async def test_template_fills_input_and_content():
    node = PromptTemplateNode("p", config={"template": "Q: {input} / up: {content}"})
    assert (await node.handle(task(upstream("a", "A")))).content == "Q: the input / up: A"


async def test_template_reads_a_named_upstream_field():
    node = PromptTemplateNode("p", config={"template": "{b.content}+{a.content} by {a.model_name}"})
    out = await node.handle(task(upstream("a", "A", model_name="m"), upstream("b", "B")))
    assert out.content == "B+A by m"


async def test_template_reads_data_and_metadata():
    node = PromptTemplateNode("p", config={"template": "{data[k]} {metadata[user]}"})
    out = await node.handle(task(upstream("a", data={"k": "v"}), metadata={"user": "ann"}))
    assert out.content == "v ann"


async def test_template_with_an_unknown_field_fails_naming_the_available_ones():
    node = PromptTemplateNode("p", config={"template": "{nope}"})
    out = await node.handle(task(upstream("a", "A")))
    assert out.error == "template field {nope} is unknown here; available: a, content, data, input, metadata"


def test_template_syntax_is_checked_when_configured():
    with pytest.raises(ConfigError, match=r"p\.config\.template: invalid template"):
        PromptTemplateNode("p", config={"template": "{unclosed"})


def test_unknown_config_keys_name_the_node_and_the_allowed_keys():
    with pytest.raises(ConfigError, match=r"p\.config\.templat: unknown key 'templat'; allowed keys: .*template"):
        PromptTemplateNode("p", config={"template": "x", "templat": "y"})


async def test_join_combines_inputs_in_order_with_the_separator():
    node = JoinNode("j", config={"separator": " | "})
    out = await node.handle(task(upstream("a", "A"), upstream("b", "B")))
    assert (out.content, out.data) == ("A | B", {"a": "A", "b": "B"})


async def test_router_picks_the_first_route_that_holds():
    node = RouterNode("r", config={"routes": {"num": {"regex": r"^\d+$"}, "any": {"regex": "."}}})
    assert (await node.handle(task(upstream("a", "42")))).route == "num"
    assert (await node.handle(task(upstream("a", "x")))).route == "any"


async def test_router_falls_back_to_its_default_route():
    node = RouterNode("r", config={"routes": {"yes": {"equals": "yes"}}, "default": "no"})
    out = await node.handle(task(upstream("a", "maybe")))
    assert (out.route, out.content) == ("no", "maybe")


async def test_router_passes_a_failed_input_on_with_its_route():
    node = RouterNode("r", config={"routes": {"failed": {"field": "error", "is_null": False}}})
    out = await node.handle(task(upstream("a", error="boom")))
    assert (out.route, out.error) == ("failed", "boom")


def test_router_default_must_differ_from_its_routes():
    with pytest.raises(ConfigError, match="already a conditional route"):
        RouterNode("r", config={"routes": {"a": {"equals": "x"}}, "default": "a"})


async def test_output_passes_content_and_data_on_without_cost():
    out = await OutputNode("o").handle(task(upstream("a", "A", data={"k": 1}, cost=Decimal("0.5"))))
    assert (out.content, out.data, out.cost, out.node_id) == ("A", {"k": 1}, Decimal(0), "n")


async def test_function_receives_one_upstream_result():
    node = FunctionNode("f", fn=lambda r: r.content.upper())
    assert (await node.handle(task(upstream("a", "abc")))).content == "ABC"


async def test_function_receives_a_list_for_several_inputs():
    node = FunctionNode("f", fn=lambda rs: "+".join(r.content for r in rs))
    assert (await node.handle(task(upstream("a", "A"), upstream("b", "B")))).content == "A+B"


async def test_a_root_function_receives_the_payload():
    node = FunctionNode("f", fn=lambda p: p.prompt[::-1])
    assert (await node.handle(task(prompt="abc"))).content == "cba"


async def test_an_async_function_is_awaited():
    async def fn(r):
        return r.content * 2

    assert (await FunctionNode("f", fn=fn).handle(task(upstream("a", "ab")))).content == "abab"


async def test_an_object_with_an_async_call_and_a_sync_function_returning_a_coroutine_are_awaited():
    class Doubler:
        async def __call__(self, r):
            return r.content * 2

    async def later(text):
        return text

    for fn in (Doubler(), lambda r: later(r.content * 2)):
        assert (await FunctionNode("f", fn=fn).handle(task(upstream("a", "ab")))).content == "abab"


async def test_a_returned_str_subclass_becomes_plain_content():
    class Text(str):
        pass

    result = await FunctionNode("f", fn=lambda r: Text("hi")).handle(task(upstream("a", "x")))
    assert type(result.content) is str and result.content == "hi"


async def test_a_returned_dict_sets_fields_and_merges_the_rest_into_data():
    node = FunctionNode("f", fn=lambda r: {"content": "c", "route": "x", "score": 3, "data": {"k": 1}})
    out = await node.handle(task(upstream("a")))
    assert (out.content, out.route, out.data) == ("c", "x", {"k": 1, "score": 3})


async def test_a_returned_dict_with_a_wrong_type_is_an_error():
    node = FunctionNode("f", fn=lambda r: {"content": 5})
    with pytest.raises(TypeError, match="bad 'content'"):
        await node.handle(task(upstream("a")))


async def test_passing_an_upstream_result_on_does_not_count_its_cost_again():
    llm = upstream("a", "A", model_name="m", usage=Usage(input_tokens=5, output_tokens=6), cost=Decimal("0.01"))
    out = await FunctionNode("f", fn=lambda r: r).handle(task(llm))
    assert (out.content, out.cost, out.tokens, out.model_name, out.node_id) == ("A", Decimal(0), 0, None, "n")


async def test_a_new_result_from_a_function_keeps_its_own_cost():
    def fn(r):
        return ResultMessage(task_id="own", run_id="x", node_id="x", content="c", cost=Decimal("0.2"))

    out = await FunctionNode("f", fn=fn).handle(task(upstream("a")))
    assert (out.task_id, out.node_id, out.cost) == ("r:n", "n", Decimal("0.2"))


async def test_an_unsupported_return_type_is_an_error():
    with pytest.raises(TypeError, match="returned int; expected str, dict or ResultMessage"):
        await FunctionNode("f", fn=lambda r: 1).handle(task(upstream("a")))


def test_a_function_node_cannot_be_written_to_yaml():
    with pytest.raises(TypeError, match="cannot be written to YAML"):
        FunctionNode("f", fn=str).to_spec()


def test_to_spec_holds_type_and_non_default_config():
    node = PromptTemplateNode("p", name="Prompt", config={"template": "{input}", "timeout": 2})
    assert node.to_spec() == {"id": "p", "type": "prompt_template", "name": "Prompt",
                              "config": {"timeout": 2.0, "template": "{input}"}}


def test_a_node_needs_an_id():
    with pytest.raises(ValueError, match="non-empty string id"):
        InputNode("")
