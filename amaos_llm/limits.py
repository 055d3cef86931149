"""Per-model request and token rate limits (`rpm`, `tpm`) over a sliding 60-second window.

No 60-second interval holds more than `rpm` sends or `tpm` tokens. A send counts from the moment
it is admitted; its tokens count as the estimate (`prompt_tokens + max_tokens`) until the real
usage arrives, then as the real figure. A request that does not fit is skipped with the reason
`rate limit: rpm|tpm N reached, frees in S s` and the clock time it frees, so the manager can try
another model first and, if none is free, wait for that moment within its final wait.

Everything here is synchronous: admission checks and records in one step, with no suspension
in between, so concurrent calls on one event loop cannot both take the last slot. These windows
are this process's: a manager on a shared store (Redis, or one handed to several managers) counts
the same rule there instead (`shared_limits`).

Call points: `RateLimits.limiter(name, rpm=, tpm=)` once per model (None when it has no limits);
before send `limiter.acquire(tokens)` → `Ticket | RateRefusal`; when usage arrives
`ticket.settle(real_tokens)`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class RateRefusal:
    """A send that does not fit. `frees_at`: clock time a retry fits (None: this request never
    fits, it is larger than `tpm`)."""

    reason: str
    frees_at: float | None


class Ticket:
    """An admitted send; `settle(real_tokens)` replaces its estimated tokens with the real count."""

    __slots__ = ("_entry", "_limiter")

    def __init__(self, limiter: RateLimiter, entry: list[float]) -> None:
        self._limiter, self._entry = limiter, entry

    @property
    def tokens(self) -> int:
        return int(self._entry[1])

    def settle(self, real_tokens: int) -> None:
        """Count the real tokens instead of the estimate (more or fewer). Idempotent in effect:
        the latest real figure counts."""
        limiter, entry = self._limiter, self._entry
        limiter._prune()
        if entry[0] > limiter._clock() - WINDOW_S:  # still in the window: adjust its share
            limiter._tokens += real_tokens - int(entry[1])
        entry[1] = real_tokens


class RateLimiter:
    """One model's limits. `rpm`/`tpm` None: that limit is off."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be an int >= 1, got {value}")
        self.rpm, self.tpm = rpm, tpm
        self._clock = clock
        self._sends: deque[list[float]] = deque()  # [admitted at, tokens], oldest first
        self._tokens = 0  # tokens of the sends in the window

    def _prune(self) -> float:
        now = self._clock()
        horizon = now - WINDOW_S
        sends = self._sends
        while sends and sends[0][0] <= horizon:
            self._tokens -= int(sends.popleft()[1])
        return now

    def check(self, tokens: int) -> RateRefusal | None:
        """None if a send of `tokens` fits now, else why not and when it will."""
        now = self._prune()
        sends = self._sends
        if self.rpm is not None and len(sends) >= self.rpm:
            frees_at = sends[len(sends) - self.rpm][0] + WINDOW_S
            return RateRefusal(rate_reason("rpm", self.rpm, frees_at - now), frees_at)
        if self.tpm is not None and self._tokens + tokens > self.tpm:
            if tokens > self.tpm:
                return RateRefusal(f"rate limit: tpm {self.tpm} reached, ~{tokens} tokens never fit", None)
            excess = self._tokens + tokens - self.tpm
            for at, used in sends:  # the oldest sends leave the window first
                excess -= int(used)
                if excess <= 0:
                    frees_at = at + WINDOW_S
                    return RateRefusal(rate_reason("tpm", self.tpm, frees_at - now), frees_at)
        return None

    def acquire(self, tokens: int) -> Ticket | RateRefusal:
        """Admit a send of `tokens` (estimated) and count it, or refuse it."""
        refusal = self.check(tokens)
        if refusal is not None:
            return refusal
        entry = [self._clock(), tokens]
        self._sends.append(entry)
        self._tokens += tokens
        return Ticket(self, entry)

    def usage(self) -> tuple[int, int]:
        """(sends, tokens) in the current window."""
        self._prune()
        return len(self._sends), self._tokens


def rate_reason(kind: str, limit: int, wait_s: float) -> str:
    return f"rate limit: {kind} {limit} reached, frees in {max(0.0, wait_s):.1f} s"


class RateLimits:
    """The limiters of one manager, by model name; models without limits have none."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._limiters: dict[str, RateLimiter | None] = {}

    def limiter(self, name: str, *, rpm: int | None, tpm: int | None) -> RateLimiter | None:
        try:
            return self._limiters[name]
        except KeyError:
            limiter = None if rpm is None and tpm is None else RateLimiter(rpm, tpm, self._clock)
            self._limiters[name] = limiter
            return limiter

    def forget(self, name: str) -> None:
        self._limiters.pop(name, None)
