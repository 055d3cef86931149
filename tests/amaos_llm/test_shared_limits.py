"""rpm/tpm shared through a state store: managers on one store (a `MemoryStore` handed to them, a
Redis in one process or several) count one window per model; the tpm window takes the real tokens;
a Redis that dies refuses the call (`on_error: closed`) or leaves each process its own windows
(`open`, one warning)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager, Message, ServerError, StateStoreError
from amaos_llm.state import Ledger, MemoryStore, StateStore
from amaos_llm.state_redis import RedisStateStore
from tests.support.clock import Clock
from tests.support.redis_server import RedisServer, start_redis
from tests.support.workers import run_workers

pytestmark = pytest.mark.anyio
D = Decimal


def config(**defaults: Any) -> LLMConfig:
    return LLMConfig.model_validate({"defaults": {"max_retries": 0, "max_retry_wait": 0, **defaults}})


def answering(tokens: int = 10, sent: list[int] | None = None) -> Any:
    """A model that answers with `tokens` of usage (half in, half out), counting its sends in `sent`."""
    async def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        if sent is not None:
            sent.append(1)
        return {"content": "ok", "input_tokens": tokens // 2, "output_tokens": tokens - tokens // 2}

    return fn


async def outcome(m: LLMManager, **kwargs: Any) -> str:
    """'ok', or why the call's last attempt was skipped or failed."""
    try:
        await m.complete("hi", **kwargs)
    except AllModelsFailed as exc:
        return exc.attempts[-1].error or "?"
    return "ok"


@dataclass
class Fleet:
    """Managers on one store, on one fake clock (the store's too)."""

    store: StateStore
    clock: Clock

    def manager(self, **defaults: Any) -> LLMManager:
        return LLMManager(config(**defaults), clock=self.clock, sleep=self.clock.sleep, state_store=self.store)


@pytest.fixture(params=["memory", "redis"])
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    clock = Clock()
    if request.param == "memory":
        yield Fleet(MemoryStore(clock=clock), clock)
        return
    server = request.getfixturevalue("redis_server")
    store = RedisStateStore(server.url, prefix=f"test:{uuid.uuid4().hex[:8]}:", clock=clock)
    yield Fleet(store, clock)
    await store.aclose()


# -- which managers share --------------------------------------------------------------------------

def test_only_a_shared_store_counts_rates_in_the_store(redis_server: RedisServer) -> None:
    assert LLMManager(config())._spending.shared_rates is None  # its own memory store: limits.py, no await
    assert LLMManager(config(), state_store=MemoryStore())._spending.shared_rates is not None
    on_redis = LLMConfig.model_validate({"state": {"backend": "redis", "url": redis_server.url}})
    assert LLMManager(on_redis)._spending.shared_rates is not None


# -- managers on one store (both stores) -------------------------------------------------------------

async def test_managers_on_one_store_share_one_rpm_window(fleet: Fleet) -> None:
    managers = [fleet.manager() for _ in range(3)]
    for m in managers:
        m.register_model("a", answering(), rpm=4)
    outcomes = [await outcome(managers[i % 3]) for i in range(6)]
    assert outcomes == ["ok"] * 4 + ["rate limit: rpm 4 reached, frees in 60.0 s"] * 2
    fleet.clock.now += 59.9
    assert await outcome(managers[2]) == "rate limit: rpm 4 reached, frees in 0.1 s"
    fleet.clock.now += 0.1  # the window slides: the four sends of 60 s ago leave it
    assert [await outcome(m) for m in managers] == ["ok"] * 3


async def test_the_window_says_when_it_frees_so_the_final_wait_sends_then(fleet: Fleet) -> None:
    first, second = fleet.manager(), fleet.manager(max_retry_wait=120)
    for m in (first, second):
        m.register_model("a", answering(), rpm=1)
    assert await outcome(first) == "ok"
    fleet.clock.now += 15
    result = await second.complete("hi")  # waits for the slot the other manager took 15 s ago
    assert fleet.clock.slept == [45.0]
    assert [a.outcome for a in result.attempts] == ["skipped", "success"]


async def test_tpm_counts_the_estimate_then_the_real_tokens(fleet: Fleet) -> None:
    a, b = fleet.manager(max_tokens=40), fleet.manager(max_tokens=40)
    a.register_model("m", answering(tokens=10), tpm=100)
    b.register_model("m", answering(tokens=10), tpm=100)
    # each send holds ~41-50 tokens (prompt + max_tokens) until its 10 real ones replace them: six fit
    outcomes = [await outcome((a, b)[i % 2]) for i in range(7)]
    assert outcomes == ["ok"] * 6 + ["rate limit: tpm 100 reached, frees in 60.0 s"]
    assert await fleet.store.usage("rate:m:tpm") == Ledger(D(60), D(0))


async def test_real_tokens_above_the_estimate_count_in_full(fleet: Fleet) -> None:
    m = fleet.manager(max_tokens=40)
    m.register_model("m", answering(tokens=90), tpm=100)
    assert await outcome(m) == "ok"
    assert await fleet.store.usage("rate:m:tpm") == Ledger(D(90), D(0))
    assert await outcome(m) == "rate limit: tpm 100 reached, frees in 60.0 s"


async def test_a_request_larger_than_tpm_never_fits(fleet: Fleet) -> None:
    m = fleet.manager(max_tokens=500)
    m.register_model("m", answering(), tpm=100)
    assert (await outcome(m)).startswith("rate limit: tpm 100 reached, ~5")
    assert (await outcome(m)).endswith("tokens never fit")


async def test_a_failed_send_keeps_its_estimate_and_the_next_models_tokens_are_not_its_own(fleet: Fleet) -> None:
    async def failing(messages: list[Message], **params: Any) -> str:
        raise ServerError("500")

    m = fleet.manager(max_tokens=40)
    m.register_model("flaky", failing, priority=2, tpm=1000)
    m.register_model("spare", answering(tokens=10), priority=1)
    assert (await m.complete("hi")).model_name == "spare"
    held = (await fleet.store.usage("rate:flaky:tpm")).reserved
    assert 41 <= held <= 50  # the estimate, for the window: not spare's 10 tokens


async def test_the_managers_own_store_keeps_the_process_windows() -> None:
    m = LLMManager(config(max_tokens=40), clock=Clock())
    m.register_model("m", answering(tokens=10), tpm=1000)
    await m.complete("hi")
    assert m._spending.limits.limiter("m", rpm=None, tpm=1000).usage() == (1, 10)  # type: ignore[union-attr]


async def test_a_failed_send_on_the_process_window_keeps_its_estimate_too() -> None:
    async def failing(messages: list[Message], **params: Any) -> str:
        raise ServerError("500")

    m = LLMManager(config(max_tokens=40), clock=Clock())
    m.register_model("flaky", failing, priority=2, tpm=1000)
    m.register_model("spare", answering(tokens=10), priority=1)
    assert (await m.complete("hi")).model_name == "spare"
    sends, tokens = m._spending.limits.limiter("flaky", rpm=None, tpm=1000).usage()  # type: ignore[union-attr]
    assert sends == 1 and 41 <= tokens <= 50


# -- a Redis that dies ------------------------------------------------------------------------------

async def test_a_killed_redis_refuses_rate_limited_calls_naming_the_url_unless_on_error_is_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_redis()
    sent: list[int] = []
    stores, managers = [], []
    for on_error in ("closed", "open"):
        store = RedisStateStore(server.url, prefix=f"test:{uuid.uuid4().hex[:8]}:", timeout=0.3)
        cfg = LLMConfig.model_validate({"defaults": {"max_retries": 0, "max_retry_wait": 0},
                                        "state": {"on_error": on_error}})
        m = LLMManager(cfg, state_store=store)
        m.register_model("a", answering(sent=sent), rpm=2)
        assert await outcome(m) == "ok"
        stores.append(store)
        managers.append(m)
    server.kill()
    try:
        closed, opened = managers
        with pytest.raises(StateStoreError, match=f"state store redis://127.0.0.1:{server.port}/0 failed"):
            await closed.complete("hi")
        assert len(sent) == 2  # nothing went out past a limit no one could count
        assert [await outcome(opened) for _ in range(3)] == ["ok", "ok", "rate limit: rpm 2 reached, frees in 60.0 s"]
        assert len(sent) == 4  # this process's own window took over: rpm 2 from here
        assert caplog.text.count("their rate limits counted by this process alone") == 1
    finally:
        for store in stores:
            await store.aclose()


# -- processes on one Redis ------------------------------------------------------------------------

# One worker process: a manager whose model "a" has `rpm`; on Redis (the store's clock: the wall
# clock sped up `speed` times, the same in every process) or on its own memory store (the manager's
# clock sped up alike). Waits at a barrier (a Redis counter) for all `n` workers, then calls as fast
# as it can until `seconds` after the first one passed it, or until it was refused `enough` times
# (0: never stop early); prints how many calls were sent and refused.
WORKER = """
import anyio, json, sys, time
import redis
from amaos_llm import AllModelsFailed, LLMConfig, LLMManager
from amaos_llm.state_redis import RedisStateStore

url, prefix, kind, rpm, n, seconds, speed, enough = sys.argv[1:9]
clock = lambda: time.time() * float(speed)

async def answer(messages, **params):
    return {"content": "ok", "input_tokens": 1, "output_tokens": 1}

async def main():
    config = LLMConfig.model_validate({"defaults": {"max_retries": 0, "max_retry_wait": 0}})
    if kind == "redis":
        m = LLMManager(config, state_store=RedisStateStore(url, prefix=prefix, clock=clock))
    else:
        m = LLMManager(config, clock=clock)
    m.register_model("a", answer, rpm=int(rpm))
    sync = redis.Redis.from_url(url)
    sync.incr(prefix + "barrier")
    while int(sync.get(prefix + "barrier")) < int(n):
        time.sleep(0.002)
    sync.set(prefix + "start", repr(time.time()), nx=True)
    end = float(sync.get(prefix + "start")) + float(seconds)
    sent = refused = 0
    while time.time() < end and (refused < int(enough) or not int(enough)):
        try:
            await m.complete("hi")
            sent += 1
        except AllModelsFailed:
            refused += 1
    print(json.dumps({"sent": sent, "refused": refused}))

anyio.run(main)
"""


def run_limit_workers(url: str, kind: str, rpm: int, seconds: float, speed: float = 1, enough: int = 0,
                n: int = 4) -> list[dict[str, int]]:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    args = [url, prefix, kind, str(rpm), str(n), str(seconds), str(speed), str(enough)]
    return run_workers(WORKER, [args] * n)


def test_four_processes_on_one_redis_send_rpm_per_window_where_their_own_stores_send_4x(
    redis_server: RedisServer,
) -> None:
    rpm = 600  # the figure
    # The product's 60 s window on the real clock: each worker presses on until it has been refused
    # 20 times (the window it sees is full), within 30 s, so all of it is inside one window.
    shared = run_limit_workers(redis_server.url, "redis", rpm, seconds=30, enough=20)
    alone = run_limit_workers(redis_server.url, "memory", rpm, seconds=30, enough=20)
    print(f"rpm {rpm}, 4 processes, one window: shared {shared}, each its own store {alone}")
    assert sum(o["sent"] for o in shared) == rpm  # one window, one limit, for the whole fleet
    assert all(o["refused"] == 20 for o in shared + alone)  # every worker pressed on past the limit
    assert sum(o["sent"] for o in alone) == 4 * rpm  # each process its own window


def test_the_shared_window_slides_for_the_fleet(redis_server: RedisServer) -> None:
    rpm = 20
    # The clock 30× fast (every process reads the same wall clock): a 60 s window lasts 2 s. Over
    # 5 s of calls the window refills at 2 s and at 4 s, when the first sends leave it, and not again.
    shared = run_limit_workers(redis_server.url, "redis", rpm, seconds=5, speed=30)
    alone = run_limit_workers(redis_server.url, "memory", rpm, seconds=5, speed=30)
    print(f"rpm {rpm}, 4 processes, 5 s at 30x (2.5 windows): shared {shared}, each its own store {alone}")
    assert sum(o["sent"] for o in shared) == 3 * rpm
    assert sum(o["sent"] for o in alone) == 4 * 3 * rpm
