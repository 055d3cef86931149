"""What a manager's owner tunes and inspects besides the calls themselves: the models and the
routing (fallback chain, load balancing, weights, registered functions), stats and the budget,
estimates and batches, the health and status views (see `amaos_llm.health`), spoon_ai's names
for them too; and the pieces the loop builds lazily (providers, the configuration's digest).

`LLMManager` inherits these; they touch its state only through the attributes declared here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from amaos_llm.balancing import Balancer, Load
from amaos_llm.config import LLMConfig, ModelSpec, first_set
from amaos_llm.errors import ModelNotFound, ProviderError
from amaos_llm.providers.callable import CallableProvider, ModelFunction
from amaos_llm.providers.registry import provider_class
from amaos_llm.selection import models_named

if TYPE_CHECKING:
    import random

    from amaos_llm.batch import BatchResult
    from amaos_llm.breakers import SharedBreakers
    from amaos_llm.config_report import ConfigReport
    from amaos_llm.health import Health
    from amaos_llm.pricing import PriceBook
    from amaos_llm.providers.base import Provider
    from amaos_llm.resilience.targets import Target, Targets
    from amaos_llm.spending import Spending
    from amaos_llm.stats import Stats
    from amaos_llm.tokens import Estimate


class ManagerControls:
    _config: LLMConfig
    _models: dict[str, ModelSpec]
    _stats: Stats
    _targets: Targets
    _health: Health
    _prices: PriceBook
    _retired: list[Provider]
    _balancer: Balancer | None
    _load: Load
    _rng: random.Random
    _version: int
    _spending: Spending
    _breakers: SharedBreakers | None

    _closed: bool
    _digest: tuple[int, str] | None = None

    def get_stats(self) -> dict[str, Any]:
        """The counters (see `amaos_llm.stats`), and `budget`: limit, spent, reserved, remaining of
        the manager's budget as last read (None without one)."""
        stats = self._stats.as_dict()
        budget = self._spending.budget
        stats["budget"] = None if budget is None else budget.snapshot()
        return stats

    async def reset_budget(self, budget_usd: float | Decimal | str | None = None) -> None:
        """Start the manager's budget over at `budget_usd` (default: the same limit), spent and
        reserved at 0. On a shared store (Redis) this clears the ledger every manager on its key
        shares: joining a ledger never resets it, only this call does."""
        old = self._spending.budget
        limit = budget_usd if budget_usd is not None else (None if old is None else old.limit)
        if old is not None:
            await old.store.reset(old.key)  # type: ignore[attr-defined]
        self._spending.reset(limit)

    async def budget_status(self) -> dict[str, Decimal] | None:
        """The manager's budget read fresh from its store (every process sharing it), or None."""
        budget = self._spending.budget
        if budget is None:
            return None
        ledger = await budget.usage()
        return {"limit": budget.limit, "spent": ledger.spent, "reserved": ledger.reserved,
                "remaining": ledger.remaining(budget.limit)}

    def estimate(self, prompt_or_messages: str | Sequence[Any], *, max_tokens: int | None = None) -> list[Estimate]:
        """What the request would take on each model, in try order: prompt tokens, the worst-case
        cost, and why a model would be passed over; nothing is sent."""
        from amaos_llm.inputs import chat_messages, prompt_messages
        from amaos_llm.selection import select_candidates
        from amaos_llm.tokens import estimate, prompt_bound, prompt_tokens

        messages = (prompt_messages(prompt_or_messages, None) if isinstance(prompt_or_messages, str)
                    else chat_messages(prompt_or_messages))
        pt, pb = prompt_tokens(messages), prompt_bound(messages)
        spend = self._spending.for_call(messages, None, ())
        out = []
        for candidate in select_candidates(
            list(self._models.values()), self._config.routing,
            estimate=lambda s: self._prices.estimate(s, pt, self._max_tokens(s, max_tokens)),
            has_key=ModelSpec.has_key, unavailable=self._targets.unavailable,
        ):
            spec = candidate.spec
            mt = self._max_tokens(spec, max_tokens)
            price = self._prices.price(spec)
            wc = None if price is None else price.worst_case(pb, mt)
            reason = candidate.skip_reason or (None if spend is None else spend.guard.check(wc))
            out.append(estimate(spec, price, prompt_tokens=pt, prompt_bound=pb, max_tokens=mt,
                                window=self._spending.window(spec), budgeted=spend is not None, skip_reason=reason))
        return out

    async def validate_configuration(self) -> ConfigReport:
        """Per model: credentials present (never their values), endpoint reachable (the free health
        check), where its price comes from, its context window; `ok` False when an enabled model
        has a problem. Sends no generation."""
        from amaos_llm.config_report import ConfigReport, check_model

        reachable = await self._health.check_all()
        local_only = self._config.routing.local_only
        models = {}
        for spec in self._models.values():
            excluded = local_only and not spec.is_local
            credentials = await self._health.credentials(spec)
            seen = reachable.get(spec.name) if spec.enabled and not excluded and credentials else None
            models[spec.name] = check_model(spec, credentials, seen, self._prices, excluded=excluded)
        return ConfigReport(ok=not any(m.problems for m in models.values()), models=models)

    async def batch(self, requests: Any, **options: Any) -> BatchResult:
        """Many requests at once (see `amaos_llm.batch.run_batch`): `max_concurrency`,
        `failure_strategy`, `request_timeout`; results by id, in request order."""
        from amaos_llm.batch import run_batch

        return await run_batch(self, requests, **options)  # type: ignore[arg-type]

    async def retry_failed(self, result: BatchResult, **options: Any) -> BatchResult:
        """The requests of `result` that have no answer, run again; the merged `BatchResult`."""
        from amaos_llm.batch import retry_failed

        return await retry_failed(self, result, **options)  # type: ignore[arg-type]

    def list_models(self) -> list[ModelSpec]:
        return list(self._models.values())

    @property
    def config(self) -> LLMConfig:
        return self._config.model_copy(update={"models": self.list_models()})

    def set_fallback_chain(self, names: Sequence[str] | None) -> None:
        """Try exactly these models, in this order (None or [] restores the computed order); a
        provider type (`openai`, ...) stands for all its models, in file order."""
        models = list(self._models.values())
        chain = [model for name in names or () for model in models_named(models, name)]
        self._set_routing(fallback_chain=list(dict.fromkeys(chain)) or None)

    def _set_routing(self, **values: Any) -> None:
        routing = self._config.routing.model_copy(update=values)
        self._config = self._config.model_copy(update={"routing": routing})
        self._version += 1

    def enable_load_balancing(self, strategy: str) -> None:
        """Spread calls over equally ranked models: round_robin, weighted, random, least_latency or
        least_busy (see `amaos_llm.balancing`); a ValueError names the known ones."""
        self._balancer = Balancer(strategy, self._load, self._rng)
        self._set_routing(load_balancing=strategy)

    def disable_load_balancing(self) -> None:
        """Back to the computed order (ties by estimated cost, then file order)."""
        self._balancer = None
        self._set_routing(load_balancing=None)

    def set_model_weight(self, name: str, weight: float) -> None:
        """A model's share under `weighted` and `random` balancing; 0 makes it a fallback only."""
        spec = self._spec(name)
        if type(weight) not in (int, float) or not weight >= 0:
            raise ValueError(f"weight: must be a number >= 0, got {weight!r}")
        self._models[name] = spec.model_copy(update={"weight": float(weight)})
        self._version += 1

    def set_provider_weight(self, provider: str, weight: float) -> None:
        """spoon_ai's name: the weight of a model, or of every model of a provider type."""
        for name in models_named(list(self._models.values()), provider):
            self.set_model_weight(name, weight)

    def register_model(
        self,
        name: str,
        fn: ModelFunction,
        *,
        source: str = "local",
        priority: int = 0,
        cost_per_1k_input: float | Decimal = 0,
        cost_per_1k_output: float | Decimal = 0,
        **spec_fields: Any,
    ) -> ModelSpec:
        """Add (or replace) a model served by `fn(messages, **params)`; see `providers.callable`."""
        spec = ModelSpec(
            name=name, provider="callable", source=source, priority=priority,  # type: ignore[arg-type]
            cost_per_1k_input=cost_per_1k_input, cost_per_1k_output=cost_per_1k_output, **spec_fields,  # type: ignore[arg-type]
        )
        self._retire(name)
        self._models[name] = spec
        self._targets.of(spec)[0].providers[None] = CallableProvider(spec, fn=fn)
        return spec

    # -- health and status (no background work: real sends, or these calls; see `amaos_llm.health`) --

    async def health_check_all(self) -> dict[str, bool]:
        """{model: healthy} for every enabled model, checked concurrently without generating
        (each within min(timeout, 5 s)). Breakers are left as they are."""
        return await self._health.check_all()

    async def warm_up(self, names: Sequence[str] | None = None) -> dict[str, bool]:
        """Load local models (default: every enabled one) without generating; {model: ready}."""
        return await self._health.warm_up([self._spec(n).name for n in names] if names is not None else None)

    def get_provider_status(self) -> dict[str, dict[str, Any]]:
        return self._health.status()

    def get_model_info(self, name: str) -> dict[str, Any]:
        return self._health.model_info(self._spec(name), self._stats)

    async def reset_provider(self, name: str) -> None:
        """Close the model's clients and forget its init backoff, key marks and health; a provider
        type (`openai`, ...) resets all its models."""
        await self._health.reset(models_named(list(self._models.values()), name))

    def reset_circuit_breaker(self, name: str) -> None:
        """Close the model's circuit breakers and Retry-After windows (shared breakers: for every
        manager on the store, from this one's next send to the model)."""
        spec = self._spec(name)
        self._targets.reset_breakers(spec)
        if self._breakers is not None:
            self._breakers.reset(self._targets.built(spec.name))

    def _spec(self, name: str) -> ModelSpec:
        spec = self._models.get(name)
        if spec is None:
            raise ModelNotFound(name, list(self._models))
        return spec

    def _retire(self, name: str) -> None:
        self._retired.extend(self._targets.forget(name))
        self._prices.forget(name)
        self._spending.forget(name)
        self._version += 1

    # -- names and lifetime -------------------------------------------------------------------

    def _only(self, name: str) -> frozenset[str]:
        return frozenset(models_named(list(self._models.values()), name))

    async def aclose(self) -> None:
        """Close every client (a reopened manager, `async with`, builds them again)."""
        providers = [*self._retired]
        for target in self._targets.all():
            providers.extend(target.take_clients())
        self._retired = []
        self._closed = True
        for provider in providers:
            await provider.aclose()

    cleanup = aclose  # spoon_ai's name

    async def __aenter__(self) -> Self:
        self._closed = False  # reopened after aclose: clients are built again, stats and budget kept
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        routing = self._config.routing
        return f"{type(self).__name__}(models={list(self._models)!r}, local_only={routing.local_only})"

    # -- lazily built pieces ------------------------------------------------------------------

    def _provider(self, target: Target, env: str | None) -> Provider:
        """The target's provider for the key in `env` (its client is built on first use)."""
        provider = target.providers.get(env)
        if provider is None:
            if self._closed:
                raise ProviderError("the manager is closed")
            spec = target.spec
            if env is not None and len(target.keys) > 1:
                spec = spec.model_copy(update={"api_key_env": env})  # the provider names the variable it uses
            provider = target.providers[env] = provider_class(spec.provider)(spec, spec.resolve_key(env))
        return provider

    def _max_tokens(self, spec: ModelSpec, requested: int | None) -> int:
        return first_set(requested, spec.max_tokens, self._config.defaults.max_tokens)

    def _config_digest(self) -> str:
        """A digest of the models and routing, for keys a fleet shares (kept until the version changes)."""
        digest = self._digest
        if digest is None or digest[0] != self._version:
            text = self.config.model_dump_json(exclude={"models": {"__all__": {"api_key"}}})
            digest = self._digest = (self._version, hashlib.sha256(text.encode()).hexdigest()[:16])
        return digest[1]
