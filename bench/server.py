"""A loopback server for the four HTTP wires that is never the bottleneck.

It answers every generation POST with the same canned reply in its wire's shape, usage included:
`.../chat/completions` (OpenAI), `.../messages` (Anthropic), `...:generateContent` (Gemini) and
`/api/chat` (Ollama); `GET .../models` gets a one-model list; all over keep-alive HTTP/1.1. A bare
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
_MESSAGE = json.dumps({
    "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL, "stop_sequence": None,
    "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn",
    "usage": {"input_tokens": 12, "output_tokens": 1},
}).encode()
_GENERATE = json.dumps({
    "candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
    "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 1, "totalTokenCount": 13},
    "modelVersion": MODEL, "responseId": "bench",
}).encode()
_CHAT = json.dumps({
    "model": MODEL, "created_at": "2026-01-01T00:00:00Z", "message": {"role": "assistant", "content": "ok"},
    "done": True, "done_reason": "stop", "total_duration": 1000, "load_duration": 100, "prompt_eval_count": 12,
    "prompt_eval_duration": 200, "eval_count": 1, "eval_duration": 700,
}).encode()
_MODELS = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}).encode()
_NOT_FOUND = json.dumps({"error": {"message": "not found", "type": "invalid_request_error", "code": None}}).encode()


def _response(status: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


# (method, how the path ends) → the whole response
_ANSWERS = {
    (b"POST", b"/chat/completions"): _response("200 OK", _COMPLETION),
    (b"POST", b"/messages"): _response("200 OK", _MESSAGE),
    (b"POST", b":generatecontent"): _response("200 OK", _GENERATE),  # the head is lower-cased
    (b"POST", b"/api/chat"): _response("200 OK", _CHAT),
    (b"GET", b"/models"): _response("200 OK", _MODELS),
}
_MISSING = _response("404 Not Found", _NOT_FOUND)


def _answer(method: bytes, path: bytes) -> bytes:
    path = path.partition(b"?")[0]
    for (verb, end), answer in _ANSWERS.items():
        if method == verb and path.endswith(end):
            return answer
    return _MISSING


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
            assert self._transport is not None
            self._transport.write(_answer(method.upper(), rest.partition(b" ")[0]))


async def serve(port: int = 0) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=4096, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until the parent closes our stdin (or is gone): no orphan is ever left behind.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
