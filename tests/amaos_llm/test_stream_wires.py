"""`manager.stream()` over every HTTP wire, through the real SDKs against the fakes: a stream cut
after its first chunk, under each `mid_stream` mode, with the exact chunks, resets, partial text,
attempts, stats and per-attempt usage; and a stream's usage and cost equal to the same request's
non-streamed ones, cache tokens included."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amaos_llm import LLMConfig, LLMManager, StreamInterrupted
from tests.amaos_llm.providers.wires import KEY, MODEL, WIRES, Wire
from tests.support.fakes import FakeServer

pytestmark = pytest.mark.anyio
HTTP_WIRES = [w for w in WIRES if w.name in ("openai", "anthropic", "google", "ollama")]
PRICE = {"cost_per_1k_input": "0.5", "cost_per_1k_output": "1.5", "cost_per_1k_cache_read": "0.05"}


def spec(wire: Wire, name: str, fake: FakeServer, priority: int) -> dict[str, Any]:
    fields = {"name": name, "provider": wire.name, "model": MODEL, "base_url": fake.url,
              "priority": priority, "source": "cloud", **PRICE}
    if wire.key_env:
        fields["api_key_env"] = "AMAOS_WIRE_KEY"
    return fields


def manager(wire: Wire, *fakes: FakeServer) -> LLMManager:
    models = [spec(wire, f"m{i}", fake, -i) for i, fake in enumerate(fakes)]
    return LLMManager(LLMConfig.model_validate({"models": models, "defaults": {"max_retries": 0}}))


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_WIRE_KEY", KEY)


def fakes(wire: Wire, request: pytest.FixtureRequest) -> tuple[FakeServer, FakeServer]:
    first = request.getfixturevalue(wire.fixture)
    return first, type(first)().start()


@pytest.mark.parametrize("wire", HTTP_WIRES, ids=lambda w: w.name)
@pytest.mark.parametrize("mode", ["fail", "restart", "continue"])
async def test_a_stream_cut_after_its_first_chunk_on_every_wire(wire: Wire, mode: str,
                                                                  request: pytest.FixtureRequest) -> None:
    first, second = fakes(wire, request)
    try:
        first.stream_fault, first.fault_after = "cut", 2
        chunks: list[Any] = []
        async with manager(wire, first, second) as m:
            if mode == "fail":
                with pytest.raises(StreamInterrupted) as caught:
                    async for chunk in m.stream("one two three four", mid_stream=mode):
                        chunks.append(chunk)
                err = caught.value
                assert err.partial_text == "".join(c.text for c in chunks) != ""
                assert [(a.model_name, a.outcome) for a in err.attempts] == [("m0", "error")]
                assert second.requests == [] and m.get_stats()["failures"] == 1
                return
            async for chunk in m.stream("one two three four", mid_stream=mode):
                chunks.append(chunk)
            stats = m.get_stats()
        result = chunks[-1].result
        kinds = [c.type for c in chunks]
        assert kinds[-1] == "final" and ("reset" in kinds) == (mode == "restart")
        after = chunks[kinds.index("reset") + 1:] if mode == "restart" else chunks
        assert result.content == "".join(c.text for c in after)
        assert [(a.model_name, a.outcome) for a in result.attempts] == [("m0", "error"), ("m1", "success")]
        if mode == "restart":
            assert result.content == "echo: one two three four"
        else:  # the second model got the partial answer to continue from
            sent = second.requests[-1].body
            assert "Continue" in str(sent) and result.content.startswith("echo: one")
        assert (stats["calls"], stats["successes"], stats["fallbacks"]) == (1, 1, 1)
        paid = [a for a in result.attempts if a.usage is not None]
        assert result.usage == sum((a.usage for a in paid[1:]), paid[0].usage)
        assert result.cost == sum((a.cost for a in paid), Decimal(0))
    finally:
        second.stop()


@pytest.mark.parametrize("wire", HTTP_WIRES, ids=lambda w: w.name)
async def test_streamed_usage_and_cost_equal_the_whole_replys_cache_tokens_included(
    wire: Wire, request: pytest.FixtureRequest
) -> None:
    fake = request.getfixturevalue(wire.fixture)
    if wire.name != "ollama":  # Ollama reports no cache counts
        fake.cache = (2, 0)
    async with manager(wire, fake) as m:
        whole = await m.complete("one two three four five")
        chunks = [c async for c in m.stream("one two three four five")]
    streamed = chunks[-1].result
    assert (streamed.content, streamed.usage, streamed.cost) == (whole.content, whole.usage, whole.cost)
    assert len([c for c in chunks if c.type == "text"]) >= 2
    if wire.name != "ollama":
        assert streamed.usage.cache_read_tokens == 2
