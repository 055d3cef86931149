"""Benchmark 5: many requests at once through one client, against the loopback server.

One process per side and shape. The sides:

- `floor`: a bare aiohttp POST of the same request, its JSON parsed; no SDK (what the client
  machinery costs at the least).
- `raw_default`, `raw_fast`: the raw OpenAI SDK on its default client (httpx2) and on its
  `DefaultAioHttpClient`, its fastest transport.
- `raw_post`: the SDK's `post()` on `DefaultAioHttpClient` with the JSON `create()` sends, the
  call our OpenAI provider makes (what is ours alone is ours − this).
- `ours`: `LLMManager.complete`, a 2-model fallback list whose first model answers.
- `litellm`: LiteLLM's Router, alike (in bench/.venv, with the openai<3 it pins).

The first five run in the project's own venv (.venv: the SDK versions amaos-llm installs), LiteLLM
in bench/.venv. Each shape sends `total` requests with `concurrency` in flight at any moment (that
many workers pulling from one queue), after a warm-up round that opens the connections. Reported:
throughput, per-request latency (median, p99), client CPU per request (user + system time of the
process over the measured rounds, divided by the requests) and memory: the peak resident size while
serving the load (warm-up included) minus the size after one single call (which has done every
lazy import and set-up).

    python -m bench.concurrency --side ours --shape 500 --url http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from typing import Any

from bench import setups
from bench.timing import Samples, emit, metric, peak_rss_mb, rss_mb, value

SIDES = ("floor", "raw_default", "raw_fast", "raw_post", "ours", "litellm")
SHAPES = {  # concurrency → requests per round and rounds
    "full": {"500": {"total": 3000, "concurrency": 500, "repeats": 3},
             "2000": {"total": 2000, "concurrency": 2000, "repeats": 3}},
    "quick": {"500": {"total": 1000, "concurrency": 500, "repeats": 1},
              "2000": {"total": 2000, "concurrency": 2000, "repeats": 1}},
}


async def load(call: setups.Call, total: int, concurrency: int) -> tuple[float, Samples]:
    """Wall time and per-request latencies of `total` calls, `concurrency` at a time."""
    clock = time.perf_counter
    latencies: Samples = []
    remaining = iter(range(total))

    async def worker() -> None:
        for _ in remaining:  # one shared iterator: each worker takes the next request
            t0 = clock()
            await call()
            latencies.append(clock() - t0)

    start = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return clock() - start, latencies


def client(side: str, url: str) -> tuple[setups.Call, Any]:
    """The call to make and the coroutine function that closes what it used."""
    if side == "floor":
        return setups.aiohttp_floor(url)
    if side in ("raw_default", "raw_fast"):
        sdk = setups.openai_client(url, "aiohttp" if side == "raw_fast" else "default")
        return setups.raw_call(sdk), sdk.close
    if side == "raw_post":
        sdk = setups.openai_client(url, "aiohttp")
        return setups.raw_post_call(sdk), sdk.close
    if side == "ours":
        manager = setups.our_manager(url, url)
        return setups.our_call(manager), manager.aclose
    router = setups.litellm_router(url, url)
    return setups.litellm_call(router), None


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(side: str, url: str, n: dict[str, int]) -> dict[str, Any]:
    call, close = client(side, url)
    try:
        await call()
        before = rss_mb()
        await load(call, n["concurrency"], n["concurrency"])  # warm-up: every connection opened once
        walls, rounds = [], []
        cpu0 = cpu_seconds()
        for _ in range(n["repeats"]):
            wall, latencies = await load(call, n["total"], n["concurrency"])
            walls.append(wall)
            rounds.append(latencies)
        cpu = cpu_seconds() - cpu0
        peak = peak_rss_mb()
    finally:
        if close is not None:
            await close()
    throughputs = [n["total"] / w for w in walls]
    return {
        "throughput": value(statistics.median(throughputs), "req/s", throughputs),
        "latency": metric(rounds, "ms"),
        "cpu_per_request": value(cpu / (n["total"] * n["repeats"]) * 1e6, "us"),
        "wall": value(statistics.median(walls), "s", walls),
        "rss_before": value(before, "MB"),
        "rss_delta": value(max(0.0, peak - before), "MB"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=SIDES, required=True)
    parser.add_argument("--shape", choices=("500", "2000"), default="500", help="the concurrency")
    parser.add_argument("--url", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = SHAPES["quick" if args.quick else "full"][args.shape]
    metrics = asyncio.run(measure(args.side, args.url, n))
    transport = setups.our_transport() if args.side == "ours" else None
    emit({"benchmark": "concurrency", "side": args.side, "shape": f"c{args.shape}", "metrics": metrics,
          "params": {**n, **({"transport": transport} if transport else {})}})


if __name__ == "__main__":
    main()
