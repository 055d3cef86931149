"""Per-model `rpm`/`tpm` windows kept in a `StateStore`, shared by every manager on it: managers
handed one store in a process, every process on one Redis.

The rule is `limits.py`'s, counted once for the fleet instead of once per process: no 60-second
window holds more than `rpm` sends or `tpm` tokens of one model name. Each send reserves 1 on the
model's rpm key and its estimate (`prompt_tokens + max_tokens`) on its tpm key, windowed on the
store's clock (the server's, for Redis); when the usage arrives the tpm reservation settles at the
real tokens (the window then counts real − estimate more). A send whose usage never comes keeps its
estimate for one window. A refusal gives the same reason as in one process, `rate limit: rpm|tpm N
reached, frees in S s`, with S from the store (`frees_in`: when enough of the window has left).

Store errors (`StateStoreError`) reach the caller, which applies `state.on_error`.

Call points: `SharedRates(store, clock)`; before a send `await rates.acquire(name, rpm, tpm, tokens)`
→ `SharedTicket | None | RateRefusal` (None: admitted, nothing to settle); when usage arrives
`await ticket.settle(real_tokens)`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

from amaos_llm.limits import WINDOW_S, RateRefusal, rate_reason

if TYPE_CHECKING:
    from amaos_llm.state import Reservation, StateStore

_ONE = Decimal(1)


class SharedTicket:
    """A send's tpm reservation; `settle(real_tokens)` counts the real tokens instead of the estimate."""

    __slots__ = ("_store", "_reservation")

    def __init__(self, store: StateStore, reservation: Reservation) -> None:
        self._store, self._reservation = store, reservation

    async def settle(self, real_tokens: int) -> None:
        # Not shielded from cancellation: a settle that never lands leaves the estimate counted for
        # one window, which the store bounds by itself.
        await self._store.settle(self._reservation, Decimal(real_tokens))


class SharedRates:
    """The rate windows of the models of the managers on `store`, by model name. `clock` is the
    manager's, for the refusals' `frees_at`."""

    __slots__ = ("_store", "_clock", "_keys")

    def __init__(self, store: StateStore, clock: Callable[[], float]) -> None:
        self._store, self._clock = store, clock
        self._keys: dict[str, tuple[str, str]] = {}

    def keys(self, name: str) -> tuple[str, str]:
        """The rpm and tpm keys of a model (the store adds its prefix and hash tag)."""
        keys = self._keys.get(name)
        if keys is None:
            keys = self._keys[name] = (f"rate:{name}:rpm", f"rate:{name}:tpm")
        return keys

    async def acquire(self, name: str, rpm: int | None, tpm: int | None,
                      tokens: int) -> SharedTicket | RateRefusal | None:
        """Count a send of `tokens` (estimated) in the model's shared windows, or refuse it."""
        if tpm is not None and tokens > tpm:
            return RateRefusal(f"rate limit: tpm {tpm} reached, ~{tokens} tokens never fit", None)
        store = self._store
        rpm_key, tpm_key = self.keys(name)
        sent = None
        if rpm is not None:
            sent = await store.reserve(rpm_key, _ONE, Decimal(rpm), window_s=WINDOW_S)
            if sent is None:
                return await self._refusal("rpm", rpm_key, rpm, 1)
        if tpm is None:
            return None
        # A store error here leaves the rpm reservation counting one send that was never made, for
        # one window at most: the call raises (or, with on_error open, goes on without the store).
        held = await store.reserve(tpm_key, Decimal(tokens), Decimal(tpm), window_s=WINDOW_S)
        if held is None:
            if sent is not None:
                await store.release(sent)  # not sent after all
            return await self._refusal("tpm", tpm_key, tpm, tokens)
        return SharedTicket(store, held)

    async def _refusal(self, kind: str, key: str, limit: int, amount: int) -> RateRefusal:
        now = self._clock()
        wait = await self._store.frees_in(key, Decimal(amount), Decimal(limit))
        if wait is None:  # the key lost its window since (flushed): the next try fits
            wait = 0.0
        return RateRefusal(rate_reason(kind, limit, wait), now + wait)
