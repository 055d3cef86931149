"""A batch run that dies (SIGKILL) or cannot write (a file-size limit, as a full disk) mid-way:
every record on disk is whole, and `--resume` finishes the job with each input exactly once.
Real processes of the CLI against the OpenAI fake on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fakes import OpenAIFake

ROOT = Path(__file__).resolve().parents[2]
N = 300


@pytest.fixture
def job(tmp_path: Path, openai_fake: OpenAIFake) -> dict[str, Path]:
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - {{name: fake, provider: openai_compatible, model: test-model, "
                      f"base_url: '{openai_fake.url}', api_key: k, max_retries: 0}}\n")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"name: p\nnodes:\n  - {{id: llm, type: llm_manager, config: {{config_path: {models}}}}}\n")
    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"input": f"item {i}", "id": i}) + "\n" for i in range(N)))
    return {"pipeline": pipeline, "inputs": inputs, "out": tmp_path / "out.jsonl"}


def _command(job: dict[str, Path], *extra: str) -> list[str]:
    return [sys.executable, "-m", "graphs.cli", "run", str(job["pipeline"]), "--inputs", str(job["inputs"]),
            "--output", str(job["out"]), "--concurrency", "8", *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}


def _whole_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _assert_each_input_once(out: Path) -> None:
    text = out.read_text()
    assert text.endswith("\n")
    got = [json.loads(line) for line in text.splitlines()]
    assert sorted(r["id"] for r in got) == list(range(N))
    assert all(r["ok"] and r["output"] == f"echo: item {r['id']}" for r in got)


def test_resume_after_a_sigkill_mid_run_answers_each_input_exactly_once(job, openai_fake):
    openai_fake.delay = 0.01  # about 3 s for the whole file at concurrency 8: time to kill it half-way
    proc = subprocess.Popen(_command(job), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _whole_lines(job["out"]) < 60:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = _whole_lines(job["out"])
    assert 60 <= before < N

    openai_fake.delay = 0.0
    openai_fake.requests.clear()
    done = subprocess.run(_command(job, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    _assert_each_input_once(job["out"])
    # Only what was not on disk ran again (at most one half-written record more).
    assert N - before <= len(openai_fake.requests) <= N - before + 1


def _limit_file_size(limit: int):
    def apply() -> None:
        # The kernel stops the file at `limit` bytes as a full disk would; ignoring SIGXFSZ makes
        # the write fail with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_an_output_that_fills_up_mid_run_keeps_every_record_before_it_whole(job):
    limit = 20_000  # room for some 60 of the 300 records
    done = subprocess.run(_command(job), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
                          check=False, preexec_fn=_limit_file_size(limit))
    assert done.returncode == 2
    last = done.stderr.splitlines()[-1]
    match = re.fullmatch(rf"error: {re.escape(str(job['out']))}: cannot write: File too large; every record "
                         r"before it is whole \((\d+) written\): run again with --resume to go on", last)
    assert match, last
    assert "Traceback" not in done.stderr
    data = job["out"].read_bytes()
    assert len(data) == limit  # the failed record was cut by the limit, half-written
    whole = data[: data.rindex(b"\n") + 1].decode().splitlines()
    assert len(whole) == int(match[1])
    assert [json.loads(line)["id"] for line in whole] == list(range(len(whole)))

    done = subprocess.run(_command(job, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    _assert_each_input_once(job["out"])
