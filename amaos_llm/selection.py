"""Which models to try for one request, in which order: a pure function of its inputs.

Rules (the README documents the same):
1. `force_model` → only that model (its breaker and key still apply).
2. Disabled models are left out. With `local_only`, cloud models are skipped; a cloud model whose
   key is missing is skipped; a model the caller reports unavailable (an open circuit breaker, a
   Retry-After window) is skipped, with the seconds until it clears by itself.
3. An explicit `fallback_chain` gives the order. Otherwise the local tier comes first when
   `prefer_local`, then the cloud tier. Inside a tier: `strategy: priority` orders by priority
   (high first), then estimated cost (low first), then file order; `strategy: cost` orders by
   estimated cost, then priority, then file order. An unknown price sorts after every known one.
4. With a `balance` function (load balancing), each run of models tied on tier and priority (tier
   and estimated cost for `strategy: cost`) is handed to it to reorder; not with `fallback_chain`
   or `force_model`, which name the order themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import groupby

from amaos_llm.config import ModelSpec, RoutingConfig

_UNKNOWN = Decimal("Infinity")


# Why a model cannot take a call right now, and the seconds until that clears by itself (None:
# not by the clock alone, e.g. a breaker probe still out).
Unavailable = tuple[str, float | None]


@dataclass(frozen=True, slots=True)
class Candidate:
    spec: ModelSpec
    skip_reason: str | None = None  # set when the model is passed over
    clears_in: float | None = None  # for a skip that lifts by itself: seconds until it does


def select_candidates(
    models: Sequence[ModelSpec],
    routing: RoutingConfig,
    *,
    estimate: Callable[[ModelSpec], Decimal | None],
    has_key: Callable[[ModelSpec], bool],
    unavailable: Callable[[ModelSpec], Unavailable | None] = lambda spec: None,
    force_model: ModelSpec | None = None,
    balance: Callable[[list[ModelSpec]], list[ModelSpec]] | None = None,
) -> list[Candidate]:
    """Every model in the order it would be tried, skipped ones marked with their reason."""
    if force_model is not None:
        return [_judge(force_model, routing, has_key, unavailable)]
    enabled = [m for m in models if m.enabled]
    if routing.fallback_chain:
        by_name = {m.name: m for m in enabled}
        ordered = [by_name[n] for n in routing.fallback_chain if n in by_name]
    else:
        ordered = _order(enabled, routing, estimate)
        if balance is not None:
            ordered = _balanced(ordered, routing, estimate, balance)
    return [_judge(m, routing, has_key, unavailable) for m in ordered]


def _order(
    models: Sequence[ModelSpec], routing: RoutingConfig, estimate: Callable[[ModelSpec], Decimal | None]
) -> list[ModelSpec]:
    def tier(spec: ModelSpec) -> int:
        return 0 if (spec.is_local or not routing.prefer_local) else 1

    if routing.strategy == "priority":
        ranks = [(tier(m), -m.priority) for m in models]
        if len(set(ranks)) == len(ranks):  # no ties: estimated cost cannot change the order
            return [m for _, m in sorted(zip(ranks, models), key=lambda pair: pair[0])]

    def key(indexed: tuple[int, ModelSpec]) -> tuple[object, ...]:
        index, spec = indexed
        cost = estimate(spec)
        cost = _UNKNOWN if cost is None else cost
        if routing.strategy == "cost":
            return (tier(spec), cost, -spec.priority, index)
        return (tier(spec), -spec.priority, cost, index)

    return [spec for _, spec in sorted(enumerate(models), key=key)]


def _balanced(
    ordered: list[ModelSpec],
    routing: RoutingConfig,
    estimate: Callable[[ModelSpec], Decimal | None],
    balance: Callable[[list[ModelSpec]], list[ModelSpec]],
) -> list[ModelSpec]:
    def tie(spec: ModelSpec) -> tuple[object, ...]:
        tier = 0 if (spec.is_local or not routing.prefer_local) else 1
        if routing.strategy == "cost":
            cost = estimate(spec)
            return (tier, _UNKNOWN if cost is None else cost)
        return (tier, spec.priority)

    out: list[ModelSpec] = []
    for _, run in groupby(ordered, key=tie):
        group = list(run)
        out.extend(balance(group) if len(group) > 1 else group)
    return out


def _judge(
    spec: ModelSpec,
    routing: RoutingConfig,
    has_key: Callable[[ModelSpec], bool],
    unavailable: Callable[[ModelSpec], Unavailable | None],
) -> Candidate:
    if not spec.enabled:
        return Candidate(spec, "disabled in the configuration")
    if routing.local_only and not spec.is_local:
        return Candidate(spec, "cloud model excluded by local_only")
    if spec.key_required and not has_key(spec):
        return Candidate(spec, f"API key missing: set the environment variable {' or '.join(spec.key_envs)}")
    blocked = unavailable(spec)
    if blocked is not None:
        return Candidate(spec, *blocked)
    return Candidate(spec)


def models_named(models: Sequence[ModelSpec], name: str) -> list[str]:
    """The models a name stands for: the model of that name, else every model of that provider
    type (`openai`, `ollama`, ...); `ModelNotFound` lists both kinds of name otherwise."""
    if any(m.name == name for m in models):
        return [name]
    named = [m.name for m in models if m.provider == name]
    if not named:
        from amaos_llm.errors import ModelNotFound

        raise ModelNotFound(name, [m.name for m in models], sorted({m.provider for m in models}))
    return named
