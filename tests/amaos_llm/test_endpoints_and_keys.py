"""Several URLs per model (targets with their own breakers), both retry strategies, API key
rotation, feature fallback: each over the real SDK wire against the loopback fakes."""

from __future__ import annotations

from typing import Any

import pytest

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager, Message
from tests.support.fakes import GoogleFake, OpenAIFake

pytestmark = pytest.mark.anyio


async def no_sleep(seconds: float) -> None:
    waits.append(seconds)


waits: list[float] = []


def manager(models: list[dict[str, Any]], routing: dict[str, Any] | None = None, **defaults: Any) -> LLMManager:
    waits.clear()
    defaults = {"retry_jitter": 0, **defaults}
    config = LLMConfig.model_validate({"models": models, "defaults": defaults, "routing": routing or {}})
    return LLMManager(config, sleep=no_sleep)


def compat(name: str, *urls: str, **extra: Any) -> dict[str, Any]:
    base_url: Any = list(urls) if len(urls) > 1 else urls[0]
    return {"name": name, "provider": "openai_compatible", "model": "test-model", "base_url": base_url,
            "source": "cloud", **extra}


def trail(result: Any) -> list[tuple[str, str, str | None]]:
    return [(a.model_name, a.outcome, a.endpoint) for a in result.attempts]


# --- endpoints -----------------------------------------------------------------------------------
async def test_model_first_tries_every_url_of_a_model_before_the_next(closed_port: str) -> None:
    with OpenAIFake() as good, OpenAIFake() as other:
        m = manager([compat("a", closed_port + "/v1", good.url), compat("b", other.url)],
                    routing={"enable_fallback": False})
        async with m:
            result = await m.complete("hi")
        assert result.model_name == "a" and result.content == "echo: hi"
        assert trail(result) == [("a", "error", closed_port + "/v1"), ("a", "success", good.url)]
        assert "connection to" in (result.attempts[0].error or "")
        stats = m.get_stats()
        assert (stats["fallbacks"], stats["retries"]) == (0, 0)  # a URL move is neither
        assert other.requests == []


async def test_endpoint_first_tries_each_models_first_url_then_the_second(closed_port: str) -> None:
    with OpenAIFake() as a2, OpenAIFake() as b1:
        b1.fail(400)
        m = manager([compat("a", closed_port + "/v1", a2.url), compat("b", b1.url)],
                    routing={"retry_strategy": "endpoint_first"})
        async with m:
            result = await m.complete("hi")
        assert trail(result) == [("a", "error", closed_port + "/v1"), ("b", "error", b1.url), ("a", "success", a2.url)]
        assert m.get_stats()["fallbacks"] == 2


async def test_each_url_has_its_own_breaker(closed_port: str) -> None:
    with OpenAIFake() as good:
        m = manager([compat("a", closed_port + "/v1", good.url)], breaker_threshold=1)
        async with m:
            await m.complete("one")
            result = await m.complete("two")
            info = m.get_model_info("a")
        assert trail(result) == [("a", "skipped", closed_port + "/v1"), ("a", "success", good.url)]
        assert "circuit breaker open" in (result.attempts[0].error or "")
        assert [e["breaker"]["state"] for e in info["endpoints"]] == ["open", "closed"]
        assert info["available"] is True and info["endpoints"][1]["ewma_latency"] > 0
        assert m.get_stats()["by_model"]["a"]["breaker_opens"] == 1
        m.reset_circuit_breaker("a")
        assert m.get_model_info("a")["endpoints"][0]["breaker"]["state"] == "closed"


async def test_a_refused_url_is_not_retried_but_a_cut_reply_is(closed_port: str) -> None:
    with OpenAIFake() as cut:
        cut.reply_fault = "hang_up"
        m = manager([compat("a", closed_port + "/v1", cut.url)], max_retries=1)
        async with m:
            with pytest.raises(AllModelsFailed):
                await m.complete("hi")
        # refused: once (connect failures are not re-sent); the request that went out: sent twice
        assert len(cut.requests) == 2 and m.get_stats()["retries"] == 1


# --- keys ----------------------------------------------------------------------------------------
def bearer(fake: OpenAIFake, i: int) -> str:
    return fake.requests[i].headers["authorization"]


async def test_a_rejected_key_rotates_to_the_next_at_once_and_stays_rotated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AMAOS_K1", "key-one-1234")
    monkeypatch.setenv("AMAOS_K2", "key-two-1234")
    with OpenAIFake() as fake:
        fake.fail(401, times=1)
        m = manager([compat("a", fake.url, api_key_env=["AMAOS_K1", "AMAOS_K2"])])
        async with m:
            first = await m.complete("hi")
            second = await m.complete("again")
            status = m.get_provider_status()["a"]
        assert [(a.outcome, a.key_env) for a in first.attempts] == [("error", "AMAOS_K1"), ("success", "AMAOS_K2")]
        assert [(a.outcome, a.key_env) for a in second.attempts] == [("success", "AMAOS_K2")]  # sticky
        assert [bearer(fake, i) for i in range(3)] == ["Bearer key-one-1234", "Bearer key-two-1234"] * 1 + [
            "Bearer key-two-1234"]
        assert status["keys"] == {"AMAOS_K1": "rejected", "AMAOS_K2": "ok"}
        assert waits == [] and m.get_stats()["key_rotations"] == 1 and m.get_stats()["retries"] == 0
        for value in ("key-one-1234", "key-two-1234"):
            assert value not in repr(status) and value not in repr(first)
        await m.reset_provider("a")
        assert m.get_provider_status()["a"]["keys"] == {"AMAOS_K1": "ok", "AMAOS_K2": "ok"}


async def test_a_429_cools_that_key_only_and_resends_with_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_K1", "key-one-1234")
    monkeypatch.setenv("AMAOS_K2", "key-two-1234")
    with OpenAIFake() as fake:
        fake.fail(429, times=1, retry_after="30")
        m = manager([compat("a", fake.url, api_key_env=["AMAOS_K1", "AMAOS_K2"])])
        async with m:
            result = await m.complete("hi")
            again = await m.complete("again")  # the target's window did not open: one key still works
        assert [a.key_env for a in result.attempts] == ["AMAOS_K1", "AMAOS_K2"] and waits == []
        assert [a.outcome for a in again.attempts] == ["success"]
        assert m.get_provider_status()["a"]["keys"]["AMAOS_K1"] == "cooling"


async def test_with_every_key_rejected_the_model_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_K1", "key-one-1234")
    monkeypatch.setenv("AMAOS_K2", "key-two-1234")
    with OpenAIFake() as fake, OpenAIFake() as backup:
        fake.fail(403)
        shared = ["AMAOS_K1", "AMAOS_K2"]
        m = manager([compat("a", fake.url, api_key_env=shared, priority=2),
                     compat("twin", fake.url, api_key_env="AMAOS_K1", priority=1), compat("b", backup.url)])
        async with m:
            first = await m.complete("hi")
            second = await m.complete("again")
        assert [(a.model_name, a.outcome) for a in first.attempts] == [
            ("a", "error"), ("a", "error"), ("twin", "skipped"), ("b", "success")]
        assert "API key rejected: AMAOS_K1" in (first.attempts[2].error or "")  # marked per variable
        assert [(a.model_name, a.outcome) for a in second.attempts] == [
            ("a", "skipped"), ("twin", "skipped"), ("b", "success")]
        assert len(fake.requests) == 2


# --- feature fallback ----------------------------------------------------------------------------
UNSUPPORTED_SEED = {"param": "seed", "code": "unsupported_parameter"}


async def test_an_unsupported_parameter_is_dropped_once_with_a_warning() -> None:
    with OpenAIFake() as fake:
        fake.fail(400, times=1, message="Unsupported parameter: 'seed'")
        fake.error_fields = UNSUPPORTED_SEED
        m = manager([compat("a", fake.url, seed=7)], feature_fallback=True)
        async with m:
            result = await m.complete("hi")
        assert [r.body.get("seed") for r in fake.requests] == [7, None]
        assert result.warnings == ["a: re-sent without 'seed', which it does not support"]
        assert m.get_stats()["feature_fallbacks"] == 1 and m.get_stats()["retries"] == 0


async def test_feature_fallback_is_opt_in_and_reads_no_prose() -> None:
    with OpenAIFake() as fake:
        fake.fail(400, message="seed is not supported by this model")  # only the text says so
        m = manager([compat("a", fake.url, seed=7)], feature_fallback=True)
        async with m:
            with pytest.raises(AllModelsFailed):
                await m.complete("hi")
        fake.error_fields = UNSUPPORTED_SEED
        m = manager([compat("a", fake.url, seed=7)])  # feature_fallback: false (the default)
        async with m:
            with pytest.raises(AllModelsFailed):
                await m.complete("hi")
        assert len(fake.requests) == 2


async def test_googles_field_violation_names_the_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_API_KEY", "g-key-12345678")
    with GoogleFake() as fake:
        fake.models = ["gemini-test"]
        fake.fail(400, times=1)
        fake.error_fields = {"details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                          "fieldViolations": [{"field": "generation_config.seed",
                                                               "description": "not supported"}]}]}
        m = manager([{"name": "g", "provider": "google", "model": "gemini-test", "base_url": fake.url, "seed": 3}],
                    feature_fallback=True)
        async with m:
            result = await m.complete("hi")
        seeds = [(r.body.get("generationConfig") or {}).get("seed") for r in fake.requests]
        assert seeds == [3, None] and result.warnings


async def test_messages_reach_every_url_unchanged(closed_port: str) -> None:
    with OpenAIFake() as fake:
        m = manager([compat("a", closed_port + "/v1", fake.url)])
        async with m:
            await m.chat([Message(role="system", content="be brief"), {"role": "user", "content": "hi"}])
        assert fake.requests[0].body["messages"] == [{"role": "system", "content": "be brief"},
                                                     {"role": "user", "content": "hi"}]


async def test_ollama_names_a_missing_capability_for_feature_fallback_to_drop() -> None:
    from amaos_llm import BadRequestError, Tool
    from amaos_llm.config import ModelSpec
    from amaos_llm.providers.base import ProviderRequest
    from amaos_llm.providers.ollama import OllamaProvider
    from amaos_llm.sending import without_unsupported
    from tests.support.fakes import OllamaFake

    tool = Tool(name="lookup", description="find", parameters={"type": "object", "properties": {}})
    with OllamaFake() as fake:
        fake.capabilities = ["completion"]
        provider = OllamaProvider(ModelSpec(name="o", provider="ollama", model="test-model", base_url=fake.url))
        request = ProviderRequest(messages=[Message(role="user", content="hi")], model="test-model",
                                  temperature=0, max_tokens=5, tools=(tool,))
        with pytest.raises(BadRequestError) as caught:
            await provider.complete(request)
        assert caught.value.unsupported == "tools" and "capabilities: completion" in str(caught.value)
        smaller = without_unsupported(request, "tools")
        assert smaller is not None and smaller.tools == ()
        reply = await provider.complete(smaller)
        await provider.complete(smaller)
        await provider.aclose()
    assert reply.content == "echo: hi"
    assert [r.path for r in fake.requests].count("/api/show") == 1  # asked once, then known
    assert not fake.requests[-1].body.get("tools")  # the SDK sends an empty list
