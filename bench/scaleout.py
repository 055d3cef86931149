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

    python -m bench.scaleout [--quick] [--count N] [--concurrency C]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--count", type=int)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    count = args.count or (1000 if args.quick else 4000)
    server = subprocess.Popen([sys.executable, "-m", "bench.scaleout", "--serve"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/v1"
        with tempfile.TemporaryDirectory(prefix="scaleout-") as folder:
            pipeline, inputs = _job(Path(folder), url, count)
            results = {side: measure(side, pipeline, inputs, Path(folder) / f"{side}.jsonl", args.concurrency)
                       for side in ("local", "ray1", "ray2")}
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)
    local = results["local"]["per_input"]["median"]
    emit({"benchmark": "scaleout", "cores": os.cpu_count(), "load_average": os.getloadavg(),
          "delay_ms": DELAY * 1e3, "concurrency_per_worker": args.concurrency, "batch_size": BATCH, **results,
          "ray1_overhead_per_input": value(results["ray1"]["per_input"]["median"] - local, "ms"),
          "ray2_speedup": value(local / results["ray2"]["per_input"]["median"], "x")})


if __name__ == "__main__":
    main()
