"""Protocol-faithful fake servers for the four wires, real HTTP on 127.0.0.1.

The SDKs sit on httpx2 (and ollama on httpx), so tests talk to real sockets instead of mocking
a transport. Every fake answers in its provider's JSON shapes (WIRE.md) with deterministic usage:
input tokens = words in all messages (system included), output tokens = words in the reply. The
reply is ``echo: <last user message>``, cut to the request's token limit (finish reason "length"
in the wire's spelling), unless ``fake.reply`` is set.

Each fake records every request in ``fake.requests`` and can misbehave on demand::

    fake.fail(429, retry_after="7")   # every request: 429 with the wire's error body
    fake.fail(500, times=2)           # the next two requests fail, then it answers
    fake.delay = 5.0                  # sleep before answering
    fake.hold_until = 500             # answer nothing until 500 requests have arrived
    fake.malformed = True             # 200 with a body that is not JSON
    fake.stream_fault = "error"       # streams: the wire's error event after the first delta
    fake.stream_fault = "cut"         # streams: connection dropped after the first delta
    fake.reply_fault = "hang_up"      # the connection closed after the request, no reply at all
    fake.reply_fault = "cut"          # a plain reply cut off after half its body
    fake.flaky(500, 0.3, seed=1)      # a seeded random 30 % of requests fail with 500
    fake.error_fields = {...}         # merged into the wire's error object (OpenAI `param`/`code`, ...)
    fake.load_delay = 2.0             # a cold server: its first request (or after fake.unload()) waits

Start with ``with OpenAIFake() as fake:`` (or the fixtures in ``tests.support.fixtures``);
``fake.url`` is the base URL in the form the SDK wants.
"""

from __future__ import annotations

import json
import random
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlsplit

CREATED_AT = "2026-01-01T00:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or None


@dataclass
class Prompt:
    """What a fake reads from a generation request, whatever the wire."""

    model: str
    texts: list[str]  # every message text, system included
    last_user: str
    max_tokens: int | None


@dataclass
class Answer:
    text: str
    pieces: list[str]  # the stream deltas; they join to `text`
    input_tokens: int
    output_tokens: int
    truncated: bool


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, for a plain reply
    frames: tuple[list[bytes], list[bytes], list[bytes]] | None = None  # stream: head, deltas, tail
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def words(text: str) -> int:
    return len(text.split())


def sse(data: Any, event: str | None = None, sep: str = "\n") -> bytes:
    head = f"event: {event}{sep}" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}{sep}{sep}".encode()


class FakeServer:
    """HTTP plumbing, request log and fault injection; a subclass speaks one wire."""

    url_path = ""
    error_types: dict[int, str] = {}

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.models: list[str] = ["test-model"]
        self.reply: str | None = None
        self.extra_usage: dict[str, int] = {}  # merged into the wire's usage object
        self.delay = 0.0
        self.hold_until = 0
        self.malformed = False
        self.stream_fault: Literal["error", "cut"] | None = None
        self.reply_fault: Literal["hang_up", "cut"] | None = None
        self._failure: tuple[int, str | None, str | None] | None = None
        self._fail_times: int | None = None
        self._flaky: tuple[int, float, random.Random] | None = None
        self.failures_sent = 0  # error replies sent (fail() and flaky())
        self.error_fields: dict[str, Any] = {}
        self.load_delay = 0.0
        self.loaded = False
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self.peak_connections = 0  # most client connections open at once
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- control -----------------------------------------------------------------------------
    def fail(self, status: int, *, times: int | None = None, retry_after: str | None = None,
             message: str | None = None) -> None:
        """Answer `status` with the wire's error body: the next `times` requests, or all."""
        with self._lock:
            self._failure, self._fail_times = (status, retry_after, message), times

    def flaky(self, status: int, rate: float, *, seed: int = 0) -> None:
        """A seeded random share `rate` of requests fail with `status`."""
        with self._lock:
            self._flaky = (status, rate, random.Random(seed))

    def recover(self) -> None:
        with self._lock:
            self._failure, self._fail_times, self._flaky = None, None, None

    def unload(self) -> None:
        """Forget the loaded model: the next request waits `load_delay` again."""
        self.loaded = False

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_path}"

    def start(self) -> Self:
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        with self._arrived:
            self._arrived.notify_all()
        self._server.shutdown()
        with self._lock:
            for conn in list(self._connections):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what subclasses provide ---------------------------------------------------------------
    def route(self, req: Recorded) -> Reply:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError

    def stream_error_frame(self) -> bytes:
        raise NotImplementedError

    # --- shared helpers for subclasses ---------------------------------------------------------
    def answer(self, prompt: Prompt) -> Answer:
        text = self.reply if self.reply is not None else f"echo: {prompt.last_user}"
        tokens = text.split(" ")
        truncated = prompt.max_tokens is not None and len(tokens) > prompt.max_tokens
        if truncated:
            tokens = tokens[: prompt.max_tokens]
            text = " ".join(tokens)
        pieces = [t + " " for t in tokens[:-1]] + tokens[-1:]
        return Answer(text, pieces, sum(words(t) for t in prompt.texts), words(text), truncated)

    def not_found(self, req: Recorded) -> Reply:
        return Reply(404, self.error_body(404, f"no route for {req.method} {req.path}"))

    # --- plumbing ------------------------------------------------------------------------------
    def _take_failure(self) -> tuple[int, str | None, str | None] | None:
        with self._lock:
            failure = self._failure
            if failure is not None and self._fail_times is not None:
                self._fail_times -= 1
                if self._fail_times <= 0:
                    self._failure, self._fail_times = None, None
            if failure is None and self._flaky is not None:
                status, rate, rng = self._flaky
                if rng.random() < rate:
                    failure = (status, None, None)
            if failure is not None:
                self.failures_sent += 1
            return failure


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: hundreds of clients may connect at once
    block_on_close = False  # a handler asleep in `delay` must not hold up stop()
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-reply (timeouts, cancellation) is expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        fake = self.server.fake
        with fake._lock:
            fake._connections.add(self.connection)
            fake.peak_connections = max(fake.peak_connections, len(fake._connections))

    def finish(self) -> None:
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        url = urlsplit(self.path)
        req = Recorded(self.command, url.path, dict(parse_qsl(url.query)),
                       {k.lower(): v for k, v in self.headers.items()}, body)
        with fake._arrived:
            fake.requests.append(req)
            fake._arrived.notify_all()
            # bounded, so a test that never sends enough fails on its assertions instead of hanging
            fake._arrived.wait_for(lambda: len(fake.requests) >= fake.hold_until or fake._stopping.is_set(), 60)
        if fake.delay and fake._stopping.wait(fake.delay):
            self.close_connection = True
            return
        if fake.load_delay and not fake.loaded and self.command == "POST":
            if fake._stopping.wait(fake.load_delay):
                self.close_connection = True
                return
            fake.loaded = True
        failure = fake._take_failure()
        if fake.reply_fault == "hang_up":
            self.close_connection = True
        elif failure is not None:
            status, retry_after, message = failure
            headers = {"retry-after": retry_after} if retry_after is not None else {}
            body = fake.error_body(status, message or f"fake failure {status}")
            if fake.error_fields:
                inner = body.get("error") if isinstance(body, dict) else None
                (inner if isinstance(inner, dict) else body).update(fake.error_fields)
            self._send(Reply(status, body, headers=headers))
        elif fake.malformed:
            self._send_bytes(200, "application/json", b'{"truncated": [', {})
        else:
            self._send(fake.route(req))

    def _send(self, reply: Reply) -> None:
        if reply.frames is None:
            self._send_bytes(reply.status, reply.content_type, json.dumps(reply.body).encode(), reply.headers)
            return
        fake = self.server.fake
        head, deltas, tail = reply.frames
        if fake.stream_fault is not None:
            deltas = deltas[:1]
            tail = [fake.stream_error_frame()] if fake.stream_fault == "error" else []
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        self.send_header("transfer-encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        for frame in [*head, *deltas, *tail]:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()
        if fake.stream_fault == "cut":
            self.close_connection = True  # no terminating chunk: the client sees a cut body
            return
        self.wfile.write(b"0\r\n\r\n")

    def _send_bytes(self, status: int, content_type: str, data: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.server.fake.reply_fault == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True  # fewer bytes than content-length, then EOF
            return
        self.wfile.write(data)


def _text_of(content: Any) -> str:
    """Message content as text: a string, or a list of text blocks/parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def _chat_prompt(body: dict[str, Any], max_tokens: int | None, system: str = "") -> Prompt:
    messages = body.get("messages") or []
    texts = [system] if system else []
    texts += [_text_of(m.get("content")) for m in messages]
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    return Prompt(str(body.get("model", "")), texts, users[-1] if users else "", max_tokens)


class OllamaFake(FakeServer):
    def route(self, req: Recorded) -> Reply:
        if req.method == "GET" and req.path == "/api/tags":
            return Reply(body={"models": [self._model_entry(m) for m in self.models]})
        if req.method != "POST" or req.path != "/api/chat":
            return self.not_found(req)
        if not req.body.get("messages"):  # Ollama's "load the model" request: no generation
            return Reply(body={"model": req.body.get("model"), "created_at": CREATED_AT, "done": True,
                               "done_reason": "load", "message": {"role": "assistant", "content": ""}})
        prompt = _chat_prompt(req.body, (req.body.get("options") or {}).get("num_predict"))
        a = self.answer(prompt)
        done = {
            "model": prompt.model, "created_at": CREATED_AT, "done": True,
            "done_reason": "length" if a.truncated else "stop",
            "total_duration": 1_000_000, "load_duration": 100_000,
            "prompt_eval_count": a.input_tokens, "prompt_eval_duration": 200_000,
            "eval_count": a.output_tokens, "eval_duration": 700_000, **self.extra_usage,
        }
        if not req.body.get("stream", True):
            return Reply(body={**done, "message": {"role": "assistant", "content": a.text}})
        line = lambda obj: (json.dumps(obj) + "\n").encode()  # noqa: E731
        deltas = [line({"model": prompt.model, "created_at": CREATED_AT,
                        "message": {"role": "assistant", "content": p}, "done": False}) for p in a.pieces]
        tail = [line({**done, "message": {"role": "assistant", "content": ""}})]
        return Reply(frames=([], deltas, tail), content_type="application/x-ndjson")

    def _model_entry(self, name: str) -> dict[str, Any]:
        return {"name": name, "model": name, "modified_at": CREATED_AT, "size": 1_000, "digest": "0" * 64,
                "details": {"format": "gguf", "family": "fake", "parameter_size": "1M",
                            "quantization_level": "Q4_0"}}

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message}

    def stream_error_frame(self) -> bytes:
        return b'{"error": "an error was encountered while running the model"}\n'


class OpenAIFake(FakeServer):
    url_path = "/v1"
    error_types = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                   404: "invalid_request_error", 429: "rate_limit_error"}

    def route(self, req: Recorded) -> Reply:
        if req.method == "GET" and req.path == "/v1/models":
            return Reply(body={"object": "list", "data": [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"} for m in self.models]})
        if req.method != "POST" or req.path != "/v1/chat/completions":
            return self.not_found(req)
        body = req.body
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        prompt = _chat_prompt(body, limit)
        a = self.answer(prompt)
        finish = "length" if a.truncated else "stop"
        usage = {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                 "total_tokens": a.input_tokens + a.output_tokens, **self.extra_usage}
        base = {"id": f"chatcmpl-fake-{len(self.requests)}", "created": 1_700_000_000, "model": prompt.model,
                "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            choice = {"index": 0, "message": {"role": "assistant", "content": a.text, "refusal": None},
                      "logprobs": None, "finish_reason": finish}
            return Reply(body={**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

        tail = [chunk({}, finish)]
        if (body.get("stream_options") or {}).get("include_usage"):
            tail.append(sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        tail.append(sse("[DONE]"))
        head = [chunk({"role": "assistant", "content": ""})]
        return Reply(frames=(head, [chunk({"content": p}) for p in a.pieces], tail),
                     content_type="text/event-stream")

    def error_body(self, status: int, message: str) -> Any:
        kind = self.error_types.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def stream_error_frame(self) -> bytes:
        return sse({"error": {"message": "The server had an error while processing your request.",
                              "type": "server_error", "param": None, "code": None}})


class AnthropicFake(FakeServer):
    error_types = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                   500: "api_error", 529: "overloaded_error"}

    def route(self, req: Recorded) -> Reply:
        if req.method == "GET" and req.path.startswith("/v1/models/"):
            wanted = req.path.removeprefix("/v1/models/")
            if wanted not in self.models:
                return Reply(404, self.error_body(404, f"model: {wanted}"))
            return Reply(body={"type": "model", "id": wanted, "display_name": wanted, "created_at": CREATED_AT})
        if req.method == "GET" and req.path == "/v1/models":
            data = [{"type": "model", "id": m, "display_name": m, "created_at": CREATED_AT} for m in self.models]
            return Reply(body={"data": data, "has_more": False, "first_id": self.models[0] if self.models else None,
                               "last_id": self.models[-1] if self.models else None})
        if req.method != "POST" or req.path != "/v1/messages":
            return self.not_found(req)
        body = req.body
        prompt = _chat_prompt(body, body.get("max_tokens"), _text_of(body.get("system", "")))
        a = self.answer(prompt)
        stop = "max_tokens" if a.truncated else "end_turn"
        usage = {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens,
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, **self.extra_usage}
        message = {"id": f"msg_fake_{len(self.requests)}", "type": "message", "role": "assistant",
                   "model": prompt.model, "stop_sequence": None}
        if not body.get("stream"):
            content = [{"type": "text", "text": a.text}]
            return Reply(body={**message, "content": content, "stop_reason": stop, "usage": usage})
        start_usage = {**usage, "output_tokens": 1}
        head = [
            sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                       "usage": start_usage}}, "message_start"),
            sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start"),
            sse({"type": "ping"}, "ping"),
        ]
        deltas = [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                      "content_block_delta") for p in a.pieces]
        tail = [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                 "usage": {"output_tokens": a.output_tokens}}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return Reply(frames=(head, deltas, tail), content_type="text/event-stream")

    def error_body(self, status: int, message: str) -> Any:
        kind = self.error_types.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}

    def stream_error_frame(self) -> bytes:
        return sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")


class GoogleFake(FakeServer):
    error_types = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
    _path = re.compile(r"^/(v1\w*)/models/([^:/]+)(?::(\w+))?$")

    def route(self, req: Recorded) -> Reply:
        match = self._path.match(req.path)
        if match is None:
            return self.not_found(req)
        model, method = match.group(2), match.group(3)
        if req.method == "GET" and method is None:
            if model not in self.models:
                return Reply(404, self.error_body(404, f"models/{model} is not found"))
            return Reply(body={"name": f"models/{model}", "displayName": model, "inputTokenLimit": 8192,
                               "outputTokenLimit": 2048, "supportedGenerationMethods": ["generateContent"]})
        if req.method != "POST" or method not in ("generateContent", "streamGenerateContent"):
            return self.not_found(req)
        body = req.body
        system = _text_of((body.get("systemInstruction") or {}).get("parts"))
        contents = body.get("contents") or []
        texts = [system] if system else []
        texts += [_text_of(c.get("parts")) for c in contents]
        users = [_text_of(c.get("parts")) for c in contents if c.get("role", "user") == "user"]
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        a = self.answer(Prompt(model, texts, users[-1] if users else "", limit))
        usage = {"promptTokenCount": a.input_tokens, "candidatesTokenCount": a.output_tokens,
                 "totalTokenCount": a.input_tokens + a.output_tokens, **self.extra_usage}
        finish = "MAX_TOKENS" if a.truncated else "STOP"

        def response(text: str, done: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
            out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model,
                                   "responseId": f"fake-{len(self.requests)}"}
            if done:
                candidate["finishReason"] = finish
                out["usageMetadata"] = usage
            return out

        if method == "generateContent":
            return Reply(body=response(a.text, True))
        pieces = a.pieces or [""]
        deltas = [sse(response(p, False), sep="\r\n") for p in pieces[:-1]]
        tail = [sse(response(pieces[-1], True), sep="\r\n")]
        if not deltas:  # a one-piece reply: the fault still comes after the first delta
            deltas, tail = tail, []
        return Reply(frames=([], deltas, tail), content_type="text/event-stream")

    def error_body(self, status: int, message: str) -> Any:
        kind = self.error_types.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": kind}}

    def stream_error_frame(self) -> bytes:
        return sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
                   sep="\r\n")


def closed_port_url() -> str:
    """A 127.0.0.1 URL nobody listens on: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
