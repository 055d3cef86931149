"""Events for observers of an orchestrator: progress bars, logs, tracing.

A listener is a plain function called synchronously, in the run's task, as things happen; it must
be quick and must not raise (an exception from a listener propagates into the run).
`EventBus.stream()` turns the events into an async iterator for observers that want one. When
nobody listens, no event object is built.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

if TYPE_CHECKING:
    from graphs.results import RunResult
    from nodes import ResultMessage

# token / stream_reset: a streaming node's text as it arrives, and its "start over" (a fallback
# after the first chunk, under mid_stream: restart)
EventKind = Literal["node_started", "node_finished", "run_finished", "token", "stream_reset"]


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    run_id: str
    node_id: str | None = None
    result: ResultMessage | None = None  # node_finished
    run: RunResult | None = None  # run_finished
    task_id: str | None = None  # token, stream_reset
    text: str = ""  # token

    @property
    def cost(self) -> Decimal:
        """The cost this event reports: a node's own, or the run's total."""
        if self.result is not None:
            return self.result.cost or Decimal(0)
        return self.run.total_cost if self.run is not None else Decimal(0)

    @property
    def tokens(self) -> int:
        if self.result is not None:
            return self.result.tokens
        return self.run.total_tokens if self.run is not None else 0


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self.listeners: list[Listener] = []  # read in the hot loop: empty means "emit nothing"

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every event from now on; returns the function that stops it."""
        self.listeners.append(listener)
        return lambda: self.unsubscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def emit(self, event: Event) -> None:
        for listener in tuple(self.listeners):
            listener(event)

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """`async with bus.stream() as events: async for event in events: ...`

        Unbounded: a slow observer costs memory, never slows the runs down.
        """
        send, receive = anyio.create_memory_object_stream[Event](max_buffer_size=float("inf"))
        unsubscribe = self.subscribe(send.send_nowait)
        try:
            yield receive
        finally:
            unsubscribe()  # first, so no event is sent into a closed stream
            send.close()
            receive.close()
