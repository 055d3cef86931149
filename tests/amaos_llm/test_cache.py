"""The result cache: a repeated request is answered without a model call, for free, until it expires."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from amaos_llm import AllModelsFailed, ConfigError, LLMConfig, LLMManager, LLMResult, Message
from tests.support.clock import Clock

pytestmark = pytest.mark.anyio


class Counting:
    def __init__(self, fail: bool = False) -> None:
        self.runs, self.fail = 0, fail

    def __call__(self, messages: list[Message], **params: Any) -> dict[str, Any]:
        self.runs += 1
        if self.fail:
            raise RuntimeError("down")
        return {"content": f"answer {self.runs}", "input_tokens": 1000, "output_tokens": 100}


def cached_manager(clock: Clock | None = None, **cache: Any) -> tuple[LLMManager, Counting]:
    config = LLMConfig.model_validate({"cache": {"enabled": True, **cache}})
    m = LLMManager(config, clock=clock or Clock(0.0))
    model = Counting()
    m.register_model("a", model, cost_per_1k_input=Decimal("1"), cost_per_1k_output=Decimal("2"))
    return m, model


async def test_a_repeated_request_is_a_free_cache_hit_saying_what_it_saved() -> None:
    m, model = cached_manager()
    first = await m.complete("hi", temperature=0.0)
    hit = await m.complete("hi", temperature=0.0)
    assert model.runs == 1
    assert (hit.content, hit.model_name, hit.cache_hit, hit.attempts) == ("answer 1", "a", True, [])
    assert (hit.usage.total_tokens, hit.cost, hit.saved_cost) == (0, Decimal(0), first.cost) == (0, 0, Decimal("1.2"))
    assert first.cache_hit is False
    stats = m.get_stats()
    assert (stats["calls"], stats["successes"], stats["cache_hits"], stats["cache_misses"]) == (2, 2, 1, 1)
    assert (stats["cache_hit_rate"], stats["saved_cost"], stats["by_model"]["a"]["calls"]) == (0.5, Decimal("1.2"), 1)
    assert stats["total_cost"] == Decimal("1.2")


@pytest.mark.parametrize(
    "second",
    [
        {"prompt": "hello"},
        {"prompt": "hi", "temperature": 0.5},
        {"prompt": "hi", "max_tokens": 7},
        {"prompt": "hi", "force_model": "a"},
        {"prompt": "hi", "system_prompt": "be brief"},
    ],
)
async def test_anything_that_decides_the_answer_is_part_of_the_key(second: dict[str, Any]) -> None:
    m, model = cached_manager()
    await m.complete("hi")
    assert (await m.complete(**second)).cache_hit is False
    assert model.runs == 2


async def test_each_call_may_turn_the_cache_on_or_off() -> None:
    m, model = cached_manager()
    await m.complete("hi")
    assert (await m.complete("hi", cache=False)).cache_hit is False
    plain = LLMManager(LLMConfig())
    plain.register_model("a", Counting())
    await plain.complete("hi")
    assert (await plain.complete("hi")).cache_hit is False
    await plain.complete("hey", cache=True)
    assert (await plain.complete("hey", cache=True)).cache_hit is True


async def test_entries_expire_ttl_seconds_after_they_were_stored() -> None:
    clock = Clock(0.0)
    m, model = cached_manager(clock, ttl=60)
    await m.complete("hi")
    clock.now = 59.9
    assert (await m.complete("hi")).cache_hit is True
    clock.now = 60.0
    assert (await m.complete("hi")).cache_hit is False
    assert model.runs == 2


async def test_the_least_recently_used_entry_goes_first() -> None:
    m, model = cached_manager(max_size=2)
    for prompt in ("one", "two", "one", "three"):  # "two" is the least recently used when "three" arrives
        await m.complete(prompt)
    assert (await m.complete("one")).cache_hit is True
    assert (await m.complete("two")).cache_hit is False


async def test_a_hit_the_validator_rejects_is_dropped_and_asked_afresh() -> None:
    m, model = cached_manager()
    await m.complete("hi")

    def not_the_first(result: LLMResult) -> bool | str:
        return result.content != "answer 1" or "stale"

    fresh = await m.complete("hi", validator=not_the_first)
    assert (fresh.content, fresh.cache_hit, model.runs) == ("answer 2", False, 2)
    assert (await m.complete("hi")).content == "answer 2"  # the fresh answer replaced it


async def test_changing_the_models_or_routing_leaves_earlier_entries_unused() -> None:
    m, model = cached_manager()
    await m.complete("hi")
    m.set_fallback_chain(["a"])
    assert (await m.complete("hi")).cache_hit is False
    m.register_model("b", Counting(), priority=-1)
    assert (await m.complete("hi")).cache_hit is False


async def test_a_failed_call_is_never_cached() -> None:
    config = LLMConfig.model_validate({"cache": {"enabled": True}})
    m = LLMManager(config)
    down = Counting(fail=True)
    m.register_model("a", down)
    for _ in range(2):
        with pytest.raises(AllModelsFailed):
            await m.complete("hi")
    assert down.runs == 2 and m.get_stats()["cache_hits"] == 0


@pytest.mark.parametrize(
    ("yaml", "field"),
    [("cache: {ttl: 0}", "cache.ttl"), ("cache: {max_size: 0}", "cache.max_size"), ("cache: {size: 3}", "cache.size")],
)
def test_bad_cache_settings_name_their_field(tmp_path: Path, yaml: str, field: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(yaml + "\n")
    with pytest.raises(ConfigError) as info:
        LLMConfig.from_yaml(path)
    assert (info.value.line, info.value.field) == (1, field)
