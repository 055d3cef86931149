"""The FIFO gate in front of an HTTP provider's connection pool.

`anyio.Semaphore` would do, but every call passes through the gate and a free slot should cost
nothing: here taking one is a counter decrement with no trip through the event loop (a
semaphore's fast path still checks for cancellation, ~1.3 µs a call). Waiters are served in
arrival order, on asyncio and trio alike.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class Slots:
    __slots__ = ("_free", "_waiters")

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: deque[Any] = deque()  # anyio.Event per waiting call, oldest first

    @property
    def free(self) -> int:
        return self._free

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def __aenter__(self) -> None:
        if self._free and not self._waiters:
            self._free -= 1
            return
        import anyio

        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:  # cancelled or interrupted while waiting: re-raised below, the queue left right
            if event.is_set():  # handed a slot as it was cancelled: the slot goes to the next waiter
                self._release()
            else:
                self._waiters.remove(event)
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot passes straight to the oldest waiter
        else:
            self._free += 1
