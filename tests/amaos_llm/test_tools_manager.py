"""Tools, structured output and capabilities through the manager's one attempt loop: the four wires'
fakes over real HTTP, and callable models where the test must see every request."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from pydantic import BaseModel, SecretStr

from amaos_llm import (
    AllModelsFailed,
    InvalidRequest,
    LLMConfig,
    LLMManager,
    Message,
    ModelSpec,
    ServerError,
    ToolLoopLimit,
    ToolRun,
)
from amaos_llm.cache import cache_key
from amaos_llm.call_state import estimate_prompt_tokens
from amaos_llm.tools import as_tools
from tests.support.fakes import FakeServer, OllamaFake, OpenAIFake

pytestmark = pytest.mark.anyio
KEY = SecretStr("sk-test-SECRET-123")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def config(*models: ModelSpec, **defaults: Any) -> LLMConfig:
    return LLMConfig.model_validate({"defaults": {"retry_backoff": 0, "max_retries": 0, **defaults},
                                     "models": list(models)})


def wire_spec(name: str, provider: str, fake: FakeServer, **fields: Any) -> ModelSpec:
    key = {} if provider == "ollama" else {"api_key": KEY}
    return ModelSpec(name=name, provider=provider, model="test-model", base_url=fake.url, **key, **fields)


class Scripted:
    """A callable model answering from a list (the last answer repeats), recording each call's messages
    and parameters."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list[Message], dict[str, Any]]] = []

    def __call__(self, messages: list[Message], **params: Any) -> Any:
        self.calls.append((messages, params))
        return self.answers[min(len(self.calls), len(self.answers)) - 1]


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"content": "", "tool_calls": [{"id": f"c{i}", "name": n, "arguments": a} for i, (n, a) in enumerate(pairs)]}


def manager_with(*models: tuple[Any, ...], **defaults: Any) -> LLMManager:
    """Callable models `(name, fn[, spec fields])`, tried in the order given."""
    manager = LLMManager(config(**defaults), models=[])
    for priority, (name, fn, *fields) in enumerate(reversed(models)):
        manager.register_model(name, fn, priority=priority, **(fields[0] if fields else {}))
    return manager


WIRES = ["openai", "anthropic", "google", "ollama"]


def fake_for(provider: str, request: pytest.FixtureRequest) -> FakeServer:
    return request.getfixturevalue(f"{provider}_fake")  # type: ignore[no-any-return]


# --- one tool round trip per wire ----------------------------------------------------------------

@pytest.mark.parametrize("provider", WIRES)
async def test_chat_with_tools_returns_the_wires_tool_call(provider: str, request: pytest.FixtureRequest) -> None:
    wire = fake_for(provider, request)
    wire.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}]
    async with LLMManager(config(wire_spec("m", provider, wire))) as manager:
        result = await manager.chat_with_tools([{"role": "user", "content": "what is 1 + 2?"}], [add])
    assert [(c.name, c.arguments) for c in result.tool_calls] == [("add", {"a": 1, "b": 2})]
    assert result.finish_reason == "tool_calls"
    assert [a.outcome for a in result.attempts] == ["success"]
    assert "add" in str(wire.requests[-1].body)  # the tool was declared on the wire


@pytest.mark.parametrize("provider", WIRES)
async def test_run_tools_answers_from_the_functions_result_on_every_wire(
    provider: str, request: pytest.FixtureRequest
) -> None:
    wire = fake_for(provider, request)
    wire.tool_calls = [{"name": "add", "arguments": {"a": 20, "b": 22}}]
    wire.strict = True
    async with LLMManager(config(wire_spec("m", provider, wire))) as manager:
        run = await manager.run_tools([{"role": "user", "content": "add 20 and 22"}], [add])
    assert isinstance(run, ToolRun)
    # the fake echoes the last tool result as its wire carries it (Gemini: a function_response object)
    assert run.content == ('echo: {"output": "42"}' if provider == "google" else "echo: 42")
    assert [m.role for m in run.messages] == ["user", "assistant", "tool", "assistant"]
    assert (run.messages[2].content, run.messages[2].is_error) == ("42", False)
    assert len(run.steps) == 2
    assert run.usage == run.steps[0].usage + run.steps[1].usage


# --- run_tools with python functions --------------------------------------------------------------

async def test_a_steps_calls_run_concurrently_sync_ones_in_threads() -> None:
    barrier = threading.Barrier(2, timeout=5)  # passes only when both calls wait on it at once

    def meet(who: str) -> str:
        barrier.wait()
        return f"met {who}"

    model = Scripted(calls(("meet", {"who": "a"}), ("meet", {"who": "b"})), "done")
    async with manager_with(("m", model)) as manager:
        run = await manager.run_tools([{"role": "user", "content": "go"}], [meet])
    results = [(m.tool_call_id, m.content, m.is_error) for m in run.messages if m.role == "tool"]
    assert results == [("c0", "met a", False), ("c1", "met b", False)]
    assert run.content == "done"


async def test_async_tools_run_concurrently_too() -> None:
    arrived = 0
    both = anyio.Event()

    async def wait_for_both(n: int) -> int:
        """Return n once both calls are running."""
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both.set()
        with anyio.fail_after(5):
            await both.wait()
        return n

    model = Scripted(calls(("wait_for_both", {"n": 1}), ("wait_for_both", {"n": 2})), "done")
    async with manager_with(("m", model)) as manager:
        run = await manager.run_tools([{"role": "user", "content": "go"}], [wait_for_both])
    assert [m.content for m in run.messages if m.role == "tool"] == ["1", "2"]


async def test_a_raising_tool_and_bad_arguments_come_back_as_error_results() -> None:
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    model = Scripted(calls(("divide", {"a": 1, "b": 0}), ("divide", {"a": "one", "b": 2})), "sorry")
    async with manager_with(("m", model)) as manager:
        run = await manager.run_tools([{"role": "user", "content": "divide"}], [divide])
    errors = [(m.is_error, m.content.split(":")[0]) for m in run.messages if m.role == "tool"]
    assert errors == [(True, "ZeroDivisionError"), (True, "invalid arguments")]
    sent = model.calls[1][0]  # the model read both errors on step 2
    assert [m.is_error for m in sent if m.role == "tool"] == [True, True]
    assert run.content == "sorry"


async def test_past_max_steps_is_a_tool_loop_limit_with_the_steps_so_far() -> None:
    model = Scripted(calls(("add", {"a": 1, "b": 1})))
    async with manager_with(("m", model)) as manager:
        with pytest.raises(ToolLoopLimit) as caught:
            await manager.run_tools([{"role": "user", "content": "loop"}], [add], max_steps=3)
    assert len(caught.value.steps) == 3 and len(model.calls) == 3
    assert caught.value.messages[-1].role == "tool"  # every call answered: a caller may go on


async def test_a_forcing_tool_choice_holds_for_the_first_step_only() -> None:
    model = Scripted(calls(("add", {"a": 1, "b": 1})), "two")
    async with manager_with(("m", model)) as manager:
        await manager.run_tools([{"role": "user", "content": "add"}], [add], tool_choice="add")
    assert [params["tool_choice"] for _, params in model.calls] == ["add", "auto"]


async def test_schema_only_tools_cannot_run_and_nothing_is_sent() -> None:
    model = Scripted("never")
    async with manager_with(("m", model)) as manager:
        with pytest.raises(InvalidRequest, match="'lookup' have no function to run"):
            await manager.run_tools([{"role": "user", "content": "x"}],
                                    [add, {"name": "lookup", "parameters": {"type": "object", "properties": {}}}])
    assert model.calls == []


# --- a tool chat falling back between wires ------------------------------------------------------

PAIRS = [("anthropic", "openai"), ("openai", "google"), ("google", "anthropic"), ("ollama", "openai")]


@pytest.mark.parametrize(("first", "second"), PAIRS)
async def test_a_tool_chat_falls_back_to_another_wire_mid_conversation(
    first: str, second: str, request: pytest.FixtureRequest
) -> None:
    first_fake, second_fake = fake_for(first, request), fake_for(second, request)
    long_id = "call_" + "x" * 60  # over OpenAI's 40 characters, as ids of some wires are
    first_fake.tool_calls = [{"id": long_id, "name": "add", "arguments": {"a": 2, "b": 3}}]
    second_fake.strict = True  # a history it would refuse is a 400, and the call would fail

    def add(a: int, b: int) -> int:
        """Add; the first model goes down meanwhile."""
        first_fake.fail(500)
        return a + b

    models = [wire_spec("first", first, first_fake, priority=10), wire_spec("second", second, second_fake)]
    async with LLMManager(config(*models)) as manager:
        run = await manager.run_tools([{"role": "user", "content": "add 2 and 3"}], [add])
    assert run.content == ('echo: {"output": "5"}' if second == "google" else "echo: 5")
    assert (run.steps[0].model_name, run.steps[1].model_name) == ("first", "second")
    assert [x.outcome for x in run.steps[1].attempts] == ["error", "success"]


# --- structured output ---------------------------------------------------------------------------

class City(BaseModel):
    name: str
    population: int


async def test_a_valid_answer_is_parsed_into_the_response_format() -> None:
    model = Scripted('{"name": "Oslo", "population": 700000}')
    async with manager_with(("m", model)) as manager:
        result = await manager.complete("a city", response_format=City)
        as_dict = await manager.complete("a city", response_format=City.model_json_schema())
    assert result.parsed == City(name="Oslo", population=700000)
    assert as_dict.parsed == {"name": "Oslo", "population": 700000}
    assert model.calls[0][1]["response_format"]["required"] == ["name", "population"]


async def test_an_invalid_answer_is_re_asked_with_the_error_appended() -> None:
    model = Scripted('{"name": "Oslo"}', '{"name": "Oslo", "population": 7}')
    async with manager_with(("m", model), validation_retries=1) as manager:
        result = await manager.complete("a city", response_format=City)
    assert result.parsed == City(name="Oslo", population=7)
    assert [(a.outcome, (a.error or "")[:15]) for a in result.attempts] == [
        ("rejected", "invalid output:"), ("success", "")]
    reasked = model.calls[1][0]
    assert reasked[-2] == Message(role="assistant", content='{"name": "Oslo"}')
    assert "population" in reasked[-1].text and "invalid output" in reasked[-1].text


async def test_a_model_that_keeps_answering_badly_is_left_for_the_next() -> None:
    bad, good = Scripted("not json"), Scripted('{"name": "Rome", "population": 1}')
    async with manager_with(("bad", bad), ("good", good), validation_retries=1) as manager:
        result = await manager.complete("a city", response_format=City)
    assert result.model_name == "good" and result.parsed == City(name="Rome", population=1)
    assert [(a.model_name, a.outcome) for a in result.attempts] == [
        ("bad", "rejected"), ("bad", "rejected"), ("good", "success")]


async def test_an_undeclared_tool_or_non_object_arguments_are_rejected_and_re_asked() -> None:
    model = Scripted(calls(("rm_rf", {})),
                     {"content": "", "tool_calls": [{"name": "add", "invalid_arguments": "[1, 2]"}]},
                     calls(("add", {"a": 1, "b": 2})))
    async with manager_with(("m", model), validation_retries=2) as manager:
        result = await manager.chat_with_tools([{"role": "user", "content": "add"}], [add])
    assert [c.name for c in result.tool_calls] == ["add"]
    assert [a.outcome for a in result.attempts] == ["rejected", "rejected", "success"]
    assert "tool 'rm_rf' is not declared" in (result.attempts[0].error or "")
    assert "not a JSON object" in (result.attempts[1].error or "")


async def test_response_format_on_the_openai_wire_reaches_it_as_a_json_schema(openai_fake: OpenAIFake) -> None:
    openai_fake.reply = '{"name": "Lima", "population": 3}'
    async with LLMManager(config(wire_spec("m", "openai", openai_fake))) as manager:
        result = await manager.complete("a city", response_format=City)
    assert result.parsed == City(name="Lima", population=3)
    assert openai_fake.requests[-1].body["response_format"]["type"] == "json_schema"


# --- capabilities --------------------------------------------------------------------------------

async def test_a_model_without_the_tools_capability_is_skipped_with_the_reason() -> None:
    plain, tooled = Scripted("no tools here"), Scripted(calls(("add", {"a": 1, "b": 1})))
    async with manager_with(("plain", plain, {"capabilities": ["text"]}), ("tooled", tooled)) as manager:
        result = await manager.chat_with_tools([{"role": "user", "content": "add"}], [add])
    assert result.model_name == "tooled" and plain.calls == []
    assert [(a.model_name, a.outcome, a.error) for a in result.attempts] == [
        ("plain", "skipped", "capabilities [text] lack tools"), ("tooled", "success", None)]


async def test_image_url_size_and_forced_tool_skips_on_the_wires(
    ollama_fake: OllamaFake, openai_fake: OpenAIFake
) -> None:
    models = [wire_spec("local", "ollama", ollama_fake, priority=10),
              wire_spec("cloud", "openai", openai_fake, max_image_bytes=10)]
    url_image = [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                              {"type": "image", "url": "https://example.com/a.png"}]}]
    big_image = [{"role": "user", "content": [{"type": "image", "data": PNG}]}]
    async with LLMManager(config(*models)) as manager:
        by_url = await manager.chat(url_image)
        with pytest.raises(AllModelsFailed) as big:
            await manager.chat(big_image, force_model="cloud")
        forced = await manager.chat_with_tools([{"role": "user", "content": "add"}], [add], tool_choice="add")
    assert [(a.model_name, a.outcome, a.error) for a in by_url.attempts] == [
        ("local", "skipped", "ollama cannot fetch image URLs; send the image data inline"), ("cloud", "success", None)]
    assert [(a.outcome, a.error) for a in big.value.attempts] == [
        ("skipped", "an image of 24 bytes is over its max_image_bytes (10)")]
    assert forced.attempts[0].error == "ollama cannot force a tool call (tool_choice)"
    assert ollama_fake.requests == []


# --- bad input, before any request ----------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"tools": [add, add]}, "duplicate tool name 'add'"),
    ({"tools": [add], "tool_choice": "sub"}, "tool_choice: 'sub' is not a tool"),
    ({"tool_choice": "required"}, "needs tools, none given"),
    ({"response_format": {"type": "array"}}, "must describe an object"),
    ({"messages": [{"role": "tool", "tool_call_id": "x", "content": "1"}]}, "answers no open tool call"),
    ({"messages": [{"role": "assistant", "tool_calls": [{"id": "a", "name": "add"}]},
                   {"role": "user", "content": "and?"}]}, "have no result"),
])
async def test_bad_tool_inputs_are_invalid_requests_before_any_request(kwargs: dict[str, Any], problem: str) -> None:
    model = Scripted("never")
    messages = kwargs.pop("messages", [{"role": "user", "content": "hi"}])
    async with manager_with(("m", model)) as manager:
        with pytest.raises(InvalidRequest, match=problem):
            await manager.chat(messages, **kwargs)
    assert model.calls == []


# --- streams, the cache, estimates ------------------------------------------------------------------

async def test_a_streamed_tool_call_is_a_chunk_and_on_the_result(openai_fake: OpenAIFake) -> None:
    openai_fake.tool_calls = [{"name": "add", "arguments": {"a": 4, "b": 5}}]
    async with LLMManager(config(wire_spec("m", "openai", openai_fake))) as manager:
        stream = manager.stream([{"role": "user", "content": "add"}], tools=[add])
        chunks = [c async for c in stream]
    assert [c.type for c in chunks] == ["tool_call", "final"]
    assert (chunks[0].tool_call.name, chunks[0].tool_call.arguments) == ("add", {"a": 4, "b": 5})
    assert stream.result is not None and stream.result.tool_calls == [chunks[0].tool_call]
    assert stream.result.finish_reason == "tool_calls"


async def test_a_cached_plain_answer_is_never_returned_for_a_tool_call() -> None:
    model = Scripted("plain", calls(("add", {"a": 1, "b": 1})))
    async with manager_with(("m", model)) as manager:
        first = await manager.chat([{"role": "user", "content": "add"}], cache=True)
        second = await manager.chat([{"role": "user", "content": "add"}], cache=True, tools=[add])
    assert (first.content, second.cache_hit, [c.name for c in second.tool_calls]) == ("plain", False, ["add"])


def test_the_cache_key_tells_tools_tool_choice_and_formats_apart() -> None:
    messages = [Message(role="user", content="x")]
    keys = {
        cache_key(messages, None, None, None, 0),
        cache_key(messages, None, None, None, 0, as_tools([add])),
        cache_key(messages, None, None, None, 0, as_tools([add]), "required"),
        cache_key(messages, None, None, None, 0, (), "auto", City),
        cache_key(messages, None, None, None, 0, (), "auto", City.model_json_schema()),
    }
    assert len(keys) == 5


def test_the_prompt_estimate_counts_characters_of_parts_not_parts() -> None:
    parts = Message(role="user", content=[{"type": "text", "text": "x" * 400}, {"type": "image", "data": PNG}])
    assert estimate_prompt_tokens([parts]) == estimate_prompt_tokens([Message(role="user", content="x" * 400)]) == 104


async def test_a_result_without_tools_has_no_tool_calls_and_nothing_parsed() -> None:
    async with manager_with(("m", Scripted("hi"))) as manager:
        result = await manager.complete("hi")
    assert (result.tool_calls, result.parsed, result.finish_reason) == ([], None, "stop")


async def test_a_streamed_answer_turned_down_is_reset_before_the_re_ask() -> None:
    model = Scripted("nope", '{"name": "Oslo", "population": 1}')
    async with manager_with(("m", model), validation_retries=1) as manager:
        chunks = [c async for c in manager.stream("a city", response_format=City)]
    assert [(c.type, c.text) for c in chunks[:3]] == [("text", "nope"), ("reset", ""),
                                                      ("text", '{"name": "Oslo", "population": 1}')]
    result = chunks[-1].result
    assert result is not None and result.parsed == City(name="Oslo", population=1)
    assert result.content == '{"name": "Oslo", "population": 1}'
    assert [a.outcome for a in result.attempts] == ["rejected", "success"]


async def test_response_format_on_the_real_embedded_model_gives_valid_json() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
    smol = ModelSpec(name="smol", provider="embedded", n_ctx=1024, n_threads=2, seed=7)
    async with LLMManager(config(smol)) as manager:
        result = await manager.complete("Name a city as JSON.", response_format=schema, max_tokens=40,
                                        temperature=0.0)
    assert isinstance(result.parsed, dict) and isinstance(result.parsed["city"], str)
    assert [a.outcome for a in result.attempts] == ["success"]
    assert result.usage.output_tokens > 0


async def test_continue_mode_restarts_instead_for_a_structured_answer() -> None:
    async def cut(messages: list[Message], **params: Any) -> Any:
        yield '{"name": '
        raise ServerError("cut mid-stream")

    whole = Scripted('{"name": "Oslo", "population": 1}')
    async with manager_with(("cut", cut), ("whole", whole)) as manager:
        chunks = [c async for c in manager.stream("a city", response_format=City, mid_stream="continue")]
    assert [c.type for c in chunks] == ["text", "reset", "text", "final"]
    assert chunks[-1].result is not None and chunks[-1].result.parsed == City(name="Oslo", population=1)
    assert [m.role for m in whole.calls[0][0]] == ["user"]  # the original messages, no partial to continue
