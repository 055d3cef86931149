"""A loopback OpenAI chat-completions server that is never the bottleneck.

It answers every `POST .../chat/completions` with the same canned `chat.completion` (usage
included) and `GET .../models` with a one-model list, over keep-alive HTTP/1.1. A bare
`asyncio.Protocol` with no parsing beyond the request line and `Content-Length` serves tens of
thousands of requests a second on one core, far more than any client here sends.

Run it in its own process (the suite pins it to a core the client does not use)::

    python -m bench.server          # prints the port, then serves until stdin closes
"""

from __future__ import annotations

import asyncio
import json
import sys

MODEL = "bench-model"

_COMPLETION = json.dumps({
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1767225600,
    "model": MODEL,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}).encode()
_NOT_FOUND = json.dumps({"error": {"message": "not found", "type": "invalid_request_error", "code": None}}).encode()


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


_ANSWERS = {
    b"POST": _response("200 OK", _COMPLETION),
    b"GET": _response("200 OK", _MODELS),
}
_MISSING = _response("404 Not Found", _NOT_FOUND)


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    stop = head.find(b"\r\n", at)
    return int(head[at + 15:stop if stop >= 0 else len(head)])


class _Http(asyncio.Protocol):
    """One connection: pipelined or keep-alive requests, answered in order."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        while (end := buf.find(b"\r\n\r\n")) >= 0:
            head = bytes(buf[:end]).lower()
            length = _content_length(head)
            if len(buf) < end + 4 + length:
                return  # the body is still arriving
            del buf[:end + 4 + length]
            method, _, rest = head.partition(b" ")
            path = rest.partition(b" ")[0]
            known = path.endswith(b"/chat/completions") or path.endswith(b"/models")
            assert self._transport is not None
            self._transport.write(_ANSWERS.get(method.upper(), _MISSING) if known else _MISSING)


async def serve(port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until the parent closes our stdin (or is gone): no orphan is ever left behind.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
