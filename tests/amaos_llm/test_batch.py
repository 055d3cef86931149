"""Batches: validation before any send, request order, each failure strategy, cancellation of the
requests in flight, the totals, and retry_failed's merge."""

from __future__ import annotations

import random
import socket
import time
from decimal import Decimal
from typing import Any

import anyio
import pytest

from amaos_llm import AllModelsFailed, DeadlineExceeded, LLMConfig, LLMManager, Message, ModelSpec, ServerError
from amaos_llm.batch import BatchRequest, BatchResult, retry_failed, run_batch
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio

KEY = "sk-test"


def manager(fn: Any, **kw: Any) -> LLMManager:
    config = LLMConfig.model_validate({"defaults": {"max_retries": 0, "retry_backoff": 0}})
    m = LLMManager(config)
    m.register_model("model", fn, cost_per_1k_input=Decimal("1"), cost_per_1k_output=Decimal("2"), **kw)
    return m


def echo(messages: list[Message], **params: Any) -> dict[str, Any]:
    return {"content": messages[-1].content.upper(), "input_tokens": 100, "output_tokens": 50}


def failing_on(*bad: str, delay: float = 0.0) -> Any:
    async def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        await anyio.sleep(delay)
        if messages[-1].content in bad:
            raise ServerError(f"failed on {messages[-1].content}")
        return echo(messages)

    return fn


async def test_results_are_keyed_by_id_in_request_order_whatever_the_finishing_order() -> None:
    rng = random.Random(3)

    async def shuffled(messages: list[Message], **params: Any) -> dict[str, Any]:
        await anyio.sleep(rng.random() / 100)
        return echo(messages)

    requests = [BatchRequest(id=f"r{i}", prompt=f"p{i}") for i in range(30)]
    result = await run_batch(manager(shuffled), requests, max_concurrency=8)
    assert list(result.results) == [f"r{i}" for i in range(30)]
    assert [r.content for r in result.results.values()] == [f"P{i}" for i in range(30)]


async def test_dicts_are_requests_and_ids_default_to_the_index() -> None:
    result = await run_batch(manager(echo), [{"prompt": "a"}, {"messages": [{"role": "user", "content": "b"}]},
                                             {"id": "named", "prompt": "c", "system_prompt": "s"}])
    assert {k: v.content for k, v in result.results.items()} == {"0": "A", "1": "B", "named": "C"}


async def test_options_reach_chat_and_a_system_prompt_goes_first() -> None:
    seen: list[dict[str, Any]] = []

    def fn(messages: list[Message], **params: Any) -> str:
        seen.append({"messages": [(m.role, m.content) for m in messages], **params})
        return "ok"

    await run_batch(manager(fn), [BatchRequest(messages=[Message(role="user", content="q")], system_prompt="be brief",
                                               temperature=0.0, max_tokens=7)])
    assert seen[0]["messages"] == [("system", "be brief"), ("user", "q")]
    assert (seen[0]["temperature"], seen[0]["max_tokens"]) == (0.0, 7)


async def test_totals_success_rate_latency_and_by_model() -> None:
    result = await run_batch(manager(failing_on("p3", "p7")), [{"prompt": f"p{i}"} for i in range(10)])
    assert (len(result.results), sorted(result.errors)) == (8, ["3", "7"])
    assert result.success_rate == 0.8
    assert result.total_tokens == 8 * 150
    assert result.total_cost == 8 * (Decimal("0.1") + Decimal("0.1"))  # 100 in at $1/k + 50 out at $2/k
    stats = result.by_model["model"]
    assert (stats.calls, stats.successes, stats.failures) == (10, 8, 2)
    assert (stats.input_tokens, stats.output_tokens, stats.cost) == (800, 400, Decimal("1.6"))
    assert len(result.latencies) == 10 and 0 < result.avg_latency <= result.p95_latency <= result.wall_time
    assert isinstance(result.errors["3"], AllModelsFailed)


async def test_p95_is_the_nearest_rank() -> None:
    result = BatchResult({}, {}, (), (), (), 1.0, {}, latencies={str(i): float(i) for i in range(1, 101)})
    assert (result.p95_latency, result.avg_latency) == (95.0, 50.5)
    assert BatchResult({}, {}, (), (), (), 0.0, {}).success_rate == 1.0


@pytest.mark.parametrize(
    ("requests", "options", "message"),
    [
        ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], {}, "request 'a': duplicate id"),
        ([{"id": "a"}], {}, "request 'a': give exactly one of prompt and messages"),
        ([{"id": "a", "prompt": "x", "messages": []}], {}, "request 'a': give exactly one of prompt and messages"),
        ([{"id": "a", "prompt": "x", "tempreature": 1}], {}, "request 'a': unknown key 'tempreature'"),
        ([{"id": "a", "prompt": "x", "max_tokens": 0}], {}, "request 'a': max_tokens: must be an int >= 1"),
        ([{"id": "a", "prompt": "x", "max_cost": -1}], {}, "request 'a': max_cost: must be a number >= 0"),
        ([{"id": 5, "prompt": "x"}], {}, "request 1: id must be a str, got 5"),
        ([{"prompt": "x"}], {"max_concurrency": 0}, "max_concurrency: must be an int >= 1"),
        ([{"prompt": "x"}], {"failure_strategy": "stop"}, "failure_strategy: must be 'continue'"),
        ([{"prompt": "x"}], {"failure_strategy": ("stop_on_threshold", 1.0)}, "rate must be in [0, 1), got 1.0"),
        ([{"prompt": "x"}], {"failure_strategy": ("stop_on_threshold", -0.1)}, "rate must be in [0, 1)"),
        ([{"prompt": "x"}], {"request_timeout": 0}, "request_timeout: must be a number > 0"),
    ],
)
async def test_bad_input_is_a_value_error_naming_it_before_any_send(
    requests: list[dict[str, Any]], options: dict[str, Any], message: str,
) -> None:
    calls: list[int] = []

    def fn(messages: list[Message], **params: Any) -> str:
        calls.append(1)
        return "ok"

    with pytest.raises(ValueError) as info:
        await run_batch(manager(fn), [{"id": "first", "prompt": "fine"}, *requests], **options)
    assert message in str(info.value)
    assert calls == []


async def test_an_id_to_prompt_mapping_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not a mapping"):
        await run_batch(manager(echo), {"a": "hello"})  # type: ignore[arg-type]


async def test_continue_runs_everything() -> None:
    result = await run_batch(manager(failing_on("p0", "p1", "p2")), [{"prompt": f"p{i}"} for i in range(6)],
                             failure_strategy="continue")
    assert (sorted(result.errors), list(result.results), result.cancelled, result.not_started) == (
        ["0", "1", "2"], ["3", "4", "5"], (), ())


async def test_stop_on_first_cancels_the_requests_in_flight_and_starts_no_more() -> None:
    async def fn(messages: list[Message], **params: Any) -> str:
        if messages[-1].content == "bad":
            raise ServerError("boom")
        await anyio.sleep(10)  # in flight when the stop comes
        return "late"

    requests = [{"id": "slow1", "prompt": "a"}, {"id": "slow2", "prompt": "b"}, {"id": "bad", "prompt": "bad"},
                {"id": "later", "prompt": "c"}]
    with anyio.fail_after(5):
        result = await run_batch(manager(fn), requests, max_concurrency=3, failure_strategy="stop_on_first")
    assert (list(result.errors), result.cancelled, result.not_started, result.results) == (
        ["bad"], ("slow1", "slow2"), ("later",), {})


async def test_stop_on_threshold_waits_for_the_min_sample_then_stops_above_the_rate() -> None:
    bad = {f"p{i}" for i in (0, 2, 4, 6, 8, 10, 12)}  # every other request fails
    result = await run_batch(manager(failing_on(*bad)), [{"prompt": f"p{i}"} for i in range(40)],
                             max_concurrency=1, failure_strategy=("stop_on_threshold", 0.4))
    # after 10 finished, 5 failed: 0.5 > 0.4 → stop; one at a time, so nothing in flight
    assert (len(result.errors) + len(result.results), len(result.not_started), result.cancelled) == (10, 30, ())


async def test_stop_on_threshold_does_not_stop_at_or_below_the_rate() -> None:
    bad = {"p0", "p5"}  # 2 of the first 10: exactly the rate, then below it
    result = await run_batch(manager(failing_on(*bad)), [{"prompt": f"p{i}"} for i in range(20)],
                             max_concurrency=1, failure_strategy=("stop_on_threshold", 0.2))
    assert (len(result.errors), len(result.results), result.not_started) == (2, 18, ())


async def test_a_small_batch_takes_all_its_requests_as_the_sample() -> None:
    result = await run_batch(manager(failing_on("p0")), [{"prompt": f"p{i}"} for i in range(4)],
                             max_concurrency=1, failure_strategy=("stop_on_threshold", 0.0))
    assert (list(result.errors), list(result.results), result.not_started) == (["0"], ["1", "2", "3"], ())


async def test_request_timeout_is_each_requests_deadline() -> None:
    async def fn(messages: list[Message], **params: Any) -> str:
        await anyio.sleep(5 if messages[-1].content == "slow" else 0)
        return "ok"

    with anyio.fail_after(3):
        result = await run_batch(manager(fn), [{"id": "s", "prompt": "slow"}, {"id": "f", "prompt": "fast"}],
                                 request_timeout=0.1)
    assert list(result.results) == ["f"]
    assert isinstance(result.errors["s"], DeadlineExceeded)


async def test_retry_failed_reruns_what_has_no_result_and_merges() -> None:
    flaky = {"p1", "p4"}

    def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        if messages[-1].content in flaky:
            flaky.discard(messages[-1].content)  # fails once
            raise ServerError("flaky")
        return echo(messages)

    m = manager(fn)
    first = await run_batch(m, [{"prompt": f"p{i}"} for i in range(6)])
    assert sorted(first.errors) == ["1", "4"]
    merged = await retry_failed(m, first, max_concurrency=2)
    assert list(merged.results) == ["0", "1", "2", "3", "4", "5"]
    assert (merged.errors, merged.cancelled, merged.not_started, merged.success_rate) == ({}, (), (), 1.0)
    stats = merged.by_model["model"]
    assert (stats.calls, stats.successes, stats.failures) == (8, 6, 2)
    assert merged.total_tokens == 6 * 150
    assert merged.wall_time >= first.wall_time and merged.requests == first.requests


async def test_retry_failed_runs_the_cancelled_and_not_started_too() -> None:
    async def fn(messages: list[Message], **params: Any) -> str:
        if messages[-1].content == "bad":
            raise ServerError("boom")
        await anyio.sleep(0.05)
        return "ok"

    m = manager(fn)
    first = await run_batch(m, [{"id": "a", "prompt": "x"}, {"id": "b", "prompt": "bad"}, {"id": "c", "prompt": "y"}],
                            max_concurrency=2, failure_strategy="stop_on_first")
    assert (first.cancelled, list(first.errors), first.not_started) == (("a",), ["b"], ("c",))
    merged = await retry_failed(m, first)
    assert (list(merged.results), list(merged.errors)) == (["a", "c"], ["b"])


def peers_closed(fake: OpenAIFake) -> int:
    """How many of the fake's open connections the client has already closed (read: EOF)."""
    closed = 0
    with fake._lock:
        connections = list(fake._connections)
    for sock in connections:
        try:
            closed += sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            pass
    return closed


async def test_a_stop_closes_the_connections_of_the_requests_in_flight(openai_fake: OpenAIFake) -> None:
    openai_fake.delay = 5.0  # every wire request hangs
    spec = ModelSpec(name="oa", provider="openai", model="test-model", base_url=openai_fake.url, api_key=KEY,
                     cost_per_1k_input=Decimal(1), cost_per_1k_output=Decimal(1))
    m = LLMManager(LLMConfig.model_validate({"defaults": {"max_retries": 0}}), models=[spec])

    async def bad(messages: list[Message], **params: Any) -> str:
        while len(openai_fake.requests) < 4:  # fail once the four wire requests are in flight
            await anyio.sleep(0.01)
        raise ServerError("boom")

    m.register_model("broken", bad)

    async def stop_soon() -> BatchResult:
        requests = [BatchRequest(id=f"w{i}", prompt="hi", force_model="oa") for i in range(4)]
        requests.append(BatchRequest(id="bad", prompt="x", force_model="broken"))
        return await run_batch(m, requests, max_concurrency=5, failure_strategy="stop_on_first")

    async with m:
        with anyio.fail_after(4):
            result = await stop_soon()
        assert (result.cancelled, list(result.errors)) == (("w0", "w1", "w2", "w3"), ["bad"])
        deadline = time.monotonic() + 2
        while peers_closed(openai_fake) < 4 and time.monotonic() < deadline:
            await anyio.sleep(0.01)
        assert len(openai_fake.requests) == 4
        assert peers_closed(openai_fake) == 4  # the fake saw every cancelled request's client hang up
