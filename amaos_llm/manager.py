"""`LLMManager`: routes each request to a model, falling back, retrying and accounting as it goes.

It composes the pieces (input checks, selection and balancing, providers, the retry policy and
each model's guards, prices, validation, stats); one attempt loop serves `complete()` and `chat()`.
Every call ends in exactly one of `successes`, `failures` (it raised an error) or `cancelled` (its
caller cut it off).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio

from amaos_llm.balancing import Balancer, Load
from amaos_llm.breakers import record_failed_send, shared_breakers
from amaos_llm.budget import Budget
from amaos_llm.cache import ResultCache, SharedResultCache, cache_key
from amaos_llm.call_state import CallOptions, CallState, call_options
from amaos_llm.capabilities import capability_skip
from amaos_llm.config import LLMConfig, ModelSpec, first_set
from amaos_llm.controls import ManagerControls
from amaos_llm.errors import (
    AllModelsFailed,
    BadRequestError,
    DeadlineExceeded,
    ModelLoadError,
    ModelNotFound,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
)
from amaos_llm.health import Health
from amaos_llm.inputs import chat_messages, prompt_messages
from amaos_llm.pricing import PriceBook
from amaos_llm.providers.base import Provider, ProviderReply, ProviderRequest
from amaos_llm.resilience import RetryPolicy
from amaos_llm.resilience.guards import pause, retry_policy
from amaos_llm.resilience.targets import Target, Targets, plan
from amaos_llm.selection import select_candidates
from amaos_llm.sending import load_model, loads_models, send, without_unsupported
from amaos_llm.spending import Spending
from amaos_llm.state import StateStore, make_store
from amaos_llm.stats import Stats
from amaos_llm.stream_calls import StreamCalls
from amaos_llm.streaming import StreamCall, fire, interrupted
from amaos_llm.structured import output_problem
from amaos_llm.telemetry import NO_TELEMETRY, Telemetry, call_request, key_values, settled
from amaos_llm.tool_runs import ToolCalls
from amaos_llm.types import Attempt, LLMResult, Message, Outcome, Usage
from amaos_llm.validation import Validator, check_validator, judge, reask

MessageLike = Message | Mapping[str, Any]
log = logging.getLogger("amaos_llm")


class LLMManager(ManagerControls, ToolCalls, StreamCalls):
    """Local-first, cost-aware model routing with fallback, timeouts, retries and real costs.

    Build it from YAML (`LLMManager.from_yaml(path)`), from a config object, from a list of
    `ModelSpec`s, or with no arguments for `$AMAOS_LLM_CONFIG` / the packaged default.
    `local_only` and `enable_fallback`, when given, override the configuration's routing values.
    `clock`, `sleep` and `rng` (default: seeded by `routing.random_seed`) drive every wait and draw.
    OpenTelemetry: the global tracer and meter providers when set (or `tracer_provider=`,
    `meter_provider=`); with none, nothing is recorded (see `amaos_llm.telemetry`).
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
        rng: random.Random | None = None,
        validator: Validator | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        budget_usd: float | Decimal | str | None = None,
        state_store: StateStore | None = None,
    ) -> None:
        if isinstance(config, (str, Path)):
            config = LLMConfig.from_yaml(config)
        elif config is None:
            config = LLMConfig.default() if models is None else LLMConfig().with_models(models)
        elif models is not None:
            config = config.with_models(models)
        self._config = config.with_routing(local_only=local_only, enable_fallback=enable_fallback)
        self._models: dict[str, ModelSpec] = {m.name: m for m in self._config.models}
        self._retired: list[Provider] = []  # providers of replaced models, closed with the manager
        self._prices = PriceBook()
        self._stats = Stats()
        self._clock, self._sleep = clock, sleep
        self._rng = rng if rng is not None else random.Random(self._config.routing.random_seed)
        self._targets = Targets(self._config.defaults, clock)
        self._health = Health(self._models, self._targets, lambda: self._config, self._provider, clock)
        self._load = Load()
        strategy = self._config.routing.load_balancing
        self._balancer = None if strategy is None else Balancer(strategy, self._load, self._rng)
        self._validator = check_validator(validator)
        cache = self._config.cache
        self._cache = ResultCache(cache.max_size, cache.ttl, clock)
        self._version = 0  # changes with the models or the routing, so that a cached answer from before is not reused
        self._closed = False
        config = self._config
        store = state_store or make_store(config.state, clock)
        # a store that keeps results too (Redis) shares the cache across the fleet
        self._shared_cache = SharedResultCache(store, cache.ttl) if hasattr(store, "cache_get") else None
        self._breakers = shared_breakers(store, clock, given=state_store is not None)  # None: kept per target
        self._spending = Spending(self._prices, clock, store,
                                  budget_usd if budget_usd is not None else config.budget_usd, config.budget_key,
                                  config.state.on_error, given=state_store is not None)  # shared: as the breakers
        # decided per manager: a tracer or meter provider configured after import counts from here on
        self._telemetry = Telemetry.for_manager(capture_content=self._config.telemetry.capture_content,
                                                secrets=key_values(self._config.models),
                                                tracer_provider=tracer_provider, meter_provider=meter_provider)

    @classmethod
    def from_yaml(
        cls, path: str | Path, *, local_only: bool | None = None, enable_fallback: bool | None = None, **kwargs: Any
    ) -> LLMManager:
        return cls(LLMConfig.from_yaml(path), local_only=local_only, enable_fallback=enable_fallback, **kwargs)

    # -- the public calls ---------------------------------------------------------------------

    async def complete(
        self,
        prompt: str,
        provider: str | None = None,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        force_model: str | None = None,
        deadline: float | None = None,
        validator: Validator | None = None,
        validation_retries: int | None = None,
        cache: bool | None = None,
        max_cost: float | Decimal | None = None,
        budget: Budget | Sequence[Budget] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str = "auto",
        response_format: Any = None,
    ) -> LLMResult:
        """Answer `prompt`. `deadline` (seconds; default `defaults.deadline`) bounds the whole call;
        `validator(result) -> True | False | reason` (default: the manager's) must accept the answer,
        which is re-asked up to `validation_retries` times (default `defaults.validation_retries`);
        `cache` (default `cache.enabled`) answers a repeated request from the result cache.
        `provider` (a model name or a provider type such as `openai`) keeps the call to those
        models, falling back among them. `max_cost` caps this call's worst case; `budget` adds
        ledgers (`Budget`s) it must fit in besides the manager's `budget_usd`. `tools` the model may
        call (`result.tool_calls`; see `chat_with_tools`), `response_format` (a pydantic model class or
        a JSON schema) the answer must fit (`result.parsed`; one that does not is re-asked)."""
        options = call_options(temperature, max_tokens, force_model, deadline, validator, validation_retries, cache,
                               None if provider is None else self._only(provider), max_cost, budget, tools,
                               tool_choice, response_format)
        return await self._serve(prompt_messages, (prompt, system_prompt), options)

    async def chat(
        self,
        messages: Iterable[MessageLike],
        provider: str | None = None,
        *,
        force_model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        deadline: float | None = None,
        validator: Validator | None = None,
        validation_retries: int | None = None,
        cache: bool | None = None,
        max_cost: float | Decimal | None = None,
        budget: Budget | Sequence[Budget] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str = "auto",
        response_format: Any = None,
    ) -> LLMResult:
        options = call_options(temperature, max_tokens, force_model, deadline, validator, validation_retries, cache,
                               None if provider is None else self._only(provider), max_cost, budget, tools,
                               tool_choice, response_format)
        return await self._serve(chat_messages, (messages,), options)

    completion = complete  # spoon_ai's name

    # -- the attempt loop -----------------------------------------------------------------------

    async def _serve(
        self, build: Callable[..., list[Message]], args: tuple[Any, ...], options: CallOptions,
        stream: StreamCall | None = None,
    ) -> LLMResult:
        """Check the call (`build(*args)` makes its messages), answer it, count it."""
        start = self._clock()
        stats = self._stats
        stats.calls += 1
        call = None
        try:
            call = CallState.begin(build(*args), options, start, self._config.defaults,
                                   self._validator if stream is None else None)
            if self._spending.budget is not None or options.max_cost is not None or options.budget is not None:
                extra = options.budget
                budgets = [] if extra is None else [extra] if isinstance(extra, Budget) else list(extra)
                call.spend = self._spending.for_call(call.messages, options.max_cost, budgets)  # type: ignore[arg-type]
            if self._telemetry is not NO_TELEMETRY:
                call.trace = self._telemetry.start_call("chat", call_request(call, self._telemetry, stream))
            if stream is None:
                cached = self._config.cache.enabled if options.cache is None else options.cache
                result = await (self._through_cache(call) if cached else self._route(call))
            else:
                call.stream = stream
                result = await self._route(call)
                await fire(stream.callbacks, "on_end", result)
        except Exception as exc:  # counted, then raised as it is
            stats.failures += 1
            if isinstance(exc, DeadlineExceeded):
                stats.deadline_exceeded += 1
            if stream is not None:
                await stream.failed(exc)
            if call is not None:
                settled(call, None, exc, self._models)
            raise
        except BaseException as exc:  # cut off by the caller (a cancel scope, Ctrl-C): not the models' fault
            stats.cancelled += 1
            if call is not None:
                settled(call, None, exc, self._models)
            raise
        stats.successes += 1
        if call.trace is not None or call.fell_back_from is not None:
            settled(call, result, None, self._models)
        return result

    async def _through_cache(self, call: CallState) -> LLMResult:
        """A stored answer to the same request (the validator, if any, checks it again), else a
        routed one, stored for next time."""
        o = call.options
        shared = self._shared_cache
        # shared across processes: the key also names the models and routing (another fleet member's
        # configuration may differ), not only this manager's version counter
        version: object = self._version if shared is None else f"{self._config_digest()}:{self._version}"
        key = cache_key(call.messages, o.temperature, o.max_tokens, o.force_model, version,  # type: ignore[arg-type]
                        call.tools, o.tool_choice, o.response_format)
        hit = self._cache.get(key)
        if hit is None and shared is not None:
            hit = await shared.get(key)
            if hit is not None:
                self._cache.keep(key, hit)
        if hit is not None:
            if call.validator is None or await judge(call.validator, hit) is None:
                self._stats.record_cache_hit(hit.saved_cost)
                if call.trace is not None:
                    call.trace.cache_hit(self._models.get(hit.model_name))
                return hit.model_copy(update={"latency": self._clock() - call.start})
            self._cache.drop(key)
        self._stats.cache_misses += 1
        result = await self._route(call)
        stored = self._cache.put(key, result)
        if shared is not None:
            await shared.put(key, stored)
        return result

    async def _route(self, call: CallState) -> LLMResult:
        stats, routing, force_model = self._stats, self._config.routing, call.options.force_model
        forced = None
        if force_model is not None:
            forced = self._models.get(force_model)
            if forced is None:
                raise ModelNotFound(force_model, list(self._models))
        max_tokens = call.options.max_tokens
        waited = 0.0
        while True:
            if self._breakers is not None and self._breakers.open:  # shared breakers this copy holds open
                await self._breakers.refresh_open()
            models = list(self._models.values())
            if call.options.only is not None:
                models = [m for m in models if m.name in call.options.only]
            candidates = select_candidates(
                models,
                routing,
                estimate=lambda s: self._prices.estimate(s, call.prompt(), self._max_tokens(s, max_tokens)),
                has_key=ModelSpec.has_key,
                unavailable=self._targets.unavailable,
                force_model=forced,
                balance=None if self._balancer is None else self._balancer.order,
            )
            sends, call.comebacks = call.sends, None
            for spec, target in plan(candidates, routing.retry_strategy, self._targets.of, call, self._record):
                if call.last_model is not None and call.last_model != spec.name:
                    if not routing.enable_fallback:
                        break
                    stats.fallbacks += 1
                    if call.fell_back_from is None:
                        call.fell_back_from = call.last_model
                    if call.trace is not None:
                        call.trace.fallback(self._models[call.last_model], call.attempts[-1].error or "failed")
                    call.last_model = None  # counted once, however many of its targets are passed over
                try:
                    result = await self._try(spec, target, call)
                finally:
                    if call.spend is not None and call.spend.hold is not None:  # left the model unpaid
                        await Spending.release(call)
                if result is not None:
                    return result
            sent = call.sends > sends
            comebacks = [c.clears_in for c in candidates if c.clears_in is not None] + (call.comebacks or [])
            wait = None if sent else pause(comebacks, waited, call.until, self._config.defaults.max_retry_wait,
                                           self._clock)
            if wait is None and not sent and call.spend is not None and call.spend.blocked:
                # Only budgets held by calls in flight stood in the way: wait for one of them to settle.
                left = self._config.defaults.max_retry_wait - waited
                if call.until is not None:
                    left = min(left, call.until - self._clock())
                refusal, call.spend.blocked = call.spend.blocked[0], []
                t0 = self._clock()
                if left > 0 and await refusal.wait(left):
                    waited += self._clock() - t0
                    continue
            if wait is None:
                if call.stream is not None and call.stream.interrupted is not None:
                    raise interrupted(call, "the stream was cut and no model could carry it on")
                exceeded = None if call.spend is None else call.spend.guard.exceeded(call.attempts)
                raise exceeded or AllModelsFailed(call.attempts, "all models failed" if sent else "no eligible model")
            # Every model was passed over, but one comes back soon (an open breaker, a Retry-After):
            # waiting for it beats failing the call.
            await self._sleep(wait)
            waited += wait

    async def _try(self, spec: ModelSpec, target: Target, call: CallState) -> LLMResult | None:
        """Send to one target of a model, rotating keys, dropping unsupported parameters, retrying
        what is worth retrying and re-asking what its validator rejected; the accepted result, or
        None when this target finally failed (or could not take the call)."""
        defaults, clock, until, stats = self._config.defaults, self._clock, call.until, self._stats
        ring = self._targets.keys
        stream = call.stream
        # A tool history written on another wire is rewritten for this one by its provider (`history.for_wire`).
        request = ProviderRequest(
            messages=call.messages if stream is None else stream.messages(call.messages, spec.provider),
            model=spec.model,
            temperature=first_set(call.options.temperature, spec.temperature, defaults.temperature),
            max_tokens=self._max_tokens(spec, call.options.max_tokens),
            seed=spec.seed,
            options=spec.options,
        )
        if call.tools or call.schema is not None:  # apart: passing the defaults would cost every plain call
            request = replace(request, tools=call.tools, tool_choice=call.options.tool_choice,
                              response_format=call.schema)
        timeout = spec.timeout or defaults.timeout
        load_timeout = first_set(spec.load_timeout, defaults.load_timeout)
        if load_timeout is not None and not loads_models(spec):
            load_timeout = None
        policy: RetryPolicy | None = None  # built on the first failure: the happy path needs none
        retry = reasks = 0
        dropped = retrying = False
        while True:
            block = self._gate(call, spec, target, request.max_tokens, bool(retry or reasks or dropped))
            if block is None and (call.spend is not None or spec.rpm or spec.tpm):
                block = await self._spending.admit(call, spec, call.prompt(), request.max_tokens, clock)
            if block is None and self._breakers is not None:  # the fleet's breaker: ≤ 1 s old, its one probe
                block = await self._breakers.admit(target, max(timeout, load_timeout or 0.0))
            if block is not None:
                self._record(call, spec, target, None, "skipped", 0.0, block[0])
                if block[1] is not None:
                    call.comebacks = [*(call.comebacks or ()), block[1]]
                return None
            if retrying:  # counted once it is really sent (a breaker may have opened during the wait)
                stats.retries += 1
                retrying = False
            env = target.key(ring) if target.keys else None
            t0 = clock()
            load = self._load
            load.started(spec.name)
            target.in_flight += 1
            call.sends += 1
            call.last_model = spec.name
            cold = load_timeout is not None and target.is_cold(t0)
            budget = load_timeout if cold else timeout
            limit = budget
            breaker = target.breaker
            try:
                provider = self._provider(target, env)
                if provider.needs_load:  # the in-process model loads outside the reply's timeout
                    await load_model(provider, None if until is None else until - clock())
                if until is not None:
                    limit = min(budget, until - clock())
                    if limit <= 0:
                        raise DeadlineExceeded(call.attempts, "deadline exceeded")
                breaker.before_call()
                if call.trace is None and stream is None:  # the common case, without a call in between
                    reply = await send(provider, request, limit)
                else:
                    reply = await self._send(call, target, provider, request, limit, budget)
            except ProviderError as exc:
                error = exc
            except BaseException as exc:
                if not isinstance(exc, Exception):  # the attempt was cut off by the caller
                    breaker.record_inconclusive()
                    self._record(call, spec, target, env, "cancelled", clock() - t0)
                raise
            else:
                latency = clock() - t0
                if self._breakers is None:
                    breaker.record_success()
                else:
                    await self._breakers.succeeded(target)
                target.observe(latency, clock())
                load.observe(spec.name, latency)
                usage, cost = self._bill(spec, reply, call)
                if call.spend is not None or call.rate_ticket is not None:
                    await Spending.paid(call, usage, cost)
                parsed = reason = None
                if call.tools or call.schema is not None:
                    parsed, reason = output_problem(reply.content, reply.tool_calls, call.tools,
                                                    call.options.response_format)
                if reason is None and call.validator is not None:
                    reason = await judge(call.validator, self._result(spec, reply, call, parsed))
                if reason is None:
                    self._record(call, spec, target, env, "success", latency, usage=usage, cost=cost)
                    return self._result(spec, reply, call, parsed)
                self._record(call, spec, target, env, "rejected", latency, reason, usage, cost)
                if stream is not None and stream.started:  # what it yielded was turned down
                    await stream.reset()
                if reasks >= call.validation_retries:
                    return None
                reasks += 1
                stats.validation_retries += 1
                request = replace(request, messages=reask(request.messages, reply.content, reason))
                continue
            finally:
                load.finished(spec.name)
                target.in_flight -= 1
            latency = clock() - t0
            timed_out = isinstance(error, ProviderTimeout)
            if timed_out and limit < budget:  # the call's deadline cut this attempt, not the model's slowness
                await record_failed_send(self._breakers, target, counts=False)
                self._record(call, spec, target, env, "timeout", latency, "deadline")
                raise DeadlineExceeded(call.attempts, "deadline exceeded")
            loading = timed_out and cold  # a cold server still loading the model, not a slow reply
            if loading:
                error, timed_out = ModelLoadError(f"{spec.name}: the model did not load within {budget:g} s"), False
                stats.model(spec.name).load_timeouts += 1
            rotate = await self._failed(call, spec, target, env, error, "timeout" if timed_out else "error", latency,
                                        loading)
            if stream is not None:
                request = await stream.after_failure(call, spec.provider, request, error)
            if rotate:
                stats.key_rotations += 1
                continue  # at once, with the next key
            if not dropped and defaults.feature_fallback and isinstance(error, BadRequestError):
                smaller = without_unsupported(request, error.unsupported)
                if smaller is not None:
                    dropped, request = True, smaller
                    stats.feature_fallbacks += 1
                    call.warnings = [*(call.warnings or ()),
                                     f"{spec.name}: re-sent without {error.unsupported!r}, which it does not support"]
                    continue
            retry += 1
            if policy is None:
                policy = retry_policy(spec, defaults)
            delay = policy.delay(error, retry, self._rng)
            if error.retry_after is not None and (env is None or target.usable_keys(ring) == 0):
                target.window.open(error.retry_after)  # other calls keep away meanwhile
            if delay is None or (until is not None and clock() + delay >= until) or breaker.is_open():
                return None  # no retry, none that could finish in time, or the target now counts as down
            if call.trace is not None:
                call.trace.retry(spec, error, delay)
            await self._sleep(delay)
            retrying = True

    def _record(
        self, call: CallState, spec: ModelSpec, target: Target | None, key_env: str | None, outcome: Outcome,
        latency: float, error: str | None = None, usage: Usage | None = None, cost: Decimal | None = None,
        exc: BaseException | None = None,
    ) -> None:
        url = None if target is None else target.url
        if url is None and key_env is None:  # most attempts: the defaults cost nothing to validate
            attempt = Attempt(model_name=spec.name, provider=spec.provider, outcome=outcome, error=error,
                              latency=latency, usage=usage, cost=cost)
        else:
            attempt = Attempt(model_name=spec.name, provider=spec.provider, outcome=outcome, error=error,
                              latency=latency, usage=usage, cost=cost, endpoint=url, key_env=key_env)
        call.attempts.append(attempt)
        self._stats.record_attempt(spec.name, outcome, latency)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("attempt %s (%s) %s in %.3f s%s", spec.name, spec.provider, outcome, latency,
                      f": {error}" if error else "")
        trace = call.trace
        if trace is not None:
            if outcome == "skipped":
                trace.skipped(spec, error or "")
            elif call.attempt_trace is not None:
                att, call.attempt_trace = call.attempt_trace, None
                if outcome == "success":
                    att.succeeded(usage, cost, response_model=spec.model)
                else:
                    att.failed(exc or error or outcome, outcome, cost)

    def _bill(self, spec: ModelSpec, reply: ProviderReply | Usage, call: CallState) -> tuple[Usage, Decimal | None]:
        """What this answer cost, by the provider's own token counts, added to the stats and to the
        call's total (every answer is paid for, a rejected one too, and what a cut stream used)."""
        price = self._prices.price(spec)
        read, write = getattr(reply, "cache_read_tokens", 0), getattr(reply, "cache_write_tokens", 0)
        cost = None if price is None else price.cost(reply.input_tokens, reply.output_tokens, read, write)
        self._stats.record_usage(spec.name, reply.input_tokens, reply.output_tokens, cost)
        usage = reply if isinstance(reply, Usage) else Usage(input_tokens=reply.input_tokens,
                                                             output_tokens=reply.output_tokens,
                                                             cache_read_tokens=read, cache_write_tokens=write)
        call.pay(usage, cost)
        return usage, cost

    def _result(self, spec: ModelSpec, reply: ProviderReply, call: CallState, parsed: Any = None) -> LLMResult:
        result = LLMResult(
            content=reply.content if call.stream is None else call.stream.text,
            model_name=spec.name,
            provider=spec.provider,
            model=reply.model or spec.model,
            usage=call.usage,
            cost=call.cost,
            latency=self._clock() - call.start,
            finish_reason=reply.finish_reason,
            attempts=call.attempts,
        )
        if call.warnings:
            result.warnings = call.warnings
        if reply.tool_calls or parsed is not None:  # set apart: passing their defaults costs every call
            result.tool_calls, result.parsed = list(reply.tool_calls), parsed
        return result

    # -- the loop's steps ----------------------------------------------------------------------

    def _gate(self, call: CallState, spec: ModelSpec, target: Target, max_tokens: int, resend: bool) -> Any:
        """Why this target cannot take the send now (a skip reason and when it lifts), or None. A
        re-send waited out its own Retry-After: only a breaker that opened meanwhile stops it."""
        if resend:
            return ("circuit breaker open after repeated failures", None) if target.breaker.is_open() else None
        block = target.unavailable(self._targets.keys, self._clock)
        if block is None and (call.spend is not None or spec.name not in self._spending.unwindowed):
            block = self._spending.static_skip(spec, call, max_tokens)
        if block is None and call.needs is not None:  # a call this model cannot serve: tools, images, a schema
            lacks = capability_skip(spec, call.needs)
            block = None if lacks is None else (lacks, None)
        return block

    async def _send(
        self, call: CallState, target: Target, provider: Provider, request: ProviderRequest, limit: float,
        budget: float,
    ) -> ProviderReply:
        """A send with a trace or as a stream: inside its attempt span (current while it runs, so an
        SDK's own spans nest in it); a stream's first piece within `first_token_timeout`."""
        att = call.attempt_trace = call.trace.attempt(target.spec) if call.trace is not None else None
        with att.current() if att is not None else nullcontext():
            stream = call.stream
            if stream is None:
                return await send(provider, request, limit)
            spec = target.spec
            await stream.start(spec)
            first = first_set(stream.first_token_timeout, spec.first_token_timeout,
                              self._config.defaults.first_token_timeout) or budget
            return await stream.send(provider, request, min(first, limit), limit)

    async def _failed(
        self, call: CallState, spec: ModelSpec, target: Target, env: str | None, error: ProviderError,
        outcome: Outcome, latency: float, loading: bool = False,
    ) -> bool:
        """A failed send's bookkeeping: the target's state, the key it used, its breaker, what a cut
        stream had used (paid), the attempt. True when another key of the target is to be tried."""
        if isinstance(error, ModelLoadError) and not loading:  # a slow load is no failed build
            target.init_failed(self._clock(), str(error))  # back off before building it again
        elif isinstance(error, ProviderConnectionError) and not error.connected:
            target.warm = False  # a server that was down loads the model again when it is back
        target.last_error = f"{type(error).__name__}: {error}"
        rotate = env is not None and self._targets.rotate(target, env, error, self._config.defaults)
        if await record_failed_send(self._breakers, target, counts=not rotate and error.breaker_failure):
            self._stats.model(spec.name).breaker_opens += 1
        paid = getattr(error, "usage", None)  # what a stream cut mid-way had reported using
        usage, cost = self._bill(spec, paid, call) if paid is not None else (None, None)
        if usage is not None and (call.spend is not None or call.rate_ticket is not None):
            await Spending.paid(call, usage, cost)
        self._record(call, spec, target, env, outcome, latency, f"{type(error).__name__}: {error}", usage, cost, error)
        return rotate
