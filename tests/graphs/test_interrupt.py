"""Ctrl-C (SIGINT) while the real embedded model generates: the CLI stops at once, exits 130 with
one line on stderr, keeps every finished result, and a second Ctrl-C changes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LONG = "Write a very long story about dragons, with many chapters."


@pytest.fixture
def embedded_only(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    # one thread: two of them spin at llama.cpp's barriers when another process holds a core, and a
    # token (the stop is seen after each) then takes seconds; the stop is what is tested here
    path.write_text("models:\n  - {name: smol, provider: embedded, n_ctx: 2048, n_threads: 1, timeout: 300}\n")
    return path


def _start(*args: str) -> subprocess.Popen[str]:
    # SIGINT as a terminal would deliver it: a shell that ran the tests in the background may
    # have left it ignored, and an ignored SIGINT is kept ignored on purpose.
    return subprocess.Popen(
        [sys.executable, "-m", "graphs.cli", *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the process never got there"
        time.sleep(0.05)


def _interrupt(proc: subprocess.Popen[str], second_after: float | None = 0.05) -> tuple[float, str, str]:
    """SIGINT (and a second one shortly after); the CPU seconds the process spent between the
    signal and its exit, stdout, stderr. CPU, not wall time: on a loaded 2-core machine the exit
    may wait for a core, but the work it does after the signal does not grow."""
    at_signal = _cpu_seconds(proc.pid)
    proc.send_signal(signal.SIGINT)
    seconds = 0.0
    second_at = None if second_after is None else time.monotonic() + second_after
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            seconds = _cpu_seconds(proc.pid) - at_signal  # the last sample before exit
        except (FileNotFoundError, ProcessLookupError):  # gone between poll() and the read
            break
        if second_at is not None and time.monotonic() >= second_at:
            second_at = None
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return seconds, out, err


@pytest.mark.parametrize("second_after", [None, 0.05, 0.3])
def test_ctrl_c_stops_an_embedded_completion_at_once(embedded_only: Path, second_after: float | None) -> None:
    proc = _start("complete", LONG, "--config", str(embedded_only), "--max-tokens", "2000")
    # Imports and the model load take about a CPU second; past 3 the model is generating.
    _wait_for(lambda: _cpu_seconds(proc.pid) > 3.0, proc)
    cpu, out, err = _interrupt(proc, second_after)
    assert proc.returncode == 130
    # The exit's own work is a fraction of a CPU second; the 2,000-token generation it cuts would
    # take tens of them, so 1 s tells "at once" from "after the work", under load too.
    assert cpu < 1.0
    assert err.splitlines() == ["interrupted"]
    assert out == ""


def test_ctrl_c_during_a_jsonl_run_keeps_every_finished_result(embedded_only: Path, tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        f"name: p\nnodes:\n  - {{id: llm, type: llm_manager, config: {{config_path: {embedded_only}}}}}\n"
    )
    inputs = tmp_path / "in.jsonl"
    short = [json.dumps({"input": f"Say {word}.", "max_tokens": 4}) for word in ("hi", "yes", "no")]
    inputs.write_text("\n".join([*short, json.dumps({"input": LONG, "max_tokens": 2000}), *short]) + "\n")
    out_path = tmp_path / "out.jsonl"
    proc = _start("run", str(pipeline), "--inputs", str(inputs), "--output", str(out_path), "--concurrency", "1")

    def three_written() -> bool:
        return out_path.exists() and out_path.read_text().count("\n") >= 3

    _wait_for(three_written, proc)
    time.sleep(0.5)  # the long one is generating now
    cpu, _, err = _interrupt(proc)
    assert proc.returncode == 130
    assert cpu < 1.0  # as above: at once
    assert err.splitlines()[-1] == "interrupted" and "Traceback" not in err
    records = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [r["input"] for r in records] == ["Say hi.", "Say yes.", "Say no."]
    assert all(r["ok"] and r["tokens"] > 0 for r in records)
