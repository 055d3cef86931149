"""Load balancing over models that routing ranks equal; only ties are reordered."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import pytest

from amaos_llm import ConfigError, LLMConfig, LLMManager, Message, ModelNotFound, ModelSpec
from amaos_llm.balancing import Balancer, Load

pytestmark = pytest.mark.anyio


def named(name: str) -> Any:
    def fn(messages: list[Message], **params: Any) -> str:
        return name

    return fn


def balanced(strategy: str | None, *names: str, **kw: Any) -> LLMManager:
    m = LLMManager(LLMConfig.model_validate({"routing": {"load_balancing": strategy, "random_seed": 1}}), **kw)
    for name in names:
        m.register_model(name, named(name))
    return m


async def answers(m: LLMManager, n: int, **kw: Any) -> list[str]:
    return [(await m.complete("hi", **kw)).content for _ in range(n)]


async def test_without_balancing_ties_go_to_the_first_in_file_order() -> None:
    assert await answers(balanced(None, "a", "b", "c"), 4) == ["a", "a", "a", "a"]


async def test_round_robin_rotates_through_the_tied_models() -> None:
    assert await answers(balanced("round_robin", "a", "b", "c"), 7) == ["a", "b", "c", "a", "b", "c", "a"]


async def test_weighted_gives_exact_shares_every_sum_of_weights_calls() -> None:
    m = balanced("weighted", "a", "b", "c")
    m.set_model_weight("a", 3)
    m.set_model_weight("c", 0)
    got = await answers(m, 12)
    for start in range(0, 12, 4):
        window = got[start:start + 4]
        assert (window.count("a"), window.count("b"), window.count("c")) == (3, 1, 0)
    assert got[:4] != ["a", "a", "a", "b"]  # smooth: the light model is not left to the end


async def test_a_zero_weight_model_is_only_a_fallback() -> None:
    m = balanced("weighted", "a", "spare")
    m.set_model_weight("spare", 0)

    def down(messages: list[Message], **params: Any) -> str:
        raise RuntimeError("down")

    assert await answers(m, 3) == ["a", "a", "a"]
    m.register_model("a", down)
    m.set_model_weight("spare", 0)
    assert (await m.complete("hi")).content == "spare"


def test_random_draws_by_weight_from_the_managers_rng() -> None:
    specs = [ModelSpec(name="heavy", provider="callable", weight=9), ModelSpec(name="light", provider="callable")]
    balancer = Balancer("random", Load(), random.Random(5))
    picks = [balancer.order(specs)[0].name for _ in range(2000)]
    again = Balancer("random", Load(), random.Random(5))
    assert [again.order(specs)[0].name for _ in range(2000)] == picks  # the same seed, the same draws
    assert 0.87 < picks.count("heavy") / 2000 < 0.93


async def test_least_latency_tries_unmeasured_models_first_then_the_fastest() -> None:
    now = [0.0]
    m = LLMManager(LLMConfig.model_validate({"routing": {"load_balancing": "least_latency"}}), clock=lambda: now[0])

    def model(name: str, seconds: float) -> Any:
        def fn(messages: list[Message], **params: Any) -> str:
            now[0] += seconds
            return name

        return fn

    m.register_model("slow", model("slow", 0.5))
    m.register_model("fast", model("fast", 0.1))
    assert await answers(m, 4) == ["slow", "fast", "fast", "fast"]


async def test_least_busy_spreads_concurrent_calls_and_never_goes_negative_after_cancellations() -> None:
    m = LLMManager(LLMConfig.model_validate({"routing": {"load_balancing": "least_busy"}}))
    release = anyio.Event()
    started: list[str] = []

    def model(name: str) -> Any:
        async def fn(messages: list[Message], **params: Any) -> str:
            started.append(name)
            await release.wait()
            return name

        return fn

    for name in ("a", "b"):
        m.register_model(name, model(name))
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(m.complete, "hi")
        await anyio.wait_all_tasks_blocked()
        assert sorted(started) == ["a", "a", "a", "b", "b", "b"]
        tg.cancel_scope.cancel()
    assert m._load.in_flight == {"a": 0, "b": 0}
    assert m.get_stats()["cancelled"] == 6


async def test_only_ties_are_reordered_and_a_forced_model_or_a_chain_is_kept() -> None:
    m = balanced("round_robin", "a", "b")
    m.register_model("top", named("top"), priority=5)
    assert await answers(m, 3) == ["top", "top", "top"]
    assert await answers(m, 2, force_model="b") == ["b", "b"]
    m.set_fallback_chain(["b", "a"])
    assert await answers(m, 2) == ["b", "b"]


async def test_least_busy_ties_rotate_rather_than_favour_file_order() -> None:
    assert await answers(balanced("least_busy", "a", "b", "c"), 3) == ["a", "b", "c"]


async def test_balancing_can_be_switched_on_and_off_in_code() -> None:
    m = balanced(None, "a", "b")
    m.enable_load_balancing("round_robin")
    assert await answers(m, 2) == ["a", "b"]
    assert m.config.routing.load_balancing == "round_robin"
    m.disable_load_balancing()
    assert await answers(m, 2) == ["a", "a"]


def test_bad_strategies_and_weights_are_refused_clearly(tmp_path: Path) -> None:
    m = balanced(None, "a")
    with pytest.raises(ValueError, match="unknown load-balancing strategy 'fastest'; known: round_robin, weighted"):
        m.enable_load_balancing("fastest")
    with pytest.raises(ModelNotFound):
        m.set_model_weight("ghost", 1)
    with pytest.raises(ValueError, match="weight: must be a number >= 0, got -1"):
        m.set_model_weight("a", -1)
    path = tmp_path / "models.yaml"
    path.write_text("routing:\n  load_balancing: fastest\n")
    with pytest.raises(ConfigError) as info:
        LLMConfig.from_yaml(path)
    assert (info.value.line, info.value.field) == (2, "routing.load_balancing")
