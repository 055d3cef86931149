"""Benchmark 9: `run_batch` against the plain asyncio way, and the per-call costs of budgets.

1. 10,000 instant callable requests (`--quick`: 2,000) through one manager at concurrency 256:
   `amaos_llm.batch.run_batch(max_concurrency=256)` vs `asyncio.Semaphore(256)` + `gather` over
   the same `manager.chat()` calls. The sides alternate repeat by repeat in one process; a sample
   is one whole batch (wall seconds). Target: ours ≤ 2× the gather floor.
2. Price lookup after the first (`PriceBook.price(spec).cost_of(usage)`, genai-prices-priced
   gpt-4o-mini with cached tokens), and budget reserve + settle on the local store
   (`BudgetGuard([budget]).reserve(...)` then `hold.settle(...)`), in µs per call.

    python -m bench.batch [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from decimal import Decimal
from typing import Any

from amaos_llm import LLMConfig, LLMManager, Message
from amaos_llm.batch import run_batch
from amaos_llm.budget import Budget, BudgetGuard
from amaos_llm.config import ModelSpec
from amaos_llm.pricing import PriceBook
from amaos_llm.types import Usage
from bench.timing import emit, metric

CONCURRENCY = 256


def instant(messages: list[Message], **params: Any) -> dict[str, Any]:
    return {"content": "ok", "input_tokens": 10, "output_tokens": 2}


def make_manager() -> LLMManager:
    manager = LLMManager(LLMConfig.model_validate({"defaults": {"max_retries": 0}}))
    manager.register_model("instant", instant, cost_per_1k_input=Decimal("0.1"), cost_per_1k_output=Decimal("0.2"))
    return manager


async def ours(manager: LLMManager, prompts: list[str]) -> float:
    t0 = time.perf_counter()
    result = await run_batch(manager, [{"prompt": p} for p in prompts], max_concurrency=CONCURRENCY)
    took = time.perf_counter() - t0
    assert len(result.results) == len(prompts)
    return took


async def gather_floor(manager: LLMManager, prompts: list[str]) -> float:
    """What a user writes without a batch helper: a semaphore and gather, same chat() calls."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(prompt: str) -> Any:
        async with semaphore:
            return await manager.chat([{"role": "user", "content": prompt}])

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(p) for p in prompts))
    took = time.perf_counter() - t0
    assert len(results) == len(prompts)
    return took


async def batch_vs_gather(count: int, repeats: int) -> dict[str, Any]:
    manager = make_manager()
    prompts = [f"request {i}" for i in range(count)]
    await ours(manager, prompts[:500])  # warm-up: imports, caches, the provider
    await gather_floor(manager, prompts[:500])
    samples: dict[str, list[float]] = {"ours": [], "gather": []}
    for i in range(repeats):
        order = ("ours", "gather") if i % 2 == 0 else ("gather", "ours")  # neither always runs first
        for side in order:
            samples[side].append(await (ours if side == "ours" else gather_floor)(manager, prompts))
    return {side: metric([values], unit="s") for side, values in samples.items()}


async def budget_call_costs(n: int) -> dict[str, Any]:
    book = PriceBook()
    spec = ModelSpec(name="mini", provider="openai", model="gpt-4o-mini")
    usage = Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=1024)
    book.price(spec)  # the first lookup loads genai-prices and resolves the rates
    price_samples, budget_samples = [], []
    budget, worst, cost = Budget(10**9), Decimal("0.05"), Decimal("0.001")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            book.price(spec).cost_of(usage)  # type: ignore[union-attr]
        price_samples.append([(time.perf_counter() - t0) / n])
        t0 = time.perf_counter()
        for _ in range(n):
            hold = await BudgetGuard([budget]).reserve(worst, "m")
            await hold.settle(cost)  # type: ignore[union-attr]
        budget_samples.append([(time.perf_counter() - t0) / n])
    return {"price_lookup": metric(price_samples), "reserve_settle": metric(budget_samples)}


async def main_async(quick: bool) -> None:
    count, repeats = (2_000, 3) if quick else (10_000, 5)
    sides = await batch_vs_gather(count, repeats)
    calls = await budget_call_costs(20_000 if quick else 100_000)
    params = {"requests": count, "max_concurrency": CONCURRENCY}
    emit({"benchmark": "batch", "side": "ours", "params": params,
          "metrics": {"batch": sides["ours"], **calls}})
    emit({"benchmark": "batch", "side": "gather", "params": params, "metrics": {"batch": sides["gather"]}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main_async(parser.parse_args().quick))


if __name__ == "__main__":
    main()
