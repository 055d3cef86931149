"""The retry policy of a model (its own settings, else the defaults) and how long a call that found
every model unavailable should wait; the per-URL state (breakers, windows, keys) is in `targets`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amaos_llm.config import Defaults, ModelSpec, first_set
from amaos_llm.resilience.retry import RetryPolicy


def retry_policy(spec: ModelSpec, d: Defaults) -> RetryPolicy:
    return RetryPolicy(
        first_set(spec.max_retries, d.max_retries),
        first_set(spec.retry_backoff, d.retry_backoff),
        first_set(spec.backoff_multiplier, d.backoff_multiplier),
        first_set(spec.max_retry_wait, d.max_retry_wait),
        first_set(spec.retry_jitter, d.retry_jitter),
    )


def pause(
    comebacks: Sequence[float], waited: float, until: float | None, max_wait: float, clock: Callable[[], float]
) -> float | None:
    """When every model was passed over: seconds until the first comes back by itself (`comebacks`),
    if that fits in `max_wait` (counting what the call `waited` already) and the deadline."""
    if not comebacks:
        return None
    wait = min(comebacks)
    budget = max_wait - waited
    if until is not None:
        budget = min(budget, until - clock())
    return wait if wait <= budget else None
