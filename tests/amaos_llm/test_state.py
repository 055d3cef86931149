"""The `StateStore` contract, one suite for every store (a Redis store joins the parameters)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import anyio
import pytest

from amaos_llm.state import BreakerView, Ledger, MemoryStore, StateStore
from amaos_llm.state_redis import RedisStateStore

pytestmark = pytest.mark.anyio

D = Decimal


@dataclass
class Harness:
    store: StateStore
    now: list[float]

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the stores are anyio: both event loops


@pytest.fixture(params=["memory", "redis"])
async def h(request: pytest.FixtureRequest, anyio_backend: str) -> AsyncIterator[Harness]:
    now = [1000.0]
    if request.param == "memory":
        yield Harness(MemoryStore(clock=lambda: now[0]), now)
        return
    if anyio_backend != "asyncio":
        pytest.skip("redis-py's asyncio client runs on asyncio only")
    server = request.getfixturevalue("redis_server")
    # A fresh prefix per test: the server lives for the session. Holds outlive the test's 3,600 s.
    prefix = f"test:{request.node.name}:{uuid.uuid4().hex[:8]}:"
    store = RedisStateStore(server.url, prefix=prefix, clock=lambda: now[0], hold_ttl=7200)
    yield Harness(store, now)
    await store.aclose()


async def test_memory_store_is_a_state_store() -> None:
    assert isinstance(MemoryStore(), StateStore)


async def test_reserve_holds_the_amount_when_it_fits(h: Harness) -> None:
    res = await h.store.reserve("k", D("0.30"), D("1"))
    assert res is not None and res.amount == D("0.30") and res.key == "k"
    assert await h.store.usage("k") == Ledger(spent=D(0), reserved=D("0.30"))


async def test_reserve_up_to_the_limit_exactly_and_not_a_cent_more(h: Harness) -> None:
    assert await h.store.reserve("k", D("0.60"), D("1")) is not None
    assert await h.store.reserve("k", D("0.41"), D("1")) is None
    assert await h.store.reserve("k", D("0.40"), D("1")) is not None
    assert await h.store.usage("k") == Ledger(D(0), D("1.00"))


async def test_settle_turns_the_reservation_into_the_real_amount(h: Harness) -> None:
    res = await h.store.reserve("k", D("0.50"), D("1"))
    assert res is not None
    assert await h.store.settle(res, D("0.123")) is True
    assert await h.store.usage("k") == Ledger(D("0.123"), D(0))


async def test_settle_charges_even_above_the_amount_held(h: Harness) -> None:
    res = await h.store.reserve("k", D("0.50"), D("1"))
    assert res is not None
    await h.store.settle(res, D("0.75"))
    assert await h.store.usage("k") == Ledger(D("0.75"), D(0))


async def test_settle_and_release_count_once_whatever_comes_after(h: Harness) -> None:
    res = await h.store.reserve("k", D("0.50"), D("1"))
    assert res is not None
    assert await h.store.settle(res, D("0.2")) is True
    assert await h.store.settle(res, D("0.2")) is False
    assert await h.store.release(res) is False
    assert await h.store.usage("k") == Ledger(D("0.2"), D(0))
    other = await h.store.reserve("k", D("0.1"), D("1"))
    assert other is not None
    assert await h.store.release(other) is True
    assert await h.store.release(other) is False
    assert await h.store.settle(other, D("0.1")) is False
    assert await h.store.usage("k") == Ledger(D("0.2"), D(0))


async def test_release_frees_the_room(h: Harness) -> None:
    res = await h.store.reserve("k", D("1"), D("1"))
    assert res is not None and await h.store.reserve("k", D("0.01"), D("1")) is None
    await h.store.release(res)
    assert await h.store.reserve("k", D("1"), D("1")) is not None


async def test_keys_are_independent(h: Harness) -> None:
    assert await h.store.reserve("a", D("1"), D("1")) is not None
    assert await h.store.reserve("b", D("1"), D("1")) is not None
    assert await h.store.usage("never-used") == Ledger(D(0), D(0))


async def test_a_negative_amount_is_refused(h: Harness) -> None:
    with pytest.raises(ValueError, match="amount must be >= 0"):
        await h.store.reserve("k", D("-1"), D("1"))


async def test_concurrent_reservations_never_exceed_the_limit(h: Harness) -> None:
    got: list[bool] = []

    async def one() -> None:
        await anyio.sleep(0)
        got.append(await h.store.reserve("k", D("0.01"), D("0.50")) is not None)

    async with anyio.create_task_group() as tg:
        for _ in range(200):
            tg.start_soon(one)
    assert got.count(True) == 50
    assert await h.store.usage("k") == Ledger(D(0), D("0.50"))


async def test_windowed_spending_counts_for_window_s_after_it_was_reserved(h: Harness) -> None:
    first = await h.store.reserve("rpm", D(1), D(2), window_s=60)
    h.advance(10)
    second = await h.store.reserve("rpm", D(1), D(2), window_s=60)
    assert first is not None and second is not None
    await h.store.settle(second, D(1))  # settled out of order: each counts from its own reservation
    await h.store.settle(first, D(1))
    assert await h.store.reserve("rpm", D(1), D(2), window_s=60) is None
    h.advance(50)  # 60 s after the first reservation
    assert await h.store.usage("rpm") == Ledger(D(1), D(0))
    assert await h.store.reserve("rpm", D(1), D(2), window_s=60) is not None
    h.advance(10)
    assert await h.store.usage("rpm") == Ledger(D(0), D(1))


async def test_an_open_windowed_reservation_counts_for_the_window_then_frees(h: Harness) -> None:
    # a send whose usage never comes (it failed) counts its estimate for one window, as a settled one would
    assert await h.store.reserve("tpm", D(5), D(5), window_s=60) is not None
    h.advance(59.9)
    assert await h.store.reserve("tpm", D(1), D(5), window_s=60) is None
    h.advance(0.1)
    assert await h.store.usage("tpm") == Ledger(D(0), D(0))
    assert await h.store.reserve("tpm", D(5), D(5), window_s=60) is not None


async def test_open_reservations_on_a_key_without_window_do_not_expire(h: Harness) -> None:
    assert await h.store.reserve("k", D(5), D(5)) is not None
    h.advance(3600)
    assert await h.store.reserve("k", D(1), D(5)) is None


async def test_settle_adjusts_a_windowed_amount_by_actual_minus_held(h: Harness) -> None:
    res = await h.store.reserve("tpm", D(40), D(100), window_s=60)
    assert res is not None
    h.advance(10)
    assert await h.store.reserve("tpm", D(61), D(100), window_s=60) is None
    assert await h.store.settle(res, D(10)) is True
    assert await h.store.usage("tpm") == Ledger(D(10), D(0))
    assert await h.store.reserve("tpm", D(90), D(100), window_s=60) is not None
    h.advance(50)  # the settled 10 counted from its reservation: it leaves first
    assert await h.store.usage("tpm") == Ledger(D(0), D(90))


async def test_closing_a_reservation_out_of_its_window_changes_nothing(h: Harness) -> None:
    settled = await h.store.reserve("tpm", D(40), D(100), window_s=60)
    released = await h.store.reserve("tpm", D(40), D(100), window_s=60)
    assert settled is not None and released is not None
    h.advance(60)
    assert await h.store.settle(settled, D(1000)) is False
    assert await h.store.release(released) is False
    assert await h.store.usage("tpm") == Ledger(D(0), D(0))


async def test_frees_in_is_when_enough_of_the_window_has_left_for_the_amount(h: Harness) -> None:
    first = await h.store.reserve("tpm", D(30), D(60), window_s=60)  # at 1000, held
    h.advance(10)
    second = await h.store.reserve("tpm", D(30), D(60), window_s=60)  # at 1010, settled at 20
    assert first is not None and second is not None
    await h.store.settle(second, D(20))
    assert await h.store.frees_in("tpm", D(10), D(60)) == 0.0  # 50 + 10 fits now
    assert await h.store.frees_in("tpm", D(40), D(60)) == 50.0  # once the first 30 leaves
    assert await h.store.frees_in("tpm", D(60), D(60)) == 60.0  # once both have
    assert await h.store.frees_in("tpm", D(61), D(60)) is None  # never
    assert await h.store.reserve("k", D(1), D(1)) is not None
    assert await h.store.frees_in("k", D(1), D(1)) is None  # no window: nothing frees by itself
    assert await h.store.frees_in("unseen", D(1), D(1)) is None


async def test_rpm_frees_in_names_the_oldest_send_of_a_full_window(h: Harness) -> None:
    for _ in range(3):
        assert await h.store.reserve("rpm", D(1), D(3), window_s=60) is not None
        h.advance(5)
    assert await h.store.reserve("rpm", D(1), D(3), window_s=60) is None
    assert await h.store.frees_in("rpm", D(1), D(3)) == 45.0  # reserved at 1000, now 1015


async def test_a_tpm_of_150_million_counts_exactly(h: Harness) -> None:
    limit = D(150_000_000)
    res = await h.store.reserve("tpm", D(149_999_999), limit, window_s=60)
    assert res is not None and await h.store.reserve("tpm", D(1), limit, window_s=60) is not None
    assert await h.store.reserve("tpm", D(1), limit, window_s=60) is None
    await h.store.settle(res, D(149_999_000))
    assert await h.store.usage("tpm") == Ledger(D(149_999_000), D(1))
    assert await h.store.frees_in("tpm", D(1001), limit) == 60.0


async def test_concurrent_windowed_reservations_never_exceed_the_limit(h: Harness) -> None:
    got: list[bool] = []

    async def one() -> None:
        got.append(await h.store.reserve("rpm", D(1), D(20), window_s=60) is not None)

    async with anyio.create_task_group() as tg:
        for _ in range(60):
            tg.start_soon(one)
    assert got.count(True) == 20
    assert await h.store.usage("rpm") == Ledger(D(0), D(20))


async def test_wait_wakes_when_a_reservation_on_the_key_closes(h: Harness) -> None:
    res = await h.store.reserve("k", D(1), D(1))
    assert res is not None
    woke: list[bool] = []
    async with anyio.create_task_group() as tg:
        async def waiter() -> None:
            woke.append(await h.store.wait("k", timeout=5))

        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await anyio.sleep(0.01)
        await h.store.release(res)
    assert woke == [True, True]


async def test_wait_gives_up_after_the_timeout(h: Harness) -> None:
    with anyio.fail_after(1):
        assert await h.store.wait("k", timeout=0.01) is False


# -- shared circuit breakers: one record per target, the same steps on every store ------------------

CLOSED = BreakerView(0, None, False)


async def fail(h: Harness, key: str = "b", *, token: str = "", force: bool = False) -> BreakerView:
    return await h.store.breaker_record(key, "failure", threshold=3, reset_after=30, token=token, force=force)


async def opened(h: Harness, key: str = "b") -> None:
    for _ in range(3):
        await fail(h, key)
    h.advance(30)  # half-open from here


async def test_a_breaker_nobody_reported_on_is_closed(h: Harness) -> None:
    assert await h.store.breaker_state("b") == CLOSED


async def test_the_threshold_failure_opens_the_breaker_for_its_reset(h: Harness) -> None:
    assert [await fail(h), await fail(h)] == [BreakerView(1, None, False), BreakerView(2, None, False)]
    assert await fail(h) == BreakerView(3, 30.0, False, changed=True)
    h.advance(10)
    assert await h.store.breaker_state("b") == BreakerView(3, 20.0, False)
    assert await h.store.breaker_state("other") == CLOSED


async def test_force_opens_before_the_threshold(h: Harness) -> None:
    assert await fail(h, force=True) == BreakerView(1, 30.0, False, changed=True)


async def test_a_failure_while_open_counts_but_does_not_extend_it(h: Harness) -> None:
    await opened(h)
    h.advance(-20)
    assert await fail(h, force=True) == BreakerView(4, 20.0, False)


async def test_a_success_closes_it_for_everyone(h: Harness) -> None:
    await fail(h)
    await fail(h, force=True)
    assert await h.store.breaker_record("b", "success") == CLOSED
    assert await fail(h) == BreakerView(1, None, False)  # counting starts again


async def test_half_open_lets_exactly_one_probe_take_the_slot(h: Harness) -> None:
    await opened(h)
    assert await h.store.breaker_state("b") == BreakerView(3, 0.0, False)
    views = [await h.store.breaker_probe("b", token, ttl=60) for token in ("a", "b", "c", "a")]
    assert views == [BreakerView(3, 0.0, True, changed=True)] + [BreakerView(3, 0.0, True)] * 3


async def test_no_probe_while_it_is_open_or_closed(h: Harness) -> None:
    assert await h.store.breaker_probe("b", "a", ttl=60) == CLOSED
    await opened(h)
    h.advance(-1)
    assert await h.store.breaker_probe("b", "a", ttl=60) == BreakerView(3, 1.0, False)


async def test_a_failed_probe_reopens_for_a_full_reset_and_frees_the_slot(h: Harness) -> None:
    await opened(h)
    await h.store.breaker_probe("b", "a", ttl=60)
    assert await fail(h, token="a") == BreakerView(4, 30.0, False, changed=True)
    h.advance(30)
    assert (await h.store.breaker_probe("b", "c", ttl=60)).changed


async def test_a_successful_probe_closes_it(h: Harness) -> None:
    await opened(h)
    await h.store.breaker_probe("b", "a", ttl=60)
    assert await h.store.breaker_record("b", "success") == CLOSED
    assert await h.store.breaker_probe("b", "c", ttl=60) == CLOSED


async def test_an_inconclusive_probe_frees_the_slot_only_for_its_holder(h: Harness) -> None:
    await opened(h)
    await h.store.breaker_probe("b", "a", ttl=60)
    assert await h.store.breaker_record("b", "inconclusive", token="c") == BreakerView(3, 0.0, True)
    assert await h.store.breaker_record("b", "inconclusive", token="a") == BreakerView(3, 0.0, False)
    assert (await h.store.breaker_probe("b", "c", ttl=60)).changed


async def test_the_probe_slot_frees_itself_after_its_ttl(h: Harness) -> None:
    await opened(h)
    await h.store.breaker_probe("b", "a", ttl=0.05)
    assert not (await h.store.breaker_probe("b", "c", ttl=60)).changed
    h.advance(0.1)
    await anyio.sleep(0.1)  # Redis expires the slot (PX) on its own clock
    assert (await h.store.breaker_probe("b", "c", ttl=60)).changed
