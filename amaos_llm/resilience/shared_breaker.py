"""One circuit breaker as a state store keeps it for every process that sends to the same target.

The pure transitions behind `StateStore.breaker_*`: `MemoryStore` runs this class; the Lua scripts
of `RedisStateStore` are its transcription, and one contract suite (tests/amaos_llm/test_state.py)
holds both to it.

    closed ──(failures ≥ threshold, or a process's own rule tripped: `force`)──▶ open until T
    open ──(T passed)──▶ half-open: the first `take_probe` gets the one slot, for `ttl` seconds
    half-open ──(the probe's failure)──▶ open until now + reset        any success ──▶ closed

A failure while open, from a send that was out before it opened, counts but changes nothing.
Opening clears the probe slot; releasing it (an inconclusive probe) is for its holder only.
Times are the store's clock; what a process sees (`BreakerView`) holds only durations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

BreakerOutcome = Literal["success", "failure", "inconclusive"]


class BreakerView(NamedTuple):
    """A shared breaker as a process sees it: `failures` counted; `reopens_in` None when closed,
    else the seconds until a probe may go (0: half-open); `probing`: a probe holds the half-open
    slot; `changed`: this step opened the breaker (`breaker_record`) or took the slot (`breaker_probe`)."""

    failures: int
    reopens_in: float | None
    probing: bool
    changed: bool = False


@dataclass(slots=True)
class SharedBreakerRecord:
    failures: int = 0
    open_until: float | None = None  # store clock; None: closed
    probe: str | None = None  # the token of whoever holds the half-open probe
    probe_until: float = 0.0  # the slot frees itself then: a holder that died does not block it

    def view(self, now: float, changed: bool = False) -> BreakerView:
        probing = self.probe is not None and now < self.probe_until
        reopens_in = None if self.open_until is None else max(0.0, self.open_until - now)
        return BreakerView(self.failures, reopens_in, probing, changed)

    def take_probe(self, now: float, token: str, ttl: float) -> BreakerView:
        """The half-open slot for `token` if the breaker is half-open and the slot free (`changed`)."""
        if self.open_until is None or now < self.open_until or (self.probe is not None and now < self.probe_until):
            return self.view(now)
        self.probe, self.probe_until = token, now + ttl
        return self.view(now, changed=True)

    def succeed(self, now: float) -> BreakerView:
        self.failures, self.open_until, self.probe = 0, None, None
        return self.view(now)

    def release(self, now: float, token: str) -> BreakerView:
        if token and self.probe == token:
            self.probe = None
        return self.view(now)

    def fail(self, now: float, *, threshold: int, reset_after: float, token: str = "",
             force: bool = False) -> BreakerView:
        """Count a failure; `changed` when it opened the breaker (or re-opened it: `token` names the
        probe that failed)."""
        self.failures += 1
        if self.open_until is not None:
            if not token:
                return self.view(now)
        elif self.failures < threshold and not force:
            return self.view(now)
        self.open_until, self.probe = now + reset_after, None
        return self.view(now, changed=True)
