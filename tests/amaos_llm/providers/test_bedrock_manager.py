"""Bedrock through `LLMManager` beyond text: tool loops, structured output, images (routed to Bedrock
now that its wire carries them), and the bestehorn seed's parallel manager, a `batch` over Bedrock
models x two regions with the first region failing, under both retry orders, usage and cost exact."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager, ToolRun
from tests.amaos_llm.providers.bedrock_fixtures import MODEL
from tests.support.bedrock_fake import BedrockFake

pytestmark = pytest.mark.anyio
NOVA = "amazon.nova-test-v1:0"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


async def no_sleep(seconds: float) -> None:
    pass


def manager(models: list[dict[str, Any]], **routing: Any) -> LLMManager:
    # no retries on a model, and a breaker that never opens: every request tries every region in order
    defaults = {"retry_jitter": 0, "max_retries": 0, "breaker_threshold": 1000}
    return LLMManager(LLMConfig.model_validate({"models": models, "routing": routing, "defaults": defaults}),
                      sleep=no_sleep)


def claude(*fakes: BedrockFake, **extra: Any) -> dict[str, Any]:
    regions = ["us-east-1", "us-west-2"][: len(fakes)]
    return {"name": "claude", "provider": "bedrock", "model": MODEL, "regions": regions,
            "base_url": [f.url for f in fakes] if len(fakes) > 1 else fakes[0].url,
            "cost_per_1k_input": "3", "cost_per_1k_output": "15", **extra}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class City(BaseModel):
    name: str
    population: int


# --- tools, structured output, images --------------------------------------------------------------
async def test_run_tools_goes_round_the_loop_on_bedrock(aws_env: None, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.tool_calls = [{"name": "add", "arguments": {"a": 20, "b": 22}}]
    async with manager([claude(bedrock_fake)]) as m:
        run = await m.run_tools([{"role": "user", "content": "add 20 and 22"}], [add])
    assert isinstance(run, ToolRun)
    assert (run.content, [msg.role for msg in run.messages]) == ("echo: 42", ["user", "assistant", "tool", "assistant"])
    sent = bedrock_fake.requests[1].body["messages"]
    assert sent[1]["content"] == [{"toolUse": {"toolUseId": "tooluse_fake_0", "name": "add",
                                               "input": {"a": 20, "b": 22}}}]
    assert sent[2]["content"] == [{"toolResult": {"toolUseId": "tooluse_fake_0", "content": [{"text": "42"}]}}]
    assert run.usage == run.steps[0].usage + run.steps[1].usage


async def test_a_streamed_tool_call_reaches_the_caller_whole(aws_env: None, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.tool_calls = [{"name": "add", "arguments": {"a": 1, "b": 2}}]
    async with manager([claude(bedrock_fake)]) as m:
        chunks = [c async for c in m.stream([{"role": "user", "content": "add"}], tools=[add])]
    calls = [c.tool_call for c in chunks if c.tool_call is not None]
    result = chunks[-1].result
    assert result is not None
    assert [(c.id, c.name, c.arguments) for c in calls] == [("tooluse_fake_0", "add", {"a": 1, "b": 2})]
    assert ([(c.id, c.arguments) for c in result.tool_calls], result.finish_reason) == (
        [("tooluse_fake_0", {"a": 1, "b": 2})], "tool_calls")


async def test_a_response_format_is_parsed_from_the_forced_tool_whole_and_streamed(
    aws_env: None, bedrock_fake: BedrockFake
) -> None:
    bedrock_fake.tool_calls = [{"name": "structured_response", "arguments": {"name": "Oslo", "population": 700000}}]
    async with manager([claude(bedrock_fake)]) as m:
        whole = await m.complete("a city", response_format=City)
        chunks = [c async for c in m.stream("a city", response_format=City)]
    streamed = chunks[-1].result
    assert streamed is not None
    for result in (whole, streamed):
        assert (result.parsed, result.content, result.finish_reason) == (
            City(name="Oslo", population=700000), '{"name": "Oslo", "population": 700000}', "stop")
    assert bedrock_fake.requests[0].body["toolConfig"]["toolChoice"] == {"tool": {"name": "structured_response"}}


async def test_an_answer_that_does_not_fit_the_format_is_asked_again(aws_env: None, bedrock_fake: BedrockFake) -> None:
    bedrock_fake.tool_calls = [{"name": "structured_response", "arguments": {"name": "Oslo"}}]  # no population
    async with manager([claude(bedrock_fake)]) as m:
        with pytest.raises(AllModelsFailed) as caught:
            await m.complete("a city", response_format=City)
    assert [a.outcome for a in caught.value.attempts] == ["rejected", "rejected"]  # validation_retries: 1
    assert "population" in str(caught.value.attempts[-1].error)
    assert len(bedrock_fake.requests) == 2


async def test_an_image_call_is_routed_to_bedrock_not_skipped(aws_env: None, bedrock_fake: BedrockFake) -> None:
    message = {"role": "user", "content": [{"type": "text", "text": "what is this"}, {"type": "image", "data": PNG}]}
    async with manager([claude(bedrock_fake)]) as m:
        result = await m.chat([message])
    assert (result.content, [a.outcome for a in result.attempts]) == ("echo: what is this", ["success"])
    assert bedrock_fake.images == [("png", PNG)]


# --- the parallel manager: a batch over models x regions --------------------------------------------
PROMPTS = [" ".join(["word"] * n) for n in range(1, 13)]  # 1 to 12 words: every request's usage differs


def signed_regions(fake: BedrockFake) -> set[str]:
    return {r.headers["authorization"].split("/")[2] for r in fake.requests}


@pytest.mark.parametrize("strategy", ["model_first", "endpoint_first"])
async def test_a_batch_over_two_models_and_two_regions_with_the_first_region_down(
    aws_env: None, strategy: str
) -> None:
    with BedrockFake() as east, BedrockFake() as west:
        for fake in (east, west):
            fake.models.append(NOVA)
        east.fail(503, message="Bedrock is unavailable in us-east-1")
        nova = {"name": "nova", "provider": "bedrock", "model": NOVA, "regions": ["us-east-1", "us-west-2"],
                "base_url": [east.url, west.url], "cost_per_1k_input": "0.06", "cost_per_1k_output": "0.24",
                "priority": 1}
        async with manager([claude(east, west, priority=2), nova], retry_strategy=strategy) as m:
            batch = await m.batch([{"id": f"r{i}", "prompt": p} for i, p in enumerate(PROMPTS)],
                                  max_concurrency=4, failure_strategy="stop_on_first")
        # a region that fails and falls back is not a failed request: the batch ran to the end
        assert (list(batch.results), batch.errors, batch.cancelled, batch.not_started) == (
            [f"r{i}" for i in range(12)], {}, (), ())
        failed_first = [("claude", east.url)] if strategy == "model_first" else [("claude", east.url),
                                                                                   ("nova", east.url)]
        for i, result in enumerate(batch.results.values()):
            n = i + 1
            assert (result.content, result.model_name) == (f"echo: {PROMPTS[i]}", "claude")
            assert (result.usage.input_tokens, result.usage.output_tokens) == (n, n + 1)
            assert result.cost == (Decimal(3) * n + Decimal(15) * (n + 1)) / 1000
            assert [(a.model_name, a.endpoint, a.outcome) for a in result.attempts] == [
                *[(name, url, "error") for name, url in failed_first], ("claude", west.url, "success")]
        # 78 input tokens in all (1 + ... + 12); each reply is one word longer than its prompt: 90
        assert (batch.total_tokens, batch.total_cost) == (78 + 90, (3 * Decimal(78) + 15 * Decimal(90)) / 1000)
        stats = batch.by_model["claude"]
        assert (stats.calls, stats.successes, stats.failures, stats.input_tokens, stats.output_tokens, stats.cost) == (
            24, 12, 12, 78, 90, Decimal("1.584"))
        if strategy == "endpoint_first":  # each model's first region, then each one's second
            nova_stats = batch.by_model["nova"]
            assert (nova_stats.calls, nova_stats.failures, nova_stats.cost) == (12, 12, Decimal(0))
        else:  # every region of the first model before the next model: nova is never asked
            assert "nova" not in batch.by_model
        assert (len(east.requests), len(west.requests)) == (12 if strategy == "model_first" else 24, 12)
        assert (signed_regions(east), signed_regions(west)) == ({"us-east-1"}, {"us-west-2"})
        assert {r.path.split("/")[2] for r in west.requests} == {"anthropic.claude-test-v1%3A0"}
