"""rpm/tpm over a sliding 60 s window, on a fake clock."""

from __future__ import annotations

import heapq
import random

import anyio
import pytest

from amaos_llm.limits import RateLimiter, RateLimits, RateRefusal, Ticket

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class FakeClock:
    """Virtual time: tasks sleep until a moment; when all are blocked, time jumps to the earliest."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._n = 0

    def __call__(self) -> float:
        return self.now

    async def sleep_until(self, moment: float) -> None:
        if moment <= self.now:
            return
        event = anyio.Event()
        self._n += 1
        heapq.heappush(self._sleepers, (moment, self._n, event))
        await event.wait()

    async def drive(self) -> None:
        while True:
            await anyio.wait_all_tasks_blocked()
            if not self._sleepers:
                return
            moment = self._sleepers[0][0]
            self.now = moment
            while self._sleepers and self._sleepers[0][0] <= moment:
                heapq.heappop(self._sleepers)[2].set()


def test_rpm_admits_n_sends_per_60_s_and_says_when_the_next_frees() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=2, clock=clock)
    assert isinstance(limiter.acquire(10), Ticket)
    clock.now += 15
    assert isinstance(limiter.acquire(10), Ticket)
    refusal = limiter.acquire(10)
    assert refusal == RateRefusal("rate limit: rpm 2 reached, frees in 45.0 s", 1060.0)
    clock.now = 1060.0
    assert isinstance(limiter.acquire(10), Ticket)


def test_tpm_counts_the_estimate_and_frees_when_enough_old_sends_leave() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    assert isinstance(limiter.acquire(400), Ticket)
    clock.now += 10
    assert isinstance(limiter.acquire(400), Ticket)
    clock.now += 10
    # 800 held; 700 more needs 500 freed: both earlier sends must leave, the second at 1070
    assert limiter.acquire(700) == RateRefusal("rate limit: tpm 1000 reached, frees in 50.0 s", 1070.0)
    assert isinstance(limiter.acquire(200), Ticket)


def test_real_usage_replaces_the_estimate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    ticket = limiter.acquire(900)
    assert isinstance(ticket, Ticket)
    assert isinstance(limiter.acquire(200), RateRefusal)
    ticket.settle(300)  # the answer was short
    assert limiter.usage() == (1, 300)
    assert isinstance(limiter.acquire(700), Ticket)
    ticket.settle(350)  # the latest real figure counts
    assert limiter.usage() == (2, 1050)


def test_a_settle_after_the_send_left_the_window_changes_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(tpm=1000, clock=clock)
    ticket = limiter.acquire(500)
    assert isinstance(ticket, Ticket)
    clock.now += 61
    ticket.settle(5000)
    assert limiter.usage() == (0, 0)


def test_a_request_larger_than_tpm_never_fits() -> None:
    limiter = RateLimiter(tpm=1000, clock=FakeClock())
    assert limiter.acquire(1001) == RateRefusal("rate limit: tpm 1000 reached, ~1001 tokens never fit", None)


@pytest.mark.parametrize(("rpm", "tpm"), [(0, None), (None, -5)])
def test_limits_must_be_positive(rpm: int | None, tpm: int | None) -> None:
    with pytest.raises(ValueError, match="must be an int >= 1"):
        RateLimiter(rpm=rpm, tpm=tpm)


def test_rate_limits_keep_one_limiter_per_model_and_none_without_limits() -> None:
    limits = RateLimits(clock=FakeClock())
    a = limits.limiter("a", rpm=10, tpm=None)
    assert a is not None and limits.limiter("a", rpm=10, tpm=None) is a
    assert limits.limiter("b", rpm=None, tpm=None) is None


@pytest.mark.parametrize("largest", [100, 700])  # short prompts: rpm binds; longer: tpm too
async def test_500_concurrent_callers_never_put_more_than_rpm_or_tpm_in_any_60_s(largest: int) -> None:
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=20_000, clock=clock)
    rng = random.Random(7)
    sends: list[tuple[float, Ticket]] = []
    held: list[int] = []  # tokens in the window right after each admission
    counts: list[int] = []  # sends in the window right after each admission

    async def caller() -> None:
        estimate = rng.randint(20, largest)
        while True:
            admitted = limiter.acquire(estimate)
            if isinstance(admitted, Ticket):
                break
            assert admitted.frees_at is not None and admitted.frees_at > clock.now
            await clock.sleep_until(admitted.frees_at)
        sends.append((clock.now, admitted))
        # recounted from the test's own records: the window ending now, estimates where no usage came yet
        window = [ticket.tokens for t, ticket in sends if t > clock.now - 60]
        assert len(window) <= 60 and sum(window) <= 20_000
        counts.append(len(window))
        held.append(sum(window))
        await clock.sleep_until(clock.now + rng.uniform(0.1, 20))  # the model answers
        admitted.settle(rng.randint(estimate // 4, estimate))

    async with anyio.create_task_group() as tg:
        for _ in range(500):
            tg.start_soon(caller)
        tg.start_soon(clock.drive)

    assert len(sends) == 500
    times = [t for t, _ in sends]
    for start in times:
        window = [ticket for t, ticket in sends if start <= t < start + 60]
        assert len(window) <= 60
        assert sum(ticket.tokens for ticket in window) <= 20_000
    # and it is a limit, not a stall: callers got in as soon as the window had room for them
    assert max(held) > 20_000 - largest or max(counts) == 60
