"""What the manager knows of each model's health, and the explicit checks a user may ask for.

All of it is passive or on demand: real sends update the state, `check_all` and `warm_up` run only
when called, and nothing here runs in the background or generates text (a health check lists the
server's models; a warm-up asks a local server to load one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from amaos_llm.errors import ProviderError
from amaos_llm.resilience.targets import Target, Targets

if TYPE_CHECKING:
    from amaos_llm.config import LLMConfig, ModelSpec
    from amaos_llm.providers.base import Provider
    from amaos_llm.stats import Stats

HEALTH_TIMEOUT = 5.0  # s: a health check is a list call; any longer and the server is not healthy

ProviderFor = Callable[[Target, "str | None"], "Provider"]


class Health:
    """The manager's health and status views over its models' targets."""

    __slots__ = ("_models", "_targets", "_config", "_provider", "_clock")

    def __init__(
        self, models: Mapping[str, ModelSpec], targets: Targets, config: Callable[[], LLMConfig],
        provider: ProviderFor, clock: Callable[[], float],
    ) -> None:
        self._models, self._targets, self._config, self._provider, self._clock = (
            models, targets, config, provider, clock)

    async def check_all(self) -> dict[str, bool]:
        """Every enabled model, concurrently: True when one of its URLs answers a health check.
        A model with no key, or a cloud model under local_only, is False without a request."""
        config = self._config()
        results: dict[str, bool] = {}

        async def check(spec: ModelSpec) -> None:
            limit = min(spec.timeout or config.defaults.timeout, HEALTH_TIMEOUT)
            ok = False
            for target in self._targets.of(spec):
                ok = await self._check(target, limit) or ok
            results[spec.name] = ok

        async with anyio.create_task_group() as tg:
            for spec in self._models.values():
                if not spec.enabled:
                    continue
                if (config.routing.local_only and not spec.is_local) or (spec.key_required and not spec.has_key()):
                    results[spec.name] = False
                    continue
                tg.start_soon(check, spec)
        return {name: results[name] for name in self._models if name in results}

    async def credentials(self, spec: ModelSpec) -> bool:
        """Whether the model's credentials are there, never reading them out: its key variable(s),
        or for a provider with its own chain (Bedrock's AWS chain) that chain."""
        if spec.key_required and not spec.has_key():
            return False
        targets = self._targets.of(spec)
        try:
            provider = self._provider(targets[0], targets[0].key(self._targets.keys))
        except ProviderError:
            return False
        has_credentials = getattr(provider, "has_credentials", None)
        if has_credentials is None:
            return True
        try:
            return bool(await has_credentials())
        except ProviderError:
            return False

    async def _check(self, target: Target, limit: float) -> bool:
        ok = False
        try:
            provider = self._provider(target, target.key(self._targets.keys))
            with anyio.move_on_after(limit):
                ok = await provider.health()
        except ProviderError as exc:
            target.last_error = f"{type(exc).__name__}: {exc}"
        target.healthy = ok
        return ok

    async def warm_up(self, names: list[str] | None = None) -> dict[str, bool]:
        """Get local models ready to answer without generating: a warm one is True with no request;
        Ollama loads the model (`POST /api/chat`, no messages), a loopback OpenAI-compatible server
        is asked for its models, the embedded model is loaded."""
        config = self._config()
        if names is None:
            specs = [s for s in self._models.values() if s.enabled and s.is_local]
        else:
            specs = [self._models[n] for n in names]
        results: dict[str, bool] = {}

        async def warm(spec: ModelSpec) -> None:
            ok = False
            for target in self._targets.of(spec):
                if target.warm:
                    ok = True
                    continue
                limit = spec.load_timeout or config.defaults.load_timeout or spec.timeout or config.defaults.timeout
                try:
                    provider = self._provider(target, target.key(self._targets.keys))
                    with anyio.move_on_after(limit):
                        if await provider.warm_up():
                            target.warm, target.last_success, target.healthy = True, self._clock(), True
                except ProviderError as exc:
                    target.last_error = f"{type(exc).__name__}: {exc}"
                ok = ok or target.warm
            results[spec.name] = ok

        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(warm, spec)
        return {s.name: results[s.name] for s in specs}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per model: its client (unbuilt | ready | init_failed), seconds until a failed client may be
        built again, health as last seen, the last error, and each key variable's state."""
        now, ring = self._clock(), self._targets.keys
        out = {}
        for spec in self._models.values():
            targets = self._targets.of(spec)
            failed = [t for t in targets if t.init_failures]
            client = "init_failed" if failed else "ready" if any(t.providers for t in targets) else "unbuilt"
            seen = [t.healthy for t in targets if t.healthy is not None]
            errors = [t.last_error for t in targets if t.last_error]
            out[spec.name] = {
                "provider": spec.provider,
                "client": client,
                "next_init_in": max(0.0, min(t.init_next_at for t in failed) - now) if failed else 0.0,
                "healthy": any(seen) if seen else None,
                "last_error": errors[-1] if errors else None,
                "keys": {env: ring.state(env) for env in spec.key_envs},
            }
        return out

    def model_info(self, spec: ModelSpec, stats: Stats) -> dict[str, Any]:
        ring = self._targets.keys
        endpoints = []
        available = False
        for target in self._targets.of(spec):
            breaker = target.breaker
            available = available or target.unavailable(ring, self._clock) is None
            endpoints.append({
                "url": target.url,
                "breaker": {"state": breaker.state, "failures": breaker.failures, "reopens_in": breaker.reopens_in()},
                "rate_limited_for": target.window.remaining(),
                "ewma_latency": target.ewma,
                "in_flight": target.in_flight,
                "warm": target.warm,
            })
        model_stats = stats.by_model.get(spec.name)
        return {
            **spec.model_dump(exclude={"api_key"}),
            "weight": spec.weight,
            "available": spec.enabled and available,
            "endpoints": endpoints,
            "stats": None if model_stats is None else model_stats.as_dict(),
        }

    async def reset(self, names: list[str]) -> None:
        """Close the models' clients and clear their init backoff, key marks and health. A registered
        function is kept: it has no client to rebuild."""
        closing = []
        for name in names:
            for target in self._targets.built(name):
                closing.extend(target.take_clients())
                target.init_failures, target.init_next_at, target.healthy, target.last_error = 0, 0.0, None, None
                target.warm = False
            self._targets.keys.clear(self._models[name].key_envs)
        for provider in closing:
            await provider.aclose()
