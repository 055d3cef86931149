"""What a model costs: YAML prices first, then genai-prices, else 0 for local and unknown for cloud.

`cost_of(usage)` is exact (Decimal) and uses only the token counts the provider reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from amaos_llm.config import ModelSpec

log = logging.getLogger("amaos_llm")

_THOUSAND = Decimal(1000)
_ZERO = Decimal(0)

# Our provider names → genai-prices provider ids.
_GENAI_PRICES_IDS = {"openai": "openai", "anthropic": "anthropic", "google": "google"}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1,000 tokens; `source` says where the numbers came from."""

    per_1k_input: Decimal
    per_1k_output: Decimal
    source: str  # "config" | "genai-prices" | "local"
    model_ref: tuple[str, str] | None = None  # (model, provider id) for genai-prices

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        if self.model_ref is not None:  # tiered prices (long context, caching) are not linear
            from genai_prices import Usage, calc_price

            model, provider_id = self.model_ref
            usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
            return calc_price(usage, model, provider_id=provider_id).total_price
        return (input_tokens * self.per_1k_input + output_tokens * self.per_1k_output) / _THOUSAND


class PriceBook:
    """Prices per model name, looked up once. `None` means nobody knows the price."""

    def __init__(self) -> None:
        self._prices: dict[str, Price | None] = {}

    def price(self, spec: ModelSpec) -> Price | None:
        try:
            return self._prices[spec.name]
        except KeyError:
            price = self._prices[spec.name] = _lookup(spec)
            if price is None:
                log.warning("no price known for model %r (%s/%s): its cost is reported as None",
                            spec.name, spec.provider, spec.model)
            return price

    def forget(self, name: str) -> None:
        self._prices.pop(name, None)

    def estimate(self, spec: ModelSpec, prompt_tokens: int, max_tokens: int) -> Decimal | None:
        """Worst-case cost of a request: the whole prompt in, `max_tokens` out."""
        price = self.price(spec)
        return None if price is None else price.cost(prompt_tokens, max_tokens)


def _lookup(spec: ModelSpec) -> Price | None:
    if spec.cost_per_1k_input is not None or spec.cost_per_1k_output is not None:
        return Price(spec.cost_per_1k_input or _ZERO, spec.cost_per_1k_output or _ZERO, "config")
    provider_id = _GENAI_PRICES_IDS.get(spec.provider)
    if provider_id is not None and not spec.is_local:
        price = _genai_price(spec.model, provider_id)
        if price is not None:
            return price
    return Price(_ZERO, _ZERO, "local") if spec.is_local else None


def _genai_price(model: str, provider_id: str) -> Price | None:
    # Imported here: genai-prices loads a large table (≈0.25 s), needed only for unpriced cloud models.
    from genai_prices import Usage, calc_price

    try:
        per_1k_in = calc_price(Usage(input_tokens=1000, output_tokens=0), model, provider_id=provider_id)
        per_1k_out = calc_price(Usage(input_tokens=0, output_tokens=1000), model, provider_id=provider_id)
    except LookupError:
        return None
    return Price(per_1k_in.total_price, per_1k_out.total_price, "genai-prices", (model, provider_id))
