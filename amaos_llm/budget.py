"""Budgets that never overspend: reserve the worst case before a send, settle the real cost after.

A `Budget` is a dollar limit on a ledger in a `StateStore`. For each attempt, the manager asks a
`BudgetGuard` (one per call: the manager's budget, the call's `budget=` ledgers, its `max_cost`)
at two moments:

- **before send**: `await guard.reserve(worst_case)` holds the attempt's worst case on every
  ledger in force, all or none, and returns a `Hold`, or a `Refusal` whose `reason` is the skip
  reason (`Refusal.blocked`: it would fit once calls in flight settle, so `await refusal.wait(t)`
  and try again, within the call's final wait);
- **after the attempt**: `await hold.settle(cost)` for a paid attempt (rejected answers and what
  a cut stream reported too), exactly once, at the real cost, charged even above the worst case
  (with a warning); otherwise `await hold.release()`. Using the hold as `async with hold:` releases
  it on any exit that did not settle — error, timeout, cancellation, `BaseException` — in a
  shielded scope, so a cancelled call never leaks a reservation (LiteLLM #27639).

Same-model retries after an unpaid failure keep the hold; a paid attempt settles it, and a re-ask
reserves again. `guard.exceeded(attempts)` builds the `BudgetExceeded` to raise when nothing
answered and a model was skipped for cost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from amaos_llm.errors import BudgetExceeded, ConfigError
from amaos_llm.state import Ledger, MemoryStore, Reservation, StateStore
from amaos_llm.tokens import PRICE_UNKNOWN

if TYPE_CHECKING:
    from amaos_llm.types import Attempt

log = logging.getLogger("amaos_llm")

_ZERO = Decimal(0)
BLOCKED = "budget held by calls in flight"


def money(value: object, field_name: str = "budget_usd") -> Decimal:
    """A dollar amount from code or YAML: floats through `str` (0.1 stays 0.1), ≥ 0, finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ConfigError(f"must be a number >= 0, got {value!r}", field=field_name)
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"must be a number >= 0, got {value!r}", field=field_name) from None
    if not amount.is_finite() or amount < 0:
        raise ConfigError(f"must be a number >= 0, got {value!r}", field=field_name)
    return amount


def usd(amount: Decimal) -> str:
    """$-figures in messages: at least cents, at most 8 decimals, no exponent."""
    text = format(amount.quantize(Decimal("1E-8")).normalize(), "f")
    whole, _, cents = text.partition(".")
    return f"{whole}.{cents.ljust(2, '0')}"


class Budget:
    """A dollar limit and the ledger that holds it. `store`/`key` share it (a fleet, a run);
    without them it lives in this process. `scope` names it in skip reasons."""

    def __init__(self, limit_usd: float | int | Decimal | str, *, store: StateStore | None = None,
                 key: str | None = None, scope: str = "budget") -> None:
        self._limit = money(limit_usd, "limit_usd")
        self.store: StateStore = store if store is not None else MemoryStore()
        self.key = key if key is not None else f"budget:{uuid.uuid4().hex}"
        self.scope = scope
        # What this object did, for the sync properties when the store cannot be read without I/O.
        self._mirror = Ledger(_ZERO, _ZERO)
        self._peek = getattr(self.store, "peek", None)
        self._local = getattr(self.store, "never_suspends", False)

    def __repr__(self) -> str:
        return f"Budget(limit={usd(self.limit)}, spent={usd(self.spent)}, reserved={usd(self.reserved)})"

    @property
    def limit(self) -> Decimal:
        return self._limit

    def _ledger(self) -> Ledger:
        return self._peek(self.key) if self._peek is not None else self._mirror

    @property
    def spent(self) -> Decimal:
        return self._ledger().spent

    @property
    def reserved(self) -> Decimal:
        return self._ledger().reserved

    @property
    def remaining(self) -> Decimal:
        return self._ledger().remaining(self._limit)

    async def usage(self) -> Ledger:
        """The ledger as the store has it (every process sharing the key)."""
        return await self.store.usage(self.key)

    def snapshot(self) -> dict[str, Decimal]:
        """`get_stats()["budget"]`: limit, spent, reserved, remaining."""
        ledger = self._ledger()
        return {"limit": self._limit, "spent": ledger.spent, "reserved": ledger.reserved,
                "remaining": ledger.remaining(self._limit)}

    def _note(self, spent: Decimal, reserved: Decimal) -> None:
        """Keep the mirror of a store that cannot be peeked at (the local store is read directly)."""
        if self._peek is None:
            self._mirror = Ledger(self._mirror.spent + spent, self._mirror.reserved + reserved)


@dataclass(eq=False)
class Refusal:
    """Why an attempt may not be sent. `reason` is the attempt's skip reason, word for word."""

    reason: str
    scope: str
    remaining: Decimal | None  # what the refusing limit had left; None when the price is unknown
    needed: Decimal | None  # the worst case that did not fit
    blocked: bool = False  # fits once calls in flight settle
    budget: Budget | None = None

    async def wait(self, timeout: float) -> bool:
        """For a blocked refusal: sleep until a reservation on the blocking ledger closes, or
        `timeout`; True if one closed (then reserve again)."""
        if self.budget is None:
            return False
        return await self.budget.store.wait(self.budget.key, timeout)


class Hold:
    """An attempt's worst case held on every ledger in force; closed once, by settle or release."""

    __slots__ = ("closed", "cost", "held", "local", "model_name", "worst_case")

    def __init__(self, worst_case: Decimal, model_name: str = "", *, closed: bool = False,
                 local: bool = False) -> None:
        self.worst_case = worst_case
        self.local = local  # every ledger is on a store that never suspends
        self.model_name = model_name
        self.held: list[tuple[Budget, Reservation]] = []
        self.cost: Decimal | None = None  # what settle charged
        self.closed = closed

    async def settle(self, cost: Decimal) -> None:
        """Charge the attempt's real cost on every ledger, even above the worst case."""
        await self._close(cost)

    async def release(self) -> None:
        """Nothing was paid: give the room back."""
        await self._close(None)

    async def _close(self, cost: Decimal | None) -> None:
        if self.closed:
            return
        self.closed = True
        if cost is not None:
            self.cost = cost
            if cost > self.worst_case:
                log.warning("model %r cost $%s, above the $%s reserved for it: charged in full",
                            self.model_name, usd(cost), usd(self.worst_case))
        if self.local:
            held = self.held
            if len(held) == 1:  # one local ledger: closed here, a coroutine less per call
                budget, reservation = held[0]
                store = budget.store
                closed = await (store.release(reservation) if cost is None else store.settle(reservation, cost))
                if closed and budget._peek is None:
                    budget._note(cost or _ZERO, -reservation.amount)
                return
            await _close_all(held, cost)  # no checkpoint inside: a cancel cannot interrupt it
            return
        # Shielded: a cancelled call must still close what it holds, or the room stays taken.
        with anyio.CancelScope(shield=True):
            await _close_all(self.held, cost)

    async def __aenter__(self) -> Hold:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.release()  # a no-op after settle


async def _close_all(held: Sequence[tuple[Budget, Reservation]], cost: Decimal | None) -> None:
    """Close each reservation; a store that fails does not keep the others open."""
    failure: BaseException | None = None
    for budget, reservation in held:
        try:
            if cost is None:
                closed = await budget.store.release(reservation)
            else:
                closed = await budget.store.settle(reservation, cost)
        except Exception as exc:  # noqa: BLE001 - re-raised below, once every ledger had its turn
            log.error("budget store failed to close a reservation on %r: %r", budget.key, exc)
            failure = failure or exc
            continue
        if closed and budget._peek is None:
            budget._note(cost or _ZERO, -reservation.amount)
    if failure is not None:
        raise failure


_NO_BUDGET = Hold(_ZERO, closed=True)  # what reserve returns when nothing is in force


class BudgetGuard:
    """One call's cost limits: its ledgers (the manager's, `budget=`) and its `max_cost`.

    Build it once per call; `active` False means nothing to check (skip the guard entirely).
    """

    def __init__(self, budgets: Sequence[Budget] = (), *, max_cost: Decimal | None = None) -> None:
        self.budgets = tuple(budgets)
        self.max_cost = max_cost
        self.active = bool(self.budgets) or max_cost is not None
        budgets = self.budgets
        # one ledger, the common case, without a generator
        self._local = budgets[0]._local if len(budgets) == 1 else all(b._local for b in budgets)
        self.refusals: list[Refusal] = []

    def check(self, worst_case: Decimal | None) -> str | None:
        """The skip reason by the ledgers as they stand, reserving nothing (`manager.estimate`,
        selection); None if the attempt would be sent. Reads the sync properties."""
        if not self.active:
            return None
        refusal = self._static_refusal(worst_case)
        if refusal is not None:
            return refusal.reason
        assert worst_case is not None
        for budget in self.budgets:
            refusal = _refusal(budget, worst_case, budget._ledger())
            if refusal is not None:
                return refusal.reason
        return None

    async def reserve(self, worst_case: Decimal | None, model_name: str = "") -> Hold | Refusal:
        """Before send: hold `worst_case` on every ledger (all or none), or say why not."""
        if not self.active:
            return _NO_BUDGET
        if worst_case is None or self.max_cost is not None:  # apart: most reserves have neither to check
            refusal = self._static_refusal(worst_case)
            if refusal is not None:
                self.refusals.append(refusal)
                return refusal
        assert worst_case is not None
        if not worst_case:  # a free model holds nothing, and an overspent ledger does not stop it
            return _NO_BUDGET
        hold = Hold(worst_case, model_name, local=self._local)
        for budget in self.budgets:
            try:
                reservation = await budget.store.reserve(budget.key, worst_case, budget._limit)
            except BaseException:  # a store failure or a cancel here: free what was taken, then re-raise
                await hold.release()
                raise
            if reservation is None:
                await hold.release()
                refusal = _refusal(budget, worst_case, await budget.usage()) or Refusal(
                    BLOCKED, budget.scope, budget.remaining, worst_case, blocked=True, budget=budget)
                self.refusals.append(refusal)
                return refusal
            hold.held.append((budget, reservation))
            if budget._peek is None:
                budget._note(_ZERO, worst_case)
        return hold

    def _static_refusal(self, worst_case: Decimal | None) -> Refusal | None:
        if worst_case is None:
            return Refusal(PRICE_UNKNOWN, self._scope(), None, None)
        if self.max_cost is not None and worst_case > self.max_cost:
            return Refusal(f"over max_cost: worst case ${usd(worst_case)} > ${usd(self.max_cost)}", "call",
                           self.max_cost, worst_case)
        return None

    def _scope(self) -> str:
        return self.budgets[0].scope if self.budgets else "call"

    def exceeded(self, attempts: Sequence[Attempt]) -> BudgetExceeded | None:
        """The error for a call where nothing answered: a `BudgetExceeded` if a model was skipped
        for cost (tightest remaining, cheapest worst case), else None (raise the usual error)."""
        if not self.refusals:
            return None
        priced = [r for r in self.refusals if r.needed is not None]
        limited = [r for r in self.refusals if r.remaining is not None]
        tightest = min(limited, key=lambda r: r.remaining or _ZERO) if limited else self.refusals[0]
        needed = min((r.needed for r in priced if r.needed is not None), default=None)
        remaining = tightest.remaining if tightest.remaining is not None else self._tightest_remaining()
        return BudgetExceeded(attempts, remaining=remaining, needed=needed, scope=tightest.scope)

    def _tightest_remaining(self) -> Decimal:
        left = [b.remaining for b in self.budgets]
        if self.max_cost is not None:
            left.append(self.max_cost)
        return min(left, default=_ZERO)


def _refusal(budget: Budget, worst_case: Decimal, ledger: Ledger) -> Refusal | None:
    """Over budget if the worst case exceeds what is left even with nothing in flight; blocked if
    only calls in flight are in the way; None if it fits."""
    free = ledger.remaining(budget.limit)
    if worst_case <= free:
        return None
    if worst_case > budget.limit - ledger.spent:
        reason = f"over budget ({budget.scope}): worst case ${usd(worst_case)} > remaining ${usd(free)}"
        return Refusal(reason, budget.scope, free, worst_case, budget=budget)
    return Refusal(BLOCKED, budget.scope, free, worst_case, blocked=True, budget=budget)

