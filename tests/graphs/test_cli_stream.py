"""`amaos-llm complete --stream` writes each chunk as it arrives (a subprocess reading its stdout
while the fake server still holds the rest back), says on stderr which model a restart goes to,
and exits 1 on a failed stream with the partial text left on stdout."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.fakes import OpenAIFake

ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path: Path, *urls: str) -> Path:
    models = [{"name": f"m{i}", "provider": "openai_compatible", "model": "test-model", "base_url": url,
               "source": "cloud", "priority": -i} for i, url in enumerate(urls)]
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": models, "defaults": {"max_retries": 0}}))
    return path


def run(path: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "graphs.cli", "complete", "hello streaming world",
                             "--config", str(path), "--stream", *args], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_first_chunk_is_on_stdout_while_the_rest_is_still_coming(tmp_path: Path) -> None:
    with OpenAIFake() as fake:
        fake.stall_after = 2.0  # the server holds everything after the first delta back for 2 s
        proc = run(config(tmp_path, fake.url))
        assert proc.stdout is not None
        started = time.monotonic()
        first = os.read(proc.stdout.fileno(), 100)
        first_at = time.monotonic() - started
        rest, err = proc.communicate(timeout=30)
        total = time.monotonic() - started
    assert first == b"echo: "  # the first delta alone, flushed at once
    assert total - first_at > 1.5  # ...well before the rest arrived
    assert (first + rest).decode().startswith("echo: hello streaming world\n")
    assert proc.returncode == 0, err


def test_a_restart_says_which_model_it_restarts_on(tmp_path: Path) -> None:
    with OpenAIFake() as broken, OpenAIFake() as good:
        broken.stream_fault, broken.fault_after = "cut", 1
        proc = run(config(tmp_path, broken.url, good.url), "--mid-stream", "restart")
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.decode().startswith("echo: \necho: hello streaming world")
    assert "[restarted on m1]" in err.decode()


def test_a_failed_stream_exits_1_keeping_the_partial_text(tmp_path: Path) -> None:
    with OpenAIFake() as broken:
        broken.stream_fault, broken.fault_after = "cut", 2
        proc = run(config(tmp_path, broken.url))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert out.decode().startswith("echo: hello ")
    assert "stream was cut after its first chunk" in err.decode()


def test_a_bad_mid_stream_mode_exits_2(tmp_path: Path) -> None:
    with OpenAIFake() as fake:
        proc = run(config(tmp_path, fake.url), "--mid-stream", "resume")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "mid_stream" in err.decode()
