"""LLMManager behaviour over in-process callable models (no HTTP): routing, fallback, timeouts,
retries, breakers, accounting. The wire-level checks live in test_manager_wire.py."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from amaos_llm import (
    AllModelsFailed,
    LLMConfig,
    LLMManager,
    Message,
    ModelNotFound,
    ModelSpec,
    RateLimitError,
    get_llm_manager,
    set_llm_manager,
)

pytestmark = pytest.mark.anyio


def answer(text: str = "ok", input_tokens: int = 10, output_tokens: int = 5):
    calls: list[dict[str, Any]] = []

    def fn(messages: list[Message], **params: Any) -> dict[str, Any]:
        calls.append({"messages": messages, **params})
        return {"content": text, "input_tokens": input_tokens, "output_tokens": output_tokens}

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def failing(exc: Exception):
    calls: list[int] = []

    def fn(messages: list[Message], **params: Any) -> str:
        calls.append(1)
        raise exc

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def manager(**routing: Any) -> LLMManager:
    config = LLMConfig.model_validate({"routing": routing, "defaults": {"retry_backoff": 0}})
    return LLMManager(config)


async def test_result_carries_model_real_tokens_and_exact_cost() -> None:
    m = manager()
    m.register_model("a", answer("hello", 1200, 300), cost_per_1k_input=Decimal("0.25"),
                     cost_per_1k_output=Decimal("1.25"))
    result = await m.complete("hi")
    assert (result.content, result.model_name, result.provider, result.model) == ("hello", "a", "callable", "a")
    assert (result.usage.input_tokens, result.usage.output_tokens, result.tokens) == (1200, 300, 1500)
    assert result.cost == Decimal("0.675")
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("a", "success")]
    assert result.latency >= result.attempts[0].latency > 0


async def test_temperature_zero_and_max_tokens_reach_the_model_exactly() -> None:
    m = manager()
    fn = answer()
    m.register_model("a", fn, temperature=0.9, max_tokens=77)
    await m.complete("hi", temperature=0.0, max_tokens=3)
    await m.complete("hi")
    assert [(c["temperature"], c["max_tokens"]) for c in fn.calls] == [(0.0, 3), (0.9, 77)]


async def test_defaults_apply_when_neither_call_nor_model_sets_a_value() -> None:
    m = LLMManager(LLMConfig.model_validate({"defaults": {"temperature": 0.2, "max_tokens": 11}}))
    fn = answer()
    m.register_model("a", fn)
    await m.complete("hi")
    assert (fn.calls[0]["temperature"], fn.calls[0]["max_tokens"]) == (0.2, 11)


async def test_system_prompt_comes_first() -> None:
    m = manager()
    fn = answer()
    m.register_model("a", fn)
    await m.complete("question", system_prompt="be brief")
    assert fn.calls[0]["messages"] == [Message(role="system", content="be brief"),
                                       Message(role="user", content="question")]


async def test_chat_accepts_dicts_and_messages() -> None:
    m = manager()
    fn = answer()
    m.register_model("a", fn)
    await m.chat([{"role": "user", "content": "one"}, Message(role="assistant", content="two")])
    assert [msg.content for msg in fn.calls[0]["messages"]] == ["one", "two"]


async def test_error_falls_back_to_next_model_and_lists_both_attempts() -> None:
    m = manager()
    m.register_model("first", failing(RuntimeError("boom")), priority=10)
    m.register_model("second", answer("from second"), priority=5)
    result = await m.complete("hi")
    assert result.model_name == "second"
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("first", "error"), ("second", "success")]
    assert result.attempts[0].error == "ProviderError: RuntimeError: boom"
    assert m.get_stats()["fallbacks"] == 1


# Both backends: on asyncio the deadline is asyncio's own, on trio anyio's cancel scope (sending.send).
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_timeout_is_enforced_and_falls_back_quickly(anyio_backend: str) -> None:
    async def slow(messages: list[Message], **params: Any) -> str:
        await anyio.sleep(5)
        return "too late"

    m = manager()
    m.register_model("slow", slow, priority=10, timeout=0.3, max_retries=0)
    m.register_model("fast", answer("fast"), priority=5)
    t0 = time.perf_counter()
    result = await m.complete("hi")
    elapsed = time.perf_counter() - t0
    assert result.model_name == "fast"
    assert elapsed < 1.0
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("slow", "timeout"), ("fast", "success")]
    stats = m.get_stats()
    assert (stats["timeouts"], stats["by_model"]["slow"]["timeouts"]) == (1, 1)


async def test_a_timeout_is_transient_retried_on_the_same_model_then_falls_back() -> None:
    async def slow(messages: list[Message], **params: Any) -> str:
        await anyio.sleep(5)
        return "too late"

    m = manager()
    m.register_model("slow", slow, priority=10, timeout=0.05)
    m.register_model("fast", answer("fast"), priority=5)
    result = await m.complete("hi")
    assert [(a.model_name, a.outcome) for a in result.attempts] == [
        ("slow", "timeout"), ("slow", "timeout"), ("fast", "success")]
    stats = m.get_stats()
    assert (stats["retries"], stats["fallbacks"], stats["by_model"]["slow"]["timeouts"]) == (1, 1, 2)


async def test_all_failing_raises_with_every_attempt_and_never_invents_text() -> None:
    m = manager()
    m.register_model("a", failing(RuntimeError("first down")), priority=2)
    m.register_model("b", failing(ValueError("second down")), priority=1)
    with pytest.raises(AllModelsFailed) as info:
        await m.complete("hi")
    assert [(a.model_name, a.outcome) for a in info.value.attempts] == [("a", "error"), ("b", "error")]
    assert "first down" in str(info.value) and "second down" in str(info.value)
    assert m.get_stats()["failures"] == 1


async def test_fallback_disabled_stops_after_the_first_failure() -> None:
    m = manager(enable_fallback=False)
    second = answer()
    m.register_model("a", failing(RuntimeError("down")), priority=2)
    m.register_model("b", second, priority=1)
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
    assert second.calls == []


async def test_force_model_uses_only_that_model_and_its_failure_raises() -> None:
    m = manager()
    m.register_model("best", answer("best"), priority=10)
    m.register_model("broken", failing(RuntimeError("down")), priority=1)
    assert (await m.complete("hi", force_model="best")).model_name == "best"
    with pytest.raises(AllModelsFailed) as info:
        await m.complete("hi", force_model="broken")
    assert [a.model_name for a in info.value.attempts] == ["broken"]


async def test_unknown_force_model_lists_known_names() -> None:
    m = manager()
    m.register_model("a", answer())
    with pytest.raises(ModelNotFound, match=r"unknown model 'nope'; known models: a"):
        await m.complete("hi", force_model="nope")


async def test_local_tier_is_tried_before_a_higher_priority_cloud_model() -> None:
    m = manager()
    m.register_model("cloud", answer("cloud"), source="cloud", priority=100)
    m.register_model("local", answer("local"), source="local", priority=1)
    assert (await m.complete("hi")).model_name == "local"


async def test_local_only_never_calls_cloud_models() -> None:
    m = manager(local_only=True)
    cloud = answer("cloud")
    m.register_model("cloud", cloud, source="cloud", priority=100)
    m.register_model("local", failing(RuntimeError("down")))
    with pytest.raises(AllModelsFailed) as info:
        await m.complete("hi")
    assert cloud.calls == []
    assert ("cloud", "skipped", "cloud model excluded by local_only") in [
        (a.model_name, a.outcome, a.error) for a in info.value.attempts
    ]


async def test_no_eligible_model_explains_each_model() -> None:
    m = LLMManager(models=[ModelSpec(name="gpt", provider="openai", api_key_env="AMAOS_TEST_UNSET_KEY")],
                   local_only=True)
    with pytest.raises(AllModelsFailed, match="no eligible model") as info:
        await m.complete("hi")
    assert info.value.attempts[0].error == "cloud model excluded by local_only"


async def test_missing_key_is_a_skipped_attempt_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMAOS_TEST_UNSET_KEY", raising=False)
    m = LLMManager(models=[ModelSpec(name="gpt", provider="openai", api_key_env="AMAOS_TEST_UNSET_KEY")])
    m.register_model("backup", answer("backup"), source="cloud", priority=-1)
    result = await m.complete("hi")
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("gpt", "skipped"), ("backup", "success")]
    assert "AMAOS_TEST_UNSET_KEY" in (result.attempts[0].error or "")
    assert m.get_stats()["by_model"]["gpt"] == {**m.get_stats()["by_model"]["gpt"], "calls": 0, "skipped": 1}
    assert m.get_provider_status()["gpt"]["client"] == "unbuilt"  # no SDK client was built for it


async def test_rate_limit_is_retried_on_the_same_model_after_retry_after() -> None:
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    outcomes = iter([RateLimitError("slow down", retry_after=2.0), None])

    def flaky(messages: list[Message], **params: Any) -> dict[str, Any]:
        exc = next(outcomes)
        if exc:
            raise exc
        return {"content": "ok", "input_tokens": 1, "output_tokens": 1}

    m = LLMManager(LLMConfig.model_validate({"defaults": {"max_retries": 2}}), sleep=fake_sleep)
    m.register_model("a", flaky)
    result = await m.complete("hi")
    assert [a.outcome for a in result.attempts] == ["error", "success"]
    assert waits == [2.0]
    assert (m.get_stats()["retries"], m.get_stats()["fallbacks"]) == (1, 0)


async def test_non_retryable_errors_are_not_retried() -> None:
    m = LLMManager(LLMConfig.model_validate({"defaults": {"max_retries": 3, "retry_backoff": 0}}))
    fn = failing(RuntimeError("bug"))
    m.register_model("a", fn)
    with pytest.raises(AllModelsFailed):
        await m.complete("hi")
    assert len(fn.calls) == 1


async def test_open_breaker_skips_a_model_that_keeps_failing() -> None:
    m = LLMManager(LLMConfig.model_validate({"defaults": {"breaker_threshold": 2, "breaker_reset": 60}}))
    broken = failing(RuntimeError("down"))
    m.register_model("broken", broken, priority=2)
    m.register_model("backup", answer("backup"), priority=1)
    for _ in range(3):
        result = await m.complete("hi")
    assert len(broken.calls) == 2
    assert (result.attempts[0].outcome, result.attempts[0].error) == (
        "skipped", "circuit breaker open after repeated failures")


async def test_cost_strategy_orders_by_estimated_cost() -> None:
    m = manager(strategy="cost")
    m.register_model("pricey", answer("pricey"), priority=10, cost_per_1k_input=5, cost_per_1k_output=5)
    m.register_model("cheap", answer("cheap"), priority=1, cost_per_1k_input=1, cost_per_1k_output=1)
    assert (await m.complete("hi")).model_name == "cheap"


async def test_set_fallback_chain_replaces_the_computed_order() -> None:
    m = manager()
    m.register_model("a", answer("a"), priority=10)
    m.register_model("b", answer("b"), priority=1)
    m.set_fallback_chain(["b", "a"])
    assert (await m.complete("hi")).model_name == "b"
    with pytest.raises(ModelNotFound):
        m.set_fallback_chain(["zzz"])


async def test_unpriced_cloud_model_costs_none_not_zero(caplog: pytest.LogCaptureFixture) -> None:
    m = manager()
    m.register_model("mystery", answer(), source="cloud", cost_per_1k_input=None, cost_per_1k_output=None)
    result = await m.complete("hi")
    assert result.cost is None
    assert "no price known for model 'mystery'" in caplog.text


async def test_unpriced_local_model_costs_zero() -> None:
    m = manager()
    m.register_model("local", answer(), cost_per_1k_input=None, cost_per_1k_output=None)
    assert (await m.complete("hi")).cost == Decimal(0)


async def test_str_and_object_replies_and_async_functions_are_accepted() -> None:
    class Reply:
        content, input_tokens, output_tokens = "obj", 4, 2

    async def async_fn(messages: list[Message], **params: Any) -> Reply:
        return Reply()

    m = manager()
    m.register_model("text", lambda messages, **params: "plain", priority=2)
    m.register_model("obj", async_fn, priority=1)
    plain = await m.complete("hi")
    obj = await m.complete("hi", force_model="obj")
    assert (plain.content, plain.tokens) == ("plain", 0)
    assert (obj.content, obj.usage.input_tokens, obj.usage.output_tokens) == ("obj", 4, 2)


async def test_stats_add_up_exactly() -> None:
    m = manager()
    m.register_model("flaky", failing(RuntimeError("down")), priority=2, timeout=5)
    m.register_model("good", answer("ok", 100, 50), priority=1, cost_per_1k_input=1, cost_per_1k_output=2)
    for _ in range(3):
        await m.complete("hi")
    stats = m.get_stats()
    assert {k: stats[k] for k in ("calls", "successes", "failures", "timeouts", "fallbacks", "retries")} == {
        "calls": 3, "successes": 3, "failures": 0, "timeouts": 0, "fallbacks": 3, "retries": 0}
    assert (stats["input_tokens"], stats["output_tokens"], stats["total_tokens"]) == (300, 150, 450)
    assert stats["total_cost"] == Decimal("0.6")
    good = stats["by_model"]["good"]
    assert (good["calls"], good["successes"], good["input_tokens"], good["cost"]) == (3, 3, 300, Decimal("0.6"))
    assert good["avg_latency"] > 0
    flaky = stats["by_model"]["flaky"]
    assert (flaky["calls"], flaky["failures"], flaky["successes"]) == (3, 3, 0)


async def test_secrets_never_appear_in_reprs_stats_or_errors() -> None:
    secret = "sk-test-SECRET-123"
    spec = ModelSpec(name="gpt", provider="openai", api_key=SecretStr(secret), base_url="http://127.0.0.1:9/v1",
                     timeout=2)
    m = LLMManager(models=[spec], local_only=False)
    with pytest.raises(AllModelsFailed) as info:
        await m.complete("hi")
    visible = [repr(spec), str(spec), spec.model_dump_json(), repr(m), str(m.get_stats()), str(info.value),
               repr(info.value.attempts), repr(m.list_models())]
    assert not [text for text in visible if secret in text]
    await m.aclose()


def test_default_manager_is_built_once_and_can_be_replaced(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Any) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - {name: only, provider: callable}\n")
    monkeypatch.setenv("AMAOS_LLM_CONFIG", str(path))
    set_llm_manager(None)
    first = get_llm_manager()
    assert [s.name for s in first.list_models()] == ["only"]
    assert get_llm_manager() is first
    replacement = LLMManager(models=[])
    set_llm_manager(replacement)
    assert get_llm_manager() is replacement
    set_llm_manager(None)


def test_local_only_constructor_argument_overrides_the_file(tmp_path: Any) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("routing: {local_only: false}\nmodels: []\n")
    assert LLMManager.from_yaml(path, local_only=True).config.routing.local_only is True
    assert LLMManager.from_yaml(path).config.routing.local_only is False
