"""Streams: the attempt loop's chunks handed to the caller as they arrive.

A stream runs the same attempt loop as `chat()` (one loop: `LLMManager._serve`), in the caller's
own task. `ChunkStream` drives that coroutine step by step, as an async generator would: when
the loop has a chunk for the caller, it `await`s `emit(chunk)`, which suspends the whole
coroutine and hands the chunk out of `__anext__`; the next `__anext__` resumes it. Everything else
the coroutine awaits (sockets, sleeps) passes through to the event loop untouched, so cancel
scopes, timeouts and trio work as in any coroutine, and a non-streaming call pays nothing for it.

Timeouts never cover the caller: the first-token and between-chunk limits bound only the wait for
the provider's next piece, not the time the caller takes to ask for the next chunk.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from amaos_llm.errors import InvalidRequest, ProviderConnectionError, ProviderError, ProviderTimeout, StreamInterrupted
from amaos_llm.providers.base import Provider, ProviderChunk, ProviderReply, ProviderRequest, StreamUsage
from amaos_llm.sending import running_asyncio_loop, within
from amaos_llm.types import LLMResult, Message, Usage

if TYPE_CHECKING:
    from amaos_llm.call_state import CallState
    from amaos_llm.config import ModelSpec

log = logging.getLogger("amaos_llm")

ChunkType = Literal["text", "tool_call", "reset", "final"]
MidStream = Literal["fail", "restart", "continue"]
MID_STREAM_MODES = ("fail", "restart", "continue")
_NO_USAGE = StreamUsage(0, 0)
CONTINUE_INSTRUCTION = (
    "Your previous answer was cut off. Continue it exactly where it stopped, without repeating "
    "anything already written and without any preamble."
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a stream. text: a non-empty delta; tool_call: one whole `ToolCall`; reset: drop
    every chunk since the start or the last reset (the stream starts over on another try); final:
    the last chunk, `result` set, text empty."""

    type: ChunkType
    text: str = ""
    tool_call: Any = None
    result: LLMResult | None = None


class StreamCallbacks(Protocol):
    """Every method is optional; sync or async; called before the chunk is yielded. One that raises
    is logged and ignored."""

    def on_start(self, model: ModelSpec) -> Any: ...
    def on_token(self, text: str) -> Any: ...
    def on_tool_call(self, call: Any) -> Any: ...
    def on_reset(self, discarded_text: str) -> Any: ...
    def on_error(self, error: BaseException, will_retry: bool) -> Any: ...
    def on_end(self, result: LLMResult) -> Any: ...


# -- the driver -------------------------------------------------------------------------------


class _Emit:
    """Awaited by the attempt loop to hand a chunk to the caller: it suspends the coroutine up to
    the driver (`_Step`), which returns the chunk from `__anext__`."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: Chunk) -> None:
        self.chunk = chunk

    def __await__(self) -> Generator[Any, Any, None]:
        yield self


class _Watchdog:
    """One asyncio timeout for a whole streamed attempt, whose deadline the loop moves as chunks
    arrive (a float store, where a timeout per chunk cost ~4 µs). Its timer checks the deadline
    when it fires and arms again if it moved; while the caller holds a chunk (`paused`) it never
    fires, and the loop starts the gap anew when it gets the stream back."""

    __slots__ = ("_loop", "_gap", "deadline", "paused", "_cm", "_handle")

    def __init__(self, loop: Any, first: float, gap: float) -> None:
        self._loop, self._gap = loop, gap
        self.deadline = loop.time() + first
        self.paused = False
        self._cm: Any = None
        self._handle: Any = None

    async def __aenter__(self) -> _Watchdog:
        self._cm = sys.modules["asyncio"].timeout(None)
        await self._cm.__aenter__()
        self._handle = self._loop.call_at(self.deadline, self._check)
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        self._handle.cancel()
        return await self._cm.__aexit__(*exc)

    def _check(self) -> None:
        now = self._loop.time()
        if self.paused:
            self._handle = self._loop.call_at(now + self._gap, self._check)
        elif now < self.deadline:
            self._handle = self._loop.call_at(self.deadline, self._check)
        else:  # expired: the asyncio timeout cancels the task and raises TimeoutError at its exit
            self._cm.reschedule(now)


class _Abandoned(BaseException):
    """Thrown into a stream's loop when its caller closes it early: the loop unwinds as on a
    cancellation (the attempt is `cancelled`, the HTTP response closed)."""


class _Step:
    """Runs the loop's coroutine until it emits a chunk or finishes; passes whatever else it
    yields (the event loop's futures or traps) through, and what comes back in. With a `stream`,
    it is that stream's `__anext__`: the end becomes the final chunk, then StopAsyncIteration (an
    awaitable object, not a coroutine: one frame less on every chunk)."""

    __slots__ = ("_coro", "_throw", "_stream")

    def __init__(self, coro: Coroutine[Any, Any, Any], throw: BaseException | None = None,
                 stream: ChunkStream | None = None) -> None:
        self._coro, self._throw, self._stream = coro, throw, stream

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value, error, stream = self._coro, None, self._throw, self._stream
        while True:
            try:
                out = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as done:
                if stream is None:
                    return True, done.value
                stream._done, stream.result = True, done.value
                return Chunk("final", result=done.value)
            except BaseException:  # the loop ended by raising (an error, a cancellation): re-raised as it is
                if stream is not None:
                    stream._done = True
                raise
            value = error = None
            if type(out) is _Emit:
                return out.chunk if stream is not None else (False, out.chunk)
            try:
                value = yield out
            except BaseException as exc:  # a cancellation from the event loop: into the loop it goes
                error = exc


class _Ended:
    """`__anext__` of a finished stream."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, Any, Any]:
        raise StopAsyncIteration
        yield  # a generator: what `await` wants


_ENDED = _Ended()


class ChunkStream:
    """An async iterator of `Chunk`s and an async context manager; idle until iterated. `.result` is
    the `LLMResult` once the final chunk has been yielded. Closing it early (`aclose()`, leaving
    `async with`, a cancellation) stops the attempt at once and closes its HTTP response."""

    __slots__ = ("_start", "_coro", "_done", "result")

    def __init__(self, start: Callable[[], Coroutine[Any, Any, LLMResult]]) -> None:
        self._start = start
        self._coro: Coroutine[Any, Any, LLMResult] | None = None
        self._done = False
        self.result: LLMResult | None = None

    def __aiter__(self) -> ChunkStream:
        return self

    def __anext__(self) -> Awaitable[Chunk]:
        if self._done:
            return _ENDED  # type: ignore[return-value]
        if self._coro is None:
            self._coro = self._start()
        return _Step(self._coro, None, self)

    async def aclose(self) -> None:
        coro, self._coro = self._coro, None
        if self._done or coro is None:
            self._done = True
            if coro is not None:
                coro.close()
            return
        self._done = True
        try:
            await _Step(coro, _Abandoned())
        except _Abandoned:
            pass

    async def __aenter__(self) -> ChunkStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._coro is not None and not self._done:
            self._coro.close()  # never iterated to the end nor closed: at least no warning


async def emit(chunk: Chunk) -> None:
    await _Emit(chunk)


# -- one stream's state in the attempt loop ---------------------------------------------------


async def fire(callbacks: Sequence[Any], name: str, *args: Any) -> None:
    for obj in callbacks:
        method = getattr(obj, name, None)
        if method is None:
            continue
        try:
            out = method(*args)
            if inspect.isawaitable(out):
                await out
        except Exception:  # a callback's bug must not break the stream: logged, with its traceback
            log.exception("stream callback %s.%s raised; ignored", type(obj).__name__, name)


class StreamCall:
    """What one stream adds to a call: its callbacks and mid-stream mode, the text yielded since
    the last reset, and the failure waiting to be reported to `on_error`."""

    __slots__ = ("callbacks", "mid_stream", "first_token_timeout", "pieces", "tool_calls", "continued",
                 "pending_error", "attempts_usage", "interrupted")

    def __init__(self, callbacks: Sequence[Any], mid_stream: MidStream, first_token_timeout: float | None) -> None:
        self.callbacks = list(callbacks)
        self.mid_stream = mid_stream
        self.first_token_timeout = first_token_timeout
        self.pieces: list[str] = []  # the text yielded since the start or the last reset
        self.tool_calls: list[Any] = []
        self.continued = False  # a continue-mode resume is under way: requests carry the partial
        self.pending_error: BaseException | None = None
        self.interrupted: ProviderError | None = None  # the mid-stream failure restart/continue carried on from

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def started(self) -> bool:
        """Something was yielded since the last reset."""
        return bool(self.pieces or self.tool_calls)

    def messages(self, messages: list[Message], provider: str) -> list[Message]:
        """The request's messages: as given, or for a continue-mode resume the original ones plus an
        instruction to continue and the partial text as the assistant's."""
        if not self.continued:
            return messages
        partial = self.text.rstrip() if provider == "anthropic" else self.text  # it rejects trailing space
        return [*messages, Message(role="system", content=CONTINUE_INSTRUCTION),
                Message(role="assistant", content=partial)]

    async def start(self, spec: ModelSpec) -> None:
        if self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            await fire(self.callbacks, "on_error", error, True)
        await fire(self.callbacks, "on_start", spec)

    async def failed(self, error: BaseException) -> None:
        """The call ends in `error`: report the last attempt's failure as final."""
        if self.pending_error is not None:
            self.pending_error = None
        await fire(self.callbacks, "on_error", error, False)

    async def reset(self) -> None:
        discarded, self.pieces, self.tool_calls, self.continued = self.text, [], [], False
        await fire(self.callbacks, "on_reset", discarded)
        await emit(Chunk("reset"))

    async def after_failure(
        self, call: CallState, provider: str, request: ProviderRequest, error: ProviderError
    ) -> ProviderRequest:
        """After an attempt failed: before the first chunk, on as in `chat()`; after it, by
        `mid_stream`: fail raises `StreamInterrupted`; restart yields a reset chunk and goes on;
        continue (text only, no response_format) resumes from the partial text. The request for a same-model retry."""
        if self.started:
            if self.mid_stream == "fail":
                await self.failed(error)
                raise interrupted(call, "the stream was cut after its first chunk") from error
            self.interrupted = error
            # a continuation is text glued onto text: with calls or a schema to fit, start over instead
            if self.mid_stream == "continue" and not self.tool_calls and call.schema is None:
                self.continued = True
                return replace(request, messages=self.messages(call.messages, provider))
            await self.reset()
            request = replace(request, messages=call.messages)
        self.pending_error = error
        return request

    async def send(self, provider: Provider, request: ProviderRequest, first: float, gap: float) -> ProviderReply:
        """Stream one attempt to the caller: its first text or tool call within `first` seconds,
        then each next piece within `gap`. The reply gathered from the pieces of this attempt (the
        text of a continue-mode resume is this attempt's continuation only). A failure carries
        what usage the wire had reported as `error.usage`."""
        pieces = self.pieces  # the stream's text since the last reset; this attempt's starts here
        start = len(pieces)
        calls: list[Any] = []
        usage: Any = None  # the wire's latest report (StreamUsage)
        finish: str | None = None
        model: str | None = None
        source = provider.stream(request)
        waiting = first
        loop = running_asyncio_loop()
        # asyncio: one timeout for the attempt, its deadline moved per chunk (a float, no timer work);
        # trio: anyio's scope around each piece
        watch = None if loop is None else _Watchdog(loop, first, gap)
        callbacks = self.callbacks
        token_hooks = [h for h in (getattr(c, "on_token", None) for c in callbacks) if h is not None]
        try:
            async with watch if watch is not None else nullcontext():  # type: ignore[attr-defined]
                while True:
                    try:
                        if watch is None:
                            chunk: ProviderChunk = await within(source.__anext__(), waiting, provider)
                        else:
                            chunk = await source.__anext__()
                    except StopAsyncIteration:
                        break
                    except ProviderError as exc:
                        exc.usage = usage  # type: ignore[attr-defined]
                        raise
                    except TimeoutError:
                        raise  # the watchdog's, or the provider's own: a ProviderTimeout below
                    except Exception as exc:  # an SDK failure no mapping knows: this attempt failed, as in send()
                        error = ProviderError(provider.redact(f"{type(exc).__name__}: {exc}")[:300])
                        error.usage = usage  # type: ignore[attr-defined]
                        raise error from exc
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.finish_reason is not None:
                        finish, model = chunk.finish_reason, chunk.model
                    text, call = chunk.text, chunk.tool_call
                    if not (text or call is not None):  # usage or the end: the gap starts again
                        if watch is not None:
                            watch.deadline = loop.time() + waiting  # type: ignore[union-attr]
                        continue
                    waiting = gap
                    if watch is not None:
                        watch.paused = True  # the caller's time between chunks is not the model's
                    if text:
                        pieces.append(text)
                        for hook in token_hooks:  # inline, not `fire`: this runs for every chunk
                            try:
                                out = hook(text)
                                if out is not None and inspect.isawaitable(out):
                                    await out
                            except Exception:  # a callback's bug must not break the stream
                                log.exception("stream callback %r raised; ignored", hook)
                        await _Emit(Chunk("text", text=text))
                    if call is not None:
                        calls.append(call)
                        self.tool_calls.append(call)
                        if callbacks:
                            await fire(callbacks, "on_tool_call", call)
                        await _Emit(Chunk("tool_call", tool_call=call))
                    if watch is not None:  # the caller asked for more: the gap starts now
                        watch.paused = False
                        watch.deadline = loop.time() + gap  # type: ignore[union-attr]
        except TimeoutError:
            error = ProviderTimeout(f"no stream chunk within {waiting:g} s")
            error.usage = usage  # type: ignore[attr-defined]
            raise error from None
        finally:
            await source.aclose()  # type: ignore[attr-defined]  # at once: the HTTP response goes with it
        if finish is None:
            error = ProviderConnectionError(f"{provider.spec.provider}: the stream ended without its end marker",
                                            connected=True)
            error.usage = usage  # type: ignore[attr-defined]
            raise error
        u = usage or _NO_USAGE
        return ProviderReply("".join(pieces[start:]), u.input_tokens, u.output_tokens, finish, model, tuple(calls),
                             u.cache_read_tokens, u.cache_write_tokens)


def check_mid_stream(value: str | None, default: MidStream) -> MidStream:
    if value is None:
        return default
    if value not in MID_STREAM_MODES:
        raise InvalidRequest(f"mid_stream: must be one of {', '.join(MID_STREAM_MODES)}, got {value!r}")
    return value  # type: ignore[return-value]


def check_first_token_timeout(value: float | None) -> float | None:
    if value is not None and (type(value) not in (int, float) or not value > 0):
        raise InvalidRequest(f"first_token_timeout: must be a number of seconds > 0, got {value!r}")
    return value


def interrupted(call: CallState, reason: str) -> StreamInterrupted:
    """The error for a stream cut after its first chunk, with what it had yielded and cost."""
    stream = call.stream
    assert stream is not None
    usage, cost = stream_usage_cost(call.attempts)
    last = next((a.model_name for a in reversed(call.attempts) if a.outcome != "skipped"), None)
    return StreamInterrupted(f"{reason}: {stream.interrupted or ''}", partial_text=stream.text, model_name=last,
                             attempts=call.attempts, usage=usage, cost=cost)


def stream_usage_cost(attempts: Sequence[Any]) -> tuple[Usage | None, Decimal | None]:
    """Usage and cost summed over the attempts that reported usage (None when none did)."""
    usage: Usage | None = None
    cost: Decimal | None = None
    for attempt in attempts:
        if attempt.usage is not None:
            usage = attempt.usage if usage is None else usage + attempt.usage
            if attempt.cost is not None:
                cost = attempt.cost if cost is None else cost + attempt.cost
    return usage, cost

