"""What a model costs, and what a usage of it costs, exactly.

A model's price comes from, in order:

1. its YAML prices, `cost_per_1k_input/output` (+ `cost_per_1k_cache_read/_write`, default: the
   input price), for any model, a local one too (a priced Ollama model is not free);
2. 0 for a local model (`ollama`, `embedded`, `callable`, a loopback `openai_compatible`);
3. genai-prices' bundled table (never `UpdatePrices`: no network), under the provider's
   genai-prices id: `openai`/`anthropic`/`google` as they are; for `openai_compatible`, the provider
   whose API-URL pattern matches `base_url` (DeepSeek, Groq…), never a guess from the model's name;
4. else `None` ("unknown", distinct from a real 0) and one warning naming the model.

A genai-prices price is resolved once per model and kept until the table's next price change
(a dated price, an off-peak window). Its cost is computed here, in the same Decimal operations
`genai_prices.calc_price` performs (cache reads and writes at their own rates, tiers chosen by the
total input), so the two agree exactly; a model priced on units this module does not model falls
back to genai-prices' own arithmetic on the resolved price.

Call points: `PriceBook.price(spec)` → `Price | None`; `Price.cost_of(usage)` (real cost, cache
tokens included), `Price.cost(input_tokens, output_tokens)` (plain usage),
`Price.worst_case(prompt_bound, max_tokens)` (what a budget reserves).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from amaos_llm.config import ModelSpec
from amaos_llm.types import Usage

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice

log = logging.getLogger("amaos_llm")

_ZERO = Decimal(0)
_NEVER = float("inf")

LOCAL_PROVIDERS = frozenset({"ollama", "embedded", "callable"})
# Our provider names whose genai-prices id is the same name.
_GENAI_PRICES_IDS = frozenset({"openai", "anthropic", "google"})

# What a term of a price charges: the uncached input, cache reads, cache writes, output, the request.
_INPUT, _CACHE_READ, _CACHE_WRITE, _OUTPUT, _REQUEST = range(5)
_KIND_OF_PRICE_KEY = {
    "input_mtok": _INPUT, "cache_read_mtok": _CACHE_READ, "cache_write_mtok": _CACHE_WRITE,
    "output_mtok": _OUTPUT, "requests_kcount": _REQUEST,
}
# genai-prices units a text-only usage never counts (our `Usage` reports no audio, images, TTL-split
# cache writes, tool calls…): their terms are always 0, so a price that has them stays on the fast path.
_UNCOUNTED_FAMILIES = frozenset({"tool_calls", "durations", "pixels", "document_pages", "rerank"})


@dataclass(frozen=True, slots=True)
class _Term:
    """One priced unit: `rate × count / per`, the rate picked by total input when tiered."""

    kind: int
    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]  # (start, rate), highest start first
    per: int

    def rate(self, total_input: int) -> Decimal:
        for start, rate in self.tiers:  # genai-prices' rule: the tier applies above its start
            if total_input > start:
                return rate
        return self.base


@dataclass(frozen=True, slots=True, eq=False)
class Price:
    """A model's resolved price. `per_1k_input/output` are the base rates per 1,000 tokens (for
    display and ordering); the costs come from `terms`, which carry cache rates and tiers."""

    per_1k_input: Decimal
    per_1k_output: Decimal
    source: str  # "config" | "genai-prices" | "local"
    terms: tuple[_Term, ...] = ()
    valid_until: float = _NEVER  # epoch seconds of the source's next price change
    # Which cache counts leave the input term: only those priced on their own (genai-prices' leaves).
    splits_cache_read: bool = False
    splits_cache_write: bool = False
    # genai-prices' own arithmetic, for a price on units the terms do not model.
    fallback: Callable[[int, int, int, int], Decimal] | None = field(default=None, repr=False)

    def cost(self, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
             cache_write_tokens: int = 0) -> Decimal:
        """Exact cost in USD; cache tokens are part of `input_tokens`."""
        if self.fallback is not None:
            return self.fallback(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
        uncached = input_tokens
        if self.splits_cache_read:
            uncached -= cache_read_tokens
        if self.splits_cache_write:
            uncached -= cache_write_tokens
        counts = (uncached, cache_read_tokens, cache_write_tokens, output_tokens, 1)
        total = _ZERO
        for term in self.terms:  # same operations, same order as genai-prices: equal to the last digit
            count = counts[term.kind]
            if count:  # a term of 0 tokens adds 0: skipping it leaves the sum's value as it is
                rate = term.rate(input_tokens) if term.tiers else term.base
                total += rate * count / term.per
        return total

    def cost_of(self, usage: Usage) -> Decimal:
        return self.cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)

    def worst_case(self, prompt_bound: int, max_tokens: int) -> Decimal:
        """The most a request can cost: every prompt token at the highest input-side rate (plain,
        cache read or cache write) of the tier `prompt_bound` falls in, `max_tokens` at the output
        rate of that tier. Each case is linear at one tier, so the maximum of the three is exact."""
        return max(
            self.cost(prompt_bound, max_tokens),
            self.cost(prompt_bound, max_tokens, cache_read_tokens=prompt_bound),
            self.cost(prompt_bound, max_tokens, cache_write_tokens=prompt_bound),
        )


class PriceBook:
    """Prices per model name, looked up once. `None` means nobody knows the price."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._prices: dict[str, Price | None] = {}
        self._clock = clock

    def price(self, spec: ModelSpec) -> Price | None:
        price = self._prices.get(spec.name, _MISSING)
        if price is _MISSING:
            price = self._prices[spec.name] = lookup_price(spec, self._clock())
            if price is None:
                log.warning("no price known for model %r (%s/%s): its cost is reported as None",
                            spec.name, spec.provider, spec.model)
        elif price is not None and price.valid_until <= self._clock():
            price = self._prices[spec.name] = lookup_price(spec, self._clock())
        return price  # type: ignore[return-value]

    def forget(self, name: str) -> None:
        self._prices.pop(name, None)

    def estimate(self, spec: ModelSpec, prompt_tokens: int, max_tokens: int) -> Decimal | None:
        """Cost of a request with the whole prompt in at the plain input rate and `max_tokens`
        out: the figure cost-ordered routing compares. Budgets reserve `Price.worst_case`."""
        price = self.price(spec)
        return None if price is None else price.cost(prompt_tokens, max_tokens)


_MISSING: Any = object()


def lookup_price(spec: ModelSpec, now: float | None = None) -> Price | None:
    """The price of `spec` from its source (see the module docstring), resolved at `now`."""
    configured = config_price(spec)
    if configured is not None:
        return configured
    if spec.is_local:
        return Price(_ZERO, _ZERO, "local")
    model = spec.model
    if spec.provider in ("bedrock", "azure_openai"):  # priced by another id than the one sent
        model, ref = _cloud_ref(spec)
    else:
        ref = genai_prices_ref(spec)
    if ref is None:
        return None
    return genai_price(model, *ref, now=time.time() if now is None else now)


def _cloud_ref(spec: ModelSpec) -> tuple[str, tuple[str | None, str | None]]:
    """Bedrock: genai-prices' `aws` entry for the model or inference-profile id; Azure: its `azure`
    entry for `pricing_model` (what the deployment runs), else the deployment name."""
    if spec.provider == "bedrock":
        from amaos_llm.providers.bedrock import bedrock_price_id

        provider_id, model = bedrock_price_id(spec.model)
    else:
        from amaos_llm.providers.azure_openai import azure_price_id

        provider_id, model = azure_price_id(spec)
    return model, (provider_id, None)


def config_price(spec: ModelSpec) -> Price | None:
    """The YAML price, when the model gives one. Cache prices are read with getattr: the fields
    `cost_per_1k_cache_read/_write` join `ModelSpec` with the budget wiring."""
    inp, out = spec.cost_per_1k_input, spec.cost_per_1k_output
    read = getattr(spec, "cost_per_1k_cache_read", None)
    write = getattr(spec, "cost_per_1k_cache_write", None)
    if inp is None and out is None and read is None and write is None:
        return None
    inp = _ZERO if inp is None else Decimal(inp)
    out = _ZERO if out is None else Decimal(out)
    read = inp if read is None else Decimal(read)
    write = inp if write is None else Decimal(write)
    terms = tuple(_Term(kind, rate, (), 1000) for kind, rate in
                  ((_INPUT, inp), (_CACHE_READ, read), (_CACHE_WRITE, write), (_OUTPUT, out)))
    return Price(inp, out, "config", terms, splits_cache_read=True, splits_cache_write=True)


def genai_prices_ref(spec: ModelSpec) -> tuple[str | None, str | None] | None:
    """(provider_id, provider_api_url) to look `spec` up in genai-prices, or None if it has no
    entry there. Never called for a local model, so local-only setups never import genai-prices."""
    if spec.provider in _GENAI_PRICES_IDS:
        return spec.provider, None
    if spec.provider == "openai_compatible" and spec.base_url:
        return None, spec.endpoints[0]  # several URLs are endpoints of one service: the first names it
    return None


def genai_model(model: str, provider_id: str | None, api_url: str | None) -> tuple[Any, ModelInfo] | None:
    """genai-prices' (provider, model) entry, or None when it has none."""
    # Imported here: the table takes ≈0.25 s to load, and only cloud models without YAML prices need it.
    from genai_prices import data_snapshot

    try:
        return data_snapshot.get_snapshot().find_provider_model(model, None, provider_id, api_url)
    except LookupError:
        return None


def genai_price(model: str, provider_id: str | None, api_url: str | None, *, now: float) -> Price | None:
    found = genai_model(model, provider_id, api_url)
    if found is None:
        return None
    info = found[1]
    at = datetime.fromtimestamp(now, UTC)
    model_price = info.get_prices(at)
    valid_until = _next_price_change(info, at)
    terms, fast = _terms(model_price)
    by_kind = {t.kind: t.base for t in terms}
    per_mtok_to_1k = Decimal(1000)
    base_in = by_kind.get(_INPUT, _ZERO) / per_mtok_to_1k
    base_out = by_kind.get(_OUTPUT, _ZERO) / per_mtok_to_1k
    if not fast:
        return Price(base_in, base_out, "genai-prices", valid_until=valid_until,
                     fallback=_genai_arithmetic(model_price))
    return Price(base_in, base_out, "genai-prices", terms, valid_until,
                 splits_cache_read=_CACHE_READ in by_kind, splits_cache_write=_CACHE_WRITE in by_kind)


def _terms(model_price: ModelPrice) -> tuple[tuple[_Term, ...], bool]:
    """The price's terms in genai-prices' order, and whether they alone give its exact cost."""
    from genai_prices.types import TieredPrices
    from genai_prices.units import _get_registry

    registry = _get_registry()
    terms: list[_Term] = []
    fast = True
    for key, value in model_price.__dict__.items():
        if key.startswith("_") or value is None:
            continue
        kind = _KIND_OF_PRICE_KEY.get(key)
        if kind is None:
            try:
                dims = registry.unit_for_price_key(key).dimensions
            except KeyError:
                fast = False
                continue
            uncounted = (dims.get("modality", "text") != "text" or "cache_ttl" in dims
                         or dims.get("family") in _UNCOUNTED_FAMILIES)
            fast = fast and uncounted
            continue
        per = registry.unit_for_price_key(key).per
        if isinstance(value, TieredPrices):
            tiers = tuple((t.start, t.price) for t in sorted(value.tiers, key=lambda t: -t.start))
            terms.append(_Term(kind, value.base, tiers, per))
        else:
            terms.append(_Term(kind, value, (), per))
    return tuple(terms), fast


def _genai_arithmetic(model_price: ModelPrice) -> Callable[[int, int, int, int], Decimal]:
    from genai_prices import Usage as PriceUsage

    def cost(input_tokens: int, output_tokens: int, cache_read_tokens: int, cache_write_tokens: int) -> Decimal:
        usage = PriceUsage(input_tokens=input_tokens, output_tokens=output_tokens,
                           cache_read_tokens=cache_read_tokens, cache_write_tokens=cache_write_tokens)
        return model_price.calc_price(usage)["total_price"]

    return cost


def _next_price_change(info: ModelInfo, at: datetime) -> float:
    """When the price picked at `at` may stop applying: the next dated price's start, or the next
    edge of an off-peak window. Infinity for a price without conditions."""
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    if not isinstance(info.prices, list):
        return _NEVER
    changes: list[datetime] = []
    for conditional in info.prices:
        constraint = conditional.constraint
        if isinstance(constraint, StartDateConstraint) and constraint.start_date > at.date():
            changes.append(datetime.combine(constraint.start_date, datetime.min.time(), UTC))
        elif isinstance(constraint, TimeOfDateConstraint):
            changes.extend(_next_time_of_day(edge, at) for edge in (constraint.start_time, constraint.end_time))
    return min(changes).timestamp() if changes else _NEVER


def _next_time_of_day(edge: Any, at: datetime) -> datetime:
    today: date = at.date()
    moment = datetime.combine(today, edge.replace(tzinfo=edge.tzinfo or UTC)).astimezone(UTC)
    return moment if moment > at else moment + timedelta(days=1)
