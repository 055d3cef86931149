"""What only a shared store must show: several processes on one Redis ledger never overspend and
add up exactly; a dead worker's hold is reclaimed; a shared rate limit holds across processes (where
process-local stores let each process take the whole limit); an unreachable Redis is a clear error."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from amaos_llm.errors import ConfigError, StateStoreError
from amaos_llm.state import Ledger
from amaos_llm.state_redis import RedisStateStore, from_units, to_units
from tests.support.redis_server import RedisServer, start_redis
from tests.support.workers import run_workers

pytestmark = pytest.mark.anyio
D = Decimal

# One worker process: `callers` concurrent calls, each reserving its worst case and settling a
# real cost at most that; prints what it spent and how many calls got through.
WORKER = """
import anyio, json, random, sys
from decimal import Decimal
from amaos_llm.state_redis import RedisStateStore

url, prefix, key, limit, callers, seed = sys.argv[1:7]
rng = random.Random(int(seed))

async def main():
    store = RedisStateStore(url, prefix=prefix)
    spent, ok = Decimal(0), 0
    async def call():
        nonlocal spent, ok
        worst = Decimal(rng.randint(1, 50)) / 1000
        res = await store.reserve(key, worst, Decimal(limit))
        if res is None:
            return
        await anyio.sleep(rng.random() / 100)
        real = (worst * Decimal(rng.randint(0, 1000)) / 1000).quantize(Decimal("1e-9"))
        await store.settle(res, real)
        await store.settle(res, real)  # a retried settle: must not charge twice
        spent += real
        ok += 1
    async with anyio.create_task_group() as tg:
        for _ in range(int(callers)):
            tg.start_soon(call)
    await store.aclose()
    print(json.dumps({"spent": str(spent), "ok": ok}))

anyio.run(main)
"""

RATE_WORKER = """
import anyio, json, sys
from decimal import Decimal
from amaos_llm.state import MemoryStore
from amaos_llm.state_redis import RedisStateStore

url, prefix, kind, limit, attempts = sys.argv[1:6]

async def main():
    store = RedisStateStore(url, prefix=prefix) if kind == "redis" else MemoryStore()
    sent = 0
    for _ in range(int(attempts)):
        res = await store.reserve("rpm:model", Decimal(1), Decimal(limit), window_s=60)
        if res is not None:
            await store.settle(res, Decimal(1))
            sent += 1
    if kind == "redis":
        await store.aclose()
    print(json.dumps({"sent": sent}))

anyio.run(main)
"""


def fresh_prefix() -> str:
    return f"test:{uuid.uuid4().hex[:8]}:"


async def test_four_processes_on_one_budget_never_overspend_and_add_up_exactly(redis_server: RedisServer) -> None:
    prefix, limit = fresh_prefix(), "1.5"  # about a third of what 200 callers would spend
    outs = run_workers(WORKER, [[redis_server.url, prefix, "budget", limit, "50", str(i)] for i in range(4)])
    store = RedisStateStore(redis_server.url, prefix=prefix)
    ledger = await store.usage("budget")
    await store.aclose()
    total = sum(D(o["spent"]) for o in outs)
    assert ledger == Ledger(spent=total, reserved=D(0))
    assert total <= D(limit)
    assert 0 < sum(o["ok"] for o in outs) < 200  # the limit bit: some were refused


async def test_a_shared_rate_limit_holds_across_processes_where_local_ones_do_not(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    redis_sent = run_workers(RATE_WORKER, [[redis_server.url, prefix, "redis", "60", "40"] for _ in range(4)])
    local_sent = run_workers(RATE_WORKER, [[redis_server.url, prefix, "memory", "60", "40"] for _ in range(4)])
    assert sum(o["sent"] for o in redis_sent) == 60  # one window, one limit, for the whole fleet
    assert sum(o["sent"] for o in local_sent) == 160  # each process its own 60: ~4× (all 40 here)


async def test_a_dead_workers_hold_is_reclaimed_and_a_late_settle_charges_once(redis_server: RedisServer) -> None:
    now = [1000.0]
    store = RedisStateStore(redis_server.url, prefix=fresh_prefix(), clock=lambda: now[0], hold_ttl=30)
    try:
        res = await store.reserve("k", D("0.8"), D("1"))
        assert res is not None and await store.reserve("k", D("0.5"), D("1")) is None
        now[0] += 31  # the worker holding it never came back
        assert await store.usage("k") == Ledger(D(0), D(0))
        assert await store.reserve("k", D("0.5"), D("1")) is not None
        assert await store.settle(res, D("0.3")) is True  # it was alive after all: its spend still counts
        assert await store.settle(res, D("0.3")) is False
        assert await store.usage("k") == Ledger(D("0.3"), D("0.5"))
    finally:
        await store.aclose()


async def test_an_unreachable_redis_is_a_state_store_error_naming_the_url() -> None:
    store = RedisStateStore("redis://:hunter2@127.0.0.1:9/0", timeout=0.5)
    with pytest.raises(StateStoreError) as caught:
        await store.reserve("k", D(1), D(2))
    await store.aclose()
    assert "redis://127.0.0.1:9/0" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(store)


async def test_redis_killed_mid_run_refuses_then_recovers_on_restart() -> None:
    server = start_redis()
    store = RedisStateStore(server.url, prefix=fresh_prefix(), timeout=0.5)
    try:
        res = await store.reserve("k", D("0.1"), D("1"))
        assert res is not None
        server.kill()
        with pytest.raises(StateStoreError):
            await store.reserve("k", D("0.1"), D("1"))
        server = start_redis(server.port)
        assert await store.reserve("k", D("0.1"), D("1")) is not None  # a fresh server: the pool reconnects
    finally:
        await store.aclose()
        server.kill()


def test_bad_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisStateStore("http://127.0.0.1:6379")


def test_units_are_whole_nano_dollars_rounded_up() -> None:
    assert to_units(D("0.000000001")) == 1 and to_units(D("0.0000000011")) == 2
    assert from_units(to_units(D("1.234567891"))) == D("1.234567891")


async def test_managers_on_one_redis_share_the_result_cache(redis_server: RedisServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from amaos_llm import LLMConfig, LLMManager

    calls: list[int] = []

    async def priced(messages, **params):  # type: ignore[no-untyped-def]
        calls.append(1)
        return {"content": "cached answer", "input_tokens": 10, "output_tokens": 5}

    prefix = fresh_prefix()
    managers = []
    for _ in range(2):
        cfg = LLMConfig.model_validate({"cache": {"enabled": True, "ttl": 60}})
        m = LLMManager(cfg, state_store=RedisStateStore(redis_server.url, prefix=prefix))
        m.register_model("a", priced, cost_per_1k_input="0.3", cost_per_1k_output="0.7")
        managers.append(m)
    first = await managers[0].complete("same question")
    second = await managers[1].complete("same question")  # another process would see the same
    assert calls == [1] and second.cache_hit and second.content == "cached answer"
    assert second.saved_cost == first.cost == D("0.0065")  # exact, not a float's approximation
    for m in managers:
        await m._spending.store.aclose()  # type: ignore[attr-defined]

    down = LLMManager(LLMConfig.model_validate({"cache": {"enabled": True}}),
                      state_store=RedisStateStore("redis://127.0.0.1:9/0", timeout=0.3))
    down.register_model("a", priced)
    assert (await down.complete("q")).content == "cached answer"
    assert (await down.complete("q")).cache_hit  # the process's own cache goes on alone
    assert "shared result cache unavailable" in caplog.text
