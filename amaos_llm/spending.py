"""What a call may spend, at the attempt loop's moments: which models its prompt fits, the rate
limits and budgets a send must pass, and the settling of what each paid attempt cost.

- **Before the loop** (`for_call`): the call's `BudgetGuard` (the manager's budget, the call's own
  `budget=` ledgers, its `max_cost`) and its token estimates; None when nothing is in force.
- **Before each send** (`static_skip`, then `admit`): a model whose context window cannot hold the
  prompt plus `max_tokens`, or an unpriced model under a budget, is skipped; then the model's
  rpm/tpm window admits the send (every send counts, retries too), then the budget reserves the
  worst case on every ledger, all or none (kept across same-model retries, taken again after a
  paid answer). The rpm/tpm windows are this process's (`limits`, synchronous) on the manager's
  own memory store, the store's (`shared_limits`) on a shared one.
- **After a paid attempt** (`paid`): the hold settles at the real cost, exactly once; the rate
  ticket of the send that answered counts the real tokens. The loop releases an unpaid hold when
  it leaves the model.

A store that fails (`StateStoreError`) follows `state.on_error`: `closed` raises it (nothing is sent
unbudgeted or past a limit no one can count); `open` sends without the store's budgets, the rate
limits counted by this process alone meanwhile, with a warning at most once a minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amaos_llm.budget import Budget, BudgetGuard, Refusal, money
from amaos_llm.errors import StateStoreError
from amaos_llm.limits import RateLimits, RateRefusal, Ticket
from amaos_llm.shared_limits import SharedRates, SharedTicket
from amaos_llm.state import is_shared
from amaos_llm.tokens import PRICE_UNKNOWN, context_window, prompt_bound, window_skip_reason

if TYPE_CHECKING:
    from amaos_llm.call_state import CallState
    from amaos_llm.config import ModelSpec
    from amaos_llm.pricing import PriceBook
    from amaos_llm.state import StateStore
    from amaos_llm.types import Message, Usage

log = logging.getLogger("amaos_llm")
Skip = tuple[str, float | None]  # a skip reason, and the seconds until it may lift by itself
_UNSET: Any = object()


class CallSpend:
    """One call's limits and estimates."""

    __slots__ = ("guard", "bound", "hold", "ticket", "blocked")

    def __init__(self, guard: BudgetGuard, bound: int) -> None:
        self.guard = guard
        self.bound = bound  # prompt_bound: the prompt tokens no tokenizer exceeds (money)
        self.hold: Any = None  # the worst case held for the model being tried
        self.ticket: Any = None  # the rate limiter's count of the last send
        self.blocked: list[Refusal] = []  # budgets that fit once calls in flight settle


class Spending:
    """A manager's budget, rate limiters and context-window table."""

    def __init__(self, prices: PriceBook, clock: Callable[[], float], store: StateStore,
                 budget_usd: Decimal | None, budget_key: str, on_error: str = "closed", *, given: bool = False) -> None:
        self.prices = prices
        self.on_error = on_error  # closed: a store failure refuses the call; open: it goes on without the store
        self._warned_at = -1e9
        self._clock = clock
        self.store, self.budget_key = store, budget_key
        self.budget: Budget | None = None
        self.reset(budget_usd)
        self.limits = RateLimits(clock)  # this process's windows (and, store down with on_error open, the fallback)
        # None: the manager's own memory store, where the synchronous `limits` count alone
        self.shared_rates = SharedRates(store, clock) if is_shared(store, given=given) else None
        self._windows: dict[str, int | None] = {}
        self.unwindowed: set[str] = set()  # models known to have no context window: nothing to check

    def reset(self, budget_usd: object | None) -> None:
        """A fresh manager budget (None: none). On a shared store the ledger's spending stays."""
        self.budget = None if budget_usd is None else Budget(money(budget_usd), store=self.store,
                                                             key=f"budget:{self.budget_key}", scope="manager")

    def forget(self, name: str) -> None:
        self._windows.pop(name, None)
        self.unwindowed.discard(name)
        self.limits.forget(name)

    def for_call(self, messages: Sequence[Message], max_cost: object | None,
                 budgets: Sequence[Budget]) -> CallSpend | None:
        """The call's guard, or None when no budget and no max_cost is in force."""
        ledgers = [*([self.budget] if self.budget is not None else ()), *budgets]
        if not ledgers and max_cost is None:
            return None
        cap = None if max_cost is None else money(max_cost, "max_cost")
        return CallSpend(BudgetGuard(ledgers, max_cost=cap), prompt_bound(messages))

    def window(self, spec: ModelSpec) -> int | None:
        window = self._windows.get(spec.name, _UNSET)
        if window is _UNSET:
            window = self._windows[spec.name] = context_window(spec)
            if window is None:
                self.unwindowed.add(spec.name)
        return window  # type: ignore[no-any-return]

    def static_skip(self, spec: ModelSpec, call: CallState, max_tokens: int) -> Skip | None:
        """A model the call cannot use whatever happens elsewhere: its window is too small, or it
        has no price while a budget is in force."""
        window, spend = self.window(spec), call.spend
        if window is None and spend is None:  # most models, most calls: nothing to count
            return None
        reason = None if window is None else window_skip_reason(call.prompt(), max_tokens, window)
        if reason is None and spend is not None and self.prices.price(spec) is None:
            reason = PRICE_UNKNOWN
        return None if reason is None else (reason, None)

    async def admit(self, call: CallState, spec: ModelSpec, prompt: int, max_tokens: int,
                    clock: Callable[[], float]) -> Skip | None:
        """Rate limit, then budget, for one send; None when it may go (a ticket and a hold taken)."""
        if spec.rpm or spec.tpm:
            if self.shared_rates is None:
                ticket = self.limits.limiter(spec.name, rpm=spec.rpm, tpm=spec.tpm).acquire(  # type: ignore[union-attr]
                    prompt + max_tokens)
            else:
                ticket = await self._shared_ticket(spec, prompt + max_tokens)
            if isinstance(ticket, RateRefusal):
                return ticket.reason, None if ticket.frees_at is None else max(0.0, ticket.frees_at - clock())
            call.rate_ticket = None if ticket is None else (spec.name, ticket)
        spend = call.spend
        if spend is None or spend.hold is not None:  # same-model retries keep what they hold
            return None
        price = self.prices.price(spec)
        worst = None if price is None else price.worst_case(spend.bound, max_tokens)
        try:
            hold = await spend.guard.reserve(worst, spec.name)
        except StateStoreError:
            if self.on_error == "closed":
                raise  # nothing is sent unbudgeted
            self._warn_open()
            return None
        if isinstance(hold, Refusal):
            if hold.blocked:
                spend.blocked.append(hold)
            return hold.reason, None
        spend.hold = hold
        return None

    async def _shared_ticket(self, spec: ModelSpec, tokens: int) -> SharedTicket | Ticket | RateRefusal | None:
        try:
            return await self.shared_rates.acquire(spec.name, spec.rpm, spec.tpm, tokens)  # type: ignore[union-attr]
        except StateStoreError:
            if self.on_error == "closed":
                raise  # nothing is sent past a limit no one can count
            self._warn_open()
            return self.limits.limiter(spec.name, rpm=spec.rpm, tpm=spec.tpm).acquire(tokens)  # type: ignore[union-attr]

    @staticmethod
    async def paid(call: CallState, usage: Usage, cost: Decimal | None) -> None:
        """Settle what a paid attempt cost (its hold once, at the real cost) and its real tokens.
        The answer is not lost when the store fails now: a warning, and the hold expires there."""
        held, call.rate_ticket = call.rate_ticket, None
        # The ticket of an earlier send to another model (it failed, and this one answered) keeps its estimate.
        if held is not None and held[0] == call.last_model:
            ticket, tokens = held[1], usage.input_tokens + usage.output_tokens
            if isinstance(ticket, Ticket):
                ticket.settle(tokens)
            else:
                try:
                    await ticket.settle(tokens)
                except StateStoreError as exc:
                    log.warning("could not settle %d tokens on the rate limit (%s): its estimate counts", tokens, exc)
        spend = call.spend
        if spend is not None and spend.hold is not None:
            hold, spend.hold = spend.hold, None
            try:
                await hold.settle(cost if cost is not None else Decimal(0))
            except StateStoreError as exc:
                log.warning("could not settle $%s on the budget (%s): the answer stands; its hold expires", cost, exc)

    @staticmethod
    async def release(call: CallState) -> None:
        """Leaving a model without paying: its hold goes back (or, with the store down, expires)."""
        spend = call.spend
        if spend is not None and spend.hold is not None:
            hold, spend.hold = spend.hold, None
            try:
                await hold.release()
            except StateStoreError as exc:
                log.warning("could not release a budget hold (%s): it expires on the store", exc)

    def _warn_open(self) -> None:
        now = self._clock()
        if now - self._warned_at >= 60:  # once a minute, not once a call
            self._warned_at = now
            log.warning("the state store is unreachable: calls go on unbudgeted, their rate limits counted by this "
                        "process alone (state.on_error: open)")

