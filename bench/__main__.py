"""`python -m bench [--quick] [--only NAME ...]`: run the suite, write the results, print the table.

The runner needs only the standard library. It prepares `bench/.venv` (see `bench.venv`),
starts the loopback server in its own process pinned to the last core, then runs every benchmark
in a fresh process of the venv's python (our side of the HTTP benchmarks in the project's own
`.venv`, made by `scripts/install`), one after the other (never two at once: they would
share the 2 cores), the HTTP clients pinned off the server's core. Each child prints JSON lines;
`bench.report` turns them into `bench/results/latest.json` and `latest.md` (`quick.*` for
`--quick`, so a quick run never replaces the published full results).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report, venv

REPO = venv.REPO
RESULTS = REPO / "bench" / "results"
BENCHMARKS = ("imports", "routing", "concurrency", "graph", "embedded", "cost", "streaming", "batch")
HTTP_BENCHMARKS = {"routing", "concurrency", "streaming"}

# Nothing but 127.0.0.1 and (for the venv) PyPI: LiteLLM must use its bundled price list, no
# telemetry or tracing may leave the machine, and no real key may reach a benchmark.
CHILD_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
SECRET_PREFIXES = ("OPENAI_", "ANTHROPIC_", "GOOGLE_", "GEMINI_", "DASHSCOPE_", "AMAOS_LLM_", "LANGSMITH_API")


@dataclass(frozen=True)
class Job:
    benchmark: str
    args: tuple[str, ...] = ()
    project: bool = False  # run in the project's own venv (.venv), on the SDK versions amaos-llm installs

    @property
    def label(self) -> str:
        return " ".join((self.benchmark, *(a for a in self.args if not a.startswith("http"))))

    def python(self, bench_python: Path) -> Path | None:
        """The interpreter this job runs in; None when the project's venv is missing."""
        if not self.project:
            return bench_python
        return venv.project_python()


def plan(only: set[str], quick: bool, url: str, refused: str) -> list[Job]:
    q = ("--quick",) if quick else ()
    jobs = [Job("imports", q)]
    # Our side of the HTTP benchmarks runs on the SDKs the project installs (openai 3.x), in .venv;
    # LiteLLM pins openai<3, so it runs in bench/.venv with its own raw-SDK baseline.
    jobs += [Job("routing", ("--side", side, "--url", url, "--refused-url", refused, *q), project=side == "ours")
             for side in ("ours", "litellm")]
    jobs += [Job("concurrency", ("--side", side, "--shape", shape, "--url", url, *q), project=side != "litellm")
             for shape in ("500", "2000")
             for side in ("floor", "raw_default", "raw_fast", "raw_post", "ours", "litellm")]
    jobs += [Job("graph", ("--shape", "chain", "--sides", "ours,langgraph,langgraph_sync", *q)),
             Job("graph", ("--shape", "fanout", "--sides", "ours,langgraph,asyncio", *q))]
    sides = ("ours", "langgraph", "asyncio", "contract")
    jobs += [Job("graph", ("--shape", "concurrent", "--sides", side, *q)) for side in sides]
    jobs += [Job("embedded", q), Job("cost", q)]
    jobs += [Job("streaming", ("--side", "library", *q)), Job("streaming", ("--side", "cli", "--url", url, *q))]
    jobs += [Job("batch", q)]
    return [j for j in jobs if j.benchmark in only]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    env.update(CHILD_ENV)
    env["PYTHONPATH"] = str(REPO)  # `bench` itself is not installed in the venv
    return env


def cores() -> tuple[set[int], set[int]]:
    """(the server's core, the clients' cores); without affinity support both are every core."""
    try:
        every = sorted(os.sched_getaffinity(0))
    except AttributeError:
        every = list(range(os.cpu_count() or 1))
    if len(every) < 2:
        return set(every), set(every)
    return {every[-1]}, set(every[:-1])


def pinned(cpus: set[int]) -> Any:
    if not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@contextmanager
def loopback_server(python: Path, env: dict[str, str], cpus: set[int]) -> Iterator[str]:
    """The OpenAI-protocol server's base URL; the server stops when its stdin closes."""
    proc = subprocess.Popen([str(python), "-m", "bench.server"], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=pinned(cpus))
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def refused_url() -> Iterator[str]:
    """A loopback port that refuses connections: bound (so nobody else takes it), not listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def run_job(bench_python: Path, job: Job, env: dict[str, str], cpus: set[int] | None,
            timeout: float) -> list[dict[str, Any]]:
    python = job.python(bench_python)
    if python is None:
        return [{"benchmark": job.benchmark, "error": f"{job.label}: no project venv: run `bash scripts/install`"}]
    cmd = [str(python), "-m", f"bench.{job.benchmark}", *job.args]
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=pinned(cpus) if cpus else None)
    except subprocess.TimeoutExpired:
        return [{"benchmark": job.benchmark, "error": f"{job.label}: no answer within {timeout:.0f} s"}]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not records:
        tail = " ".join(done.stderr.strip().splitlines()[-3:])
        return [{"benchmark": job.benchmark, "error": f"{job.label}: exit {done.returncode}: {tail}"}]
    for record in records:
        record.setdefault("shape", "")
    return records


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats: under 2 minutes")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS), metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()

    python = venv.ensure()
    env = child_env()
    server_cpus, client_cpus = cores()
    started, load_start, t0 = time.strftime("%Y-%m-%d %H:%M:%S %Z"), load_average(), time.perf_counter()
    timeout = 300 if args.quick else 1800
    only = set(args.only)
    records = run_job(python, Job("machine"), env, None, 60)
    machine = records[0].get("info", {}) if records else {}
    ours = run_job(python, Job("machine", project=True), env, None, 60)
    machine["project_versions"] = ours[0].get("info", {}).get("versions", {}) if ours else {}
    with loopback_server(python, env, server_cpus) as url, refused_url() as refused:
        for job in plan(only, args.quick, url, refused):
            print(f"bench: {job.label} ...", end="", file=sys.stderr, flush=True)
            t = time.perf_counter()
            cpus = client_cpus if job.benchmark in HTTP_BENCHMARKS else None
            out = run_job(python, job, env, cpus, timeout)
            failed = " FAILED" if any("error" in r for r in out) else ""
            print(f" {time.perf_counter() - t:.1f} s{failed}", file=sys.stderr, flush=True)
            records += out

    results = report.Results(records)
    command = "python -m bench" + (" --quick" if args.quick else "") + (
        f" --only {' '.join(args.only)}" if only != set(BENCHMARKS) else "")
    header = {"mode": "quick" if args.quick else "full", "started": started, "command": command,
              "duration_s": time.perf_counter() - t0, "load_start": load_start, "load_end": load_average()}
    name = "quick" if args.quick else "latest"
    args.out.mkdir(parents=True, exist_ok=True)
    document = {**header, "machine": machine, **report.summary(results), "records": records}
    write(args.out / f"{name}.json", json.dumps(document, indent=1) + "\n")
    table = report.markdown(results, machine, header)
    write(args.out / f"{name}.md", table)
    print(table)
    print(f"bench: wrote {args.out / name}.json and .md in {header['duration_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
