"""When to try the same model again, and how long to wait first."""

from __future__ import annotations

from dataclasses import dataclass

from amaos_llm.errors import ProviderError, RateLimitError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 1  # extra tries after the first
    backoff: float = 0.5  # seconds before the first retry, doubled after each
    max_wait: float = 10.0  # a server asking for longer than this gets a fallback instead

    def delay(self, error: BaseException, retry_number: int) -> float | None:
        """Seconds to wait before retry `retry_number` (1-based), or None to stop retrying."""
        if retry_number > self.max_retries or not (isinstance(error, ProviderError) and error.retryable):
            return None
        wait = self.backoff * 2 ** (retry_number - 1)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait if wait <= self.max_wait else None
