"""Small resilience pieces the manager composes; each takes an injectable clock."""

from amaos_llm.resilience.breaker import CircuitBreaker
from amaos_llm.resilience.retry import RetryPolicy
from amaos_llm.resilience.window import RetryAfterWindow

__all__ = ["CircuitBreaker", "RetryAfterWindow", "RetryPolicy"]
