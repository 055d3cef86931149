"""Health checks and warm-ups that never generate, provider status, client init backoff, and cold
local servers given `load_timeout` to load their model."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager, Message
from tests.support.fakes import OllamaFake, OpenAIFake

pytestmark = pytest.mark.anyio


def manager(models: list[dict[str, Any]], routing: dict[str, Any] | None = None, **kw: Any) -> LLMManager:
    defaults = {"retry_jitter": 0, **kw.pop("defaults", {})}
    return LLMManager(LLMConfig.model_validate({"models": models, "defaults": defaults, "routing": routing or {}}),
                      **kw)


def ollama(fake: OllamaFake, **extra: Any) -> dict[str, Any]:
    return {"name": "llama", "provider": "ollama", "model": "test-model", "base_url": fake.url, **extra}


def generations(fake: Any) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and (r.body or {}).get("messages")]


async def echo(messages: list[Message], **params: Any) -> str:
    return "backup"


# --- health --------------------------------------------------------------------------------------
async def test_health_check_all_lists_models_and_never_generates(
    closed_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AMAOS_UNSET_KEY", raising=False)
    monkeypatch.setenv("AMAOS_SET_KEY", "key-123456789")
    with OllamaFake() as local, OpenAIFake() as cloud:
        models = [
            ollama(local),
            {"name": "down", "provider": "ollama", "model": "test-model", "base_url": closed_port},
            {"name": "cloud", "provider": "openai", "model": "test-model", "base_url": cloud.url,
             "api_key_env": "AMAOS_SET_KEY"},
            {"name": "unknown-model", "provider": "openai", "model": "nope", "base_url": cloud.url,
             "api_key_env": "AMAOS_SET_KEY"},
            {"name": "keyless", "provider": "openai", "base_url": cloud.url, "api_key_env": "AMAOS_UNSET_KEY"},
            {"name": "off", "provider": "ollama", "base_url": local.url, "enabled": False},
        ]
        async with manager(models) as m:
            m.register_model("fn", echo)
            health = await m.health_check_all()
            status = m.get_provider_status()
        assert health == {"llama": True, "down": False, "cloud": True, "unknown-model": False, "keyless": False,
                          "fn": True}
        assert [(r.method, r.path) for r in local.requests] == [("GET", "/api/tags")]
        assert [(r.method, r.path) for r in cloud.requests] == [("GET", "/v1/models")] * 2
        assert status["llama"]["healthy"] is True and status["down"]["healthy"] is False
        assert m.get_stats()["by_model"] == {}  # no send was made, no breaker touched
        assert m.get_model_info("down")["endpoints"][0]["breaker"]["state"] == "closed"


async def test_local_only_reports_cloud_models_unhealthy_without_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_SET_KEY", "key-123456789")
    with OpenAIFake() as cloud:
        models = [{"name": "cloud", "provider": "openai", "base_url": cloud.url, "api_key_env": "AMAOS_SET_KEY"}]
        async with manager(models, routing={"local_only": True}) as m:
            assert await m.health_check_all() == {"cloud": False}
        assert cloud.requests == []


# --- warm-up and cold loads ----------------------------------------------------------------------
async def test_warm_up_loads_ollama_without_generating_and_skips_warm_models() -> None:
    with OllamaFake() as fake:
        async with manager([ollama(fake)]) as m:
            assert await m.warm_up() == {"llama": True}
            assert await m.warm_up(["llama"]) == {"llama": True}  # warm now: no second request
        assert len(fake.requests) == 1
        load = fake.requests[0]
        assert (load.method, load.path, load.body["model"], load.body["messages"]) == (
            "POST", "/api/chat", "test-model", [])
        assert generations(fake) == []


async def test_a_cold_ollama_within_load_timeout_answers_instead_of_falling_back() -> None:
    with OllamaFake() as fake:
        fake.load_delay = 0.4
        m = manager([ollama(fake, timeout=0.2, load_timeout=3)], defaults={"max_retries": 0})
        m.register_model("backup", echo, source="cloud")
        async with m:
            first = await m.complete("hi")
            assert first.model_name == "llama"
            fake.delay = 0.3  # warm now: the plain timeout applies again
            second = await m.complete("again")
        assert second.model_name == "backup"
        assert [a.outcome for a in second.attempts] == ["timeout", "success"]
        assert m.get_stats()["by_model"]["llama"]["load_timeouts"] == 0


async def test_without_load_timeout_a_cold_server_costs_only_the_timeout() -> None:
    with OllamaFake() as fake:
        fake.load_delay = 0.4
        m = manager([ollama(fake, timeout=0.2)], defaults={"max_retries": 0})
        m.register_model("backup", echo, source="cloud")
        async with m:
            result = await m.complete("hi")
        assert [a.outcome for a in result.attempts] == ["timeout", "success"]


async def test_a_load_that_outlasts_load_timeout_is_a_model_load_error() -> None:
    with OllamaFake() as fake:
        fake.load_delay = 0.5
        m = manager([ollama(fake, timeout=5, load_timeout=0.15)], defaults={"max_retries": 2})
        m.register_model("backup", echo, source="cloud")
        async with m:
            result = await m.complete("hi")
        assert [a.outcome for a in result.attempts] == ["error", "success"]  # not re-sent
        assert (result.attempts[0].error or "").startswith("ModelLoadError: llama: the model did not load within 0.15")
        stats = m.get_stats()
        assert stats["by_model"]["llama"]["load_timeouts"] == 1 and stats["by_model"]["llama"]["timeouts"] == 0


async def test_a_long_idle_server_counts_as_cold_again() -> None:
    now = [0.0]
    with OllamaFake() as fake:
        m = manager([ollama(fake, timeout=0.2, load_timeout=3)], clock=lambda: now[0])
        async with m:
            await m.complete("hi")
            now[0] += 301  # past the idle limit: the server may have unloaded the model
            fake.unload()
            fake.load_delay = 0.4
            result = await m.complete("again")
        assert result.model_name == "llama"


# --- client init backoff -------------------------------------------------------------------------
async def test_a_model_that_fails_to_load_backs_off_before_trying_again(tmp_path: Any) -> None:
    now = [100.0]
    model = {"name": "emb", "provider": "embedded", "model_path": str(tmp_path / "missing.gguf")}
    m = manager([model], clock=lambda: now[0])
    m.register_model("backup", echo, source="cloud")
    async with m:
        first = await m.complete("hi")
        second = await m.complete("again")
        status = m.get_provider_status()["emb"]
        now[0] += 1.5
        third = await m.complete("later")
    assert [a.outcome for a in first.attempts] == ["error", "success"]
    assert "model file not found" in (first.attempts[0].error or "")
    assert [a.outcome for a in second.attempts] == ["skipped", "success"]
    assert "client failed to start" in (second.attempts[0].error or "")
    assert (status["client"], status["next_init_in"]) == ("init_failed", 1.0)
    assert [a.outcome for a in third.attempts] == ["error", "success"]  # tried again, backing off 2 s now
    assert m.get_provider_status()["emb"]["next_init_in"] == 2.0


async def test_reset_provider_clears_the_backoff(tmp_path: Any) -> None:
    m = manager([{"name": "emb", "provider": "embedded", "model_path": str(tmp_path / "x.gguf")}])
    async with m:
        with pytest.raises(AllModelsFailed):
            await m.complete("hi")
        await m.reset_provider("emb")
        assert m.get_provider_status()["emb"]["client"] == "unbuilt"


async def test_status_views_name_unknown_models() -> None:
    async with manager([]) as m:
        with pytest.raises(KeyError, match="nope"):
            m.get_model_info("nope")
        with pytest.raises(KeyError, match="nope"):
            await m.warm_up(["nope"])
        with anyio.fail_after(1):
            assert await m.health_check_all() == {}
