"""Telemetry's cost per call: `manager.complete()` on an in-process callable model with OpenTelemetry
absent (its import blocked), installed but unconfigured (the API's proxy providers: nothing is
recorded), and exporting to the SDK's in-memory exporter and reader. Each side runs in a fresh
process (absence cannot be undone in one); medians of CPU time per call over repeats.

    python -m bench.telemetry [--quick]

Target (issue 15): unconfigured within 1 µs of absent.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import asyncio, json, statistics, sys, time
side, calls, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if side == "absent":
    sys.modules["opentelemetry"] = None  # as if not installed
kwargs = {}
if side == "exporting":
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    spans = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    kwargs = {"tracer_provider": tp, "meter_provider": MeterProvider(metric_readers=[InMemoryMetricReader()])}
elif side == "unconfigured":
    import opentelemetry.trace, opentelemetry.metrics  # imported, no provider set
from amaos_llm import LLMConfig, LLMManager

async def main():
    m = LLMManager(LLMConfig(), **kwargs)
    m.register_model("a", lambda messages, **params: "ok")
    for _ in range(2000):
        await m.complete("hi")
    medians = []
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(calls):
            await m.complete("hi")
        medians.append((time.process_time() - t) / calls * 1e6)
        if side == "exporting":
            spans.clear()
    print(json.dumps({"side": side, "us_per_call": statistics.median(medians)}))

asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls, repeats = (2000, 5) if args.quick else (5000, 9)
    results: dict[str, list[float]] = {"absent": [], "unconfigured": [], "exporting": []}
    for _ in range(3):  # sides alternate process by process, so a busy moment weighs on all
        for side in results:
            out = subprocess.run([sys.executable, "-c", CHILD, side, str(calls), str(repeats)],
                                 capture_output=True, text=True, check=True)
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1])["us_per_call"])
    summary = {side: min(values) for side, values in results.items()}
    summary["unconfigured_minus_absent"] = summary["unconfigured"] - summary["absent"]
    print(json.dumps(summary, indent=2))
    print(f"unconfigured - absent: {summary['unconfigured_minus_absent']:+.2f} us per call (target <= 1 us); "
          f"exporting: {summary['exporting']:.1f} us per call")


if __name__ == "__main__":
    main()
