"""Load balancing: spread calls over models that routing ranks equal.

Selection hands each run of candidates tied on tier and priority (tier and estimated cost under
`strategy: cost`) to `Balancer.order`, which reorders it:

- `round_robin`: rotate by the group's call counter.
- `weighted`: smooth weighted round-robin: every Σweight calls, each model leads exactly `weight`
  times, evenly spread; a weight of 0 is only ever a fallback.
- `random`: a draw weighted by `weight`, from the manager's rng.
- `least_latency`: lowest latency EWMA (α 0.2) first; a model not yet measured comes before all.
- `least_busy`: fewest calls in flight first.

Ties are rotated by the group's counter, never settled by file order, so equal models share the load.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import get_args

from amaos_llm.config import BalancingStrategy, ModelSpec

STRATEGIES: tuple[str, ...] = get_args(BalancingStrategy)
EWMA_ALPHA = 0.2


class Load:
    """What the balancer needs to know of each model: calls in flight and a latency EWMA."""

    __slots__ = ("in_flight", "latency")

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.latency: dict[str, float] = {}

    def started(self, name: str) -> None:
        self.in_flight[name] = self.in_flight.get(name, 0) + 1

    def finished(self, name: str) -> None:
        self.in_flight[name] -= 1

    def observe(self, name: str, latency: float) -> None:
        old = self.latency.get(name)
        self.latency[name] = latency if old is None else old + EWMA_ALPHA * (latency - old)


def check_strategy(strategy: str) -> BalancingStrategy:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown load-balancing strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    return strategy  # type: ignore[return-value]


class Balancer:
    __slots__ = ("strategy", "_load", "_rng", "_counters", "_credit")

    def __init__(self, strategy: str, load: Load, rng: random.Random) -> None:
        self.strategy = check_strategy(strategy)
        self._load, self._rng = load, rng
        self._counters: dict[tuple[str, ...], int] = {}
        self._credit: dict[tuple[str, ...], dict[str, float]] = {}  # smooth weighted round-robin state

    def order(self, group: Sequence[ModelSpec]) -> list[ModelSpec]:
        key = tuple(s.name for s in group)
        n = self._counters.get(key, 0)
        self._counters[key] = n + 1
        shift = n % len(group)
        rotated = [*group[shift:], *group[:shift]]
        strategy = self.strategy
        if strategy == "round_robin":
            return rotated
        if strategy == "least_busy":
            in_flight = self._load.in_flight
            return sorted(rotated, key=lambda s: in_flight.get(s.name, 0))
        if strategy == "least_latency":
            latency = self._load.latency
            return sorted(rotated, key=lambda s: (s.name in latency, latency.get(s.name, 0.0)))
        live = [s for s in rotated if s.weight > 0]
        spare = [s for s in rotated if s.weight <= 0]
        if not live:
            return rotated
        if strategy == "weighted":
            return self._smooth_weighted(key, live) + spare
        return self._weighted_draw(live) + spare

    def _smooth_weighted(self, key: tuple[str, ...], live: list[ModelSpec]) -> list[ModelSpec]:
        credit = self._credit.setdefault(key, {})
        for s in live:
            credit[s.name] = credit.get(s.name, 0.0) + s.weight
        ranked = sorted(live, key=lambda s: -credit[s.name])  # stable: ties keep the rotation
        credit[ranked[0].name] -= sum(s.weight for s in live)
        return ranked

    def _weighted_draw(self, live: list[ModelSpec]) -> list[ModelSpec]:
        left, out = list(live), []
        while left:
            pick = self._rng.random() * sum(s.weight for s in left)
            for i, s in enumerate(left):
                pick -= s.weight
                if pick < 0 or i == len(left) - 1:
                    out.append(left.pop(i))
                    break
        return out
