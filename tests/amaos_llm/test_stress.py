"""2,000 requests at concurrency 50 over three flaky cloud fakes (30 % injected 500s) and one
healthy one: every call answers with its model's reply, breakers open and recover, and every
counter equals what the fakes saw."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

import anyio
import pytest

from amaos_llm import LLMConfig, LLMManager, LLMResult
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio

REQUESTS, CONCURRENCY = 2000, 50
FLAKY = ("flaky-1", "flaky-2", "flaky-3")


async def test_two_thousand_calls_over_flaky_fakes_all_answer_and_add_up() -> None:
    fakes = {name: OpenAIFake().start() for name in (*FLAKY, "healthy")}
    try:
        for i, name in enumerate(FLAKY):
            fakes[name].flaky(500, 0.3, seed=i)
        for name, fake in fakes.items():
            fake.reply = f"answer from {name}"
        models = [
            {"name": name, "provider": "openai_compatible", "model": "test-model", "base_url": fake.url,
             "source": "cloud", "priority": 0 if name == "healthy" else 1,
             "cost_per_1k_input": "0.5", "cost_per_1k_output": "1.5"}
            for name, fake in fakes.items()
        ]
        config = LLMConfig.model_validate({
            "models": models,
            "routing": {"load_balancing": "round_robin"},
            "defaults": {"max_retries": 1, "retry_backoff": 0.001, "breaker_threshold": 3, "breaker_reset": 0.2},
        })
        results: list[LLMResult] = []
        limiter = anyio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            async with limiter:
                results.append(await m.complete(f"request {i}"))

        async with LLMManager(config) as m:
            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for i in range(REQUESTS):
                        tg.start_soon(one, i)
            stats = m.get_stats()
    finally:
        for fake in fakes.values():
            fake.stop()

    assert len(results) == REQUESTS and stats["successes"] == REQUESTS and stats["failures"] == 0
    for result in results:
        assert result.content == f"answer from {result.model_name}"
        sends = Counter(a.model_name for a in result.attempts if a.outcome != "skipped")
        assert max(sends.values()) <= 2  # one send and at most one retry per model

    # every counter equals the fakes' own records. The healthy model is only the fallback when all
    # three flaky ones fail or are open at once: some runs (a loaded machine) never need it, and a
    # model never called has no entry in the stats.
    by_model = {name: {"calls": 0, "failures": 0, "successes": 0} for name in fakes} | stats["by_model"]
    for name, fake in fakes.items():
        assert by_model[name]["calls"] == len(fake.requests)
        assert by_model[name]["failures"] == fake.failures_sent
        assert by_model[name]["successes"] == len(fake.requests) - fake.failures_sent
    attempts = [a for r in results for a in r.attempts]
    assert stats["retries"] == sum(
        1 for r in results for prev, cur in zip(r.attempts, r.attempts[1:])
        if cur.model_name == prev.model_name and prev.outcome == "error" and cur.outcome != "skipped")
    assert stats["input_tokens"] == sum(r.usage.input_tokens for r in results)
    assert stats["output_tokens"] == sum(r.usage.output_tokens for r in results)
    assert stats["total_cost"] == sum((r.cost for r in results if r.cost is not None), Decimal(0))
    assert stats["total_cost"] == sum((a.cost for a in attempts if a.cost is not None), Decimal(0)) > 0

    # every flaky breaker opened, and its model answered again afterwards
    for name in FLAKY:
        assert by_model[name]["breaker_opens"] >= 1, name
        timeline = [a.outcome for a in attempts if a.model_name == name]
        skipped_at = next(i for i, a in enumerate(attempts)
                          if a.model_name == name and "circuit breaker" in (a.error or ""))
        assert any(a.model_name == name and a.outcome == "success" for a in attempts[skipped_at:]), timeline[:50]
    assert sum(by_model[n]["failures"] for n in FLAKY) > 0 and by_model["healthy"]["failures"] == 0


def test_fakes_inject_the_configured_share_of_failures() -> Any:
    fake = OpenAIFake()
    fake.flaky(500, 0.3, seed=0)
    hits = sum(fake._take_failure() is not None for _ in range(10_000))
    assert 2_800 < hits < 3_200 and fake.failures_sent == hits
