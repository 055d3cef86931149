"""Shared counters behind one small async protocol: reserve, then settle or release.

Budgets (dollars) and, for a fleet, rate limits (requests, tokens) are the same problem: many calls
in flight draw on one limit, and a call must hold its worst case before it starts, or concurrent
calls that each saw room together overspend (check-then-charge; LiteLLM #26672, #34732). So a store
offers one atomic step, *reserve if it fits*, and closes each reservation exactly once: `settle`
at the real amount, or `release` when nothing was used.

A windowed key (`window_s`: rate limits) counts each reservation for `window_s` seconds from the
moment it was reserved, whether it is still open or settled, so that no window holds more than the
limit: the amount held until it settles, then the actual amount (`settle` adjusts by actual − held).
Once out of the window it counts for nothing and closing it changes nothing, so a send whose usage
never arrives holds its estimate for one window, not forever. `frees_in` says when a refused amount
fits again, as what is counted now leaves the window.

`MemoryStore` keeps the counters in this process. Its methods never suspend between reading and
writing a counter, so on one event loop (asyncio or trio) each step is atomic without a lock. It
is not thread-safe: use it from one event loop. `RedisStateStore` passes the same contract tests
(tests/amaos_llm/test_state.py).

Call points: `reserve(key, amount, limit, *, window_s=None) -> Reservation | None`,
`settle(reservation, actual)`, `release(reservation)`, `usage(key) -> Ledger`, `wait(key, timeout)`,
`frees_in(key, amount, limit) -> float | None`.

A store also keeps circuit breakers for the managers that share it (`amaos_llm.breakers`):
`breaker_state(key)`, `breaker_probe(key, token, ttl)`, `breaker_record(key, outcome, ...)`, each one
atomic step of `resilience.shared_breaker.SharedBreakerRecord`, answering a `BreakerView`.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, Protocol, runtime_checkable

import anyio

from amaos_llm.resilience.shared_breaker import BreakerOutcome, BreakerView, SharedBreakerRecord

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Ledger:
    """A key's counters: `spent` (settled; within the window for a windowed key) and `reserved`
    (held by reservations not yet settled or released)."""

    spent: Decimal
    reserved: Decimal

    def remaining(self, limit: Decimal) -> Decimal:
        """What a new reservation may still take: max(0, limit − spent − reserved)."""
        return max(_ZERO, limit - self.spent - self.reserved)


class Reservation(NamedTuple):
    """A held amount on one key; `id` is unique per store. (A tuple: made on every send.)"""

    key: str
    amount: Decimal
    id: int
    window_s: float | None = None
    at: float = 0.0  # store clock when reserved; a windowed amount counts from then


@runtime_checkable
class StateStore(Protocol):
    async def reserve(
        self, key: str, amount: Decimal, limit: Decimal, *, window_s: float | None = None
    ) -> Reservation | None:
        """Hold `amount` on `key` if spent + reserved + amount ≤ limit, atomically; else None.
        `window_s`: spent amounts count for that many seconds after they were reserved."""
        ...

    async def settle(self, reservation: Reservation, actual: Decimal) -> bool:
        """Turn the reservation into `actual` spent (even above the amount held). Only the first
        settle/release of a reservation counts; returns whether this one did."""
        ...

    async def release(self, reservation: Reservation) -> bool:
        """Drop the reservation, nothing spent. Idempotent like `settle`."""
        ...

    async def usage(self, key: str) -> Ledger: ...

    async def frees_in(self, key: str, amount: Decimal, limit: Decimal) -> float | None:
        """For a windowed key: seconds until `amount` fits under `limit` as the reservations counted
        now leave the window, if nothing else is reserved meanwhile (0.0: it fits now); None when it
        never will (`amount` > `limit`, or the key has no window)."""
        ...

    async def wait(self, key: str, timeout: float) -> bool:
        """Sleep until a reservation on `key` closes (room may have freed) or `timeout` passes;
        True if one closed."""
        ...

    async def breaker_state(self, key: str) -> BreakerView: ...

    async def breaker_probe(self, key: str, token: str, ttl: float) -> BreakerView:
        """Take the half-open slot for `token` (held for `ttl` s at most), if half-open and free."""
        ...

    async def breaker_record(
        self, key: str, outcome: BreakerOutcome, *, token: str = "", threshold: int = 1, reset_after: float = 0.0,
        force: bool = False,
    ) -> BreakerView:
        """A send's outcome: a success closes the breaker; a failure counts, opening it at
        `threshold` failures, with `force`, or when it is the failed probe of `token`; an
        inconclusive send frees the slot `token` holds."""
        ...


@dataclass(slots=True)
class _Counter:
    spent: Decimal = _ZERO
    reserved: Decimal = _ZERO
    open: dict[int, Decimal] = field(default_factory=dict)
    # windowed keys: (reserved at, id) of each reservation in the window, oldest first (the clock is
    # monotonic, so appending keeps the order); settles come in any order, but an amount counts from
    # the moment it was reserved (a send counts when it is sent). `settled`: the actual amounts.
    window: deque[tuple[float, int]] = field(default_factory=deque)
    settled: dict[int, Decimal] = field(default_factory=dict)
    closed: anyio.Event | None = None
    window_s: float | None = None  # the window of a windowed key, from its reservations


class MemoryStore:
    """The process-local `StateStore`; `clock` (seconds, monotonic) drives windows in tests."""

    # Its methods finish without suspending, so no cancellation can land inside them: callers
    # may skip the shielded scope they would otherwise need around settle/release (5 µs each).
    never_suspends = True

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._counters: dict[str, _Counter] = {}
        self._breakers: dict[str, SharedBreakerRecord] = {}
        self._ids = itertools.count(1)
        self._clock = clock

    def _counter(self, key: str) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = _Counter()
        return counter

    def _expire(self, counter: _Counter, window_s: float | None) -> None:
        """Drop what left the window: an open reservation stops holding, a settled one stops counting."""
        if window_s is None or not counter.window:
            return
        horizon = self._clock() - window_s
        window = counter.window
        while window and window[0][0] <= horizon:
            rid = window.popleft()[1]
            held = counter.open.pop(rid, None)
            if held is not None:
                counter.reserved -= held
            else:
                counter.spent -= counter.settled.pop(rid, _ZERO)

    # No `await` in the bodies below until the counters are updated: that is the atomicity.
    async def reserve(
        self, key: str, amount: Decimal, limit: Decimal, *, window_s: float | None = None
    ) -> Reservation | None:
        if amount < 0:
            raise ValueError(f"reserve: amount must be >= 0, got {amount}")
        counter = self._counter(key)
        if window_s is not None:
            counter.window_s = window_s
            self._expire(counter, window_s)
        if counter.spent + counter.reserved + amount > limit:
            return None
        at = self._clock() if window_s is not None else 0.0
        reservation = Reservation(key, amount, next(self._ids), window_s, at)
        counter.open[reservation.id] = amount
        counter.reserved += amount
        if window_s is not None:
            counter.window.append((at, reservation.id))
        return reservation

    async def settle(self, reservation: Reservation, actual: Decimal) -> bool:
        if actual < 0:
            raise ValueError(f"settle: actual must be >= 0, got {actual}")
        counter = self._close(reservation)
        if counter is None:
            return False
        counter.spent += actual
        if reservation.window_s is not None:
            counter.settled[reservation.id] = actual
        return True

    async def release(self, reservation: Reservation) -> bool:
        return self._close(reservation) is not None

    def _close(self, reservation: Reservation) -> _Counter | None:
        counter = self._counters.get(reservation.key)
        if counter is not None:
            self._expire(counter, reservation.window_s)  # one out of the window closes as a no-op
        if counter is None or counter.open.pop(reservation.id, None) is None:
            return None
        counter.reserved -= reservation.amount
        if counter.closed is not None:  # wake the waiters, then the next waiter makes a new event
            counter.closed.set()
            counter.closed = None
        return counter

    async def usage(self, key: str) -> Ledger:
        return self.peek(key)

    async def reset(self, key: str) -> None:
        """Forget a key's counters (an explicit budget reset); its open reservations close as no-ops."""
        self._counters.pop(key, None)

    def peek(self, key: str) -> Ledger:
        """`usage` without the await, for sync readers (`Budget.spent`): this store is local."""
        counter = self._counters.get(key)
        if counter is None:
            return Ledger(_ZERO, _ZERO)
        self._expire(counter, counter.window_s)
        return Ledger(counter.spent, counter.reserved)

    async def frees_in(self, key: str, amount: Decimal, limit: Decimal) -> float | None:
        counter = self._counters.get(key)
        if counter is None or counter.window_s is None or amount > limit:
            return None
        self._expire(counter, counter.window_s)
        end = counter.window_s - self._clock()
        leaving = ((at + end, counter.open.get(rid) or counter.settled.get(rid, _ZERO)) for at, rid in counter.window)
        return frees_in(leaving, counter.spent + counter.reserved + amount - limit)

    async def wait(self, key: str, timeout: float) -> bool:
        counter = self._counter(key)
        if counter.closed is None:
            counter.closed = anyio.Event()
        event = counter.closed
        with anyio.move_on_after(timeout):
            await event.wait()
            return True
        return False

    def _breaker(self, key: str) -> SharedBreakerRecord:
        record = self._breakers.get(key)
        if record is None:
            record = self._breakers[key] = SharedBreakerRecord()
        return record

    async def breaker_state(self, key: str) -> BreakerView:
        return self._breaker(key).view(self._clock())

    async def breaker_probe(self, key: str, token: str, ttl: float) -> BreakerView:
        return self._breaker(key).take_probe(self._clock(), token, ttl)

    async def breaker_record(
        self, key: str, outcome: BreakerOutcome, *, token: str = "", threshold: int = 1, reset_after: float = 0.0,
        force: bool = False,
    ) -> BreakerView:
        record, now = self._breaker(key), self._clock()
        if outcome == "success":
            return record.succeed(now)
        if outcome == "inconclusive":
            return record.release(now, token)
        return record.fail(now, threshold=threshold, reset_after=reset_after, token=token, force=force)



def frees_in(leaving: Iterable[tuple[float, Decimal]], excess: Decimal) -> float:
    """Seconds until `excess` has left a window, from what it counts: (seconds until it leaves,
    amount) pairs, soonest first."""
    for leaves_in, amount in leaving:
        if excess <= 0:
            break
        excess -= amount
        if excess <= 0:
            return max(0.0, leaves_in)
    return 0.0


def is_shared(store: StateStore, *, given: bool) -> bool:
    """Whether a manager's state on `store` is shared: a store it was `given` (other managers may
    hold it too), or one other processes reach (Redis); not the manager's own memory store."""
    return given or not getattr(store, "never_suspends", False)


def make_store(config: Any, clock: Callable[[], float] = time.monotonic) -> StateStore:
    """The store a configuration's `state:` names: this process's, or a Redis (`RedisStateStore`)."""
    if config.backend == "redis":
        from amaos_llm.state_redis import RedisStateStore

        return RedisStateStore(config.url, prefix=config.prefix)
    return MemoryStore(clock)
