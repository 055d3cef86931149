"""The embedded provider streaming with the real SmolLM2-135M model, in-process: deltas as llama.cpp
generates them, usage as a whole reply's, structured output by grammar, and a consumer that stops
reading stops the generation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import pytest

from amaos_llm.config import ModelSpec
from amaos_llm.errors import ContextWindowExceeded
from amaos_llm.providers import embedded
from amaos_llm.providers.base import ProviderChunk, ProviderRequest
from amaos_llm.providers.embedded import EmbeddedProvider
from amaos_llm.tools import as_tools
from amaos_llm.types import Message

pytestmark = pytest.mark.anyio


@pytest.fixture
async def smol() -> AsyncIterator[EmbeddedProvider]:
    p = EmbeddedProvider(ModelSpec(name="smol", provider="embedded", n_ctx=1024, n_threads=2))
    yield p
    await p.aclose()


def ask(text: str, max_tokens: int = 12, **kwargs: object) -> ProviderRequest:
    return ProviderRequest(messages=[Message(role="user", content=text)], model="smol", temperature=0.0,
                           max_tokens=max_tokens, seed=7, **kwargs)  # type: ignore[arg-type]


async def test_a_stream_is_several_deltas_with_the_whole_reply_usage(smol: EmbeddedProvider) -> None:
    whole = await smol.complete(ask("Name three colours."))
    chunks: list[ProviderChunk] = [c async for c in smol.stream(ask("Name three colours."))]
    texts = [c.text for c in chunks if c.text]
    last = chunks[-1]
    assert len(texts) >= 2 and "".join(texts) == whole.content
    assert last.usage is not None and (last.usage.input_tokens, last.usage.output_tokens) == (
        whole.input_tokens, whole.output_tokens)
    assert whole.input_tokens > 0 and whole.output_tokens > 0
    assert last.finish_reason in ("stop", "length")


async def test_response_format_gives_json_that_fits_the_schema(smol: EmbeddedProvider) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}
    chunks = [c async for c in smol.stream(ask("Name a city as JSON.", max_tokens=40, response_format=schema))]
    value = json.loads("".join(c.text for c in chunks))
    assert list(value) == ["city"] and isinstance(value["city"], str)


async def test_breaking_out_of_a_stream_stops_the_generation(
    smol: EmbeddedProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []  # every chunk llama.cpp hands to the callback
    real = embedded._Generation._on_chunk

    def counting(self: embedded._Generation, chunk: dict[str, object]) -> bool:
        seen.append(chunk)
        return real(self, chunk)

    monkeypatch.setattr(embedded._Generation, "_on_chunk", counting)
    stream = smol.stream(ask("Count from one to two hundred in words.", max_tokens=400))
    pieces = 0
    async for chunk in stream:
        pieces += bool(chunk.text)
        if pieces == 3:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    at_close = len(seen)
    await anyio.sleep(0.5)
    assert len(seen) == at_close < 10  # stopped within a token or two, not 400


async def test_a_prompt_over_the_context_fails_the_stream_as_a_context_window_error(smol: EmbeddedProvider) -> None:
    with pytest.raises(ContextWindowExceeded, match="^embedded: "):
        _ = [c async for c in smol.stream(ask("word " * 1500))]


async def test_tools_are_accepted_by_llama_cpp(smol: EmbeddedProvider) -> None:
    """llama.cpp takes them through the model's jinja chat template; SmolLM2's template has no tool
    section (the prompt is the same size with tools), so whether a model calls tools is its template's
    business: here the request is accepted and the stream ends normally."""

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    chunks = [c async for c in smol.stream(ask("What is 2 plus 3?", max_tokens=8, tools=as_tools([add])))]
    assert chunks[-1].finish_reason in ("stop", "length", "tool_calls")
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens > 0
