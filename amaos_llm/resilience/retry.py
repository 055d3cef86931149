"""When to try the same model again, and how long to wait first.

Only transient failures are re-sent (`ProviderError.retryable`: 429, 5xx, timeouts, a connection
lost after the request went out). Retry n waits `min(backoff * multiplier**(n-1), max_wait)`,
shortened by up to `jitter` of itself so that callers failing together do not retry together, and
never less than the `Retry-After` of the failure being retried. A server asking for longer than
`max_wait` gets no retry: the call moves on to the next model instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from amaos_llm.errors import ProviderError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 1  # extra tries after the first
    backoff: float = 0.5  # seconds before the first retry
    multiplier: float = 2.0  # each retry waits this many times longer than the one before
    max_wait: float = 10.0  # caps the backoff; a longer Retry-After gets a fallback instead
    jitter: float = 0.1  # the wait is shortened by a random share of up to this much

    def delay(self, error: BaseException, retry_number: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait before retry `retry_number` (1-based), or None to stop retrying."""
        if retry_number > self.max_retries or not (isinstance(error, ProviderError) and error.retryable):
            return None
        wait = min(self.backoff * self.multiplier ** (retry_number - 1), self.max_wait)
        if self.jitter and rng is not None:
            wait *= 1 - self.jitter * rng.random()
        asked = error.retry_after
        if asked is not None:
            if asked > self.max_wait:
                return None
            wait = max(wait, asked)
        return wait
