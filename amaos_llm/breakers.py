"""Circuit breakers shared by the managers on one state store: a Redis fleet, or managers handed
one `MemoryStore` in a process.

A fleet that keeps its breakers per process sends `threshold` failing requests from every process
before each stops, and every process probes a recovering model at once. Here each target keeps its
`CircuitBreaker` (the pure machine every send consults without I/O) as a copy of the store's shared
record (`StateStore.breaker_*`), kept in step at the loop's moments:

- **before selection** (`refresh_open`): copies that are not closed, read again once over `MAX_AGE`
  old, so that a breaker closed elsewhere (a reset, a late success) stops being skipped here.
- **before a send** (`admit`): the record read again when this copy is over `MAX_AGE` (1 s) old; a
  half-open breaker lets the send go only as the fleet's one probe (`breaker_probe`: a slot held
  for the send's timeout). A copy that saw another process's probe out asks again after `MAX_AGE`.
- **after it**: a failure counts on the record (`failed`), which opens it at the threshold, when
  this process's own rule tripped (e.g. a failure rate) or when it was the probe; a success closes
  it for everyone (`succeeded`; written only when this copy had something to clear, so a healthy
  model costs no I/O); an inconclusive send frees the probe slot it held (`inconclusive`). A
  cancelled probe's slot frees itself when its timeout passes.
- **a store that fails** (`StateStoreError`): each breaker goes on as this process's alone, as
  without a shared store, with a warning at most once a minute; the store is asked again every
  `RETRY_AFTER` s, and its record (not what this process saw alone meanwhile) is the truth again.

An embedded model is one per process: its breaker is never shared. A local model (a loopback
server, a registered function) is one per machine: its record's key names the host.
"""

from __future__ import annotations

import logging
import math
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from amaos_llm.errors import StateStoreError
from amaos_llm.state import is_shared

if TYPE_CHECKING:
    from amaos_llm.config import ModelSpec
    from amaos_llm.resilience.targets import Target
    from amaos_llm.state import BreakerView, StateStore

log = logging.getLogger("amaos_llm")
MAX_AGE = 1.0  # s a process may act on its copy of a shared breaker without reading it again
RETRY_AFTER = 5.0  # s between attempts to reach a store that failed
WARN_EVERY = 60.0
OPEN = "circuit breaker open after repeated failures"  # the reason a process's own breaker gives, probe out or not
Skip = tuple[str, float | None]


def shared_breakers(store: StateStore, clock: Callable[[], float], *, given: bool) -> SharedBreakers | None:
    """The layer for a manager on `store`: shared by the managers a store was `given` to, and by
    every process on a Redis; None for a manager's own memory store, which has no one to share
    them with (its loop then never calls the layer, and a call costs what it did before)."""
    return SharedBreakers(store, clock) if is_shared(store, given=given) else None


async def record_failed_send(shared: SharedBreakers | None, target: Target, *, counts: bool) -> bool:
    """A failed send told to the target's breaker (`counts`: as a failure; else it says nothing of
    the model's health) and, when breakers are shared, to the fleet's record; whether it opened."""
    breaker = target.breaker
    if not counts:
        breaker.record_inconclusive()
        if shared is not None:
            await shared.inconclusive(target)
        return False
    opened = breaker.record_failure()
    return opened if shared is None else await shared.failed(target, opened)


def breaker_key(spec: ModelSpec, url: str | None) -> str | None:
    """The shared record's key for one target (model, URL); None: not shared."""
    if spec.provider == "embedded":
        return None
    key = f"breaker:{spec.name}" if url is None else f"breaker:{spec.name}@{url}"
    return f"{key}@{socket.gethostname()}" if spec.is_local else key


class Link:
    """A target's tie to its shared record."""

    __slots__ = ("key", "fresh_until", "holds_probe", "adopted", "closing")

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.fresh_until = -math.inf  # clock reading until which the copy needs no read
        self.holds_probe = False
        self.adopted = 0  # views applied so far: a read that saw an older state than one applied is dropped
        self.closing = False  # reset_circuit_breaker: close the record at the next send


class SharedBreakers:
    """The fleet side of every target's breaker, for one manager. `clock` is the manager's."""

    __slots__ = ("_store", "_clock", "_token", "_down_until", "_warned_at", "open")

    def __init__(self, store: StateStore, clock: Callable[[], float]) -> None:
        self._store, self._clock = store, clock
        self._token = uuid.uuid4().hex  # names this manager's probes: only it may free them
        self._down_until = -math.inf
        self._warned_at = -math.inf
        self.open: dict[str, Target] = {}  # by key: targets whose copy is open or half-open

    async def refresh_open(self) -> None:
        """Read again the records of open copies older than `MAX_AGE`."""
        now = self._clock()
        for target in list(self.open.values()):
            link = target.shared
            if link is not None and link.key is not None and now >= link.fresh_until and not link.holds_probe:
                await self._sync(target, link, now)

    async def admit(self, target: Target, ttl: float) -> Skip | None:
        """Why the shared breaker stops this send (a skip reason, when it may lift), or None; a
        half-open breaker's send goes only with the probe slot, held `ttl` s at most."""
        link = target.shared or self._link(target)
        if link.key is None:
            return None
        breaker, now = target.breaker, self._clock()
        if now >= link.fresh_until:
            await self._sync(target, link, now)
        if breaker.is_closed():
            return None
        if breaker.is_open():
            return OPEN, breaker.reopens_in()
        view = await self._io(self._store.breaker_probe, link.key, self._token, ttl)
        if view is None:  # the store is down: this process's own probe, as without one
            return None
        if view.changed:
            link.holds_probe = True
            return None
        self._adopt(target, link, view)
        return None if breaker.is_closed() else (OPEN, breaker.reopens_in())

    async def succeeded(self, target: Target) -> None:
        breaker = target.breaker
        clean = breaker.is_clean()
        breaker.record_success()
        link = target.shared
        if clean or link is None or link.key is None:
            return
        link.holds_probe = False
        await self._apply(target, link, self._store.breaker_record, link.key, "success")

    async def failed(self, target: Target, opened: bool) -> bool:
        """Count a failure the target's breaker has recorded (`opened`: it opened this process's
        copy); whether it opened the shared breaker (the store down: this process's answer)."""
        link = target.shared
        if link is None or link.key is None:
            return opened
        breaker = target.breaker
        token = self._token if link.holds_probe else ""
        link.holds_probe = False
        view = await self._apply(target, link, self._store.breaker_record, link.key, "failure", token=token,
                                 threshold=breaker.threshold, reset_after=breaker.reset_after, force=opened)
        return opened if view is None else view.changed

    async def inconclusive(self, target: Target) -> None:
        """A send that says nothing of the model's health: free the probe slot it held."""
        link = target.shared
        if link is None or link.key is None or not link.holds_probe:
            return
        link.holds_probe = False
        await self._io(self._store.breaker_record, link.key, "inconclusive", token=self._token)

    def reset(self, targets: Iterable[Target]) -> None:
        """`reset_circuit_breaker`: the shared records close at these targets' next send."""
        for target in targets:
            link = target.shared or self._link(target)
            link.closing, link.holds_probe, link.fresh_until = True, False, -math.inf

    def _link(self, target: Target) -> Link:
        link = target.shared = Link(breaker_key(target.spec, target.url))
        return link

    async def _sync(self, target: Target, link: Link, now: float) -> None:
        """Bring the copy up to the record (after a reset: close the record first)."""
        if link.closing:
            view = await self._apply(target, link, self._store.breaker_record, link.key, "success")
            link.closing = view is None  # the store was down: close it once it answers
            return
        seen = link.adopted
        view = await self._io(self._store.breaker_state, link.key)
        if view is not None and link.adopted == seen:  # nothing newer was applied while it was read
            self._adopt(target, link, view)
            link.fresh_until = now + MAX_AGE

    def _adopt(self, target: Target, link: Link, view: BreakerView) -> None:
        link.adopted += 1
        reopens_in, probing = view.reopens_in, False
        if reopens_in is not None and view.probing:
            if link.holds_probe:
                probing = True  # ours: this process's send decides
            else:  # another's: its outcome reaches us by a read, so read again after MAX_AGE
                reopens_in = max(reopens_in, MAX_AGE)
        target.breaker.adopt(view.failures, reopens_in, probing)
        if reopens_in is None:
            self.open.pop(link.key, None)  # type: ignore[arg-type]
        else:
            self.open[link.key] = target  # type: ignore[index]

    async def _apply(self, target: Target, link: Link, step: Callable[..., Awaitable[BreakerView]], *args: Any,
                     **kwargs: Any) -> BreakerView | None:
        view = await self._io(step, *args, **kwargs)
        if view is not None:
            self._adopt(target, link, view)
            link.fresh_until = self._clock() + MAX_AGE
        return view

    async def _io(self, step: Callable[..., Awaitable[BreakerView]], *args: Any, **kwargs: Any) -> BreakerView | None:
        """`step(...)`, or None while the store is failing (its breakers left to this process)."""
        if self._clock() < self._down_until:
            return None
        try:
            return await step(*args, **kwargs)
        except StateStoreError as exc:
            now = self._clock()
            self._down_until = now + RETRY_AFTER
            if now - self._warned_at >= WARN_EVERY:
                self._warned_at = now
                log.warning("shared circuit breakers unavailable (%s): this process's breakers go on alone", exc)
            return None
