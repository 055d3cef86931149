"""Prices: YAML first, 0 for local, genai-prices' bundled table, else unknown; costs equal to
`genai_prices.calc_price` to the last digit, cache reads/writes and long-context tiers included."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from genai_prices import Usage as PriceUsage
from genai_prices import calc_price

from amaos_llm.config import ModelSpec
from amaos_llm.pricing import PriceBook, config_price, genai_model, genai_price
from amaos_llm.types import Usage

ROOT = Path(__file__).resolve().parents[2]


def spec(provider: str, model: str, **kw: Any) -> ModelSpec:
    return ModelSpec(name=kw.pop("name", model), provider=provider, model=model, **kw)


def genai_cost(model: str, usage: Usage, **where: str) -> Decimal:
    price_usage = PriceUsage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                             cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens)
    return calc_price(price_usage, model, **where).total_price  # type: ignore[arg-type]


def cost(s: ModelSpec, usage: Usage) -> Decimal | None:
    price = PriceBook().price(s)
    return None if price is None else price.cost_of(usage)


@pytest.mark.parametrize(
    ("provider", "model", "usage"),
    [
        ("openai", "gpt-4o-mini", Usage(input_tokens=1234, output_tokens=567, cache_read_tokens=1024)),
        ("anthropic", "claude-3-5-haiku", Usage(input_tokens=9000, output_tokens=800, cache_read_tokens=4000,
                                                cache_write_tokens=3000)),
        ("google", "gemini-2.0-flash", Usage(input_tokens=5000, output_tokens=700, cache_read_tokens=2048)),
        ("google", "gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=900, cache_read_tokens=100_000)),
    ],
)
def test_cost_equals_calc_price_exactly(provider: str, model: str, usage: Usage) -> None:
    assert cost(spec(provider, model), usage) == genai_cost(model, usage, provider_id=provider)


def test_cache_tokens_are_charged_at_their_own_rates() -> None:
    plain = cost(spec("anthropic", "claude-3-5-haiku"), Usage(input_tokens=9000, output_tokens=800))
    cached = cost(spec("anthropic", "claude-3-5-haiku"),
                  Usage(input_tokens=9000, output_tokens=800, cache_read_tokens=4000, cache_write_tokens=3000))
    # $0.80/M plain, $0.08/M read, $1.00/M write: 4000 × −0.72 + 3000 × +0.20 per million
    assert cached == plain - Decimal("0.00288") + Decimal("0.0006")


def test_gemini_2_5_pro_above_200k_input_tokens_is_billed_at_the_long_context_tier() -> None:
    s = spec("google", "gemini-2.5-pro")
    below = cost(s, Usage(input_tokens=200_000, output_tokens=1000))
    above = cost(s, Usage(input_tokens=200_001, output_tokens=1000))
    assert below == Decimal("0.26")  # 200k × $1.25/M + 1k × $10/M
    assert above == Decimal("0.51500250")  # 200,001 × $2.50/M + 1k × $15/M: the whole call at the tier
    assert above == genai_cost("gemini-2.5-pro", Usage(input_tokens=200_001, output_tokens=1000), provider_id="google")


def test_openai_compatible_is_priced_by_the_provider_its_base_url_names() -> None:
    s = spec("openai_compatible", "deepseek-chat", base_url="https://api.deepseek.com/v1")
    usage = Usage(input_tokens=3000, output_tokens=400, cache_read_tokens=1000)
    assert cost(s, usage) == genai_cost("deepseek-chat", usage, provider_api_url="https://api.deepseek.com/v1")
    groq = spec("openai_compatible", "llama-3.3-70b-versatile", base_url="https://api.groq.com/openai/v1")
    assert cost(groq, Usage(input_tokens=1_000_000)) == Decimal("0.59")


def test_openai_compatible_is_not_priced_by_guessing_from_the_model_name(caplog: pytest.LogCaptureFixture) -> None:
    s = spec("openai_compatible", "gpt-4o", base_url="https://llm.example.com/v1")
    assert PriceBook().price(s) is None


def test_unknown_cloud_model_behind_a_loopback_url_is_unpriced_with_one_warning_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = PriceBook()
    s = spec("openai_compatible", "mystery-7b", name="mystery", base_url="http://127.0.0.1:8123/v1", source="cloud")
    with caplog.at_level(logging.WARNING, logger="amaos_llm"):
        assert book.price(s) is None
        assert book.price(s) is None
    assert [r.getMessage() for r in caplog.records] == [
        "no price known for model 'mystery' (openai_compatible/mystery-7b): its cost is reported as None"
    ]


def test_a_local_model_without_prices_costs_zero() -> None:
    for s in (spec("ollama", "llama3.2"), spec("openai_compatible", "qwen", base_url="http://localhost:8080/v1")):
        price = PriceBook().price(s)
        assert price is not None and price.source == "local"
        assert price.cost_of(Usage(input_tokens=10_000, output_tokens=10_000)) == 0


def test_a_yaml_priced_ollama_model_is_not_free() -> None:
    s = spec("ollama", "llama3.2", cost_per_1k_input=Decimal("0.02"), cost_per_1k_output=Decimal("0.04"))
    assert cost(s, Usage(input_tokens=1500, output_tokens=500)) == Decimal("0.05")


def test_yaml_prices_win_over_genai_prices() -> None:
    s = spec("openai", "gpt-4o-mini", cost_per_1k_input=Decimal("1"), cost_per_1k_output=Decimal("2"))
    price = PriceBook().price(s)
    assert price is not None and price.source == "config"
    assert price.cost(1000, 1000) == Decimal("3")


def test_yaml_cache_prices_apply_to_cache_tokens_and_default_to_the_input_price() -> None:
    # ModelSpec gains cost_per_1k_cache_read/_write with the budget wiring; the price reads them by name.
    given = SimpleNamespace(cost_per_1k_input=Decimal("1"), cost_per_1k_output=Decimal("4"),
                            cost_per_1k_cache_read=Decimal("0.1"), cost_per_1k_cache_write=Decimal("1.25"))
    price = config_price(given)  # type: ignore[arg-type]
    assert price is not None
    usage = Usage(input_tokens=10_000, output_tokens=1000, cache_read_tokens=6000, cache_write_tokens=2000)
    assert price.cost_of(usage) == Decimal("2") + Decimal("0.6") + Decimal("2.5") + Decimal("4")
    defaulted = config_price(spec("ollama", "x", cost_per_1k_input=Decimal("1"), cost_per_1k_output=Decimal("4")))
    assert defaulted is not None and defaulted.cost_of(usage) == Decimal("14")


def test_worst_case_takes_every_prompt_token_at_the_highest_input_side_rate() -> None:
    price = PriceBook().price(spec("anthropic", "claude-3-5-haiku"))
    assert price is not None
    # the cache-write rate ($1/M) is above the plain input rate ($0.80/M)
    assert price.worst_case(10_000, 1000) == genai_cost(
        "claude-3-5-haiku", Usage(input_tokens=10_000, output_tokens=1000, cache_write_tokens=10_000),
        provider_id="anthropic")
    assert price.worst_case(10_000, 1000) == Decimal("0.014")


def test_worst_case_past_a_tier_uses_the_tier_rates() -> None:
    price = PriceBook().price(spec("google", "gemini-2.5-pro"))
    assert price is not None
    assert price.worst_case(300_000, 2000) == Decimal("0.78")  # 300k × $2.50/M + 2k × $15/M


def test_a_price_is_resolved_once_until_its_next_price_change() -> None:
    now = [1_780_000_000.0]
    book = PriceBook(clock=lambda: now[0])
    s = spec("openai_compatible", "deepseek-chat", base_url="https://api.deepseek.com/v1")
    first = book.price(s)
    assert first is not None and book.price(s) is first
    # DeepSeek's off-peak window: the price is looked up again once its edge passes
    now[0] = first.valid_until
    again = book.price(s)
    assert again is not None and again is not first and again.valid_until > first.valid_until
    assert PriceBook().price(spec("openai", "gpt-4o-mini")).valid_until == float("inf")  # type: ignore[union-attr]


def test_every_openai_anthropic_google_and_deepseek_model_matches_calc_price() -> None:
    """The fast arithmetic against genai-prices' own, over each model of these providers."""
    rng = random.Random(13)
    from genai_prices import data_snapshot

    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        if provider.id not in {"openai", "anthropic", "google", "deepseek", "groq"}:
            continue
        for model in provider.models:
            price = genai_price(model.id, provider.id, None, now=1_780_000_000.0)
            if price is None:  # a few entries' ids do not match their own match rules
                continue
            for inp in (0, 1000, 200_000, 200_001, rng.randint(0, 1_500_000)):
                read = rng.randint(0, inp)
                usage = Usage(input_tokens=inp, output_tokens=rng.randint(0, 50_000), cache_read_tokens=read,
                              cache_write_tokens=rng.randint(0, inp - read))
                want = model.calc_price(PriceUsage(**usage.model_dump(exclude={"total_tokens"})), provider,
                                        genai_request_timestamp=price_time()).total_price
                assert price.cost_of(usage) == want, (provider.id, model.id, usage)
                checked += 1
    assert checked > 300


def price_time() -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(1_780_000_000.0, UTC)


def test_estimate_keeps_the_routing_figure_of_the_plain_rates() -> None:
    s = spec("openai", "gpt-4o-mini")
    want = genai_cost("gpt-4o-mini", Usage(input_tokens=1000, output_tokens=1000), provider_id="openai")
    assert PriceBook().estimate(s, 1000, 1000) == want


def test_genai_model_knows_nothing_of_an_unlisted_url() -> None:
    assert genai_model("anything", None, "https://llm.example.com/v1") is None


def test_local_and_yaml_priced_models_never_import_genai_prices() -> None:
    code = (
        "import sys; from decimal import Decimal; from amaos_llm.config import ModelSpec; "
        "from amaos_llm.pricing import PriceBook; b = PriceBook(); "
        "[b.price(ModelSpec(name=p, provider=p, model='m')) for p in ('ollama', 'embedded', 'callable')]; "
        "b.price(ModelSpec(name='c', provider='openai', model='gpt-4o', cost_per_1k_input=Decimal(1))); "
        "print('genai_prices' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["False"]


def test_bedrock_and_azure_models_are_priced_by_the_ids_genai_prices_knows() -> None:
    from genai_prices import Usage as GUsage
    from genai_prices import calc_price

    from amaos_llm.config import ModelSpec
    from amaos_llm.pricing import PriceBook

    book = PriceBook()
    bedrock = ModelSpec(name="b", provider="bedrock", model="us.anthropic.claude-3-5-haiku-20241022-v1:0",
                        region="us-east-1")
    azure = ModelSpec(name="a", provider="azure_openai", model="my-deployment", pricing_model="gpt-4o-mini",
                      api_version="2024-10-21")
    for spec, provider_id, model in ((bedrock, "aws", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
                                     (azure, "azure", "gpt-4o-mini")):
        price = book.price(spec)
        assert price is not None and price.source == "genai-prices"
        expected = calc_price(GUsage(input_tokens=1000, output_tokens=500), model, provider_id=provider_id).total_price
        assert price.cost(1000, 500) == expected
