"""Small resilience pieces the manager composes; each takes an injectable clock."""

from amaos_llm.resilience.breaker import CircuitBreaker
from amaos_llm.resilience.retry import RetryPolicy

__all__ = ["CircuitBreaker", "RetryPolicy"]
