"""Budgets, max_cost, context windows and rate limits in the attempt loop: skips with their reasons,
exact settlement, nothing leaked on failure or cancellation, BudgetExceeded; estimate, batch and a
budget two managers share on one Redis."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import anyio
import pytest

from amaos_llm import (
    AllModelsFailed,
    Budget,
    BudgetExceeded,
    ConfigError,
    LLMConfig,
    LLMManager,
    Message,
    ServerError,
)
from amaos_llm.state_redis import RedisStateStore
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.anyio
D = Decimal


def answer(text: str = "ok", input_tokens: int = 100, output_tokens: int = 10) -> Any:
    async def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        return {"content": text, "input_tokens": input_tokens, "output_tokens": output_tokens}
    return fn


def manager(budget_usd: Any = None, **defaults: Any) -> LLMManager:
    defaults = {"retry_jitter": 0, "max_retries": 0, "max_tokens": 10, **defaults}
    return LLMManager(LLMConfig.model_validate({"defaults": defaults}), budget_usd=budget_usd)


# $1 per 1k input, $2 per 1k output: 100 in + 10 out = $0.12 real; the worst case of "hi" with
# max_tokens 10 is prompt_bound × $0.001 + 10 × $0.002.
PRICED = {"cost_per_1k_input": 1, "cost_per_1k_output": 2}


async def test_a_budget_settles_each_answer_at_its_real_cost() -> None:
    m = manager(budget_usd="1")
    m.register_model("a", answer(), **PRICED)
    for _ in range(3):
        result = await m.complete("hi")
        assert result.cost == D("0.12")
    assert m.get_stats()["budget"] == {"limit": D(1), "spent": D("0.36"), "reserved": D(0), "remaining": D("0.64")}
    assert await m.budget_status() == m.get_stats()["budget"]


async def test_over_budget_a_model_is_skipped_for_a_cheaper_one_and_none_left_is_budget_exceeded() -> None:
    m = manager(budget_usd="0.29")
    m.register_model("dear", answer("dear"), priority=2, cost_per_1k_input=10, cost_per_1k_output=10)
    m.register_model("cheap", answer("cheap"), priority=1, **PRICED)
    result = await m.complete("hi")
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("dear", "skipped"), ("cheap", "success")]
    assert (result.attempts[0].error or "").startswith("over budget (manager): worst case $")
    await m.complete("hi")
    with pytest.raises(BudgetExceeded) as caught:
        await m.complete("hi")  # $0.24 spent: "cheap"'s worst case, $0.054, does not fit the $0.05 left
    err = caught.value
    assert err.scope == "manager" and err.remaining == D("0.05") and err.needed == D("0.054")
    assert isinstance(err, AllModelsFailed)
    assert m.get_stats()["budget"]["reserved"] == 0


async def test_max_cost_caps_one_call_and_bad_values_are_config_errors() -> None:
    m = manager()
    m.register_model("a", answer(), **PRICED)
    with pytest.raises(BudgetExceeded) as caught:
        await m.complete("hi", max_cost=0.001)
    assert caught.value.scope == "call"
    assert "over max_cost: worst case $" in (caught.value.attempts[0].error or "")
    assert (await m.complete("hi", max_cost=1)).cost == D("0.12")
    for bad in (-1, float("nan")):
        with pytest.raises(ConfigError, match="max_cost"):
            await m.complete("hi", max_cost=bad)


async def test_an_unpriced_model_cannot_be_held_to_a_budget() -> None:
    m = LLMManager(LLMConfig.model_validate({"models": [
        {"name": "mystery", "provider": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", "source": "cloud",
         "api_key": "sk-unused"}]}), budget_usd=5)
    m.register_model("priced", answer(), source="cloud", priority=-1, **PRICED)
    result = await m.complete("hi")
    assert result.attempts[0].error == "price unknown: cannot be held to a budget"
    assert result.model_name == "priced"


async def test_an_extra_budget_is_reserved_against_too() -> None:
    run = Budget("0.17")
    m = manager()
    m.register_model("a", answer(), **PRICED)
    await m.complete("hi", budget=run)
    assert run.spent == D("0.12")
    with pytest.raises(BudgetExceeded) as caught:
        await m.complete("hi", budget=[run])
    assert caught.value.scope == "budget"


async def test_a_failed_or_cancelled_call_frees_what_it_held() -> None:
    async def boom(messages: list[Message], **params: Any) -> str:
        raise ServerError("down")

    async def slow(messages: list[Message], **params: Any) -> str:
        await anyio.sleep(10)
        return "late"

    m = manager(budget_usd=1)
    m.register_model("boom", boom, **PRICED)
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
    m.register_model("boom", slow, **PRICED)
    with anyio.move_on_after(0.05):
        await m.complete("hi")
    assert m.get_stats()["budget"] == {"limit": D(1), "spent": D(0), "reserved": D(0), "remaining": D(1)}


async def test_many_concurrent_calls_never_overspend_and_add_up_exactly() -> None:
    m = manager(budget_usd="3")
    m.register_model("a", answer(), **PRICED)
    costs: list[Decimal] = []

    async def one() -> None:
        try:
            result = await m.complete("hi")
        except BudgetExceeded:
            return
        costs.append(result.cost or D(0))

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(one)
    budget = m.get_stats()["budget"]
    assert budget["spent"] == sum(costs) <= D(3) and budget["reserved"] == 0
    assert len(costs) == 25  # $3 / $0.12: every call that could fit got through


async def test_a_prompt_too_long_for_a_window_skips_the_model_and_none_fitting_sends_nothing() -> None:
    m = manager()
    m.register_model("small", answer("small"), priority=2, context_window=50)
    m.register_model("big", answer("big"), priority=1, context_window=100_000)
    long_prompt = "word " * 200
    result = await m.complete(long_prompt)
    assert result.model_name == "big"
    assert (result.attempts[0].error or "").startswith("context window: ~")
    m.register_model("big", answer("big"), priority=1, context_window=60)
    with pytest.raises(AllModelsFailed):
        await m.complete(long_prompt)
    assert m.get_stats()["by_model"]["big"]["calls"] == 1  # the first call only


async def test_rpm_overflows_to_a_second_model_and_alone_raises_with_the_reason() -> None:
    m = manager()
    m.register_model("limited", answer("limited"), priority=2, rpm=2)
    m.register_model("spare", answer("spare"), priority=1)
    names = [(await m.complete("hi")).model_name for _ in range(4)]
    assert names == ["limited", "limited", "spare", "spare"]
    alone = manager()
    alone.register_model("limited", answer(), rpm=1)
    await alone.complete("hi")
    with pytest.raises(AllModelsFailed) as caught:
        await alone.complete("hi")
    assert (caught.value.attempts[-1].error or "").startswith("rate limit: rpm 1 reached, frees in")


async def test_estimate_sends_nothing_and_says_why_a_model_would_be_skipped() -> None:
    seen: list[int] = []

    async def counted(messages: list[Message], **params: Any) -> str:
        seen.append(1)
        return "x"

    m = manager(budget_usd="0.01")
    m.register_model("a", counted, priority=2, **PRICED)
    m.register_model("b", counted, priority=1, context_window=5)
    estimates = m.estimate("hello there", max_tokens=10)
    assert [e.model_name for e in estimates] == ["a", "b"]
    assert estimates[0].worst_case is not None and estimates[0].skip_reason is not None
    assert (estimates[1].skip_reason or "").startswith("context window")
    assert seen == []


async def test_batch_and_retry_failed_through_the_manager() -> None:
    m = manager()
    m.register_model("a", answer("ok"), **PRICED)
    result = await m.batch([{"id": "x", "prompt": "one"}, {"id": "y", "prompt": "two"}], max_concurrency=2)
    assert list(result.results) == ["x", "y"] and result.total_cost == D("0.24")
    again = await m.retry_failed(result)
    assert list(again.results) == ["x", "y"]


async def test_reset_budget_starts_over_and_a_closed_manager_reopens() -> None:
    m = manager(budget_usd="0.2")
    m.register_model("a", answer(), **PRICED)
    await m.complete("hi")
    await m.reset_budget()
    assert m.get_stats()["budget"]["spent"] == 0
    await m.reset_budget(5)
    assert m.get_stats()["budget"]["limit"] == 5
    await m.aclose()
    async with m:
        assert (await m.complete("hi")).content == "ok"


async def test_two_managers_on_one_redis_share_one_budget(redis_server: RedisServer) -> None:
    key = uuid.uuid4().hex
    managers = []
    for _ in range(2):
        store = RedisStateStore(redis_server.url, prefix=f"test:{key}:")
        m = LLMManager(LLMConfig.model_validate({"defaults": {"max_tokens": 10}, "budget_key": "team"}),
                       budget_usd="0.5", state_store=store)
        m.register_model("a", answer(), **PRICED)
        managers.append(m)
    results = []
    for i in range(4):
        results.append(await managers[i % 2].complete("hi"))
    assert (await managers[0].budget_status())["spent"] == D("0.48")
    with pytest.raises(BudgetExceeded):
        await managers[1].complete("hi")
    for m in managers:
        await m._spending.store.aclose()  # type: ignore[attr-defined]


async def test_an_unreachable_store_refuses_budgeted_calls_unless_on_error_is_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from amaos_llm import StateStoreError

    sent: list[int] = []

    async def counted(messages: list[Message], **params: Any) -> dict[str, Any]:
        sent.append(1)
        return {"content": "ok", "input_tokens": 100, "output_tokens": 10}

    for on_error in ("closed", "open"):
        store = RedisStateStore("redis://127.0.0.1:9/0", timeout=0.3)
        cfg = LLMConfig.model_validate({"defaults": {"max_tokens": 10}, "state": {"on_error": on_error}})
        m = LLMManager(cfg, budget_usd=1, state_store=store)
        m.register_model("a", counted, **PRICED)
        if on_error == "closed":
            with pytest.raises(StateStoreError, match="redis://127.0.0.1:9/0"):
                await m.complete("hi")
            assert sent == []  # nothing went out unbudgeted
        else:
            await m.complete("hi")
            await m.complete("hi")
            assert len(sent) == 2
            assert caplog.text.count("calls go on unbudgeted") == 1  # once a minute, not once a call
        await store.aclose()


async def test_an_answer_stands_when_the_store_dies_before_it_settles(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.support.redis_server import start_redis

    server = start_redis()
    store = RedisStateStore(server.url, prefix=f"test:{uuid.uuid4().hex}:", timeout=0.3)

    async def dies_meanwhile(messages: list[Message], **params: Any) -> dict[str, Any]:
        server.kill()
        return {"content": "answered", "input_tokens": 100, "output_tokens": 10}

    m = LLMManager(LLMConfig.model_validate({"defaults": {"max_tokens": 10}}), budget_usd=1, state_store=store)
    m.register_model("a", dies_meanwhile, **PRICED)
    result = await m.complete("hi")
    assert result.content == "answered" and "its hold expires" in caplog.text
    await store.aclose()
