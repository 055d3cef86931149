"""Benchmark 5: many requests at once through one client, against the loopback server.

One process per side (`raw`, `ours`, `litellm`): `total` requests with `concurrency` of them
in flight at any moment (that many workers pulling from one queue), after a warm-up round that
opens the connections. Reports throughput, per-request latency (median, p99) and memory: the
peak resident size while serving the load (warm-up included) minus the size after one single
call (which has done every lazy import and set-up).

    python -m bench.concurrency --side ours --url http://127.0.0.1:PORT/v1
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench import setups
from bench.timing import Samples, emit, metric, peak_rss_mb, rss_mb, value

FULL = {"total": 5000, "concurrency": 500, "repeats": 3}
QUICK = {"total": 1000, "concurrency": 500, "repeats": 1}


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
    """The call to make and the object to close afterwards."""
    if side == "raw":
        sdk = setups.openai_client(url)
        return setups.raw_call(sdk), sdk.close
    if side == "ours":
        manager = setups.our_manager(url, url)
        return setups.our_call(manager), manager.aclose
    router = setups.litellm_router(url, url)
    return setups.litellm_call(router), None


async def measure(side: str, url: str, n: dict[str, int]) -> dict[str, Any]:
    call, close = client(side, url)
    try:
        await call()
        before = rss_mb()
        await load(call, n["concurrency"], n["concurrency"])  # warm-up: every connection opened once
        walls, rounds = [], []
        for _ in range(n["repeats"]):
            wall, latencies = await load(call, n["total"], n["concurrency"])
            walls.append(wall)
            rounds.append(latencies)
        peak = peak_rss_mb()
    finally:
        if close is not None:
            await close()
    throughputs = [n["total"] / w for w in walls]
    return {
        "throughput": value(statistics.median(throughputs), "req/s", throughputs),
        "latency": metric(rounds, "ms"),
        "wall": value(statistics.median(walls), "s", walls),
        "rss_before": value(before, "MB"),
        "rss_delta": value(max(0.0, peak - before), "MB"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("raw", "ours", "litellm"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = QUICK if args.quick else FULL
    metrics = asyncio.run(measure(args.side, args.url, n))
    emit({"benchmark": "concurrency", "side": args.side, "metrics": metrics, "params": n})


if __name__ == "__main__":
    main()
