"""Where a model's requests go: its targets, one per URL, each with its own guards.

A **target** is one (model, URL): its own provider client (one per key), circuit breaker,
Retry-After window, latency average and in-flight count, whether it is warm, and the backoff of a
client that failed to build. Keys are marked per environment variable in one `KeyRing` per manager,
so a key two models share is rejected (or cooling) for both. A model with one URL and one key, the
common case, has one target whose provider is the same object the manager always built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from amaos_llm.config import Defaults, ModelSpec, first_set
from amaos_llm.errors import AuthenticationError, ProviderError, RateLimitError
from amaos_llm.resilience.breaker import CircuitBreaker
from amaos_llm.resilience.window import RetryAfterWindow

if TYPE_CHECKING:
    from amaos_llm.breakers import Link
    from amaos_llm.providers.base import Provider
    from amaos_llm.selection import Candidate

KeyState = Literal["ok", "rejected", "cooling"]
EWMA_ALPHA = 0.2
IDLE_COLD = 300.0  # s without a success after which a local server may have unloaded the model
INIT_BACKOFF_FIRST, INIT_BACKOFF_MAX = 1.0, 60.0


class KeyRing:
    """Marks on API keys by variable name: rejected (401/402/403, until reset) or cooling (429)."""

    __slots__ = ("_clock", "_rejected", "_cooling")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rejected: set[str] = set()
        self._cooling: dict[str, float] = {}  # variable -> clock reading when usable again

    def state(self, env: str) -> KeyState:
        if env in self._rejected:
            return "rejected"
        until = self._cooling.get(env)
        return "cooling" if until is not None and self._clock() < until else "ok"

    def reject(self, env: str) -> None:
        self._rejected.add(env)

    def cool(self, env: str, seconds: float) -> None:
        self._cooling[env] = max(self._cooling.get(env, 0.0), self._clock() + seconds)

    def cools_in(self, env: str) -> float | None:
        """Seconds until a cooling key is usable; None for a rejected one."""
        if env in self._rejected:
            return None
        return max(0.0, self._cooling.get(env, 0.0) - self._clock())

    def clear(self, envs: tuple[str, ...]) -> None:
        for env in envs:
            self._rejected.discard(env)
            self._cooling.pop(env, None)


class Target:
    """One URL of one model."""

    __slots__ = ("spec", "url", "keys", "key_index", "breaker", "window", "providers", "in_flight", "ewma",
                 "warm", "last_success", "init_failures", "init_next_at", "last_error", "healthy", "shared")

    def __init__(self, spec: ModelSpec, url: str | None, breaker: CircuitBreaker, window: RetryAfterWindow) -> None:
        self.spec = spec  # the model's spec, narrowed to this URL (providers read one base_url)
        self.url = url
        self.keys = spec.key_envs if spec.api_key is None else ()  # a key given in code is the only one
        self.key_index = 0  # sticky: the key in use until it fails
        self.breaker, self.window = breaker, window
        self.providers: dict[str | None, Provider] = {}  # by key variable (None: no key, or one from code)
        self.in_flight = 0
        self.ewma: float | None = None
        self.warm = False
        self.last_success: float | None = None
        self.init_failures = 0
        self.init_next_at = 0.0
        self.last_error: str | None = None
        self.healthy: bool | None = None  # from the last health check or send
        self.shared: Link | None = None  # its tie to a breaker shared through the state store (`amaos_llm.breakers`)

    def take_clients(self) -> list[Provider]:
        """Its providers that hold a client, removed (for the caller to close; built again on use).
        A registered function stays: it has no client to rebuild (`Provider.keeps_on_close`)."""
        taken = [env for env, p in self.providers.items() if not p.keeps_on_close]
        return [self.providers.pop(env) for env in taken]

    def key(self, ring: KeyRing) -> str | None:
        """The key variable to send with: the sticky one if usable, else the next usable one in
        order (which becomes sticky); None when the target needs no key variable."""
        keys = self.keys
        if len(keys) < 2:
            return keys[0] if keys else None
        n = len(keys)
        for step in range(n):
            i = (self.key_index + step) % n
            if ring.state(keys[i]) == "ok":
                self.key_index = i
                return keys[i]
        return keys[self.key_index]

    def usable_keys(self, ring: KeyRing) -> int:
        return sum(1 for k in self.keys if ring.state(k) == "ok")

    def keys_block(self, ring: KeyRing) -> tuple[str, float | None] | None:
        """Why no key of this target can be used now, and when one frees; None if one can."""
        if not self.keys or any(ring.state(k) == "ok" for k in self.keys):
            return None
        waits = [w for k in self.keys if (w := ring.cools_in(k)) is not None]
        if not waits:
            return f"API key rejected: {', '.join(self.keys)} (reset_provider to try again)", None
        return f"API keys cooling after 429s: {', '.join(self.keys)}", min(waits)

    def observe(self, latency: float, now: float) -> None:
        self.ewma = latency if self.ewma is None else EWMA_ALPHA * latency + (1 - EWMA_ALPHA) * self.ewma
        self.warm, self.last_success, self.healthy, self.init_failures = True, now, True, 0

    def is_cold(self, now: float) -> bool:
        return not self.warm or self.last_success is None or now - self.last_success > IDLE_COLD

    def init_failed(self, now: float, error: str) -> None:
        self.init_failures += 1
        self.init_next_at = now + min(INIT_BACKOFF_FIRST * 2 ** (self.init_failures - 1), INIT_BACKOFF_MAX)
        self.last_error = error

    def unavailable(self, ring: KeyRing, clock: Callable[[], float]) -> tuple[str, float | None] | None:
        """Why this target cannot take a send now and the seconds until that lifts (None: not by
        the clock alone); None when it can. On every send: reads the clock only when it must."""
        breaker = self.breaker
        # the common case, a target that never failed, in one test (the package's own fields)
        if breaker._opened_at is None and not self.window._until and not self.init_next_at and not self.keys:
            return None
        if breaker.is_open():
            return "circuit breaker open after repeated failures", breaker.reopens_in()
        left = self.window.remaining()
        if left > 0:
            return f"rate limited: the server asked to wait {left:.1f} s more", left
        if self.init_next_at and (wait := self.init_next_at - clock()) > 0:
            return f"client failed to start ({self.last_error}); next try in {wait:.1f} s", wait
        if self.keys:
            return self.keys_block(ring)
        return None


class Targets:
    """Every model's targets, built on first use from the model's settings (else the defaults)."""

    __slots__ = ("_defaults", "_clock", "_by_model", "keys")

    def __init__(self, defaults: Defaults, clock: Callable[[], float]) -> None:
        self._defaults, self._clock = defaults, clock
        self._by_model: dict[str, tuple[Target, ...]] = {}
        self.keys = KeyRing(clock)

    def of(self, spec: ModelSpec) -> tuple[Target, ...]:
        targets = self._by_model.get(spec.name)
        if targets is None or targets[0].spec.model != spec.model:
            targets = self._by_model[spec.name] = self._build(spec)
        return targets

    def built(self, name: str) -> tuple[Target, ...]:
        return self._by_model.get(name, ())

    def _build(self, spec: ModelSpec) -> tuple[Target, ...]:
        return tuple(Target(narrowed, url, self._breaker(spec), RetryAfterWindow(self._clock))
                     for url, narrowed in spec.endpoint_specs())

    def _breaker(self, spec: ModelSpec) -> CircuitBreaker:
        d = self._defaults
        return CircuitBreaker(
            first_set(spec.breaker_threshold, d.breaker_threshold),
            first_set(spec.breaker_reset, d.breaker_reset),
            clock=self._clock,
            failure_rate=first_set(spec.breaker_failure_rate, d.breaker_failure_rate),
            min_calls=first_set(spec.breaker_min_calls, d.breaker_min_calls),
        )

    def unavailable(self, spec: ModelSpec) -> tuple[str, float | None] | None:
        """Why no target of the model can take a call now (the one that frees first), else None."""
        targets = self._by_model.get(spec.name)
        if targets is None:
            return None
        clock, ring = self._clock, self.keys
        if len(targets) == 1:
            return targets[0].unavailable(ring, clock)
        blocks = []
        for target in targets:
            block = target.unavailable(ring, clock)
            if block is None:
                return None
            blocks.append(block)
        timed = [b for b in blocks if b[1] is not None]
        return min(timed, key=lambda b: b[1]) if timed else blocks[0]  # type: ignore[arg-type,return-value]

    def rotate(self, target: Target, env: str, error: ProviderError, defaults: Defaults) -> bool:
        """Mark the key `env` a failure is about (401/402/403: rejected; a 429 on a target with
        several keys: cooling for its Retry-After, else `retry_backoff`); True when another key of
        the target can be tried at once."""
        if isinstance(error, AuthenticationError) and error.status_code in (401, 402, 403):
            self.keys.reject(env)
        elif isinstance(error, RateLimitError) and len(target.keys) > 1:
            backoff = first_set(target.spec.retry_backoff, defaults.retry_backoff)
            self.keys.cool(env, error.retry_after if error.retry_after is not None else backoff)
        else:
            return False
        return target.usable_keys(self.keys) > 0

    def forget(self, name: str) -> list[Provider]:
        """Drop a model's targets; their providers, for the caller to close."""
        targets = self._by_model.pop(name, ())
        return [p for t in targets for p in t.providers.values()]

    def reset_breakers(self, spec: ModelSpec) -> None:
        """Close the model's breakers and windows, as if it had never failed."""
        for target in self._by_model.get(spec.name, ()):
            target.breaker = self._breaker(spec)
            target.window = RetryAfterWindow(self._clock)

    def all(self) -> list[Target]:
        return [t for targets in self._by_model.values() for t in targets]


def plan(
    candidates: Sequence[Candidate], strategy: str, targets_of: Callable[[ModelSpec], tuple[Target, ...]],
    call: Any, record: Callable[..., None],
) -> Iterator[tuple[ModelSpec, Target]]:
    """The (model, URL) pairs to try in order, recording (`record(call, spec, None, None, "skipped",
    0.0, reason)`) the models selection passed over: model_first tries every URL of a model before
    the next model; endpoint_first each model's first URL, then each one's second, and so on."""
    if strategy == "model_first":
        for candidate in candidates:
            spec = candidate.spec
            if candidate.skip_reason is not None:
                record(call, spec, None, None, "skipped", 0.0, candidate.skip_reason)
                continue
            for target in targets_of(spec):
                yield spec, target
        return
    live = []
    for candidate in candidates:
        if candidate.skip_reason is not None:
            record(call, candidate.spec, None, None, "skipped", 0.0, candidate.skip_reason)
        else:
            live.append((candidate.spec, targets_of(candidate.spec)))
    for i in range(max((len(t) for _, t in live), default=0)):
        for spec, targets in live:
            if i < len(targets):
                yield spec, targets[i]
