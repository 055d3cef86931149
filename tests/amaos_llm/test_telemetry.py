"""`amaos_llm.telemetry` driven as the attempt loop will drive it, recorded by the OTel SDK in memory:
a fallback call's spans, events and metrics; content only when enabled; never a key; nothing (and
next to no cost) when no provider is configured."""

from __future__ import annotations

import json
import subprocess
import sys
import timeit
from dataclasses import dataclass
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from amaos_llm import Usage
from amaos_llm.telemetry import (
    NO_CALL,
    NO_TELEMETRY,
    CallRequest,
    GraphTelemetry,
    Telemetry,
    provider_name,
    reason_class,
)

KEY = "sk-live-0123456789abcdefXYZ"


@dataclass(frozen=True)
class Spec:
    name: str
    provider: str
    model: str = ""
    base_url: str | None = None


BIG = Spec("big", "openai", "gpt-4o")
FLAKY = Spec("flaky", "ollama", "llama3.2", "http://127.0.0.1:11434")
STEADY = Spec("steady", "anthropic", "claude-3-5-haiku", "https://api.anthropic.com")


class Recorded:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **kwargs: Any) -> Telemetry:
        t = Telemetry.for_manager(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs)
        assert isinstance(t, Telemetry)
        return t

    def metrics(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out[m.name] = list(m.data.data_points)
        return out


@pytest.fixture
def rec() -> Recorded:
    return Recorded()


REQUEST = CallRequest(temperature=0.2, max_tokens=64, messages=(("system", "Be brief."), ("user", "What is 2+2?")))


def fallback_call(telemetry: Telemetry, error: str = "HTTP 500 from upstream") -> None:
    """What the loop does for: `big` skipped (circuit open), `flaky` refused, `steady` answered."""
    call = telemetry.start_call("chat", REQUEST) if telemetry else NO_CALL
    call.skipped(BIG, "circuit breaker open after repeated failures")
    with call.attempt(FLAKY) as attempt:
        attempt.failed(ConnectionError(error))
    call.fallback(FLAKY, error)
    with call.attempt(STEADY) as attempt:
        attempt.succeeded(Usage(input_tokens=12, output_tokens=3), Decimal("0.0000123"),
                          response_model="claude-3-5-haiku-20241022", finish_reasons=["stop"], output="4")
    call.end(STEADY)


def test_a_fallback_call_is_one_call_span_with_two_attempt_spans(rec):
    fallback_call(rec.telemetry())
    spans = {s.name: s for s in rec.spans.get_finished_spans()}
    assert sorted(spans) == ["chat claude-3-5-haiku", "chat llama3.2"]  # the call span shares the answer's name
    by_kind = {s.kind: s for s in rec.spans.get_finished_spans() if s.kind == SpanKind.INTERNAL}
    call = by_kind[SpanKind.INTERNAL]
    attempts = [s for s in rec.spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert [a.attributes["amaos.model_name"] for a in attempts] == ["flaky", "steady"]
    assert all(a.parent.span_id == call.context.span_id for a in attempts)
    flaky, steady = attempts
    assert (flaky.attributes["error.type"], flaky.attributes["amaos.attempt_outcome"]) == ("ConnectionError", "error")
    assert flaky.status.status_code == StatusCode.ERROR
    assert (flaky.attributes["gen_ai.provider.name"], flaky.attributes["server.address"],
            flaky.attributes["server.port"]) == ("ollama", "127.0.0.1", 11434)
    assert dict(steady.attributes) == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "claude-3-5-haiku", "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 64, "amaos.model_name": "steady", "server.address": "api.anthropic.com",
        "server.port": 443, "amaos.attempt_outcome": "success",
        "gen_ai.response.model": "claude-3-5-haiku-20241022", "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3, "amaos.cost_usd": "0.0000123"}
    assert steady.status.status_code == StatusCode.UNSET
    assert call.status.status_code == StatusCode.UNSET
    assert (call.attributes["amaos.cost_usd"], call.attributes["gen_ai.usage.input_tokens"],
            call.attributes["amaos.model_name"]) == ("0.0000123", 12, "steady")
    assert [(e.name, dict(e.attributes)) for e in call.events] == [
        ("amaos.skip", {"amaos.reason": "circuit breaker open after repeated failures", "amaos.model_name": "big"}),
        ("amaos.fallback", {"amaos.reason": "HTTP 500 from upstream", "amaos.model_name": "flaky"}),
    ]


def test_metrics_count_tokens_cost_duration_fallbacks_and_skips(rec):
    fallback_call(rec.telemetry())
    m = rec.metrics()
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in m["gen_ai.client.token.usage"]}
    assert tokens == {"input": 12, "output": 3}
    durations = m["gen_ai.client.operation.duration"]
    assert sorted((p.attributes["gen_ai.request.model"], p.attributes.get("error.type"), p.count)
                  for p in durations) == [("claude-3-5-haiku", None, 1), ("llama3.2", "ConnectionError", 1)]
    assert [(p.value, p.attributes["gen_ai.provider.name"]) for p in m["amaos.llm.cost"]] == [(0.0000123, "anthropic")]
    assert [(p.value, dict(p.attributes)) for p in m["amaos.llm.skips"]] == [
        (1, {"amaos.model_name": "big", "amaos.reason_class": "circuit_open"})]
    assert [p.value for p in m["amaos.llm.fallbacks"]] == [1]


def test_a_call_that_raised_has_status_error_and_its_totals(rec):
    telemetry = rec.telemetry()
    call = telemetry.start_call("chat", REQUEST)
    with call.attempt(FLAKY) as attempt:
        attempt.failed(TimeoutError("no answer in 30 s"), "timeout")
    call.end_failed(RuntimeError("every model failed"))
    call_span = next(s for s in rec.spans.get_finished_spans() if s.kind == SpanKind.INTERNAL)
    assert call_span.name == "chat llama3.2"
    assert (call_span.status.status_code, call_span.attributes["error.type"]) == (StatusCode.ERROR, "RuntimeError")
    assert call_span.attributes["amaos.cost_usd"] == "0"


def test_the_attempt_span_is_current_while_sending_so_sdk_spans_nest_under_it(rec):
    telemetry = rec.telemetry()
    call = telemetry.start_call("chat", REQUEST)
    with call.attempt(STEADY) as attempt:
        sdk_span = rec.tracer_provider.get_tracer("some.sdk").start_span("POST /v1/messages")
        sdk_span.end()
        attempt.succeeded(None, None)
    assert trace.get_current_span() is trace.INVALID_SPAN  # and no longer after
    call.end()
    spans = rec.spans.get_finished_spans()
    attempt_span = next(s for s in spans if s.kind == SpanKind.CLIENT)
    sdk = next(s for s in spans if s.name == "POST /v1/messages")
    assert sdk.parent.span_id == attempt_span.context.span_id


@pytest.mark.anyio
async def test_an_attempt_left_by_an_exception_or_cancellation_is_ended_once(rec):
    telemetry = rec.telemetry()
    call = telemetry.start_call("chat", REQUEST)
    with pytest.raises(ValueError), call.attempt(FLAKY):
        raise ValueError("bad reply")
    with anyio.move_on_after(0.01), call.attempt(STEADY):
        await anyio.sleep(1)
    call.end_failed(RuntimeError("gave up"))
    attempts = [s for s in rec.spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert [(s.attributes["amaos.attempt_outcome"], s.attributes["error.type"]) for s in attempts] == [
        ("error", "ValueError"), ("cancelled", anyio.get_cancelled_exc_class().__qualname__)]


def content_attributes(rec: Recorded) -> dict[str, Any]:
    steady = [s for s in rec.spans.get_finished_spans() if s.attributes.get("amaos.model_name") == "steady"
              and s.kind == SpanKind.CLIENT][0]
    return {k: v for k, v in steady.attributes.items() if k in ("gen_ai.input.messages", "gen_ai.output.messages")}


def test_content_is_not_recorded_unless_enabled(rec, monkeypatch):
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    fallback_call(rec.telemetry())
    assert content_attributes(rec) == {}


@pytest.mark.parametrize("how", ["config", "env"])
def test_content_is_recorded_when_enabled_by_config_or_env(rec, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    fallback_call(rec.telemetry(capture_content=how == "config"))
    got = {k: json.loads(v) for k, v in content_attributes(rec).items()}
    assert got == {
        "gen_ai.input.messages": [{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                                  {"role": "user", "parts": [{"type": "text", "content": "What is 2+2?"}]}],
        "gen_ai.output.messages": [{"role": "assistant", "parts": [{"type": "text", "content": "4"}],
                                    "finish_reason": "stop"}],
    }


def every_exported_text(rec: Recorded) -> str:
    texts = []
    for s in rec.spans.get_finished_spans():
        texts += [s.name, str(s.status.description), *map(str, s.attributes.values())]
        for e in s.events:
            texts += [e.name, *map(str, e.attributes.values())]
    for points in rec.metrics().values():
        for p in points:
            texts += map(str, p.attributes.values())
    return "\n".join(texts)


def test_no_key_in_any_attribute_event_status_or_metric(rec, monkeypatch):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    telemetry = rec.telemetry(secrets=["custom-secret-value-42"])
    message = f"401 Incorrect API key provided: {KEY}; also custom-secret-value-42 and AIza{'x' * 30}"
    fallback_call(telemetry, error=message)
    call = telemetry.start_call("chat", REQUEST)
    call.retry(FLAKY, PermissionError(message), 1.5)
    call.skipped(FLAKY, message)
    call.end_failed(PermissionError(message))
    exported = every_exported_text(rec)
    assert "401 Incorrect API key provided: [REDACTED]" in exported  # the message is there, the key is not
    for secret in (KEY, "custom-secret-value-42", "AIza" + "x" * 30, "0123456789abcdef"):
        assert secret not in exported


def test_without_a_configured_provider_nothing_is_recorded():
    # This process never sets a global provider: the API's defaults are in place.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    telemetry = Telemetry.for_manager()
    assert telemetry is NO_TELEMETRY and not telemetry
    fallback_call(telemetry)  # every method is callable, and does nothing


def test_a_provider_set_after_import_counts_for_managers_built_afterwards():
    code = """
from amaos_llm.telemetry import NO_TELEMETRY, Telemetry
before = Telemetry.for_manager()
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
after = Telemetry.for_manager()
print(before is NO_TELEMETRY, isinstance(after, Telemetry))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["True", "True"]


def test_telemetry_off_costs_well_under_a_microsecond_per_call():
    """The loop's whole telemetry cost for one answered call, with telemetry off (the best of 5 runs)."""

    def one_call() -> None:
        call = NO_TELEMETRY.start_call("chat", REQUEST) if NO_TELEMETRY else NO_CALL
        with call.attempt(STEADY) as attempt:
            attempt.succeeded(None, None)
        call.end(STEADY)

    n = 20_000
    per_call = min(timeit.repeat(one_call, number=n, repeat=5)) / n
    assert per_call < 1e-6, f"{per_call * 1e9:.0f} ns per call"


def test_provider_names_and_reason_classes_follow_the_conventions():
    assert [provider_name(p) for p in ("openai", "openai_compatible", "anthropic", "google", "ollama",
                                       "embedded", "callable")] == [
        "openai", "openai", "anthropic", "gcp.gemini", "ollama", "amaos.embedded", "amaos.callable"]
    assert [reason_class(r) for r in ("circuit breaker open after repeated failures",
                                      "API key missing: set the environment variable OPENAI_API_KEY",
                                      "cloud model excluded by local_only", "disabled in the configuration",
                                      "over budget", "something new")] == [
        "circuit_open", "no_key", "local_only", "disabled", "budget", "other"]


@pytest.mark.anyio
async def test_llm_spans_nest_under_node_spans_under_the_run_span(rec):
    graph = GraphTelemetry.create(rec.tracer_provider)
    assert graph is not None
    telemetry = rec.telemetry()

    async def node(node_id: str) -> None:
        with graph.node(node_id, "llm_manager") as span:
            fallback_call(telemetry)
            graph.node_outcome(span, None)

    with graph.run("triage", "run-1") as run_span:
        async with anyio.create_task_group() as tg:  # the nodes of a run run in tasks of its group
            tg.start_soon(node, "a")
            tg.start_soon(node, "b")
        graph.run_totals(run_span, SimpleNamespace(total_cost=Decimal("0.0000246"), input_tokens=24,
                                                   output_tokens=6, ok=True))
    spans = rec.spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    def chain(s: Any) -> list[str]:
        names = [s.name]
        while s.parent is not None:
            s = by_id[s.parent.span_id]
            names.append(s.name)
        return names

    attempts = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert len(attempts) == 4
    assert sorted(chain(a)[1:] for a in attempts) == [
        ["chat claude-3-5-haiku", "node a", "run triage"]] * 2 + [["chat claude-3-5-haiku", "node b", "run triage"]] * 2
    run = next(s for s in spans if s.name == "run triage")
    assert (run.attributes["amaos.run_id"], run.attributes["amaos.cost_usd"]) == ("run-1", "0.0000246")


@pytest.mark.anyio
async def test_a_stream_makes_the_attempt_current_only_around_each_chunk(rec):
    telemetry = rec.telemetry()
    call = telemetry.start_call("chat", REQUEST)
    attempt = call.attempt(STEADY)
    sdk = rec.tracer_provider.get_tracer("some.sdk")
    for i in range(2):
        with attempt.current():
            sdk.start_span(f"chunk {i}").end()
        assert trace.get_current_span() is trace.INVALID_SPAN  # the consumer's code runs outside it
    attempt.succeeded(Usage(input_tokens=1, output_tokens=2), Decimal("0.5"))
    call.end(STEADY)
    spans = rec.spans.get_finished_spans()
    attempt_span = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert [s.parent.span_id for s in spans if s.name.startswith("chunk")] == [attempt_span.context.span_id] * 2
    assert attempt_span.attributes["amaos.cost_usd"] == "0.5"
