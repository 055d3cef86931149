"""Protocol-faithful fake servers for the four wires, real HTTP on 127.0.0.1.

The SDKs sit on httpx2 (and ollama on httpx), so tests talk to real sockets instead of mocking
a transport. Every fake answers in its provider's JSON shapes (WIRE.md) with deterministic usage:
input tokens = words in all messages (system included), output tokens = words in the reply. The
reply is ``echo: <last user message>`` (or ``echo: <last tool result>`` when the chat ends on one),
cut to the request's token limit (finish reason "length" in the wire's spelling), unless
``fake.reply`` is set.

Each fake records every request in ``fake.requests`` and can misbehave on demand::

    fake.fail(429, retry_after="7")   # every request: 429 with the wire's error body
    fake.fail(500, times=2)           # the next two requests fail, then it answers
    fake.delay = 5.0                  # sleep before answering
    fake.hold_until = 500             # answer nothing until 500 requests have arrived
    fake.malformed = True             # 200 with a body that is not JSON
    fake.stream_fault = "error"       # streams: the wire's error event after `fault_after` deltas (1)
    fake.stream_fault = "cut"         # streams: connection dropped after `fault_after` deltas
    fake.stream_fault = "close"       # streams: a clean end after `fault_after` deltas, no end marker
    fake.stall_before = 5.0           # streams: silence after the head, before the first delta
    fake.stall_after = 5.0            # streams: silence after the first delta (`disconnected` is set
                                      #   when the client closes the stream meanwhile)
    fake.reply_fault = "hang_up"      # the connection closed after the request, no reply at all
    fake.reply_fault = "cut"          # a plain reply cut off after half its body
    fake.flaky(500, 0.3, seed=1)      # a seeded random 30 % of requests fail with 500
    fake.error_fields = {...}         # merged into the wire's error object (OpenAI `param`/`code`, ...)
    fake.load_delay = 2.0             # a cold server: its first request (or after fake.unload()) waits

and model the rest of a real API::

    fake.tool_calls = [{"name": "add", "arguments": {"a": 1}}]  # calls instead of text (streamed in
                                      #   the wire's fragments) until a tool result comes back
    fake.cache = (3, 2)               # 3 prompt tokens read from the cache, 2 written, in the wire's fields
    fake.strict = True                # 400 like the real API on a tool history it refuses
    openai_fake.stream_usage = False  # no usage chunk, like compatible servers ignoring include_usage
    google_fake.thought = "..."       # a thought part before the answer

Start with ``with OpenAIFake() as fake:`` (or the fixtures in ``tests.support.fixtures``);
``fake.url`` is the base URL in the form the SDK wants.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.fake_server import (
    CREATED_AT,
    Answer,
    FakeServer,
    Prompt,
    Recorded,
    Reply,
    closed_port_url,
    sse,
    words,
)

# the plumbing is re-exported: tests import everything fake from here
__all__ = ["CREATED_AT", "AnthropicFake", "Answer", "FakeServer", "GoogleFake", "OllamaFake", "OpenAIFake", "Prompt",
           "Recorded", "Reply", "closed_port_url", "sse", "words"]


def _text_of(content: Any) -> str:
    """Message content as text: a string, or a list of text blocks/parts (other blocks skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b["text"]) for b in content if isinstance(b, dict) and "text" in b)
    return ""


def _pieces(text: str) -> list[str]:
    """Arguments JSON in three fragments, as the wires stream them."""
    third = max(len(text) // 3, 1)
    return [p for p in (text[:third], text[third:2 * third], text[2 * third:]) if p]


def _chat_prompt(body: dict[str, Any], max_tokens: int | None, system: str = "") -> Prompt:
    messages = body.get("messages") or []
    texts = [system] if system else []
    texts += [_text_of(m.get("content")) for m in messages]
    users = [_text_of(m.get("content")) for m in messages if m.get("role") == "user"]
    last = messages[-1] if messages else {}
    on_result = last.get("role") == "tool"
    last_user = _text_of(last.get("content")) if on_result else (users[-1] if users else "")
    return Prompt(str(body.get("model", "")), texts, last_user, max_tokens, on_result)


class OllamaFake(FakeServer):
    # what `POST /api/show` reports (Ollama >= 0.6); None: an older server that reports none
    capabilities: list[str] | None = ["completion", "tools", "vision"]

    def route(self, req: Recorded) -> Reply:
        if req.method == "GET" and req.path == "/api/tags":
            return Reply(body={"models": [self._model_entry(m) for m in self.models]})
        if req.method == "POST" and req.path == "/api/show":
            body: dict[str, Any] = {"modelfile": "", "template": "{{ .Prompt }}", "details": {"format": "gguf"},
                                    "model_info": {"general.architecture": "fake"}, "parameters": "",
                                    "modified_at": CREATED_AT}
            if self.capabilities is not None:
                body["capabilities"] = self.capabilities
            return Reply(body=body)
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
        calls = [{"function": {"name": c["name"], "arguments": c["arguments"]}} for c in a.calls]
        if not req.body.get("stream", True):
            message = {"role": "assistant", "content": a.text, **({"tool_calls": calls} if calls else {})}
            return Reply(body={**done, "message": message})
        line = lambda obj: (json.dumps(obj) + "\n").encode()  # noqa: E731

        def delta(message: dict[str, Any]) -> bytes:
            return line({"model": prompt.model, "created_at": CREATED_AT,
                         "message": {"role": "assistant", "content": "", **message}, "done": False})

        deltas = [delta({"content": p}) for p in a.pieces] + [delta({"tool_calls": [c]}) for c in calls]
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
    stream_usage = True  # False: like compatible servers that ignore `include_usage`
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
        finish = "tool_calls" if a.calls else "length" if a.truncated else "stop"
        usage = {"prompt_tokens": a.input_tokens, "completion_tokens": a.output_tokens,
                 "total_tokens": a.input_tokens + a.output_tokens,
                 "prompt_tokens_details": {"cached_tokens": self.cache[0], "audio_tokens": 0}, **self.extra_usage}
        base = {"id": f"chatcmpl-fake-{len(self.requests)}", "created": 1_700_000_000, "model": prompt.model,
                "system_fingerprint": "fp_fake"}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": a.text or None, "refusal": None}
            if a.calls:
                message["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
                    "name": c["name"], "arguments": json.dumps(c["arguments"])}} for c in a.calls]
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            return Reply(body={**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return sse({**base, "object": "chat.completion.chunk", "choices": [choice]})

        deltas = [chunk({"content": p}) for p in a.pieces]
        for i, c in enumerate(a.calls):  # the first fragment names the call, the rest carry its arguments
            deltas.append(chunk({"tool_calls": [{"index": i, "id": c["id"], "type": "function",
                                                 "function": {"name": c["name"], "arguments": ""}}]}))
            deltas += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]})
                       for p in _pieces(json.dumps(c["arguments"]))]
        tail = [chunk({}, finish)]
        if self.stream_usage and (body.get("stream_options") or {}).get("include_usage"):
            tail.append(sse({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
        tail.append(sse("[DONE]"))
        head = [chunk({"role": "assistant", "content": ""})]
        return Reply(frames=(head, deltas, tail), content_type="text/event-stream")

    def error_body(self, status: int, message: str) -> Any:
        kind = self.error_types.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def stream_error_frame(self) -> bytes:
        return sse({"error": {"message": "The server had an error while processing your request.",
                              "type": "server_error", "param": None, "code": None}})

    def history_error(self, body: Any) -> str | None:
        """OpenAI's words for a tool history it refuses."""
        open_ids: list[str] = []
        for i, m in enumerate(body.get("messages") or []):
            if m.get("role") == "tool":
                if m.get("tool_call_id") not in open_ids:
                    return ("Invalid parameter: messages with role 'tool' must be a response to a preceeding "
                            "message with 'tool_calls'.")
                open_ids.remove(m["tool_call_id"])
                continue
            if open_ids:
                return ("An assistant message with 'tool_calls' must be followed by tool messages responding to "
                        f"each 'tool_call_id'. The following tool_call_ids did not have response messages: "
                        f"{', '.join(open_ids)}")
            for j, call in enumerate(m.get("tool_calls") or []):
                if len(call["id"]) > 40:
                    return (f"Invalid 'messages[{i}].tool_calls[{j}].id': string too long. Expected a string with "
                            f"maximum length 40, but got a string with length {len(call['id'])} instead.")
                open_ids.append(call["id"])
        return None


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
        a = self.answer(self._prompt(body))
        stop = "tool_use" if a.calls else "max_tokens" if a.truncated else "end_turn"
        read, write = self.cache
        # Anthropic's input_tokens leaves out what was read from or written to the cache
        usage = {"input_tokens": max(a.input_tokens - read - write, 0), "output_tokens": a.output_tokens,
                 "cache_creation_input_tokens": write, "cache_read_input_tokens": read, **self.extra_usage}
        message = {"id": f"msg_fake_{len(self.requests)}", "type": "message", "role": "assistant",
                   "model": str(body.get("model", "")), "stop_sequence": None}
        uses = [{"type": "tool_use", "id": c["id"].replace("call_", "toolu_"), "name": c["name"],
                 "input": c["arguments"]} for c in a.calls]
        if not body.get("stream"):
            content = uses or [{"type": "text", "text": a.text}]
            return Reply(body={**message, "content": content, "stop_reason": stop, "usage": usage})
        start_usage = {**usage, "output_tokens": 1}
        head = [sse({"type": "message_start", "message": {**message, "content": [], "stop_reason": None,
                                                          "usage": start_usage}}, "message_start")]
        deltas: list[bytes] = []
        if not uses:
            head += [sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                         "content_block_start"), sse({"type": "ping"}, "ping")]
            deltas = [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                          "content_block_delta") for p in a.pieces]
            deltas.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        for i, use in enumerate(uses):
            deltas.append(sse({"type": "content_block_start", "index": i,
                               "content_block": {**use, "input": {}}}, "content_block_start"))
            deltas += [sse({"type": "content_block_delta", "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": p}}, "content_block_delta")
                       for p in _pieces(json.dumps(use["input"]))]
            deltas.append(sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
        tail = [
            sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                 "usage": {**usage, "output_tokens": a.output_tokens}}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return Reply(frames=(head, deltas, tail), content_type="text/event-stream")

    def _prompt(self, body: dict[str, Any]) -> Prompt:
        texts = [_text_of(body.get("system", ""))] if body.get("system") else []
        users, last, on_result = [], "", False
        for m in body.get("messages") or []:
            content = m.get("content")
            blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
            results = [_text_of(b.get("content")) for b in blocks if b.get("type") == "tool_result"]
            text = _text_of(blocks)
            texts.append(" ".join([text, *results]).strip())
            if m.get("role") == "user":
                users.append(text)
                on_result, last = bool(results), (" ".join(results) if results else text)
            else:
                on_result = False
        return Prompt(str(body.get("model", "")), texts, last, body.get("max_tokens"), on_result)

    def error_body(self, status: int, message: str) -> Any:
        kind = self.error_types.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}

    def stream_error_frame(self) -> bytes:
        return sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")

    def history_error(self, body: Any) -> str | None:
        """Anthropic's words for a tool history it refuses: results must sit in the very next message."""
        pending: list[str] = []
        for i, m in enumerate(body.get("messages") or []):
            blocks = m["content"] if isinstance(m.get("content"), list) else []
            answered = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            for j, b in enumerate(blocks):
                if b.get("type") == "tool_use" and not re.fullmatch(r"[a-zA-Z0-9_-]+", b["id"]):
                    return f"messages.{i}.content.{j}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
            stray = [t for t in answered if t not in pending]
            if stray:
                return (f"messages.{i}.content.0: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{', '.join(map(str, stray))}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message.")
            missing = [t for t in pending if t not in answered]
            if missing:
                return (f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                        f"{', '.join(missing)}. Each `tool_use` block must have a corresponding `tool_result` "
                        "block in the next message.")
            pending = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        return None


class GoogleFake(FakeServer):
    error_types = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                   429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
    _path = re.compile(r"^/(v1\w*)/models/([^:/]+)(?::(\w+))?$")
    SIGNATURE = "c2lnbmF0dXJl"  # base64 of "signature": the thought signature on a call's part
    thought: str | None = None  # a thought summary part (`thought: true`) sent before the answer

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
        limit = (body.get("generationConfig") or {}).get("maxOutputTokens")
        a = self.answer(self._prompt(body, model, limit))
        prompt_usage = {"promptTokenCount": a.input_tokens,
                        **({"cachedContentTokenCount": self.cache[0]} if self.cache[0] else {})}
        usage = {**prompt_usage, "candidatesTokenCount": a.output_tokens,
                 "totalTokenCount": a.input_tokens + a.output_tokens, **self.extra_usage}
        finish = "MAX_TOKENS" if a.truncated else "STOP"

        def response(parts: list[dict[str, Any]], done: bool) -> dict[str, Any]:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
            # every chunk reports the prompt's usage; the last one the whole reply's
            out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model,
                                   "responseId": f"fake-{len(self.requests)}", "usageMetadata": prompt_usage}
            if done:
                candidate["finishReason"] = finish
                out["usageMetadata"] = usage
            return out

        calls = [{"functionCall": {"name": c["name"], "args": c["arguments"]},
                  **({"thoughtSignature": self.SIGNATURE} if i == 0 else {})} for i, c in enumerate(a.calls)]
        thought = [{"text": self.thought, "thought": True}] if self.thought else []
        if method == "generateContent":
            return Reply(body=response(calls or [*thought, {"text": a.text}], True))
        parts = [[c] for c in calls] or [[{"text": p}] for p in (a.pieces or [""])]
        if thought:
            parts = [thought, *parts]
        deltas = [sse(response(p, False), sep="\r\n") for p in parts[:-1]]
        tail = [sse(response(parts[-1], True), sep="\r\n")]
        if not deltas:  # a one-piece reply: the fault still comes after the first delta
            deltas, tail = tail, []
        return Reply(frames=([], deltas, tail), content_type="text/event-stream")

    def _prompt(self, body: dict[str, Any], model: str, limit: int | None) -> Prompt:
        system = _text_of((body.get("systemInstruction") or {}).get("parts"))
        contents = body.get("contents") or []
        texts = [system] if system else []
        texts += [_text_of(c.get("parts")) for c in contents]
        users = [_text_of(c.get("parts")) for c in contents if c.get("role", "user") == "user"]
        last_parts = (contents[-1].get("parts") or []) if contents else []
        results = [p.get("functionResponse") or p.get("function_response") for p in last_parts]
        results = [r for r in results if r]
        if results:
            return Prompt(model, texts, " ".join(json.dumps(r.get("response")) for r in results), limit, True)
        return Prompt(model, texts, users[-1] if users else "", limit)

    def error_body(self, status: int, message: str) -> Any:
        kind = self.error_types.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": kind}}

    def stream_error_frame(self) -> bytes:
        return sse({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
                   sep="\r\n")

    def history_error(self, body: Any) -> str | None:
        """Gemini's words for a tool history it refuses: responses right after the calls, one per call."""
        calls: list[str] = []
        for c in body.get("contents") or []:
            parts = c.get("parts") or []
            names = [(p.get("functionResponse") or p.get("function_response") or {}).get("name") for p in parts]
            names = [n for n in names if n is not None]
            if names and not calls:
                return ("Please ensure that function response turn comes immediately after a function call turn.")
            if calls and sorted(names) != sorted(calls):
                return ("Please ensure that the number of function response parts is equal to the number of "
                        "function call parts of the function call turn.")
            calls = [(p.get("functionCall") or p.get("function_call"))["name"] for p in parts
                     if p.get("functionCall") or p.get("function_call")]
        return None
