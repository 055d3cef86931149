"""Work over a stream of items: at most `concurrency` at a time, results in order, memory bounded.

    async with map_stream(items, fn, concurrency=16) as results:
        async for index, value in results:
            ...

`items` is any iterable or async iterable, consumed lazily: an item is taken only when a worker is
free and the window has room. With `ordered`, results come out in input order, so one that finishes
early waits in a reorder buffer for those before it. The window (`max_pending`, default 4 ×
`concurrency`) bounds the items taken but not yet handed out, running or waiting in the buffer: when
it is full, intake stops until the consumer takes the next result. A slow item therefore stalls
intake instead of growing memory, whatever the number of items.

The workers live in a task group that the `async with` opens and closes, never inside an async
generator: a generator suspended at `yield` inside a task group would let its tasks' failures and
cancellations land in whatever code the consumer runs at that moment (PEP 789), say half-way through
writing a record.

An async source (one with `aclose`, as an async generator has) is closed when the stream is left.
An exception raised by the items themselves (a bad line of an input file) stops intake there:
everything taken before it still runs and is handed out, then the iteration raises it. An exception
raised by `fn` is a bug: it cancels the rest and leaves the `async with` as itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

T = TypeVar("T")
R = TypeVar("R")

_MISSING: object = object()


def map_stream(
    items: Iterable[T] | AsyncIterable[T],
    fn: Callable[[T], Awaitable[R]],
    concurrency: int,
    *,
    ordered: bool = True,
    max_pending: int | None = None,
) -> MapStream[T, R]:
    """`fn(item)` for each item, `concurrency` at a time; see the module docstring."""
    return MapStream(items, fn, concurrency, ordered=ordered, max_pending=max_pending)


class MapStream(Generic[T, R]):
    """An async context manager that is, once entered, an async iterator of `(index, result)`.

    `index` counts items from 0 in the order they were taken. `pending` is the number of items
    taken and not yet handed out; `buffered` those of them that finished and wait for their turn.
    Both stay at or below `window`."""

    def __init__(
        self,
        items: Iterable[T] | AsyncIterable[T],
        fn: Callable[[T], Awaitable[R]],
        concurrency: int,
        *,
        ordered: bool = True,
        max_pending: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_pending is not None and max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.window = 4 * concurrency if max_pending is None else max_pending
        self.ordered = ordered
        self._fn = fn
        self._workers = min(concurrency, self.window)  # more could never all have an item
        self._source: Iterator[T] | None = None
        self._async_source: AsyncIterator[T] | None = None
        if isinstance(items, AsyncIterable):
            self._async_source = aiter(items)
        else:
            self._source = iter(items)
        self._lock: anyio.Lock | None = None  # async sources: made on entering, in the event loop
        self._done: dict[int, R] = {}  # ordered: finished results by index, until their turn
        self._queue: deque[tuple[int, R]] = deque()  # unordered: finished results, first come first out
        self._taken = 0  # items taken from the source; the next one gets this index
        self._emitted = 0  # results handed out; ordered, the index of the next one
        self._closed = False  # the source is exhausted (or raised): take no more
        self._error: Exception | None = None  # what the source raised, raised again after the items before it
        self._running = 0  # live workers
        self._ready: anyio.Event | None = None  # set for the consumer when it can move on
        self._room: anyio.Event | None = None  # set for the workers when the window has room again
        self._tg: TaskGroup | None = None
        self._entered = False

    @property
    def pending(self) -> int:
        return self._taken - self._emitted

    @property
    def buffered(self) -> int:
        return len(self._done) if self.ordered else len(self._queue)

    # -- the workers ------------------------------------------------------------------------------

    async def _work(self) -> None:
        fn, window = self._fn, self.window
        try:
            while True:
                if self._taken - self._emitted >= window:
                    await self._wait_for_room()
                    continue
                if self._closed:
                    return
                if self._source is not None:
                    # A plain iterator: taking an item never awaits, so no other worker can interleave.
                    try:
                        item = next(self._source)
                    except StopIteration:
                        self._closed = True
                        return
                    except Exception as exc:  # noqa: BLE001 - not swallowed: raised by the iteration, in its turn
                        self._stop_intake(exc)
                        return
                else:
                    assert self._lock is not None and self._async_source is not None
                    async with self._lock:
                        # Re-checked: the window or the source may have changed while this waited for the lock.
                        if self._closed or self._taken - self._emitted >= window:
                            continue
                        try:
                            item = await self._async_source.__anext__()
                        except StopAsyncIteration:
                            self._closed = True
                            return
                        except Exception as exc:  # noqa: BLE001 - not swallowed: raised by the iteration, in its turn
                            self._stop_intake(exc)
                            return
                index = self._taken
                self._taken = index + 1
                result = await fn(item)
                if self.ordered:
                    self._done[index] = result
                    if index != self._emitted:
                        continue  # the consumer waits for an earlier one: no need to wake it
                else:
                    self._queue.append((index, result))
                self._wake_consumer()
        finally:
            self._running -= 1
            if not self._running:
                self._wake_consumer()

    def _stop_intake(self, exc: Exception) -> None:
        self._closed = True
        self._error = exc

    async def _wait_for_room(self) -> None:
        if self._room is None:
            self._room = anyio.Event()
        await self._room.wait()

    def _wake_consumer(self) -> None:
        ready = self._ready
        if ready is not None:
            self._ready = None
            ready.set()

    # -- the consumer ------------------------------------------------------------------------------

    def __aiter__(self) -> MapStream[T, R]:
        if self._tg is None:
            raise RuntimeError("enter the stream first: `async with ... as results: async for index, r in results`")
        return self

    async def __anext__(self) -> tuple[int, R]:
        while True:
            if self.ordered:
                index = self._emitted
                result = self._done.pop(index, _MISSING)
                if result is not _MISSING:
                    self._handed_out()
                    return index, result  # type: ignore[return-value]
            elif self._queue:
                self._handed_out()
                return self._queue.popleft()
            if not self._running:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._ready = ready = anyio.Event()
            await ready.wait()

    def _handed_out(self) -> None:
        self._emitted += 1
        room = self._room
        if room is not None:
            self._room = None
            room.set()

    async def __aenter__(self) -> MapStream[T, R]:
        if self._entered:
            raise RuntimeError("a stream runs once")
        self._entered = True
        if self._async_source is not None:
            self._lock = anyio.Lock()  # an async generator refuses a second `__anext__` while one runs
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._running = self._workers  # counted now: the consumer must not see 0 before they start
        for _ in range(self._workers):
            tg.start_soon(self._work)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        # Left before the end (a `break`, an error in the consumer's code): take no more items and
        # cancel those in flight. After the end there is nothing left to cancel.
        self._closed = True
        self._tg.cancel_scope.cancel()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
                raise group.exceptions[0] from None  # a bug in `fn`, as itself rather than wrapped
            raise
        finally:
            await self._close_source()

    async def _close_source(self) -> None:
        """An async source left unfinished is closed now, its clean-up run here rather than whenever
        the garbage collector finds it (trio warns about that, and a file or a connection would wait)."""
        aclose = getattr(self._async_source, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):  # even when leaving because of a cancellation
                await aclose()
