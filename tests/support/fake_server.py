"""The HTTP plumbing under the fake servers (fakes.py): a threaded server on 127.0.0.1, the request
log, and the faults a test can ask for. A subclass speaks one wire by implementing `route`,
`error_body` and `stream_error_frame`; streams are (head, deltas, tail) frame lists so that a fault
can land after any delta."""

from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
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
    last_user: str  # the last user turn's text, or the last tool result's when the chat ends on one
    max_tokens: int | None
    ends_on_tool_result: bool = False


@dataclass
class Answer:
    text: str
    pieces: list[str]  # the stream deltas; they join to `text`
    input_tokens: int
    output_tokens: int
    truncated: bool
    calls: list[dict[str, Any]] = field(default_factory=list)  # [{id, name, arguments}] instead of text


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
        # streams: after `fault_after` deltas, the wire's error event ("error"), the connection dropped
        # mid-body ("cut"), or the body ended cleanly but without the wire's end marker ("close")
        self.stream_fault: Literal["error", "cut", "close"] | None = None
        self.fault_after = 1
        self.stall_before = 0.0  # s a stream waits after its head, before the first delta
        self.stall_after = 0.0  # s a stream waits after its first delta
        self.disconnected = threading.Event()  # set when a client closed a stream before its end
        # The model "calls" these tools ({name, arguments, id?}) when the chat ends on a user turn;
        # after a tool result it answers in text ("echo: <result>").
        self.tool_calls: list[dict[str, Any]] | None = None
        self.cache = (0, 0)  # prompt tokens (read from, written to) the provider's cache, as each wire says
        self.strict = False  # 400 on tool histories the real API refuses (see `history_error`)
        self.reply_fault: Literal["hang_up", "cut"] | None = None
        self._failure: tuple[int, str | None, str | None] | None = None
        self._fail_times: int | None = None
        self._flaky: tuple[int, float, random.Random] | None = None
        self.failures_sent = 0  # error replies sent (fail() and flaky())
        self.error_fields: dict[str, Any] = {}  # merged into the wire's error object
        self.load_delay = 0.0  # a cold server: its first POST (or the first after unload()) waits this long
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

    def history_error(self, body: Any) -> str | None:
        """In strict mode, the real API's complaint about the request's tool history, if any."""
        return None

    # --- shared helpers for subclasses ---------------------------------------------------------
    def answer(self, prompt: Prompt) -> Answer:
        input_tokens = sum(words(t) for t in prompt.texts)
        if self.tool_calls and not prompt.ends_on_tool_result:
            calls = [{"id": c.get("id", f"call_fake_{i}"), "name": c["name"], "arguments": c.get("arguments", {})}
                     for i, c in enumerate(self.tool_calls)]
            out = sum(words(json.dumps(c["arguments"])) + 1 for c in calls)  # deterministic: name + arguments
            return Answer("", [], input_tokens, out, False, calls)
        text = self.reply if self.reply is not None else f"echo: {prompt.last_user}"
        tokens = text.split(" ")
        truncated = prompt.max_tokens is not None and len(tokens) > prompt.max_tokens
        if truncated:
            tokens = tokens[: prompt.max_tokens]
            text = " ".join(tokens)
        pieces = [t + " " for t in tokens[:-1]] + tokens[-1:]
        return Answer(text, pieces, input_tokens, words(text), truncated)

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
        complaint = fake.history_error(body) if fake.strict and isinstance(body, dict) else None
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
        elif complaint is not None:
            self._send(Reply(400, fake.error_body(400, complaint)))
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
            deltas = deltas[: fake.fault_after]
            tail = [fake.stream_error_frame()] if fake.stream_fault == "error" else []
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        self.send_header("transfer-encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self._write_frames(head)
            if fake.stall_before and self._stall(fake.stall_before):
                return
            for i, frame in enumerate(deltas):
                self._write_frames([frame])
                if i == 0 and fake.stall_after and self._stall(fake.stall_after):
                    return
            self._write_frames(tail)
            if fake.stream_fault == "cut":
                self.close_connection = True  # no terminating chunk: the client sees a cut body
                return
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            fake.disconnected.set()
            self.close_connection = True

    def _write_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()

    def _stall(self, seconds: float) -> bool:
        """Wait `seconds` mid-stream, watching the socket: True (and `disconnected` set) when the client
        closed it meanwhile, as a client abandoning a stream does."""
        fake = self.server.fake
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not fake._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.01))
            if readable and self.connection.recv(1, socket.MSG_PEEK) == b"":
                fake.disconnected.set()
                self.close_connection = True
                return True
        return fake._stopping.is_set()

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


def closed_port_url() -> str:
    """A 127.0.0.1 URL nobody listens on: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
