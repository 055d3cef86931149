"""The cost benchmark's loopback cloud: OpenAI-protocol fakes priced like real models, with faults.

One server stands for every model of the workload (`bench.cost_workload.MODELS`), told apart by
the request's `model`; each side talks to its own path prefix (`/{side}/v1`), so each has its own
ledger and attempt counts. Per request (its id rides in the prompt, `[req N]`):

- usage: `prompt_tokens` = the prompt's token estimate (⌈chars / 4⌉ over every message),
  `completion_tokens` = min(max_tokens, 100); the ledger charges it at the model's price;
- faults, drawn from the seed per (request, model, attempt): each cloud model fails 2–8 % of its
  attempts with a 500, a 429 or a timeout (the reply held past the client's timeout);
- the local model (8k window) is up for a seeded 60 % of requests (else 503), and answers 400
  when the prompt and `max_tokens` do not fit its window.

`GET /{side}/ledger`: that side's cost (exact, a string), answers and calls per model.

    python -m bench.cost_server SEED      # prints the port, serves until stdin closes
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from collections import defaultdict
from decimal import Decimal
from typing import Any

from bench.cost_workload import LOCAL, LOCAL_WINDOW, MODELS, fault, local_up

OUTPUT_TOKENS = 100
HANG_S = 30.0  # a timeout fault: longer than any client waits
_REQ = re.compile(r"\[req (\d+)\]")


class Ledger:
    def __init__(self) -> None:
        self.cost = Decimal(0)
        self.answers: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.attempts: dict[tuple[int, str], int] = defaultdict(int)

    def as_dict(self) -> dict[str, Any]:
        return {"cost": str(self.cost), "answers": dict(self.answers), "calls": dict(self.calls)}


LEDGERS: dict[str, Ledger] = defaultdict(Ledger)
SEED = 0


def _tokens(messages: list[dict[str, Any]]) -> int:
    chars = sum(len(m.get("content") or "") for m in messages if isinstance(m.get("content"), str))
    return math.ceil(chars / 4)


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"message": message, "type": "server_error", "code": None}}


async def _complete(side: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    model = body.get("model", "")
    messages = body.get("messages") or []
    ledger = LEDGERS[side]
    ledger.calls[model] += 1
    if model not in MODELS:
        return _error(404, f"unknown model {model!r}")
    text = " ".join(m.get("content") or "" for m in messages if isinstance(m.get("content"), str))
    found = _REQ.search(text)
    req = int(found.group(1)) if found else -1
    ledger.attempts[req, model] += 1
    attempt = ledger.attempts[req, model]
    prompt = _tokens(messages)
    max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or OUTPUT_TOKENS)
    if model == LOCAL:
        if not local_up(SEED, req):
            return _error(503, "local model server is down")
        if prompt + max_tokens > LOCAL_WINDOW:
            return 400, {"error": {"message": f"context length {LOCAL_WINDOW} exceeded",
                                   "type": "invalid_request_error", "code": "context_length_exceeded"}}
    else:
        kind = fault(SEED, req, model, attempt)
        if kind == "timeout":
            try:
                await asyncio.sleep(HANG_S)
            except asyncio.CancelledError:
                return _error(504, "shut down while holding a timeout")  # the server is stopping
        if kind in ("500", "429", "timeout"):
            return _error(int(kind) if kind != "timeout" else 504, f"injected {kind}")
    output = min(max_tokens, OUTPUT_TOKENS)
    price_in, price_out = MODELS[model]["price"]
    ledger.cost += (prompt * Decimal(str(price_in)) + output * Decimal(str(price_out))) / 1_000_000
    ledger.answers[model] += 1
    return 200, {
        "id": f"chatcmpl-{req}-{attempt}", "object": "chat.completion", "created": 1767225600, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok " * output}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
    }


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            side, _, rest = path.lstrip("/").partition("/")
            if method == "GET" and rest == "ledger":
                status, answer = 200, LEDGERS[side].as_dict()
            elif method == "POST" and rest.endswith("chat/completions"):
                status, answer = await _complete(side, json.loads(body))
            else:
                status, answer = _error(404, f"no route {method} {path}")
            data = json.dumps(answer).encode()
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                         f"content-length: {len(data)}\r\n\r\n".encode() + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed the connection (a timeout gives up on a held reply)
    except asyncio.CancelledError:
        return  # the server is stopping (its stdin closed): the connection ends with it
    finally:
        writer.close()


async def serve(seed: int) -> None:
    global SEED
    SEED = seed
    server = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=4096, limit=1 << 22)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    server.close()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
