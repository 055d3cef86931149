"""A protocol-faithful AWS Bedrock fake: real HTTP on 127.0.0.1, driven through aiobotocore.

Runtime (`bedrock-runtime`, rest-json):
- `POST /model/{modelId}/converse` → the Converse JSON reply.
- `POST /model/{modelId}/converse-stream` → `application/vnd.amazon.eventstream` binary frames
  (prelude with lengths and CRC32, `:event-type`/`:message-type`/`:content-type` headers, JSON
  payload, message CRC32): messageStart, contentBlockDelta…, contentBlockStop, messageStop, metadata.
Control plane (`bedrock`): `GET /foundation-models/{id}`, `GET /inference-profiles/{id}`.

Every request must carry a SigV4 `Authorization: AWS4-HMAC-SHA256 Credential=KEYID/…` header (or
`Bearer TOKEN` with a Bedrock API key in `bearer_tokens`), or it is refused as AWS refuses it (403
`MissingAuthenticationTokenException`); with `access_keys` set, an unknown key id gets 403
`UnrecognizedClientException`. Usage is deterministic, as on the
other fakes: input tokens = words in every message and system block, output tokens = words in the
reply; `cache_read`/`cache_write` are reported as `cacheReadInputTokens`/`cacheWriteInputTokens`.

With `fake.tool_calls = [{"name", "arguments"}]` the model calls tools (`toolUse` blocks, ids
`tooluse_fake_N`, stopReason `tool_use`; streamed as `contentBlockStart` with `start.toolUse`, the
input as JSON text in `contentBlockDelta.delta.toolUse.input` pieces, `contentBlockStop`) until a
turn of `toolResult` blocks comes back, which it echoes. Every Converse body is checked as Bedrock
checks it (`request_error`): alternating roles starting with a user turn, no blank text, tool blocks
only with a `toolConfig`, each user turn answering the previous turn's toolUse ids one for one, ids
on the service model's pattern, a forced tool that is declared, images in user turns whose base64
bytes decode to the format they claim (kept in `fake.images`); a refusal is a 400
`ValidationException` in Bedrock's words.

Errors come as AWS sends them: the HTTP status, an `x-amzn-ErrorType` header naming the code,
and a JSON body `{"message": ...}`::

    fake.fail(429)                                  # ThrottlingException (the status's usual code)
    fake.fail(400, code="ValidationException", message="Input is too long for requested model.")
    fake.fail(500, times=1)                         # the next request only
    fake.stream_exception = "throttlingException"   # streams: that exception event after the first delta
    fake.stream_fault = "cut"                       # streams: the connection dropped after the first delta
    fake.stream_events = 3                          # streams: only the first 3 events, then a clean end

(`fail` and `flaky` here replace `FakeServer`'s, whose error replies have no `x-amzn-ErrorType`.)
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import struct
import threading
from typing import Any
from urllib.parse import unquote

from tests.support.fakes import FakeServer, Prompt, Recorded, Reply, words

EVENTSTREAM = "application/vnd.amazon.eventstream"
# The code AWS sends for a status when the test names none.
CODES = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
         408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
         500: "InternalServerException", 503: "ServiceUnavailableException"}
_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/bedrock/aws4_request, "
                    r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$")
_RUNTIME = re.compile(r"^/model/([^/]+)/(converse|converse-stream)$")
TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_.:-]{1,64}")  # the service model's ToolUseId
IMAGE_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff", "gif": b"GIF8", "webp": b"RIFF"}


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # type 7: a string with a 2-byte length
    return struct.pack(">B", len(raw_name)) + raw_name + struct.pack(">BH", 7, len(raw_value)) + raw_value


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: [total length][headers length][prelude CRC][headers][payload][message CRC]."""
    head = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(head) + len(payload) + 4
    prelude = struct.pack(">II", total, len(head))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + head + payload
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)


def event(event_type: str, body: dict[str, Any]) -> bytes:
    # Bedrock pads every event with a `p` field (so lengths leak nothing); parsers ignore it.
    payload = json.dumps({**body, "p": "abcdefghijklmnopqrstuvwxyz"[: len(event_type)]}).encode()
    return event_frame({":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
                       payload)


def exception_event(code: str, message: str) -> bytes:
    return event_frame({":exception-type": code, ":content-type": "application/json", ":message-type": "exception"},
                       json.dumps({"message": message}).encode())


class BedrockFake(FakeServer):
    def __init__(self) -> None:
        super().__init__()
        self.models = ["anthropic.claude-test-v1:0"]
        self.profiles = ["us.anthropic.claude-test-v1:0"]
        self.access_keys: set[str] | None = None  # None: any key id is accepted (the signature is not checked)
        self.bearer_tokens: set[str] = set()  # Bedrock API keys accepted as `Authorization: Bearer`
        self.cache_read = 0
        self.cache_write = 0
        self.stream_exception = "modelStreamErrorException"  # what stream_fault = "error" sends
        self.stream_events: int | None = None  # end a stream cleanly after this many events
        self.images: list[tuple[str, bytes]] = []  # (format, decoded bytes) of every image received
        self._errors: tuple[int, str, str] | None = None
        self._error_times: int | None = None
        self._flaky_errors: tuple[int, str, float, random.Random] | None = None
        self._error_lock = threading.Lock()

    def fail(self, status: int, *, times: int | None = None, retry_after: str | None = None,
             message: str | None = None, code: str | None = None) -> None:
        """Answer `status` with `x-amzn-ErrorType: code` (default: the status's usual code)."""
        with self._error_lock:
            self._errors = (status, code or CODES.get(status, "InternalServerException"),
                            message or f"fake failure {status}")
            self._error_times = times

    def flaky(self, status: int, rate: float, *, seed: int = 0) -> None:
        """A seeded random share `rate` of requests fail with `status` and its usual code."""
        rng = random.Random(seed)
        with self._error_lock:
            self._flaky_errors = (status, CODES.get(status, "InternalServerException"), rate, rng)

    def recover(self) -> None:
        super().recover()
        with self._error_lock:
            self._errors, self._error_times, self._flaky_errors = None, None, None

    def _take_error(self) -> tuple[int, str, str] | None:
        with self._error_lock:
            error = self._errors
            if error is not None and self._error_times is not None:
                self._error_times -= 1
                if self._error_times <= 0:
                    self._errors, self._error_times = None, None
            if error is None and self._flaky_errors is not None:
                status, code, rate, rng = self._flaky_errors
                if rng.random() < rate:
                    error = (status, code, f"fake failure {status}")
            if error is not None:
                self.failures_sent += 1
            return error

    def aws_error(self, status: int, code: str, message: str) -> Reply:
        return Reply(status, {"message": message},
                     headers={"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                              "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"})

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message}

    def stream_error_frame(self) -> bytes:
        return exception_event(self.stream_exception, "The model stream failed.")

    # --- routes --------------------------------------------------------------------------------
    def route(self, req: Recorded) -> Reply:
        authorization = req.headers.get("authorization", "")
        bearer = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        auth = _SIGV4.match(authorization)
        if bearer is not None:  # a Bedrock API key; it names no region
            if bearer not in self.bearer_tokens:
                return self.aws_error(403, "UnrecognizedClientException", "Invalid API Key format: Must start "
                                      "with pre-defined prefix")
            region = "us-east-1"
        elif auth is None:
            return self.aws_error(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        elif self.access_keys is not None and auth.group(1) not in self.access_keys:
            return self.aws_error(403, "UnrecognizedClientException", "The security token included in the request "
                                  "is invalid.")
        else:
            region = auth.group(2)
        error = self._take_error()
        if error is not None:
            return self.aws_error(*error)
        path = unquote(req.path)
        if req.method == "GET" and path.startswith("/foundation-models/"):
            return self._foundation_model(path.removeprefix("/foundation-models/"), region)
        if req.method == "GET" and path.startswith("/inference-profiles/"):
            return self._inference_profile(path.removeprefix("/inference-profiles/"), region)
        match = _RUNTIME.match(path)
        if req.method != "POST" or match is None:
            return self.aws_error(404, "UnknownOperationException", f"no route for {req.method} {path}")
        model, operation = match.groups()
        if model not in self.models and model not in self.profiles:
            return self.aws_error(404, "ResourceNotFoundException", "Model not found.")
        return self._converse(model, req.body, stream=operation == "converse-stream")

    def _foundation_model(self, model: str, region: str) -> Reply:
        if model not in self.models:
            return self.aws_error(404, "ResourceNotFoundException", f"The model {model} does not exist.")
        arn = f"arn:aws:bedrock:{region}::foundation-model/{model}"
        return Reply(body={"modelDetails": {
            "modelArn": arn, "modelId": model, "modelName": "Claude Test", "providerName": "Anthropic",
            "inputModalities": ["TEXT"], "outputModalities": ["TEXT"], "responseStreamingSupported": True,
            "customizationsSupported": [], "inferenceTypesSupported": ["ON_DEMAND", "INFERENCE_PROFILE"],
            "modelLifecycle": {"status": "ACTIVE"}}})

    def _inference_profile(self, profile: str, region: str) -> Reply:
        if profile not in self.profiles:
            return self.aws_error(404, "ResourceNotFoundException", f"The inference profile {profile} does not exist.")
        base = profile.split(".", 1)[1]
        return Reply(body={
            "inferenceProfileName": f"US {base}", "inferenceProfileId": profile,
            "inferenceProfileArn": f"arn:aws:bedrock:{region}:123456789012:inference-profile/{profile}",
            "models": [{"modelArn": f"arn:aws:bedrock:{r}::foundation-model/{base}"}
                       for r in ("us-east-1", "us-west-2")],
            "status": "ACTIVE", "type": "SYSTEM_DEFINED"})

    def _converse(self, model: str, body: dict[str, Any], *, stream: bool) -> Reply:
        refusal = self.request_error(body)
        if refusal is not None:
            return self.aws_error(400, "ValidationException", refusal)
        system = " ".join(b.get("text", "") for b in body.get("system") or [])
        messages = body.get("messages") or []
        texts = [system] if system else []
        texts += [_text(m) for m in messages]
        users = [_text(m) for m in messages if m.get("role") == "user"]
        last = messages[-1] if messages else {}
        results = [_result_text(b["toolResult"]) for b in last.get("content") or [] if "toolResult" in b]
        limit = (body.get("inferenceConfig") or {}).get("maxTokens")
        prompt = Prompt(model, texts, " ".join(results) if results else users[-1] if users else "", limit,
                        bool(results))
        a = self.answer(prompt)
        # Bedrock's inputTokens excludes what was read from or written to the prompt cache.
        usage = {"inputTokens": a.input_tokens, "outputTokens": a.output_tokens,
                 "totalTokens": a.input_tokens + a.output_tokens + self.cache_read + self.cache_write}
        if self.cache_read or self.cache_write:
            usage |= {"cacheReadInputTokens": self.cache_read, "cacheWriteInputTokens": self.cache_write}
        usage |= self.extra_usage
        stop = "tool_use" if a.calls else "max_tokens" if a.truncated else "end_turn"
        uses = [{"toolUseId": c["id"].replace("call_", "tooluse_"), "name": c["name"], "input": c["arguments"]}
                for c in a.calls]
        if not stream:
            content = [{"toolUse": u} for u in uses] or [{"text": a.text}]
            return Reply(body={"output": {"message": {"role": "assistant", "content": content}},
                               "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 42}})
        deltas = [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}}) for p in a.pieces]
        stops = [event("contentBlockStop", {"contentBlockIndex": 0})] if not uses else []
        for i, use in enumerate(uses):  # a call's start names it; its input follows as JSON text in pieces
            start = {"toolUseId": use["toolUseId"], "name": use["name"]}
            deltas.append(event("contentBlockStart", {"contentBlockIndex": i, "start": {"toolUse": start}}))
            deltas += [event("contentBlockDelta", {"contentBlockIndex": i, "delta": {"toolUse": {"input": p}}})
                       for p in _pieces(json.dumps(use["input"]))]
            deltas.append(event("contentBlockStop", {"contentBlockIndex": i}))
        events = [event("messageStart", {"role": "assistant"}), *deltas, *stops,
                  event("messageStop", {"stopReason": stop}),
                  event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}})]
        if self.stream_events is not None:
            return Reply(frames=(events[: self.stream_events], [], []), content_type=EVENTSTREAM)
        n = 1 + len(deltas)
        return Reply(frames=(events[:1], events[1:n], events[n:]), content_type=EVENTSTREAM)

    def request_error(self, body: dict[str, Any]) -> str | None:
        """Bedrock's words for a Converse request it refuses with a ValidationException, or None:
        roles that do not alternate, blank text, tool blocks without a `toolConfig`, tool results
        that do not answer the previous turn's tool uses one for one, ids off the service's
        pattern, images whose bytes are not the format they claim. Decoded images land in `images`."""
        messages = body.get("messages") or []
        config = body.get("toolConfig")
        if not messages or messages[0].get("role") != "user":
            return ("A conversation must start with a user message. Try again with a conversation that starts with a "
                    "user message.")
        declared = [t["toolSpec"]["name"] for t in (config or {}).get("tools") or [] if "toolSpec" in t]
        forced = ((config or {}).get("toolChoice") or {}).get("tool")
        if forced is not None and forced.get("name") not in declared:
            return f"The tool {forced.get('name')} in toolChoice is not one of the tools in toolConfig."
        pending: list[str] = []  # the toolUse ids of the previous (assistant) turn
        for i, m in enumerate(messages):
            role = m.get("role")
            if i and role == messages[i - 1].get("role"):
                return ("A conversation must alternate between user and assistant roles. Make sure the conversation "
                        "alternates between user and assistant roles and try again.")
            uses, results = [], []
            for j, b in enumerate(m.get("content") or []):
                if "text" in b and not b["text"].strip():
                    return (f"The text field in the ContentBlock object at messages.{i}.content.{j} is blank. Add text "
                            "to the text field, and try again.")
                if ("toolUse" in b or "toolResult" in b) and config is None:
                    return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
                if "toolUse" in b:
                    uses.append(b["toolUse"]["toolUseId"])
                    if not TOOL_USE_ID.fullmatch(uses[-1]):
                        return (f"1 validation error detected: Value at 'messages.{i + 1}.member.content.{j + 1}.member"
                                ".toolUse.toolUseId' failed to satisfy constraint: Member must satisfy regular "
                                "expression pattern: [a-zA-Z0-9_.:-]+")
                if "toolResult" in b:
                    results.append(b["toolResult"]["toolUseId"])
                if "image" in b:
                    problem = self._image_problem(b["image"], role, f"messages.{i}.content.{j}")
                    if problem is not None:
                        return problem
            if role == "user":
                if len(results) > len(pending):
                    return (f"The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse "
                            "blocks of previous turn.")
                missing = [t for t in pending if t not in results]
                if missing:
                    return (f"Expected toolResult blocks at messages.{i}.content for the following Ids: "
                            f"{', '.join(missing)}")
            pending = uses
        return None

    def _image_problem(self, image: dict[str, Any], role: str | None, where: str) -> str | None:
        if role != "user":
            return f"{where}: images are only supported in user messages."
        fmt = image.get("format")
        try:
            raw = base64.b64decode((image.get("source") or {}).get("bytes") or "", validate=True)
        except (binascii.Error, ValueError):
            return f"{where}.image.source.bytes: not valid base64."
        if fmt not in IMAGE_MAGIC or not raw.startswith(IMAGE_MAGIC[fmt]):
            return f"{where}.image: the bytes are not a valid {fmt} image."
        self.images.append((fmt, raw))
        return None


def _text(m: dict[str, Any]) -> str:
    """A message's text as the fake counts it: its text blocks and its tool results."""
    parts = [b["text"] for b in m.get("content") or [] if "text" in b]
    parts += [_result_text(b["toolResult"]) for b in m.get("content") or [] if "toolResult" in b]
    return " ".join(parts)


def _result_text(result: dict[str, Any]) -> str:
    return " ".join(b["text"] if "text" in b else json.dumps(b.get("json")) for b in result.get("content") or [])


def _pieces(text: str) -> list[str]:
    """A call's input JSON in three pieces, as ConverseStream sends it."""
    third = max(len(text) // 3, 1)
    return [p for p in (text[:third], text[third:2 * third], text[2 * third:]) if p]


def words_of(*texts: str) -> int:
    """The fake's token count for these texts."""
    return sum(words(t) for t in texts)
