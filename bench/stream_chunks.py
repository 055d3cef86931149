"""Streaming overhead: `manager.stream()` against the raw `AsyncOpenAI` stream on the same transport.

A loopback SSE server (its own process) answers each streamed chat completion with `n` one-token
chunks, then the `choices: []` usage chunk and `[DONE]`. In one process, the sides alternate
stream by stream:

- raw: `AsyncOpenAI(...).chat.completions.create(stream=True, stream_options={"include_usage": True})`
  on `DefaultAioHttpClient` (what our provider sends through), every chunk iterated;
- ours: `manager.stream(prompt)` on an `openai_compatible` model at that server, every chunk iterated;
- ours + one callback (`on_token`);
- LiteLLM `Router.acompletion(stream=True)` against the raw openai<3 SDK it pins, in bench/.venv,
  against the same server (when bench/.venv exists: `python -m bench` makes it).

Reported (medians): time to the first text chunk over raw's (target +≤ 1 ms) and, on 1,000-chunk
streams, time per chunk over raw's (target +≤ 5 µs). LiteLLM needs openai<3 and runs in bench/.venv
(`--side litellm` there) when asked.

    python -m bench.stream_chunks [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

MODEL = "bench-model"


# -- the server -------------------------------------------------------------------------------


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600, "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


_USAGE = b"data: " + json.dumps({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1767225600,
                                  "model": MODEL, "choices": [],
                                  "usage": {"prompt_tokens": 12, "completion_tokens": 0, "total_tokens": 12}}
                                 ).encode() + b"\n\n"


def _stream_body(n: int) -> bytes:
    parts = [_chunk({"role": "assistant", "content": ""})]
    parts += [_chunk({"content": f"t{i} "}) for i in range(n)]  # distinct: LiteLLM stops a stream that repeats
    parts.append(_chunk({}, "stop"))
    parts.append(_USAGE.replace(b'"completion_tokens": 0', b'"completion_tokens": %d' % n)
                 .replace(b'"total_tokens": 12', b'"total_tokens": %d' % (12 + n)))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.bodies: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) > 0 else len(head)]) \
                if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            n = int(json.loads(body).get("max_tokens") or 1)
            payload = self.bodies.get(n)
            if payload is None:
                payload = self.bodies[n] = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                                            b"transfer-encoding: chunked\r\n\r\n" + _stream_body(n))
            self.transport.write(payload)  # type: ignore[attr-defined]


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


# -- the client -------------------------------------------------------------------------------


Side = Callable[[int], Awaitable[tuple[float, float]]]


async def alternate(sides: dict[str, Side], *, repeats: int, warmup: int, per: tuple[int, int]) -> dict[str, Any]:
    """Each side's median (first chunk, whole stream) in ms on 10- and 1,000-chunk streams, the
    sides taking turns so that a busy moment weighs on all of them alike."""
    results: dict[str, Any] = {}
    for (n, label), count in zip(((10, "short"), (1000, "long")), per):
        for side in sides.values():
            for _ in range(warmup):
                await side(n)
        samples: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
        for _ in range(repeats):
            for name, side in sides.items():
                for _ in range(count):
                    samples[name].append(await side(n))
        results[label] = {name: {"first_ms": statistics.median(s[0] for s in v) * 1e3,
                                 "total_ms": statistics.median(s[1] for s in v) * 1e3} for name, v in samples.items()}
    return results


async def raw_stream(raw: Any, n: int) -> tuple[float, float]:
    """One raw SDK stream of `n` chunks: seconds to its first text, and to its end."""
    t0, first = time.perf_counter(), None
    stream = await raw.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=n, stream=True, stream_options={"include_usage": True})
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0


async def measure(url: str, quick: bool) -> dict[str, Any]:
    import openai

    from amaos_llm import LLMConfig, LLMManager

    raw = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0,
                             http_client=openai.DefaultAioHttpClient())
    manager = LLMManager(LLMConfig.model_validate({"models": [
        {"name": "m", "provider": "openai_compatible", "model": MODEL, "base_url": url, "source": "cloud",
         "api_key": "sk-bench", "cost_per_1k_input": 0, "cost_per_1k_output": 0}]}))

    class Counter:
        n = 0

        def on_token(self, text: str) -> None:
            self.n += 1

    raw_side = partial(raw_stream, raw)

    async def ours(n: int, callbacks: list[Any] | None = None) -> tuple[float, float]:
        t0 = time.perf_counter()
        first = None
        async with manager.stream("hi", max_tokens=n, callbacks=callbacks) as stream:
            async for chunk in stream:
                if first is None and chunk.type == "text":
                    first = time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0

    sides = {"raw": raw_side, "ours": ours, "ours_callback": lambda n: ours(n, [Counter()])}
    results = await alternate(sides, repeats=5 if quick else 11, warmup=5, per=(20, 3))
    await manager.aclose()
    await raw.close()
    short, long = results["short"], results["long"]
    results["first_chunk_over_raw_ms"] = short["ours"]["first_ms"] - short["raw"]["first_ms"]
    results["per_chunk_over_raw_us"] = (long["ours"]["total_ms"] - long["raw"]["total_ms"]) / 1000 * 1e3
    results["per_chunk_over_raw_with_callback_us"] = (
        long["ours_callback"]["total_ms"] - long["raw"]["total_ms"]) / 1000 * 1e3
    return results


async def measure_litellm(url: str, quick: bool) -> dict[str, Any]:
    """LiteLLM's Router streaming (in bench/.venv, on the openai<3 it pins) against that SDK's raw
    stream in the same process."""
    import openai

    from bench.setups import quiet_litellm

    quiet_litellm()
    from litellm import Router

    raw = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    router = Router(model_list=[{"model_name": "m", "litellm_params": {
        "model": f"openai/{MODEL}", "api_key": "sk-bench", "api_base": url, "max_retries": 0}}], num_retries=0)

    raw_side = partial(raw_stream, raw)

    async def litellm_side(n: int) -> tuple[float, float]:
        t0, first = time.perf_counter(), None
        stream = await router.acompletion(model="m", messages=[{"role": "user", "content": "hi"}], max_tokens=n,
                                          stream=True, stream_options={"include_usage": True})
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - t0
        return first or 0.0, time.perf_counter() - t0

    sides = {"raw": raw_side, "litellm": litellm_side}
    results = await alternate(sides, repeats=3 if quick else 7, warmup=3, per=(10, 2))
    short, long = results["short"], results["long"]
    results["first_chunk_over_raw_ms"] = short["litellm"]["first_ms"] - short["raw"]["first_ms"]
    results["per_chunk_over_raw_us"] = (long["litellm"]["total_ms"] - long["raw"]["total_ms"]) / 1000 * 1e3
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--litellm-url")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    if args.litellm_url:
        print(json.dumps(asyncio.run(measure_litellm(args.litellm_url, args.quick))))
        return
    server = subprocess.Popen([sys.executable, "-m", "bench.stream_chunks", "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        results = asyncio.run(measure(f"http://127.0.0.1:{port}/v1", args.quick))
        from bench.venv import python as bench_python

        if bench_python().exists():  # LiteLLM pins openai<3: its side runs in bench/.venv
            out = subprocess.run([str(bench_python()), "-m", "bench.stream_chunks", "--litellm-url",
                                  f"http://127.0.0.1:{port}/v1", *(["--quick"] if args.quick else [])],
                                 capture_output=True, text=True, check=True)
            results["litellm"] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(5)
    print(json.dumps(results, indent=2))
    print(f"first chunk over raw: {results['first_chunk_over_raw_ms']:+.3f} ms (target <= +1 ms); "
          f"per chunk over raw: {results['per_chunk_over_raw_us']:+.2f} us (target <= +5 us), "
          f"with one callback {results['per_chunk_over_raw_with_callback_us']:+.2f} us")
    if "litellm" in results:
        lite = results["litellm"]
        ratio = lite["per_chunk_over_raw_us"] / max(results["per_chunk_over_raw_us"], 0.01)
        print(f"LiteLLM Router: first chunk {lite['first_chunk_over_raw_ms']:+.3f} ms over its raw SDK, "
              f"per chunk {lite['per_chunk_over_raw_us']:+.2f} us ({ratio:.1f}x ours)")


if __name__ == "__main__":
    main()
