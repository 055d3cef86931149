"""What `amaos-llm complete --stream` writes as a stream goes: each text chunk to stdout at once,
and on a restart, a line end and which model it starts over on (stderr)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amaos_llm import ChunkStream, LLMResult, ModelSpec


class StreamPrinter:
    """Stream callbacks for the terminal: each text chunk written and flushed as it arrives; a
    reset ends the line, and stderr says which model the stream restarts on."""

    def __init__(self) -> None:
        self.restarting = False

    def on_token(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def on_reset(self, discarded: str) -> None:
        sys.stdout.write("\n")
        sys.stdout.flush()
        self.restarting = True

    def on_start(self, model: ModelSpec) -> None:
        if self.restarting:
            self.restarting = False
            print(f"[restarted on {model.name}]", file=sys.stderr, flush=True)


async def drain(stream: ChunkStream) -> LLMResult:
    async with stream:
        async for _ in stream:
            pass
    sys.stdout.write("\n")
    assert stream.result is not None
    return stream.result
