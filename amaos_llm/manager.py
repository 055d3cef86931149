"""`LLMManager`: routes each request to a model, falling back, retrying and accounting as it goes.

It composes the pieces (input checks, selection, providers, retry policy, circuit breakers,
prices, stats); one attempt loop serves `complete()` and `chat()`. Every call ends in exactly one
of `successes`, `failures` (it raised an error) or `cancelled` (its caller cut it off).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
from pydantic import ValidationError

from amaos_llm.config import LLMConfig, ModelSpec
from amaos_llm.errors import AllModelsFailed, ModelNotFound, ProviderError, ProviderTimeout
from amaos_llm.inputs import chat_messages, check_sampling, prompt_messages
from amaos_llm.pricing import PriceBook
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest
from amaos_llm.providers.callable import CallableProvider, ModelFunction
from amaos_llm.providers.registry import provider_class
from amaos_llm.resilience import CircuitBreaker, RetryPolicy
from amaos_llm.selection import select_candidates
from amaos_llm.stats import Stats
from amaos_llm.types import Attempt, LLMResult, Message, Usage
from amaos_llm.yaml_source import config_error

MessageLike = Message | Mapping[str, Any]
MAX_ERROR = 300  # characters of an unexpected exception's text kept in the attempt's error


class LLMManager:
    """Local-first, cost-aware model routing with fallback, timeouts, retries and real costs.

    Build it from YAML (`LLMManager.from_yaml(path)`), from a config object, from a list of
    `ModelSpec`s, or with no arguments for `$AMAOS_LLM_CONFIG` / the packaged default.
    `local_only` and `enable_fallback`, when given, override the configuration's routing values.
    """

    def __init__(
        self,
        config: LLMConfig | str | Path | None = None,
        *,
        models: Sequence[ModelSpec] | None = None,
        local_only: bool | None = None,
        enable_fallback: bool | None = None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if isinstance(config, (str, Path)):
            config = LLMConfig.from_yaml(config)
        elif config is None:
            config = LLMConfig.default() if models is None else _validated(models)
        elif models is not None:
            config = _validated(models, base=config)
        self._config = config.with_routing(local_only=local_only, enable_fallback=enable_fallback)
        self._models: dict[str, ModelSpec] = {m.name: m for m in self._config.models}
        self._providers: dict[str, Provider] = {}
        self._retired: list[Provider] = []
        self._breakers: dict[str, CircuitBreaker] = {}
        self._prices = PriceBook()
        self._stats = Stats()
        self._clock, self._sleep = clock, sleep
        self._closed = False

    @classmethod
    def from_yaml(
        cls, path: str | Path, *, local_only: bool | None = None, enable_fallback: bool | None = None, **kwargs: Any
    ) -> LLMManager:
        return cls(LLMConfig.from_yaml(path), local_only=local_only, enable_fallback=enable_fallback, **kwargs)

    # -- the public calls ---------------------------------------------------------------------

    async def complete(
        self,
        prompt: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        force_model: str | None = None,
    ) -> LLMResult:
        return await self._serve(prompt_messages, (prompt, system_prompt), temperature, max_tokens, force_model)

    async def chat(
        self,
        messages: Iterable[MessageLike],
        *,
        force_model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> LLMResult:
        return await self._serve(chat_messages, (messages,), temperature, max_tokens, force_model)

    def get_stats(self) -> dict[str, Any]:
        return self._stats.as_dict()

    def list_models(self) -> list[ModelSpec]:
        return list(self._models.values())

    @property
    def config(self) -> LLMConfig:
        return self._config.model_copy(update={"models": self.list_models()})

    def set_fallback_chain(self, names: Sequence[str] | None) -> None:
        """Try exactly these models, in this order (None or [] restores the computed order)."""
        for name in names or ():
            if name not in self._models:
                raise ModelNotFound(name, list(self._models))
        routing = self._config.routing.model_copy(update={"fallback_chain": list(names) if names else None})
        self._config = self._config.model_copy(update={"routing": routing})

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
        self._providers[name] = CallableProvider(spec, fn=fn)
        return spec

    async def aclose(self) -> None:
        providers, self._providers = [*self._providers.values(), *self._retired], {}
        self._retired = []
        self._closed = True
        for provider in providers:
            await provider.aclose()

    async def __aenter__(self) -> LLMManager:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        routing = self._config.routing
        return f"LLMManager(models={list(self._models)!r}, local_only={routing.local_only})"

    # -- the attempt loop -----------------------------------------------------------------------

    async def _serve(
        self,
        build: Callable[..., list[Message]],
        args: tuple[Any, ...],
        temperature: float | None,
        max_tokens: int | None,
        force_model: str | None,
    ) -> LLMResult:
        """Check the call's arguments (`build(*args)` makes its messages), route it, count it."""
        start = self._clock()
        stats = self._stats
        stats.calls += 1
        try:
            messages = build(*args)
            check_sampling(temperature, max_tokens)
            result = await self._route(messages, temperature, max_tokens, force_model, start)
        except Exception:
            stats.failures += 1
            raise
        except BaseException:  # cut off by the caller (a cancel scope, Ctrl-C): not the models' fault
            stats.cancelled += 1
            raise
        stats.successes += 1
        return result

    async def _route(
        self, messages: list[Message], temperature: float | None, max_tokens: int | None, force_model: str | None,
        start: float,
    ) -> LLMResult:
        stats, routing = self._stats, self._config.routing
        forced = None
        if force_model is not None:
            forced = self._models.get(force_model)
            if forced is None:
                raise ModelNotFound(force_model, list(self._models))
        prompt_tokens = _estimate_tokens(messages)
        candidates = select_candidates(
            list(self._models.values()),
            routing,
            estimate=lambda s: self._prices.estimate(s, prompt_tokens, self._max_tokens(s, max_tokens)),
            has_key=_has_key,
            breaker_open=lambda s: s.name in self._breakers and self._breakers[s.name].is_open(),
            force_model=forced,
        )
        attempts: list[Attempt] = []
        sent = False
        for candidate in candidates:
            spec = candidate.spec
            if candidate.skip_reason is not None:
                attempts.append(Attempt(model_name=spec.name, provider=spec.provider, outcome="skipped",
                                        error=candidate.skip_reason))
                stats.record_attempt(spec.name, "skipped", 0.0)
                continue
            if sent:
                if not routing.enable_fallback:
                    break
                stats.fallbacks += 1
            sent = True
            reply = await self._try(spec, messages, temperature, max_tokens, attempts)
            if reply is not None:
                return self._settle(spec, reply, attempts, start)
        raise AllModelsFailed(attempts, "all models failed" if sent else "no eligible model")

    async def _try(
        self,
        spec: ModelSpec,
        messages: list[Message],
        temperature: float | None,
        max_tokens: int | None,
        attempts: list[Attempt],
    ) -> ProviderReply | None:
        """Send to one model, retrying what is worth retrying; None when it finally failed."""
        defaults, stats, clock = self._config.defaults, self._stats, self._clock
        request = ProviderRequest(
            messages=messages,
            model=spec.model,
            temperature=_first(temperature, spec.temperature, defaults.temperature),
            max_tokens=self._max_tokens(spec, max_tokens),
            seed=spec.seed,
            options=spec.options,
        )
        timeout = spec.timeout or defaults.timeout
        policy: RetryPolicy | None = None  # built on the first failure: the happy path needs none
        breaker = self._breaker(spec)
        retry = 0
        while True:
            t0 = clock()
            try:
                provider = self._provider(spec)
                breaker.before_call()
                reply = await _send(provider, request, timeout)
            except ProviderError as exc:
                error = exc
            except BaseException as exc:
                if not isinstance(exc, Exception):  # the attempt was cut off by the caller
                    breaker.record_cancelled()
                    attempts.append(Attempt(model_name=spec.name, provider=spec.provider, outcome="cancelled",
                                            latency=clock() - t0))
                    stats.record_attempt(spec.name, "cancelled", 0.0)
                raise
            else:
                latency = clock() - t0
                breaker.record_success()
                attempts.append(Attempt(model_name=spec.name, provider=spec.provider, outcome="success",
                                        latency=latency))
                stats.record_attempt(spec.name, "success", latency)
                return reply
            latency = clock() - t0
            breaker.record_failure()
            outcome = "timeout" if isinstance(error, ProviderTimeout) else "error"
            attempts.append(Attempt(model_name=spec.name, provider=spec.provider, outcome=outcome,
                                    error=f"{type(error).__name__}: {error}", latency=latency))
            stats.record_attempt(spec.name, outcome, latency)
            retry += 1
            if policy is None:
                policy = RetryPolicy(_first(spec.max_retries, defaults.max_retries), defaults.retry_backoff,
                                     defaults.max_retry_wait)
            delay = policy.delay(error, retry)
            if delay is None:
                return None
            stats.retries += 1
            await self._sleep(delay)

    def _settle(self, spec: ModelSpec, reply: ProviderReply, attempts: list[Attempt], start: float) -> LLMResult:
        price = self._prices.price(spec)
        cost = None if price is None else price.cost(reply.input_tokens, reply.output_tokens)
        self._stats.record_usage(spec.name, reply.input_tokens, reply.output_tokens, cost)
        return LLMResult(
            content=reply.content,
            model_name=spec.name,
            provider=spec.provider,
            model=reply.model or spec.model,
            usage=Usage(input_tokens=reply.input_tokens, output_tokens=reply.output_tokens),
            cost=cost,
            latency=self._clock() - start,
            finish_reason=reply.finish_reason,
            attempts=attempts,
        )

    # -- lazily built pieces --------------------------------------------------------------------

    def _provider(self, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec.name)
        if provider is None:
            if self._closed:
                raise ProviderError("the manager is closed")
            provider = provider_class(spec.provider)(spec, spec.resolve_key())
            self._providers[spec.name] = provider
        return provider

    def _breaker(self, spec: ModelSpec) -> CircuitBreaker:
        breaker = self._breakers.get(spec.name)
        if breaker is None:
            d = self._config.defaults
            breaker = self._breakers[spec.name] = CircuitBreaker(d.breaker_threshold, d.breaker_reset)
        return breaker

    def _max_tokens(self, spec: ModelSpec, requested: int | None) -> int:
        return _first(requested, spec.max_tokens, self._config.defaults.max_tokens)

    def _retire(self, name: str) -> None:
        old = self._providers.pop(name, None)
        if old is not None:
            self._retired.append(old)
        self._prices.forget(name)
        self._breakers.pop(name, None)


async def _send(provider: Provider, request: ProviderRequest, timeout: float) -> ProviderReply:
    """The provider call, within `timeout`; whatever it raises comes out as a `ProviderError`."""
    loop = _asyncio_loop()
    if loop is None:  # trio: anyio's cancel scope
        reply = None
        with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
            reply = await _call(provider, request, timeout)
        if scope.cancelled_caught or reply is None:
            raise ProviderTimeout(f"no reply within {timeout:g} s")
        return reply
    # On asyncio its own deadline: around an HTTP call, anyio's cancel scope cost ~25 µs more than
    # the raw SDK call, asyncio's ~8 µs. It cancels the task as anyio does, so a caller's cancel
    # scope still wins: only this deadline turns into the TimeoutError below.
    import asyncio  # loaded: its loop is running

    try:
        async with asyncio.timeout_at(loop.time() + timeout):
            return await _call(provider, request, timeout)
    except TimeoutError:
        raise ProviderTimeout(f"no reply within {timeout:g} s") from None


def _asyncio_loop() -> Any:
    asyncio = sys.modules.get("asyncio")  # not imported here: only an asyncio loop already running counts
    if asyncio is None:
        return None
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio
        return None


async def _call(provider: Provider, request: ProviderRequest, timeout: float) -> ProviderReply:
    try:
        return await provider.complete(request)
    except ProviderError:
        raise
    except TimeoutError:  # a provider's own socket/SDK timeout
        raise ProviderTimeout(f"no reply within {timeout:g} s") from None
    except Exception as exc:  # an SDK failure no mapping knows: this model failed; fallback goes on
        raise ProviderError(provider.redact(f"{type(exc).__name__}: {exc}")[:MAX_ERROR]) from exc


def _validated(models: Sequence[ModelSpec], base: LLMConfig | None = None) -> LLMConfig:
    data = (base or LLMConfig()).model_dump(exclude={"models"})
    try:
        return LLMConfig.model_validate({**data, "models": list(models)})
    except ValidationError as exc:
        raise config_error(exc, LLMConfig) from None


def _has_key(spec: ModelSpec) -> bool:
    return spec.api_key is not None or bool(spec.api_key_env and os.environ.get(spec.api_key_env))


def _first(a: Any, b: Any, c: Any = None) -> Any:
    """The first value that is not None: 0 and 0.0 are real settings (temperature 0.0 stays 0.0)."""
    return a if a is not None else b if b is not None else c


def _estimate_tokens(messages: Sequence[Message]) -> int:
    # Only for ordering by estimated cost; billing uses the provider's own counts.
    return sum(len(m.content) for m in messages) // 4 + 4 * len(messages)


_default: LLMManager | None = None


def get_llm_manager() -> LLMManager:
    """The process-wide manager, built from the default configuration on first use."""
    global _default
    if _default is None:
        _default = LLMManager()
    return _default


def set_llm_manager(manager: LLMManager | None) -> None:
    global _default
    _default = manager
