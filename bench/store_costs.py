"""What the Redis state store costs a call, beside the process-local store (issue 14's target:
≤ 0.5 ms p50 added per budgeted call on loopback).

A `redis-server` on a free 127.0.0.1 port (no persistence), started here and stopped by its pid.
In one process, the sides alternating every 50 calls so that a busy moment weighs on both:

1. budget reserve + settle: `BudgetGuard([Budget(store=...)]).reserve(...)`, then `hold.settle(...)`
   (Redis: two Lua scripts, two round trips), per pair: p50, p99.
2. `manager.complete()` on a registered function with a manager budget, the manager on its own
   memory store vs on the Redis store: per call, and the difference of the medians.
3. the same without a budget: what a Redis-backed manager pays when nothing is budgeted (its shared
   breakers, which read Redis at most once a second per model and write only on a change).
4. the same on a model with `rpm` and `tpm` (limits never reached), no budget: the process's
   synchronous windows vs the shared ones (on Redis: rpm and tpm reserves, then the tpm settle).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from bench.timing import alternating, difference, metric

CHUNK = 50


@contextmanager
def redis_server() -> Iterator[str]:
    """A loopback redis-server's URL while the block runs; stopped by its pid afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (bash scripts/install installs it where apt is available)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
                                "no", "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on 127.0.0.1:{port}") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(10)


def _manager(store: Any, budget: bool, limited: bool = False) -> Any:
    from amaos_llm import LLMConfig, LLMManager

    async def instant(messages: Any, **params: Any) -> dict[str, Any]:
        return {"content": "ok", "input_tokens": 10, "output_tokens": 2}

    config = LLMConfig.model_validate({"defaults": {"max_retries": 0, "max_tokens": 16}})
    manager = LLMManager(config, budget_usd=10**6 if budget else None, state_store=store)
    limits = {"rpm": 10**9, "tpm": 10**12} if limited else {}
    manager.register_model("instant", instant, cost_per_1k_input=Decimal("0.1"), cost_per_1k_output=Decimal("0.2"),
                           **limits)
    return manager


def _pair(store: Any) -> Callable[[], Awaitable[None]]:
    from amaos_llm.budget import Budget, BudgetGuard

    budget, worst, cost = Budget(10**9, store=store, key=f"bench:{uuid.uuid4().hex}"), Decimal("0.05"), Decimal("0.001")

    async def reserve_settle() -> None:
        hold = await BudgetGuard([budget]).reserve(worst, "m")
        await hold.settle(cost)  # type: ignore[union-attr]

    return reserve_settle


def _complete(manager: Any) -> Callable[[], Awaitable[Any]]:
    return lambda: manager.complete("hi")


async def store_costs(quick: bool) -> dict[str, Any]:
    from amaos_llm.state import MemoryStore
    from amaos_llm.state_redis import RedisStateStore

    count, repeats = (1_000, 3) if quick else (4_000, 5)
    with redis_server() as url:
        redis = RedisStateStore(url, prefix=f"bench:{uuid.uuid4().hex[:8]}:")
        try:
            pairs = await alternating({"memory": _pair(MemoryStore()), "redis": _pair(redis)}, count=count,
                                      repeats=repeats, warmup=200, chunk=CHUNK)
            managers = {"memory": _manager(None, True), "redis": _manager(redis, True)}
            budgeted = await alternating({side: _complete(m) for side, m in managers.items()}, count=count,
                                         repeats=repeats, warmup=200, chunk=CHUNK)
            plain = {"memory": _manager(None, False), "redis": _manager(redis, False)}
            unbudgeted = await alternating({side: _complete(m) for side, m in plain.items()}, count=count,
                                           repeats=repeats, warmup=200, chunk=CHUNK)
            limited = {"memory": _manager(None, False, True), "redis": _manager(redis, False, True)}
            rated = await alternating({side: _complete(m) for side, m in limited.items()}, count=count,
                                      repeats=repeats, warmup=200, chunk=CHUNK)
            spent = (await managers["redis"].budget_status())["spent"]
            sends = (await redis.usage("rate:instant:rpm")).reserved
        finally:
            await redis.aclose()
    assert spent > 0, "the Redis side never charged its budget"
    assert sends > 0, "the Redis side never counted a send in its rpm window"
    return {
        "reserve_settle": {side: metric(s, "us") for side, s in pairs.items()},
        "budgeted_call": {side: metric(s, "us") for side, s in budgeted.items()},
        "budgeted_call_redis_over_memory": difference(budgeted["redis"], budgeted["memory"], "ms"),
        "unbudgeted_call": {side: metric(s, "us") for side, s in unbudgeted.items()},
        "unbudgeted_call_redis_over_memory": difference(unbudgeted["redis"], unbudgeted["memory"], "ms"),
        "rate_limited_call": {side: metric(s, "us") for side, s in rated.items()},
        "rate_limited_call_redis_over_memory": difference(rated["redis"], rated["memory"], "ms"),
    }
