"""Measuring: timed samples, their summary, the process's memory, and a child's JSON answer.

A benchmark takes samples in *repeats* (blocks of calls after a warm-up). A `metric` reports the
median and tail over every sample, and the noise as the lowest and highest of the repeats'
medians (of the samples, when there is one block). When sides are compared in one process,
`alternating` interleaves their calls, and `difference` pairs a side with its baseline repeat by
repeat.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Samples = list[float]  # seconds, or any unit the caller chose
Metric = dict[str, Any]

SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6}


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def metric(repeats: Sequence[Samples], unit: str = "us", scale: float | None = None) -> Metric:
    """Summary of samples taken in repeats, converted from seconds to `unit`.

    The noise is the spread of the repeats' medians; for samples taken in one block (each a
    whole run, such as one import or one generation), the spread of the samples themselves.
    """
    k = SCALE.get(unit, 1.0) if scale is None else scale
    every = [v * k for r in repeats for v in r]
    medians = [statistics.median(r) * k for r in repeats if r] if len(repeats) > 1 else [min(every), max(every)]
    return {
        "unit": unit,
        "median": statistics.median(every),
        "p95": percentile(every, 95),
        "p99": percentile(every, 99),
        "min": min(every),
        "max": max(every),
        "noise": [min(medians), max(medians)],
        "n": len(every),
        "repeats": len(repeats),
    }


def difference(subject: Sequence[Samples], base: Sequence[Samples], unit: str = "us") -> Metric:
    """What `subject` costs beyond `base`: median minus median; noise from paired repeats."""
    k = SCALE[unit]
    pairs = [(statistics.median(s) - statistics.median(b)) * k for s, b in zip(subject, base, strict=True)]
    whole = (statistics.median([v for r in subject for v in r]) - statistics.median([v for r in base for v in r])) * k
    return {"unit": unit, "median": whole, "noise": [min(pairs), max(pairs)], "repeats": len(pairs)}


def value(v: float, unit: str, samples: Sequence[float] = ()) -> Metric:
    """A single figure (a throughput, a memory delta), with its spread when it was repeated."""
    spread = [min(samples), max(samples)] if samples else [v, v]
    return {"unit": unit, "median": v, "noise": spread, "repeats": max(1, len(samples))}


async def timed_calls(call: Callable[[], Awaitable[Any]], count: int) -> Samples:
    """Seconds taken by each of `count` sequential awaits of `call()`."""
    clock = time.perf_counter
    out: Samples = []
    append = out.append
    for _ in range(count):
        t0 = clock()
        await call()
        append(clock() - t0)
    return out


async def alternating(
    calls: dict[str, Callable[[], Awaitable[Any]]], *, count: int, repeats: int, warmup: int, chunk: int = 10,
    cpu: dict[str, float] | None = None,
) -> dict[str, list[Samples]]:
    """Each call `warmup` times, then `repeats` repeats of `count` calls each.

    Inside a repeat the calls take turns every `chunk` calls, so that a busy moment on the
    machine falls on every side alike rather than on whichever ran its block then. With `cpu`,
    each side's process CPU seconds over its measured calls are added to `cpu[side]`.
    """
    for call in calls.values():
        for _ in range(warmup):
            await call()
    samples: dict[str, list[Samples]] = {name: [] for name in calls}
    for _ in range(repeats):
        block: dict[str, Samples] = {name: [] for name in calls}
        for start in range(0, count, chunk):
            for name, call in calls.items():
                cpu0 = time.process_time()
                block[name] += await timed_calls(call, min(chunk, count - start))
                if cpu is not None:
                    cpu[name] = cpu.get(name, 0.0) + time.process_time() - cpu0
        for name in calls:
            samples[name].append(block[name])
    return samples


def rss_mb() -> float:
    """Resident memory now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """The highest resident memory this process has had (ru_maxrss is KiB on Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def emit(result: dict[str, Any]) -> None:
    """A child's answer: one JSON line, the last thing on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
