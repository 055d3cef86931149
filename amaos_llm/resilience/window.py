"""A model's Retry-After window: after a server said "come back in N s", calls skip it until then."""

from __future__ import annotations

import time
from collections.abc import Callable


class RetryAfterWindow:
    __slots__ = ("_clock", "_until")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    def open(self, seconds: float) -> None:
        """Keep calls away for `seconds` from now; a later, longer ask extends it, a shorter one never
        shortens it (the server's latest word may be about one connection, the longest about all)."""
        self._until = max(self._until, self._clock() + seconds)

    def remaining(self) -> float:
        if not self._until:  # never opened: no clock reading needed
            return 0.0
        return max(0.0, self._until - self._clock())
