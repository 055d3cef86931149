"""select_candidates is a pure function: same inputs, same order."""

from __future__ import annotations

from decimal import Decimal

from amaos_llm import ModelSpec, RoutingConfig
from amaos_llm.selection import select_candidates


def spec(name: str, source: str = "local", priority: int = 0, price: str | None = None, **kw: object) -> ModelSpec:
    prices = {"cost_per_1k_input": Decimal(price), "cost_per_1k_output": Decimal(price)} if price else {}
    return ModelSpec(name=name, provider="callable", source=source, priority=priority, **prices, **kw)  # type: ignore[arg-type]


def order(models: list[ModelSpec], routing: RoutingConfig | None = None, **kw: object) -> list[tuple[str, str | None]]:
    def estimate(s: ModelSpec) -> Decimal | None:
        return s.cost_per_1k_input

    picked = select_candidates(models, routing or RoutingConfig(), estimate=estimate,
                               has_key=lambda s: True, **kw)  # type: ignore[arg-type]
    return [(c.spec.name, c.skip_reason) for c in picked]


def test_local_tier_first_then_priority_inside_each_tier() -> None:
    models = [spec("c1", "cloud", 50), spec("l1", "local", 1), spec("c2", "cloud", 90), spec("l2", "local", 5)]
    assert [n for n, _ in order(models)] == ["l2", "l1", "c2", "c1"]


def test_without_prefer_local_tiers_mix_by_priority() -> None:
    models = [spec("c1", "cloud", 50), spec("l1", "local", 1)]
    assert [n for n, _ in order(models, RoutingConfig(prefer_local=False))] == ["c1", "l1"]


def test_priority_ties_break_on_estimated_cost_then_file_order() -> None:
    models = [spec("pricey", price="2"), spec("cheap", price="1"), spec("cheap2", price="1")]
    assert [n for n, _ in order(models)] == ["cheap", "cheap2", "pricey"]


def test_cost_strategy_orders_by_cost_then_priority_unknown_last() -> None:
    models = [spec("unknown", priority=99), spec("b", priority=1, price="3"), spec("a", priority=2, price="3"),
              spec("z", priority=0, price="1")]
    assert [n for n, _ in order(models, RoutingConfig(strategy="cost"))] == ["z", "a", "b", "unknown"]


def test_disabled_models_are_left_out() -> None:
    assert order([spec("on"), spec("off", enabled=False)]) == [("on", None)]


def test_local_only_marks_cloud_models_skipped() -> None:
    got = order([spec("c", "cloud"), spec("l")], RoutingConfig(local_only=True))
    assert got == [("l", None), ("c", "cloud model excluded by local_only")]


def test_open_breaker_marks_model_skipped() -> None:
    got = order([spec("a", priority=1), spec("b")],
                unavailable=lambda s: ("circuit breaker open after repeated failures", 3.0) if s.name == "a" else None)
    assert got == [("a", "circuit breaker open after repeated failures"), ("b", None)]


def test_missing_key_names_the_variable() -> None:
    gpt = ModelSpec(name="gpt", provider="openai", api_key_env="MY_KEY")
    got = select_candidates([gpt], RoutingConfig(), estimate=lambda s: None, has_key=lambda s: False)
    assert got[0].skip_reason == "API key missing: set the environment variable MY_KEY"


def test_fallback_chain_is_the_order_and_leaves_out_the_rest() -> None:
    models = [spec("a", priority=9), spec("b"), spec("c")]
    assert [n for n, _ in order(models, RoutingConfig(fallback_chain=["c", "a"]))] == ["c", "a"]


def test_force_model_is_the_only_candidate() -> None:
    models = [spec("a", priority=9), spec("b")]
    assert order(models, force_model=models[1]) == [("b", None)]


def test_a_named_key_variable_is_required_even_for_openai_compatible() -> None:
    qwen = ModelSpec(name="qwen", provider="openai_compatible", base_url="https://dashscope.example.com/v1",
                     api_key_env="MY_QWEN_KEY")
    vllm = ModelSpec(name="vllm", provider="openai_compatible", base_url="http://127.0.0.1:8000/v1")
    got = select_candidates([qwen, vllm], RoutingConfig(), estimate=lambda s: None, has_key=lambda s: False)
    assert [(c.spec.name, c.skip_reason) for c in got] == [
        ("vllm", None), ("qwen", "API key missing: set the environment variable MY_QWEN_KEY")]
