"""`manager.stream()`: chunks as they come through the one attempt loop; mid-stream failures by
`mid_stream` (fail, restart, continue); first-token timeouts; callbacks; abandoning; stats."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from amaos_llm import (
    AllModelsFailed,
    InvalidRequest,
    LLMConfig,
    LLMManager,
    Message,
    ServerError,
    StreamInterrupted,
)
from amaos_llm.streaming import Chunk

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)  # the stream driver passes each event loop's own traps through


def manager(routing: dict[str, Any] | None = None, **defaults: Any) -> LLMManager:
    defaults = {"retry_jitter": 0, "retry_backoff": 0, "max_retries": 0, **defaults}
    return LLMManager(LLMConfig.model_validate({"defaults": defaults, "routing": routing or {}}))


def pieces(*parts: str, fail_after: int | None = None, stall: float = 0.0, first_delay: float = 0.0) -> Any:
    """A callable model streaming `parts`; with `fail_after`, a ServerError after that many."""
    seen: list[list[Message]] = []

    async def fn(messages: list[Message], **params: Any) -> AsyncIterator[str]:
        seen.append(messages)
        if first_delay:
            await anyio.sleep(first_delay)
        for i, part in enumerate(parts):
            if fail_after is not None and i == fail_after:
                raise ServerError("cut mid-stream")
            if stall and i:
                await anyio.sleep(stall)
            yield part

    fn.seen = seen  # type: ignore[attr-defined]
    return fn


async def collect(stream: Any) -> list[Chunk]:
    return [chunk async for chunk in stream]


def shape(chunks: list[Chunk]) -> list[tuple[str, str]]:
    return [(c.type, c.text) for c in chunks]


async def test_chunks_arrive_in_order_and_end_with_the_result() -> None:
    m = manager()
    m.register_model("a", pieces("Hel", "lo", " world"))
    stream = m.stream("hi")
    chunks = await collect(stream)
    assert shape(chunks) == [("text", "Hel"), ("text", "lo"), ("text", " world"), ("final", "")]
    result = chunks[-1].result
    assert result is stream.result and result is not None
    assert (result.content, result.model_name) == ("Hello world", "a")
    stats = m.get_stats()
    assert (stats["calls"], stats["successes"], stats["by_model"]["a"]["calls"]) == (1, 1, 1)


async def test_a_stream_is_idle_until_iterated() -> None:
    m = manager()
    fn = pieces("x")
    m.register_model("a", fn)
    stream = m.stream("hi")
    assert fn.seen == [] and m.get_stats()["calls"] == 0
    await stream.aclose()
    assert fn.seen == [] and m.get_stats()["calls"] == 0


async def test_before_the_first_chunk_a_failure_falls_back_as_in_chat() -> None:
    m = manager()
    m.register_model("a", pieces("never", fail_after=0), priority=2)
    m.register_model("b", pieces("from ", "b"), priority=1)
    chunks = await collect(m.stream("hi"))
    assert shape(chunks) == [("text", "from "), ("text", "b"), ("final", "")]
    assert [(a.model_name, a.outcome) for a in chunks[-1].result.attempts] == [("a", "error"), ("b", "success")]


async def test_fail_mode_raises_stream_interrupted_with_the_partial_text() -> None:
    m = manager()
    m.register_model("a", pieces("one ", "two ", "three", fail_after=2), priority=2)
    m.register_model("b", pieces("b"), priority=1)
    seen: list[Chunk] = []
    with pytest.raises(StreamInterrupted) as caught:
        async for chunk in m.stream("hi"):
            seen.append(chunk)
    err = caught.value
    assert shape(seen) == [("text", "one "), ("text", "two ")]
    assert (err.partial_text, err.model_name) == ("one two ", "a")
    assert isinstance(err.__cause__, ServerError)
    assert [(a.model_name, a.outcome) for a in err.attempts] == [("a", "error")]  # no fallback
    assert m.get_stats()["failures"] == 1


async def test_restart_mode_resets_then_falls_back() -> None:
    m = manager()
    m.register_model("a", pieces("one ", "two ", "three", fail_after=2), priority=2)
    m.register_model("b", pieces("from ", "b"), priority=1)
    chunks = await collect(m.stream("hi", mid_stream="restart"))
    assert shape(chunks) == [("text", "one "), ("text", "two "), ("reset", ""), ("text", "from "), ("text", "b"),
                             ("final", "")]
    assert chunks[-1].result.content == "from b"


async def test_continue_mode_resumes_from_the_partial_text() -> None:
    m = manager(routing={"mid_stream": "continue"})
    m.register_model("a", pieces("one ", "two ", "three", fail_after=2), priority=2)
    b = pieces("three")
    m.register_model("b", b, priority=1)
    chunks = await collect(m.stream("count", system_prompt="be brief"))
    assert shape(chunks) == [("text", "one "), ("text", "two "), ("text", "three"), ("final", "")]
    assert chunks[-1].result.content == "one two three"
    sent = b.seen[0]
    assert [(msg.role, msg.content) for msg in sent[:2]] == [("system", "be brief"), ("user", "count")]
    assert sent[2].role == "system" and "Continue" in sent[2].content
    assert (sent[3].role, sent[3].content) == ("assistant", "one two ")


async def test_restart_running_out_of_models_is_stream_interrupted() -> None:
    m = manager()
    m.register_model("a", pieces("one ", "two", fail_after=1))
    with pytest.raises(StreamInterrupted) as caught:
        await collect(m.stream("hi", mid_stream="restart"))
    assert caught.value.partial_text == ""  # reset since


async def test_first_token_timeout_moves_on_and_gaps_use_timeout() -> None:
    m = manager(timeout=0.5)
    m.register_model("slow-start", pieces("late", first_delay=0.4), priority=2)
    m.register_model("b", pieces("x ", "y", stall=0.2), priority=1)
    chunks = await collect(m.stream("hi", first_token_timeout=0.1))
    assert chunks[-1].result.model_name == "b"
    assert [(a.model_name, a.outcome) for a in chunks[-1].result.attempts] == [("slow-start", "timeout"),
                                                                              ("b", "success")]


async def test_callbacks_see_every_step_and_a_raising_one_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    events: list[tuple[str, Any]] = []

    class Recorder:
        def on_start(self, model: Any) -> None:
            events.append(("start", model.name))

        async def on_token(self, text: str) -> None:
            events.append(("token", text))

        def on_reset(self, discarded: str) -> None:
            events.append(("reset", discarded))

        def on_error(self, error: BaseException, will_retry: bool) -> None:
            events.append(("error", will_retry))

        def on_end(self, result: Any) -> None:
            events.append(("end", result.content))

    class Broken:
        def on_token(self, text: str) -> None:
            raise RuntimeError("callback bug")

    m = manager()
    m.register_model("a", pieces("one ", "two", fail_after=1), priority=2)
    m.register_model("b", pieces("b"), priority=1)
    chunks = await collect(m.stream("hi", mid_stream="restart", callbacks=[Recorder(), Broken()]))
    assert chunks[-1].result.content == "b"
    assert events == [("start", "a"), ("token", "one "), ("reset", "one "), ("error", True), ("start", "b"),
                      ("token", "b"), ("end", "b")]
    assert "callback bug" in caplog.text


async def test_on_error_reports_the_last_failure_as_final() -> None:
    errors: list[bool] = []

    class Recorder:
        def on_error(self, error: BaseException, will_retry: bool) -> None:
            errors.append(will_retry)

    m = manager()
    m.register_model("a", pieces("x", fail_after=0))
    with pytest.raises(AllModelsFailed):
        await collect(m.stream("hi", callbacks=[Recorder()]))
    assert errors == [False]


async def test_abandoning_a_stream_stops_its_source_and_counts_cancelled() -> None:
    closed: list[bool] = []

    async def endless(messages: list[Message], **params: Any) -> AsyncIterator[str]:
        try:
            while True:
                yield "tick "
                await anyio.sleep(0)
        finally:
            closed.append(True)

    m = manager()
    m.register_model("a", endless)
    async with m.stream("hi") as stream:
        async for chunk in stream:
            if chunk.type == "text":
                break
    assert closed == [True]
    stats = m.get_stats()
    assert (stats["calls"], stats["cancelled"], stats["by_model"]["a"]["cancelled"]) == (1, 1, 1)


async def test_a_cancel_scope_around_a_stream_cancels_it_cleanly() -> None:
    m = manager(timeout=30)
    m.register_model("a", pieces("a", "b", stall=5))
    got: list[Chunk] = []
    with anyio.move_on_after(0.2):
        async for chunk in m.stream("hi"):
            got.append(chunk)
    assert shape(got) == [("text", "a")]
    assert m.get_stats()["cancelled"] == 1


async def test_the_consumer_being_slow_does_not_time_the_model_out() -> None:
    m = manager(timeout=0.2)
    m.register_model("a", pieces("a", "b", "c"))
    texts = []
    async for chunk in m.stream("hi"):
        texts.append(chunk.text)
        await anyio.sleep(0.3)  # longer than the gap timeout, on the caller's side
    assert "".join(texts) == "abc"


async def test_bad_stream_arguments_are_invalid_requests() -> None:
    m = manager()
    with pytest.raises(InvalidRequest, match="mid_stream"):
        m.stream("hi", mid_stream="resume")
    with pytest.raises(InvalidRequest, match="first_token_timeout"):
        m.stream("hi", first_token_timeout=0)


async def test_chat_stream_is_the_spoon_name() -> None:
    m = manager()
    m.register_model("a", pieces("x"))
    chunks = await collect(m.chat_stream([{"role": "user", "content": "hi"}], "a"))
    assert chunks[-1].result.content == "x"


async def test_streamed_usage_equals_the_non_streamed_one() -> None:
    async def counted(messages: list[Message], **params: Any) -> dict[str, Any]:
        return {"content": "abc", "input_tokens": 7, "output_tokens": 3}

    m = manager()
    m.register_model("a", counted, cost_per_1k_input=1, cost_per_1k_output=2)
    plain = await m.complete("hi")
    streamed = (await collect(m.stream("hi")))[-1].result
    assert (streamed.usage, streamed.cost, streamed.content) == (plain.usage, plain.cost, plain.content)
