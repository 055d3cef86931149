"""Benchmark 9: the same batch job in this process and on Ray (issue 14's scale-out).

`run_batch` (what `amaos-llm run --inputs --output` runs) over 4,000 inputs (quick: 1,000) of a
1-node `llm_manager` pipeline whose model is `openai_compatible` on a loopback server answering
each request after 20 ms (`--serve`, in its own process). Three sides, one after the other:

- `local`: `LocalExecutor`, `--concurrency` runs at a time (16).
- `ray1`: `RayExecutor`, 1 worker with the same concurrency, batches of 64: a local Ray on 127.0.0.1,
  started and stopped by the job.
- `ray2`: 2 workers, each with that concurrency (so twice the runs in flight).

For each: start-up (from the call until the first record is written: Ray's start, the actors
loading the pipeline, the first batch), the steady rate (records after the first over the time
after it) and its time per input, and the whole job's wall time. The Ray overhead per input is
(Ray's steady time per input − the local one's) at the same concurrency; the target is ≤ 1 ms.

`store` (`bench/store_costs.py`): what the Redis state store shared by such workers costs, against
a loopback redis-server the bench starts and stops: budget reserve + settle p50/p99 on Redis vs
memory, and the time a budgeted `complete()` adds on Redis (target ≤ 0.5 ms p50).

    python -m bench.scaleout [--quick] [--count N] [--concurrency C] [--sides local,ray1,ray2,store]

The figures go to stdout (one JSON line) and to bench/results/scaleout.json (`--quick`:
scaleout-quick.json), with a short table beside it (.md).

Run from the repository root with the project's venv (`.venv/bin/python`, the `ray` extra). The
machine's core count and load average are printed with the figures: on a 2-core machine one core
is busy serving the 20 ms replies, and the Ray workers, the driver and Ray's own processes share
the rest, so the 1 → 2 worker figure shows what two workers add there, not what a cluster would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.server import _Http
from bench.setups import KEY, MODEL
from bench.timing import emit, value

DELAY = 0.02  # seconds per call, as a fast model's reply
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 64


class _SlowHttp(_Http):
    """The loopback server's canned replies, each sent `DELAY` after its request arrived."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_Delayed(transport))  # type: ignore[arg-type]


class _Delayed:
    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        self._loop.call_later(DELAY, self._write, data)

    def _write(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_SlowHttp, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    server.close()


def _job(folder: Path, url: str, count: int) -> tuple[Path, Path]:
    models = folder / "models.yaml"
    models.write_text(f"models:\n  - {{name: fake, provider: openai_compatible, model: {MODEL}, base_url: '{url}', "
                      f"api_key: {KEY}, max_retries: 0, cost_per_1k_input: '0.001', cost_per_1k_output: '0.002'}}\n")
    pipeline = folder / "p.yaml"
    pipeline.write_text("name: scaleout\nnodes:\n"
                        f"  - {{id: llm, type: llm_manager, config: {{config_path: {models}}}}}\n")
    inputs = folder / "in.jsonl"
    inputs.write_text("".join(json.dumps({"input": f"item {i}", "id": i}) + "\n" for i in range(count)))
    return pipeline, inputs


def measure(side: str, pipeline_path: Path, inputs: Path, out: Path, concurrency: int) -> dict[str, Any]:
    import anyio

    from graphs.batch_run import run_batch
    from graphs.executors import Executor, LocalExecutor, RayExecutor
    from graphs.pipeline import load_pipeline

    executor: Executor = LocalExecutor(concurrency)
    if side != "local":
        executor = RayExecutor(workers=int(side.removeprefix("ray")), batch_size=BATCH, concurrency=concurrency)
    pipeline = load_pipeline(pipeline_path)
    stamps: list[float] = []
    start = time.perf_counter()
    summary = anyio.run(lambda: run_batch(pipeline, inputs, out, concurrency, executor=executor,
                                          on_record=lambda r: stamps.append(time.perf_counter())))
    wall = time.perf_counter() - start
    lines = out.read_text().splitlines()
    assert summary.runs == len(lines) == len(stamps) and summary.failed == 0, (side, summary)
    assert [json.loads(line)["id"] for line in lines] == list(range(len(lines)))
    steady = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return {"side": side, "inputs": len(lines), "startup": value(stamps[0] - start, "s"),
            "per_input": value(steady * 1e3, "ms"), "throughput": value(1 / steady, "inputs/s"),
            "wall": value(wall, "s")}


def executors(sides: list[str], count: int, concurrency: int) -> dict[str, Any]:
    server = subprocess.Popen([sys.executable, "-m", "bench.scaleout", "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        with tempfile.TemporaryDirectory(prefix="scaleout-") as folder:
            pipeline, inputs = _job(Path(folder), url, count)
            results = {side: measure(side, pipeline, inputs, Path(folder) / f"{side}.jsonl", concurrency)
                       for side in sides}
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    if "local" in results:
        local = results["local"]["per_input"]["median"]
        if "ray1" in results:
            results["ray1_overhead_per_input"] = value(results["ray1"]["per_input"]["median"] - local, "ms")
        if "ray2" in results:
            results["ray2_speedup"] = value(local / results["ray2"]["per_input"]["median"], "x")
    return results


def table(result: dict[str, Any]) -> str:
    """The figures as a short markdown table, saved beside the JSON."""
    rows = [f"# scaleout ({result['mode']}, {result['cores']} cores, load {result['load_average'][0]:.2f})", "",
            "| figure | median | p99 |", "|---|---|---|"]
    for side in ("local", "ray1", "ray2"):
        if side in result:
            r = result[side]
            rows.append(f"| {side}: per input (start-up {r['startup']['median']:.2f} s) | "
                        f"{r['per_input']['median']:.3f} ms | |")
    for name, unit in (("ray1_overhead_per_input", "ms"), ("ray2_speedup", "x")):
        if name in result:
            rows.append(f"| {name} | {result[name]['median']:.3f} {unit} | |")
    store = result.get("store")
    if store is not None:
        for figure in ("reserve_settle", "budgeted_call", "unbudgeted_call", "rate_limited_call"):
            for side, m in store[figure].items():
                rows.append(f"| {figure}, {side} | {m['median']:.1f} us | {m['p99']:.1f} us |")
        for name in ("budgeted_call_redis_over_memory", "unbudgeted_call_redis_over_memory",
                     "rate_limited_call_redis_over_memory"):
            m = store[name]
            rows.append(f"| {name} | {m['median']:.3f} ms (repeats {m['noise'][0]:.3f}–{m['noise'][1]:.3f}) | |")
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sides", default="local,ray1,ray2,store")
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    sides = args.sides.split(",")
    count = args.count or (1000 if args.quick else 4000)
    result: dict[str, Any] = {"benchmark": "scaleout", "mode": "quick" if args.quick else "full",
                              "cores": os.cpu_count(), "delay_ms": DELAY * 1e3,
                              "concurrency_per_worker": args.concurrency, "batch_size": BATCH}
    ray_sides = [side for side in sides if side != "store"]
    if ray_sides:
        result.update(executors(ray_sides, count, args.concurrency))
    if "store" in sides:
        from bench.store_costs import store_costs

        result["store"] = asyncio.run(store_costs(args.quick))
    result["load_average"] = os.getloadavg()
    name = "scaleout-quick" if args.quick else "scaleout"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table(result))
    emit(result)


if __name__ == "__main__":
    main()
