"""Benchmark 8: pipeline runs over a stream of inputs, in constant memory.

The pipeline is the 3-node one a batch job uses: prompt_template → llm_manager → output.

- `library`: `GraphOrchestrator.iter_runs` (ordered, concurrency 16) over 1,000,000 generated
  inputs (quick: 100,000), the model a registered in-process callable. Runs/s over the whole
  stream, its noise the slowest and fastest tenth; peak RSS during the stream minus RSS before it.
  The floor, in the same process: the same runs one at a time, `await orchestrator.run()` in a loop,
  over a tenth as many inputs: what is left between the two is the streaming machinery.
- `cli`: `amaos-llm run --inputs IN --output OUT` (concurrency 16, its default) in a child
  process, over 20,000 and then 200,000 inputs (quick: 2,000 and 20,000), the model
  `openai_compatible` on the loopback server. Runs/s from the child's wall time (start-up
  included, as a user waits for it), and the child's own peak RSS (`os.wait4`): memory is flat
  when the big run's stays near the small one's.
  The child is the project's own install (`.venv`, with the SDK versions the project pins) when
  there is one, since bench/.venv holds the older openai that LiteLLM requires.

    python -m bench.streaming --side library [--quick]
    python -m bench.streaming --side cli --url http://127.0.0.1:PORT/v1 [--quick]
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.setups import KEY, MODEL, model_function
from bench.timing import emit, peak_rss_mb, rss_mb, value

# The CLI's default. Higher is slower here: the SDK's httpx pool scans every connection per request.
CONCURRENCY = CLI_CONCURRENCY = 16
FULL = {"library": 1_000_000, "cli": (20_000, 200_000)}
QUICK = {"library": 100_000, "cli": (2_000, 20_000)}
PIPELINE = """\
name: bench-stream
nodes:
  - {id: prompt, type: prompt_template, config: {template: "Say ok to {input}"}}
  - {id: llm, type: llm_manager, config: {config_path: models.yaml}}
  - {id: out, type: output}
edges:
  - {from: prompt, to: llm}
  - {from: llm, to: out}
"""


def _inputs(n: int) -> Iterator[str]:
    return (f"item {i}" for i in range(n))


def _pipeline_with_callable() -> Any:
    from amaos_llm import Defaults, LLMConfig, LLMManager
    from graphs import GraphOrchestrator
    from nodes import LLMManagerNode, OutputNode, PromptTemplateNode

    manager = LLMManager(LLMConfig(defaults=Defaults(max_retries=0)))
    manager.register_model("fn", model_function, max_retries=0)
    g = GraphOrchestrator(name="bench-stream")
    g.add_node(PromptTemplateNode(id="prompt", config={"template": "Say ok to {input}"}))
    g.add_node(LLMManagerNode(id="llm", manager=manager))
    g.add_node(OutputNode(id="out"))
    g.connect("prompt", "llm")
    g.connect("llm", "out")
    return g


async def library(n: int) -> dict[str, Any]:
    g = _pipeline_with_callable()
    await g.initialize()
    async with g.iter_runs(_inputs(1000), CONCURRENCY) as runs:  # warm-up: lazy imports, first-call set-up
        async for _ in runs:
            pass

    floor_n = n // 10
    t0 = time.perf_counter()
    for text in _inputs(floor_n):
        run = await g.run(text)
    floor = floor_n / (time.perf_counter() - t0)
    assert run.ok, run.errors

    before = rss_mb()
    tenth, marks = n // 10, []
    t0 = time.perf_counter()
    async with g.iter_runs(_inputs(n), CONCURRENCY) as runs:
        async for index, run in runs:
            if (index + 1) % tenth == 0:
                marks.append(time.perf_counter())
    wall = time.perf_counter() - t0
    assert index == n - 1 and run.ok and run.output is not None and run.output.content == "ok"
    rss_delta = peak_rss_mb() - before
    rates = [tenth / (b - a) for a, b in zip([t0, *marks], marks, strict=False)]
    return {
        "throughput": {**value(n / wall, "runs/s"), "noise": [min(rates), max(rates)]},
        "floor_throughput": value(floor, "runs/s"),
        "rss_delta": value(max(0.0, rss_delta), "MB"),
        "wall": value(wall, "s"),
    }


def _cli_run(python: str, workdir: Path, n: int) -> tuple[float, float]:
    """(runs/s, the child's peak RSS in MB) for one `amaos-llm run` over n inputs."""
    inputs, output = workdir / f"in-{n}.jsonl", workdir / f"out-{n}.jsonl"
    with inputs.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"input": f"item {i}", "id": i}) + "\n")
    cmd = [python, "-m", "graphs.cli", "run", str(workdir / "p.yaml"), "--inputs", str(inputs),
           "--output", str(output), "--concurrency", str(CLI_CONCURRENCY)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4, not wait: the rusage of this child alone (RUSAGE_CHILDREN would mix both runs).
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"amaos-llm run exited {proc.returncode}: {err.strip().splitlines()[-1:]}")
    with output.open("rb") as f:
        written = sum(1 for _ in f)
    if written != n:
        raise RuntimeError(f"{written} records for {n} inputs")
    return n / wall, usage.ru_maxrss / 1024  # KiB on Linux


def cli(python: str, url: str, sizes: tuple[int, int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        workdir = Path(tmp)
        (workdir / "models.yaml").write_text(
            f"models:\n  - {{name: loopback, provider: openai_compatible, model: {MODEL}, base_url: '{url}', "
            f"api_key: {KEY}, max_retries: 0}}\n")
        (workdir / "p.yaml").write_text(PIPELINE)
        small, big = (_cli_run(python, workdir, n) for n in sizes)
    return {
        "throughput_small": value(small[0], "runs/s"),
        "rss_small": value(small[1], "MB"),
        "throughput_big": value(big[0], "runs/s"),
        "rss_big": value(big[1], "MB"),
    }


def project_python() -> Path:
    """The CLI as a user runs it: the project's install, whose SDKs are the ones the project pins
    (bench/.venv holds openai 2.x, as LiteLLM requires). PYTHONPATH still points at this checkout."""
    own = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    return own if own.exists() else Path(sys.executable)


def _openai_version(python: str) -> str:
    done = subprocess.run([python, "-c", "import openai; print(openai.__version__)"], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip() or "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=("library", "cli"), required=True)
    parser.add_argument("--url", help="the loopback server's base URL (for --side cli)")
    parser.add_argument("--python", default=str(project_python()),
                        help="the interpreter that runs the CLI (for --side cli); default: the project's own "
                             "install (.venv, from scripts/install) if there is one, else this one")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = QUICK if args.quick else FULL
    if args.side == "library":
        metrics = asyncio.run(library(n["library"]))
        params = {"inputs": n["library"], "concurrency": CONCURRENCY}
    else:
        if not args.url:
            parser.error("--side cli needs --url")
        metrics = cli(args.python, args.url, n["cli"])
        params = {"inputs": list(n["cli"]), "concurrency": CLI_CONCURRENCY, "openai": _openai_version(args.python)}
    emit({"benchmark": "streaming", "side": args.side, "metrics": metrics, "params": params})


if __name__ == "__main__":
    main()
