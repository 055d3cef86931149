"""Counters for a manager: per call, and per model per attempt.

The identities the counters keep after any mix of outcomes (skips apart)::

    calls == successes + failures + cancelled                                    # manager calls
    by_model[m].calls == successes + failures + timeouts + cancelled + rejected  # attempts sent to m
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from amaos_llm.types import Outcome


@dataclass(slots=True)
class ModelStats:
    calls: int = 0  # attempts actually sent to the model
    successes: int = 0
    failures: int = 0  # attempts that ended in an error (timeouts are counted apart)
    timeouts: int = 0
    cancelled: int = 0  # attempts cut off by the caller
    rejected: int = 0  # answers the call's validator turned down
    skipped: int = 0
    breaker_opens: int = 0  # times a failure opened (or a failed probe re-opened) its breaker
    load_timeouts: int = 0  # sends to a cold local server that did not load the model within load_timeout
    latency_sum: float = 0.0  # of the attempts that finished (cancelled ones say nothing of the model)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def as_dict(self) -> dict[str, Any]:
        finished = self.calls - self.cancelled
        return {
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "timeouts": self.timeouts,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "breaker_opens": self.breaker_opens,
            "load_timeouts": self.load_timeouts,
            "avg_latency": self.latency_sum / finished if finished else 0.0,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
        }


@dataclass(slots=True)
class Stats:
    calls: int = 0  # manager calls
    successes: int = 0  # calls that returned a result
    failures: int = 0  # calls that raised an error
    cancelled: int = 0  # calls cut off by their caller
    deadline_exceeded: int = 0  # failed calls whose deadline ran out
    timeouts: int = 0  # attempts that timed out
    fallbacks: int = 0  # moves from one model to the next
    retries: int = 0  # extra attempts on the same model after transient failures
    validation_retries: int = 0  # re-asks after a validator rejected an answer
    key_rotations: int = 0  # re-sends with the next API key after a 401/402/403/429
    feature_fallbacks: int = 0  # re-sends without a parameter the server does not support
    cache_hits: int = 0
    cache_misses: int = 0
    saved_cost: Decimal = field(default_factory=Decimal)  # what the cache hits would have cost
    input_tokens: int = 0
    output_tokens: int = 0
    total_cost: Decimal = field(default_factory=Decimal)
    by_model: dict[str, ModelStats] = field(default_factory=dict)

    def model(self, name: str) -> ModelStats:
        stats = self.by_model.get(name)
        if stats is None:
            stats = self.by_model[name] = ModelStats()
        return stats

    def record_attempt(self, name: str, outcome: Outcome, latency: float) -> None:
        m = self.model(name)
        if outcome == "skipped":
            m.skipped += 1
            return
        m.calls += 1
        if outcome == "cancelled":
            m.cancelled += 1
            return
        m.latency_sum += latency
        if outcome == "success":
            m.successes += 1
        elif outcome == "timeout":
            m.timeouts += 1
            self.timeouts += 1
        elif outcome == "rejected":
            m.rejected += 1
        else:
            m.failures += 1

    def record_cache_hit(self, saved_cost: Decimal | None) -> None:
        self.cache_hits += 1
        if saved_cost is not None:
            self.saved_cost += saved_cost

    def record_usage(self, name: str, input_tokens: int, output_tokens: int, cost: Decimal | None) -> None:
        m = self.model(name)
        m.input_tokens += input_tokens
        m.output_tokens += output_tokens
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost is not None:
            m.cost += cost
            self.total_cost += cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "cancelled": self.cancelled,
            "deadline_exceeded": self.deadline_exceeded,
            "timeouts": self.timeouts,
            "fallbacks": self.fallbacks,
            "retries": self.retries,
            "validation_retries": self.validation_retries,
            "key_rotations": self.key_rotations,
            "feature_fallbacks": self.feature_fallbacks,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "cache_hit_rate": self.cache_hits / lookups if (lookups := self.cache_hits + self.cache_misses) else 0.0,
            "saved_cost": self.saved_cost,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "total_cost": self.total_cost,
            "by_model": {name: m.as_dict() for name, m in self.by_model.items()},
        }
