"""A per-model circuit breaker: stop sending to a model that keeps failing, probe it later.

closed ──(threshold consecutive failures)──▶ open ──(reset_after elapsed)──▶ half-open
  ▲                                                                           │
  └────────────── probe succeeds ◀────────────────────────────────────────────┘ (probe fails → open)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    __slots__ = ("threshold", "reset_after", "_clock", "_failures", "_opened_at", "_probing")

    def __init__(self, threshold: int = 5, reset_after: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.threshold, self.reset_after, self._clock = threshold, reset_after, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.reset_after:
            return "half_open"
        return "open"

    def is_open(self) -> bool:
        """True while calls must not go through: open, or half-open with a probe already out."""
        if self._opened_at is None:
            return False
        return self._probing or self._clock() - self._opened_at < self.reset_after

    def reopens_in(self) -> float | None:
        """Seconds until a call may go through (0: now); None while a probe is out, since its
        outcome, not the clock, decides."""
        if self._opened_at is None:
            return 0.0
        if self._probing:
            return None
        return max(0.0, self.reset_after - (self._clock() - self._opened_at))

    def before_call(self) -> None:
        """Mark the single half-open probe as taken, so concurrent callers don't pile on."""
        if self._opened_at is not None:
            self._probing = True

    def record_success(self) -> None:
        self._failures, self._opened_at, self._probing = 0, None, False

    def record_inconclusive(self) -> None:
        """A call that says nothing of the model's health (cut off by its caller or a deadline, a
        400, a 429): free the probe slot, count nothing."""
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._opened_at, self._probing = self._clock(), False
