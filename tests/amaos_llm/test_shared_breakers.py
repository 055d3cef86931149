"""Circuit breakers shared through a state store: managers on one store (a `MemoryStore` handed to
them, or a Redis, in one process or several) open together and send one half-open probe between
them; a Redis that dies leaves each process its own breakers, with one warning."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager, Message, ModelSpec, ServerError
from amaos_llm.breakers import MAX_AGE, OPEN, breaker_key
from amaos_llm.state import MemoryStore
from amaos_llm.state_redis import RedisStateStore
from tests.support.clock import Clock
from tests.support.fakes import OpenAIFake
from tests.support.redis_server import RedisServer, start_redis
from tests.support.workers import run_workers

pytestmark = pytest.mark.anyio
DEFAULTS = {"max_retries": 0, "max_retry_wait": 0, "breaker_threshold": 3}
HTTP_500 = "ServerError: openai_compatible: HTTP 500: fake failure 500"


def config(url: str | None = None, **defaults: Any) -> LLMConfig:
    models = [] if url is None else [{"name": "a", "provider": "openai_compatible", "model": "test-model",
                                      "base_url": url}]
    return LLMConfig.model_validate({"models": models, "defaults": {**DEFAULTS, **defaults}})


def gated() -> Any:
    """A model that fails until `fn.healthy` is set, then answers once `fn.go` is set; counts its runs."""
    async def fn(messages: list[Message], **params: Any) -> str:
        fn.runs += 1  # type: ignore[attr-defined]
        if not fn.healthy:  # type: ignore[attr-defined]
            raise ServerError("500")
        await fn.go.wait()  # type: ignore[attr-defined]
        return "back"

    fn.runs, fn.healthy, fn.go = 0, False, anyio.Event()  # type: ignore[attr-defined]
    return fn


async def outcome(m: LLMManager) -> str:
    """'ok', or the reason the call's last attempt was skipped or failed."""
    try:
        await m.complete("hi")
    except AllModelsFailed as exc:
        return exc.attempts[-1].error or "?"
    return "ok"


# -- managers given one memory store ------------------------------------------------------------

def memory_fleet(n: int) -> tuple[Clock, list[LLMManager], list[Any]]:
    clock = Clock()
    store = MemoryStore(clock=clock)
    managers, fns = [], []
    for _ in range(n):
        m = LLMManager(config(breaker_reset=30), clock=clock, state_store=store)
        fn = gated()
        m.register_model("a", fn)
        managers.append(m)
        fns.append(fn)
    return clock, managers, fns


async def test_a_managers_own_memory_store_keeps_breakers_out_of_the_store() -> None:
    assert LLMManager(config())._breakers is None  # the loop never calls the shared layer


def test_a_breaker_is_shared_per_target_per_machine_for_local_models_never_for_an_embedded_one() -> None:
    host = socket.gethostname()
    cloud = ModelSpec(name="gpt", provider="openai")
    local = ModelSpec(name="llama", provider="ollama", base_url="http://127.0.0.1:11434")
    assert breaker_key(cloud, None) == "breaker:gpt"
    assert breaker_key(cloud, "https://eu.example/v1") == "breaker:gpt@https://eu.example/v1"
    assert breaker_key(local, "http://127.0.0.1:11434") == f"breaker:llama@http://127.0.0.1:11434@{host}"
    assert breaker_key(ModelSpec(name="tiny", provider="embedded"), None) is None


async def test_managers_on_one_store_open_together_at_the_threshold() -> None:
    _, (m1, m2), (f1, f2) = memory_fleet(2)
    assert [await outcome(m1) for _ in range(3)] == ["ServerError: 500"] * 3
    assert await outcome(m2) == OPEN
    assert (f1.runs, f2.runs) == (3, 0)
    assert [m.get_stats()["by_model"].get("a", {}).get("breaker_opens", 0) for m in (m1, m2)] == [1, 0]


async def test_failures_of_several_managers_add_up_to_the_threshold() -> None:
    clock, (m1, m2), (f1, f2) = memory_fleet(2)
    assert [await outcome(m) for m in (m1, m2, m1)] == ["ServerError: 500"] * 3
    clock.now += MAX_AGE  # m2's copy, read at its failure, may serve that long
    assert [await outcome(m) for m in (m2, m1)] == [OPEN, OPEN]
    assert f1.runs + f2.runs == 3


async def test_half_open_lets_one_probe_through_for_every_manager_and_its_success_closes_it() -> None:
    clock, managers, fns = memory_fleet(3)
    for _ in range(3):
        await outcome(managers[0])
    clock.now += 30
    for fn in fns:
        fn.healthy = True
    results: list[str] = []

    async def call(m: LLMManager) -> None:
        results.append(await outcome(m))

    async with anyio.create_task_group() as tg:
        for m in managers * 3:
            tg.start_soon(call, m)
        await anyio.sleep(0.05)
        assert sum(fn.runs for fn in fns) == 3 + 1  # the failures that opened it, then the probe, still out
        for fn in fns:
            fn.go.set()
    assert sorted(results) == [OPEN] * 8 + ["ok"]
    clock.now += MAX_AGE  # the others read the closed breaker at their next send
    assert [await outcome(m) for m in managers] == ["ok"] * 3


async def test_reset_circuit_breaker_closes_it_for_every_manager() -> None:
    clock, (m1, m2), (_, f2) = memory_fleet(2)
    for _ in range(3):
        await outcome(m1)
    f2.healthy = True
    f2.go.set()
    assert await outcome(m2) == OPEN
    m1.reset_circuit_breaker("a")
    assert await outcome(m1) == "ServerError: 500"  # m1's next send closed it for the fleet first
    clock.now += MAX_AGE
    assert await outcome(m2) == "ok"


# -- a Redis: managers in one process, then in several -------------------------------------------

@pytest.fixture
async def made() -> AsyncIterator[list[LLMManager]]:
    """The managers a test makes, closed with their stores however it ends."""
    managers: list[LLMManager] = []
    yield managers
    for m in managers:
        await m.aclose()
        await m._spending.store.aclose()  # type: ignore[attr-defined]


def on_redis(made: list[LLMManager], url: str, model_url: str, n: int, **defaults: Any) -> list[LLMManager]:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    made += [LLMManager(config(model_url, **defaults), state_store=RedisStateStore(url, prefix=prefix, timeout=0.3))
             for _ in range(n)]
    return made


def posts(fake: OpenAIFake) -> int:
    return sum(1 for r in fake.requests if r.method == "POST")


async def test_managers_on_one_redis_open_together_and_send_one_probe(
    redis_server: RedisServer, openai_fake: OpenAIFake, made: list[LLMManager],
) -> None:
    managers = on_redis(made, redis_server.url, openai_fake.url, 3, breaker_reset=1)
    openai_fake.fail(500)
    assert [await outcome(managers[0]) for _ in range(3)] == [HTTP_500] * 3
    assert [await outcome(m) for m in managers] == [OPEN] * 3
    assert posts(openai_fake) == 3
    await anyio.sleep(1)
    openai_fake.recover()
    openai_fake.delay = 0.5  # the probe is out while every other call arrives
    results: list[str] = []

    async def call(m: LLMManager) -> None:
        results.append(await outcome(m))

    async with anyio.create_task_group() as tg:
        for m in managers * 4:
            tg.start_soon(call, m)
    assert results.count("ok") == 1 and posts(openai_fake) == 4
    assert results.count(OPEN) == 11
    openai_fake.delay = 0
    await anyio.sleep(MAX_AGE)
    assert [await outcome(m) for m in managers] == ["ok"] * 3


# One worker process: a manager on the shared Redis; waits at a barrier (a Redis counter) until all
# `n` workers are ready, then makes `calls` calls, one after another or all at once; prints outcomes.
WORKER = """
import anyio, json, sys, time
import redis
from amaos_llm import AllModelsFailed, LLMConfig, LLMManager
from amaos_llm.state_redis import RedisStateStore

url, prefix, model_url, n, calls, mode = sys.argv[1:7]

async def main():
    config = LLMConfig.model_validate({
        "models": [{"name": "a", "provider": "openai_compatible", "model": "test-model", "base_url": model_url}],
        "defaults": {"max_retries": 0, "max_retry_wait": 0, "breaker_threshold": 3, "breaker_reset": 4}})
    m = LLMManager(config, state_store=RedisStateStore(url, prefix=prefix))
    out = []
    async def call():
        try:
            await m.complete("hi")
            out.append("ok")
        except AllModelsFailed as exc:
            out.append(exc.attempts[-1].outcome)
    sync = redis.Redis.from_url(url)
    sync.incr(prefix + "barrier:" + mode)
    while int(sync.get(prefix + "barrier:" + mode)) < int(n):
        time.sleep(0.005)
    if mode == "sequential":
        for _ in range(int(calls)):
            await call()
    else:
        async with anyio.create_task_group() as tg:
            for _ in range(int(calls)):
                tg.start_soon(call)
    print(json.dumps(out))

anyio.run(main)
"""


def test_worker_processes_share_one_breaker_and_one_probe(redis_server: RedisServer, openai_fake: OpenAIFake) -> None:
    prefix, workers, threshold = f"test:{uuid.uuid4().hex[:8]}:", 4, 3
    openai_fake.fail(500)
    outs = run_workers(WORKER, [[redis_server.url, prefix, openai_fake.url, str(workers), "5", "sequential"]] * workers)
    opened_at = time.monotonic()
    sent = posts(openai_fake)
    # Per process, each would send its own 3 before stopping (12); shared, the fleet stops at 3,
    # plus at most one send per other worker that was already out when it opened.
    assert threshold <= sent <= threshold + workers - 1
    assert sum(o.count("error") for o in outs) == sent and sum(o.count("skipped") for o in outs) == 20 - sent
    time.sleep(max(0.0, 4.1 - (time.monotonic() - opened_at)))  # half-open now
    openai_fake.recover()
    openai_fake.delay = 1.0  # the probe is out while every worker's calls arrive
    outs = run_workers(WORKER, [[redis_server.url, prefix, openai_fake.url, str(workers), "5", "concurrent"]] * workers)
    assert posts(openai_fake) == sent + 1  # one probe for the fleet, not one per process
    assert sum(o.count("ok") for o in outs) == 1 and sum(o.count("skipped") for o in outs) == 19


async def test_a_redis_killed_mid_run_leaves_each_process_its_own_breakers(
    openai_fake: OpenAIFake, caplog: pytest.LogCaptureFixture, made: list[LLMManager],
) -> None:
    server = start_redis()
    [m] = on_redis(made, server.url, openai_fake.url, 1, breaker_threshold=2, breaker_reset=0.3)
    try:
        assert await outcome(m) == "ok"
        server.kill()
        openai_fake.fail(500)
        assert [await outcome(m) for _ in range(3)] == [HTTP_500] * 2 + [OPEN]
        assert posts(openai_fake) == 3  # the breaker opened here, at the threshold, as without a store
        assert caplog.text.count("shared circuit breakers unavailable") == 1
        openai_fake.recover()
        await anyio.sleep(0.3)
        assert await outcome(m) == "ok"  # this process's own probe closed it
        assert m.get_stats()["by_model"]["a"]["breaker_opens"] == 1
    finally:
        server.kill()
