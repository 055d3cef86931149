"""`amaos-llm run --inputs --executor ray`: a real local Ray on 127.0.0.1 (one per test session),
an `llm_manager` pipeline against the OpenAI fake, exactly one record per input whatever happens
to the job (a worker killed, the command interrupted and resumed)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from typer.testing import CliRunner

# Ray reads this when it is imported and its processes inherit it: without it a local Ray listens
# on the host's network address as well as on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from graphs import executors  # noqa: E402 - after the environment Ray reads at import
from graphs.batch_run import run_batch  # noqa: E402
from graphs.cli import app  # noqa: E402
from graphs.executors import LocalExecutor, RayExecutor  # noqa: E402
from graphs.pipeline import load_pipeline  # noqa: E402
from tests.support.fakes import OpenAIFake  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KEY_ENV = "AMAOS_TEST_RAY_KEY"
PRICE = Decimal("0.001")  # per 1k input and output tokens: every record has a cost to add up


@pytest.fixture
def job(tmp_path: Path, openai_fake: OpenAIFake, ray_address: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv(KEY_ENV, "sk-test")  # the model names its key variable: unset, every call would fail
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - {{name: fake, provider: openai_compatible, model: test-model, "
                      f"base_url: '{openai_fake.url}', api_key_env: {KEY_ENV}, max_retries: 0, "
                      f"cost_per_1k_input: '{PRICE}', cost_per_1k_output: '{PRICE}'}}\n")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"name: p\nnodes:\n  - {{id: llm, type: llm_manager, config: {{config_path: {models}}}}}\n")
    return {"pipeline": pipeline, "inputs": tmp_path / "in.jsonl", "out": tmp_path / "out.jsonl"}


def write_inputs(path: Path, n: int, *, ids: bool = True) -> Path:
    path.write_text("".join(json.dumps({"input": f"item {i}", **({"id": f"k{i}"} if ids else {})}) + "\n"
                            for i in range(n)))
    return path


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_each_input_once_in_order(out: Path, n: int) -> list[dict]:
    got = records(out)
    assert [r["id"] for r in got] == [f"k{i}" for i in range(n)]
    assert all(r["ok"] and r["output"] == f"echo: item {r['line'] - 1}" for r in got)
    return got


def cli(*args: str):
    return CliRunner().invoke(app, ["run", *args])


def test_a_ray_job_over_2000_inputs_writes_each_input_once_in_input_order(job, monkeypatch, openai_fake):
    monkeypatch.setenv(KEY_ENV, "sk-forwarded")
    write_inputs(job["inputs"], 2000)
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]),
                 "--executor", "ray", "--workers", "2", "--batch-size", "50", "--concurrency", "8")
    assert result.exit_code == 0, result.output
    got = assert_each_input_once_in_order(job["out"], 2000)
    assert [r["index"] for r in got] == list(range(2000))
    assert "pipeline" in got[0] and all("pipeline" not in r for r in got[1:])
    # The running cost and the summary count every worker's runs.
    total = sum(Decimal(r["cost_usd"]) for r in got)
    assert total > 0 and "2000 runs, 0 failed" in result.output and f"${total:.6f}" in result.output
    # Each worker got the key from the driver's environment.
    assert {r.headers.get("authorization") for r in openai_fake.requests} == {"Bearer sk-forwarded"}


def test_no_ordered_writes_every_input_once_as_the_runs_finish(job):
    write_inputs(job["inputs"], 100)
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]),
                 "--executor", "ray", "--workers", "2", "--batch-size", "10", "--no-ordered")
    assert result.exit_code == 0, result.output
    assert sorted(r["id"] for r in records(job["out"])) == sorted(f"k{i}" for i in range(100))


def test_no_ordered_on_the_local_executor_writes_every_input_once(job):
    write_inputs(job["inputs"], 50)
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]), "--no-ordered")
    assert result.exit_code == 0, result.output
    assert sorted(r["id"] for r in records(job["out"])) == sorted(f"k{i}" for i in range(50))


def test_a_worker_that_keeps_dying_stops_the_job_in_one_line_and_leaves_it_resumable(job):
    n = 400
    write_inputs(job["inputs"], n)
    pipeline = load_pipeline(job["pipeline"])
    executor = RayExecutor(batch_size=20, concurrency=8, max_restarts=0)

    def kill_the_worker(record: dict) -> None:
        if record["index"] == 100:
            ray.kill(ray.get_actor(executor.actor_names[0]), no_restart=False)  # no restart left: the job stops

    with pytest.raises(executors.ExecutorError, match=r"a Ray worker failed on lines \d+-\d+: .*--resume"):
        anyio.run(lambda: run_batch(pipeline, job["inputs"], job["out"], 8, executor=executor,
                                    on_record=kill_the_worker))
    written = records(job["out"])
    assert 100 < len(written) < n and [r["id"] for r in written] == [f"k{i}" for i in range(len(written))]
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]),
                 "--executor", "ray", "--resume")
    assert result.exit_code == 0, result.output
    assert_each_input_once_in_order(job["out"], n)


def test_a_worker_killed_mid_job_is_restarted_and_each_input_is_still_written_once(job):
    n = 800
    write_inputs(job["inputs"], n)
    pipeline = load_pipeline(job["pipeline"])
    executor = RayExecutor(workers=2, batch_size=25, concurrency=8)
    killed: list[str] = []
    journaled: list[int] = []  # how many records the job's journal held, now and then

    def kill_a_worker(record: dict) -> None:
        if record["index"] == 200 and not killed:
            name = executor.actor_names[0]
            ray.kill(ray.get_actor(name), no_restart=False)  # as a crash: Ray restarts it and re-runs its batches
            killed.append(name)
        if record["index"] % 50 == 49:
            assert executor.journal_name is not None
            journaled.append(ray.get(ray.get_actor(executor.journal_name).size.remote()))

    summary = anyio.run(lambda: run_batch(pipeline, job["inputs"], job["out"], 8, executor=executor,
                                          on_record=kill_a_worker))
    assert killed and summary.runs == n and summary.failed == 0
    assert_each_input_once_in_order(job["out"], n)
    # The journal keeps the batches in flight only (two per worker): the driver drops what it has.
    assert len(journaled) == n // 50 and max(journaled) <= 2 * 2 * 25, journaled


def test_resume_after_ctrl_c_finishes_the_job_with_each_input_once(job, ray_address, openai_fake):
    n = 800
    write_inputs(job["inputs"], n)
    openai_fake.delay = 0.01  # long enough to interrupt half-way
    command = [sys.executable, "-m", "graphs.cli", "run", str(job["pipeline"]), "--inputs", str(job["inputs"]),
               "--output", str(job["out"]), "--executor", "ray", "--address", ray_address, "--batch-size", "20",
               "--concurrency", "8"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not job["out"].exists() or job["out"].read_bytes().count(b"\n") < 100:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    before = job["out"].read_bytes().count(b"\n")
    assert 100 <= before < n

    openai_fake.delay = 0.0
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]),
                 "--executor", "ray", "--resume", "--batch-size", "50")
    assert result.exit_code == 0, result.output
    assert f"{n - before} runs" in result.output and f"{before} already in" in result.output
    assert_each_input_once_in_order(job["out"], n)


def test_bad_lines_are_error_records_in_place_or_stop_the_job_there(job):
    # Half the inputs have no `id` field: --resume knows them by their line numbers, their ids.
    lines = [json.dumps({"input": f"item {i}", **({"id": f"k{i}"} if i % 2 else {})}) for i in range(30)]
    lines[12] = '{"input": '
    job["inputs"].write_text("\n".join(lines) + "\n")
    args = [str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]),
            "--executor", "ray", "--batch-size", "5"]
    stopped = cli(*args)
    assert stopped.exit_code == 2 and "in.jsonl:13" in stopped.output
    assert [r["line"] for r in records(job["out"])] == list(range(1, 13))

    skipped = cli(*args, "--resume", "--on-bad-input", "skip")
    assert skipped.exit_code == 1  # a bad line is a failure
    got = records(job["out"])
    assert [r["line"] for r in got] == list(range(1, 31)) and [r["ok"] for r in got].count(False) == 1
    assert [r["id"] for r in got] == [f"k{i}" if i % 2 else i + 1 for i in range(30)]
    assert "invalid JSON" in got[12]["errors"]["input"]


def test_run_many_gives_the_same_records_on_both_executors(job):
    write_inputs(job["inputs"], 40, ids=False)
    inputs = [json.loads(line) for line in job["inputs"].read_text().splitlines()]

    def comparable(rs: list[dict]) -> list[tuple]:
        return [(r["line"], r["id"], r["output"], r["cost_usd"], r["tokens"]) for r in rs]

    local = anyio.run(LocalExecutor(4).run_many, load_pipeline(job["pipeline"]), inputs)
    on_ray = anyio.run(RayExecutor(batch_size=7).run_many, load_pipeline(job["pipeline"]), inputs)
    assert comparable(on_ray) == comparable(local)
    assert [(r["line"], r["id"]) for r in local] == [(n, n) for n in range(1, 41)]  # no id field: the position


def test_more_than_one_worker_refuses_a_pipeline_that_needs_shared_state(job, monkeypatch):
    write_inputs(job["inputs"], 3)
    assert executors._shared_state_required(load_pipeline(job["pipeline"])) is None  # nothing needs it yet
    monkeypatch.setattr(executors, "_shared_state_required", lambda p: "node 'llm' has a budget on memory state")
    args = [str(job["pipeline"]), "--inputs", str(job["inputs"]), "--output", str(job["out"]), "--executor", "ray"]
    refused = cli(*args, "--workers", "2")
    assert refused.exit_code == 2
    assert "2 workers cannot share this pipeline's state: node 'llm' has a budget on memory state" in refused.output
    assert cli(*args, "--workers", "1").exit_code == 0  # one worker holds its state alone


@pytest.mark.parametrize(("args", "message"), [
    (["--workers", "2"], "--workers is an option of --executor ray"),
    (["--address", "127.0.0.1:1"], "--address is an option of --executor ray"),
    (["--batch-size", "8"], "--batch-size is an option of --executor ray"),
])
def test_ray_options_without_the_ray_executor_are_refused(job, args, message):
    write_inputs(job["inputs"], 1)
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), *args)
    assert result.exit_code == 2 and message in result.output


def test_the_ray_executor_runs_inputs_files_only(job):
    result = cli(str(job["pipeline"]), "--input", "hello", "--executor", "ray")
    assert result.exit_code == 2 and "--executor ray runs --inputs FILE.jsonl" in result.output


@pytest.mark.parametrize("option", ["--workers", "--batch-size"])
def test_counts_below_one_are_refused(job, option):
    write_inputs(job["inputs"], 1)
    result = cli(str(job["pipeline"]), "--inputs", str(job["inputs"]), "--executor", "ray", option, "0")
    assert result.exit_code == 2 and option in result.output and "greater than or equal to 1" in result.output


def test_without_ray_installed_the_command_says_how_to_install_it_in_one_line(job):
    write_inputs(job["inputs"], 1)
    code = ("import sys; sys.modules['ray'] = None; from graphs.cli import main; "
            f"main(['run', {str(job['pipeline'])!r}, '--inputs', {str(job['inputs'])!r}, '--executor', 'ray'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == "error: --executor ray needs Ray, which is not installed: pip install -e '.[ray]'\n"


def test_importing_graphs_does_not_import_ray():
    code = "import sys, graphs, graphs.executors, graphs.batch_run, graphs.cli; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    assert done.stdout == "False\n"


def test_a_local_ray_listens_on_loopback_only_keeps_keys_out_of_its_logs_and_stops(job, openai_fake, request):
    write_inputs(job["inputs"], 400)
    openai_fake.delay = 0.01
    # This command's Ray writes its session (logs included) here: a short path, as Ray's sockets need.
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    env = {**os.environ, "PYTHONPATH": str(ROOT), KEY_ENV: "sk-never-on-disk-4711", "RAY_TMPDIR": str(temp)}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "graphs.cli", "run", str(job["pipeline"]), "--inputs", str(job["inputs"]),
               "--output", str(job["out"]), "--executor", "ray", "--workers", "2", "--batch-size", "10"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listening: set[str] = set()
    while proc.poll() is None:  # the ports of this command's processes, seen while it runs
        if job["out"].exists() and job["out"].stat().st_size:
            listening |= _listening_addresses(proc.pid)
        time.sleep(0.2)
    _, err = proc.communicate()
    assert proc.returncode == 0, err
    assert len(records(job["out"])) == 400
    assert listening and all(_loopback(a) for a in listening), listening
    logs = [p for p in temp.rglob("*") if p.is_file()]
    assert logs and not [p for p in logs if b"sk-never-on-disk-4711" in p.read_bytes()]
    assert not _descendants(proc.pid)  # the local Ray stopped with the command


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.rsplit(":", 1)[0].strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # [::ffff:127.0.0.1]: a dual-stack socket bound to IPv4 loopback
    return ip.is_loopback


def _descendants(pid: int) -> set[int]:
    """The processes started (directly or not) by `pid`, from /proc; Ray's gcs_server and raylet too."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _listening_addresses(pid: int) -> set[str]:
    """The TCP addresses that `pid` and its descendants listen on (`ss -ltnpH`)."""
    pids = {pid} | _descendants(pid)
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    addresses = set()
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            addresses.add(line.split()[3])
    return addresses


def test_with_otel_each_workers_runs_nest_under_the_drivers_job_span(job, ray_address, monkeypatch):
    """--otel on a Ray job: the driver's `ray job` span's context travels to the workers, whose run,
    node and LLM call spans (exported from each worker) nest under it in one trace."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from tests.graphs.test_otel import Receiver

    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        write_inputs(job["inputs"], 6)
        command = [sys.executable, "-m", "graphs.cli", "run", str(job["pipeline"]), "--inputs", str(job["inputs"]),
                   "--output", str(job["out"]), "--executor", "ray", "--address", ray_address, "--otel"]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
               "NO_PROXY": "127.0.0.1"}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
        spans = {}
        for body in receiver.bodies.get("/v1/traces", ()):
            for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        spans[span.span_id] = span
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    (job_span,) = [s for s in spans.values() if s.name == "ray job p"]
    runs = [s for s in spans.values() if s.name == "run p"]
    assert len(runs) == 6
    assert all(r.parent_span_id == job_span.span_id and r.trace_id == job_span.trace_id for r in runs)
    def ancestors(span) -> list[str]:
        names = []
        while span.parent_span_id in spans:
            span = spans[span.parent_span_id]
            names.append(span.name)
        return names

    calls = [s for s in spans.values() if s.name.startswith("chat ")]  # the call spans and their attempts
    assert len(calls) == 12
    assert all(ancestors(c)[-3:] == ["node llm", "run p", "ray job p"] for c in calls), [ancestors(c) for c in calls]
