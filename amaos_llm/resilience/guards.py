"""Each model's resilience state, in one place: its circuit breaker and Retry-After window (built on
first use from the model's own settings, else the defaults, on the manager's clock), whether it can
take a call now, and how long a call that found every model unavailable should wait."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaos_llm.config import Defaults, ModelSpec, first_set
from amaos_llm.resilience.breaker import CircuitBreaker
from amaos_llm.resilience.retry import RetryPolicy
from amaos_llm.resilience.window import RetryAfterWindow
from amaos_llm.selection import Candidate, Unavailable


class ModelGuards:
    __slots__ = ("_defaults", "_clock", "_breakers", "_windows")

    def __init__(self, defaults: Defaults, clock: Callable[[], float]) -> None:
        self._defaults, self._clock = defaults, clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._windows: dict[str, RetryAfterWindow] = {}

    def breaker(self, spec: ModelSpec) -> CircuitBreaker:
        breaker = self._breakers.get(spec.name)
        if breaker is None:
            d = self._defaults
            breaker = self._breakers[spec.name] = CircuitBreaker(
                first_set(spec.breaker_threshold, d.breaker_threshold),
                first_set(spec.breaker_reset, d.breaker_reset),
                clock=self._clock,
                failure_rate=first_set(spec.breaker_failure_rate, d.breaker_failure_rate),
                min_calls=first_set(spec.breaker_min_calls, d.breaker_min_calls),
            )
        return breaker

    def window(self, spec: ModelSpec) -> RetryAfterWindow:
        window = self._windows.get(spec.name)
        if window is None:
            window = self._windows[spec.name] = RetryAfterWindow(self._clock)
        return window

    def retry_policy(self, spec: ModelSpec) -> RetryPolicy:
        d = self._defaults
        return RetryPolicy(
            first_set(spec.max_retries, d.max_retries),
            first_set(spec.retry_backoff, d.retry_backoff),
            first_set(spec.backoff_multiplier, d.backoff_multiplier),
            first_set(spec.max_retry_wait, d.max_retry_wait),
            first_set(spec.retry_jitter, d.retry_jitter),
        )

    def unavailable(self, spec: ModelSpec) -> Unavailable | None:
        """Why the model cannot take a call now, and in how many seconds that lifts; None if it can."""
        breaker = self._breakers.get(spec.name)
        if breaker is not None and breaker.is_open():
            return "circuit breaker open after repeated failures", breaker.reopens_in()
        window = self._windows.get(spec.name)
        if window is not None:
            left = window.remaining()
            if left > 0:
                return f"rate limited: the server asked to wait {left:.1f} s more", left
        return None

    def pause(self, candidates: Sequence[Candidate], waited: float, until: float | None) -> float | None:
        """When every model was passed over: seconds until the first comes back by itself, if that
        fits in `max_retry_wait` (counting what the call `waited` already) and the deadline."""
        comebacks = [c.clears_in for c in candidates if c.clears_in is not None]
        if not comebacks:
            return None
        pause = min(comebacks)
        budget = self._defaults.max_retry_wait - waited
        if until is not None:
            budget = min(budget, until - self._clock())
        return pause if pause <= budget else None

    def forget(self, name: str) -> None:
        self._breakers.pop(name, None)
        self._windows.pop(name, None)
