"""`--otel` and `--log-level`: spans reach an OTLP/HTTP receiver the test starts on 127.0.0.1 (decoded
with opentelemetry-proto); without the SDK, one line and exit 2; the library's loggers at a level."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from typer.testing import CliRunner

from amaos_llm import Usage
from amaos_llm.telemetry import CallRequest, Telemetry
from graphs.cli import app
from graphs.otel import configure_from_env
from nodes import FunctionNode, register_node_type
from nodes.registry import _registered

REPO = Path(__file__).resolve().parents[2]


class Receiver:
    """An OTLP/HTTP collector on 127.0.0.1: keeps every POST body by path, answers 200."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def spans(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(name, attributes, resource attributes) of every span received."""
        out = []
        for body in self.bodies.get("/v1/traces", ()):
            request = ExportTraceServiceRequest.FromString(body)
            for rs in request.resource_spans:
                resource = {a.key: _value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        out.append((span.name, {a.key: _value(a.value) for a in span.attributes}, resource))
        return out

    def metric_names(self) -> set[str]:
        names = set()
        for body in self.bodies.get("/v1/metrics", ()):
            for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for sm in rm.scope_metrics:
                    names.update(m.name for m in sm.metrics)
        return names


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.url)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield r
    r.server.shutdown()
    r.server.server_close()
    thread.join()


class Spec:
    name, provider, model, base_url = "steady", "anthropic", "claude-3-5-haiku", None


def test_spans_and_metrics_arrive_at_an_otlp_http_receiver(receiver):
    setup = configure_from_env(set_global=False)
    telemetry = Telemetry.for_manager(tracer_provider=setup.tracer_provider, meter_provider=setup.meter_provider)
    call = telemetry.start_call("chat", CallRequest(max_tokens=5))
    with call.attempt(Spec()) as attempt:
        attempt.succeeded(Usage(input_tokens=4, output_tokens=5), Decimal("0.00001"))
    call.end()
    setup.shutdown()  # flushes both signals
    spans = receiver.spans()
    assert sorted((name, attrs["amaos.cost_usd"]) for name, attrs, _ in spans) == [
        ("chat claude-3-5-haiku", "0.00001")] * 2
    assert {resource["service.name"] for _, _, resource in spans} == {"amaos-llm"}
    wanted = {"gen_ai.client.token.usage", "gen_ai.client.operation.duration", "amaos.llm.cost"}
    assert wanted <= receiver.metric_names()


def test_run_with_otel_exports_the_run_and_node_spans(receiver, tmp_path):
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(textwrap.dedent("""
        name: echo
        nodes:
          - {id: prompt, type: prompt_template, config: {template: "say {input}"}}
          - {id: out, type: output}
        edges:
          - {from: prompt, to: out}
        """))
    # A process of its own: --otel sets the process's global providers, which cannot be unset.
    done = subprocess.run([sys.executable, "-m", "graphs.cli", "run", str(pipeline), "--input", "hi", "--otel"],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    names = sorted(name for name, _, _ in receiver.spans())
    assert names == ["node out", "node prompt", "run echo"]


def test_otel_without_the_sdk_says_how_to_install_it_and_exits_2(monkeypatch, tmp_path):
    # A module set to None in sys.modules cannot be imported: as if the extra were not installed.
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    result = CliRunner().invoke(app, ["complete", "hi", "--otel"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: --otel needs the OpenTelemetry SDK and OTLP exporter (opentelemetry.exporter.otlp.proto.http."
        "trace_exporter is missing): pip install 'amaos-llm[otel]'"]


@pytest.fixture
def library_loggers() -> Iterator[None]:
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).handlers[:], logging.getLogger(n).propagate)
             for n in ("amaos_llm", "graphs")}
    yield
    for name, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers = handlers
        logger.propagate = propagate


@pytest.mark.parametrize(("level", "shown"), [("debug", ["DEBUG graphs.test: a debug line",
                                                           "WARNING amaos_llm.test: a warning"]),
                                              ("warning", ["WARNING amaos_llm.test: a warning"])])
def test_log_level_sets_the_library_loggers(library_loggers, tmp_path, level, shown):
    def chatty(arg: Any) -> str:
        logging.getLogger("graphs.test").debug("a debug line")
        logging.getLogger("amaos_llm.test").warning("a warning")
        return "ok"

    class Chatty(FunctionNode):
        type_name = "chatty"

        def __init__(self, id: str, name: str | None = None, config: Any = None) -> None:
            super().__init__(id, fn=chatty)

    register_node_type(Chatty)
    try:
        pipeline = tmp_path / "p.yaml"
        pipeline.write_text("name: chat\nnodes:\n  - {id: c, type: chatty}\n")
        result = CliRunner().invoke(app, ["run", str(pipeline), "--input", "x", "--log-level", level])
    finally:
        _registered.clear()
    assert result.exit_code == 0, result.output
    lines = [line.split(" ", 2)[2] for line in result.stderr.splitlines() if " graphs.test" in line
             or " amaos_llm.test" in line]
    assert lines == shown
