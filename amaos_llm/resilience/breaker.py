"""A per-model circuit breaker: stop sending to a model that keeps failing, probe it later.

closed ──(threshold consecutive failures)──▶ open ──(reset_after elapsed)──▶ half-open
  ▲     (or, with failure_rate, that share of                                  │
  │      the last min_calls sends failed)                                      │
  └────────────── probe succeeds ◀────────────────────────────────────────────┘ (probe fails → open)

Only sends that say something of the model's health count; the caller decides which (see
`ProviderError.breaker_failure`) and frees a probe slot with `record_inconclusive` otherwise.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    __slots__ = ("threshold", "reset_after", "failure_rate", "_clock", "_failures", "_opened_at", "_probing",
                 "_recent")

    def __init__(
        self,
        threshold: int = 5,
        reset_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        failure_rate: float | None = None,
        min_calls: int = 20,
    ):
        self.threshold, self.reset_after, self.failure_rate, self._clock = threshold, reset_after, failure_rate, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        # The outcomes of the last `min_calls` sends (True: failed), kept only with a failure rate.
        self._recent: deque[bool] | None = deque(maxlen=min_calls) if failure_rate is not None else None

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.reset_after:
            return "half_open"
        return "open"

    @property
    def failures(self) -> int:
        """Consecutive failed sends counted so far."""
        return self._failures

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

    def is_closed(self) -> bool:
        return self._opened_at is None

    def is_clean(self) -> bool:
        """Closed with no failure counted: a success would change nothing."""
        return self._opened_at is None and not self._failures

    def adopt(self, failures: int, reopens_in: float | None, probing: bool = False) -> None:
        """Take a state read elsewhere (the fleet's, kept by a state store: `amaos_llm.breakers`) as
        this breaker's: `failures` counted; closed (`reopens_in` None), or open for `reopens_in`
        more seconds (0: half-open), with this process's probe out or not. Only durations cross
        over, so the other side's clock never meets this one."""
        self._failures = failures
        if reopens_in is None:
            self._opened_at, self._probing = None, False
        else:
            self._opened_at, self._probing = self._clock() - (self.reset_after - reopens_in), probing

    def before_call(self) -> None:
        """Mark the single half-open probe as taken, so concurrent callers don't pile on."""
        if self._opened_at is not None:
            self._probing = True

    def record_success(self) -> None:
        if self._opened_at is not None and self._recent is not None:
            self._recent.clear()  # closed again: the failures before it opened are history
        self._failures, self._opened_at, self._probing = 0, None, False
        if self._recent is not None:
            self._recent.append(False)

    def record_inconclusive(self) -> None:
        """A call that says nothing of the model's health (cut off by its caller or a deadline, a
        400, a 429): free the probe slot, count nothing."""
        self._probing = False

    def record_failure(self) -> bool:
        """Count a failed send; True when this failure opened (or re-opened) the breaker."""
        self._failures += 1
        if self._recent is not None:
            self._recent.append(True)
        if not self._probing:
            if self._opened_at is not None:
                return False  # already open: a send from before it opened, finishing late
            if self._failures < self.threshold and not self._fails_too_often():
                return False
        self._opened_at, self._probing = self._clock(), False  # a failed probe re-opens for a full reset
        return True

    def _fails_too_often(self) -> bool:
        """With a failure rate: that share of the last `min_calls` sends failed (never before that many)."""
        recent, rate = self._recent, self.failure_rate
        if recent is None or rate is None or len(recent) < (recent.maxlen or 0):
            return False
        return sum(recent) >= rate * len(recent)
