"""The manager's calls as OpenTelemetry sees them (the SDK's in-memory exporter): a fallback call's
span, its attempts, the routing events, exact usage and cost; content only when asked; no key; and
the log lines a fallback writes."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from amaos_llm import AllModelsFailed, LLMConfig, LLMManager
from tests.support.fakes import OpenAIFake

pytestmark = pytest.mark.anyio
KEY = "sk-secret-telemetry-123456"


@pytest.fixture
def recorded() -> Any:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return spans, tracer_provider, reader, MeterProvider(metric_readers=[reader])


def config(fake_url: str, closed: str, **extra: Any) -> LLMConfig:
    return LLMConfig.model_validate({**extra, "defaults": {"max_retries": 0}, "models": [
        {"name": "first", "provider": "openai_compatible", "model": "test-model", "base_url": closed + "/v1",
         "source": "cloud", "priority": 2, "api_key_env": "AMAOS_TEL_KEY"},
        {"name": "second", "provider": "openai_compatible", "model": "test-model", "base_url": fake_url,
         "source": "cloud", "priority": 1, "cost_per_1k_input": "0.5", "cost_per_1k_output": "1.5",
         "api_key_env": "AMAOS_TEL_KEY"},
        {"name": "keyless", "provider": "openai", "api_key_env": "AMAOS_TEL_UNSET", "priority": 3},
    ]})


async def test_a_fallback_call_is_one_call_span_with_an_attempt_span_per_send(
    recorded: Any, closed_port: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AMAOS_TEL_KEY", KEY)
    monkeypatch.delenv("AMAOS_TEL_UNSET", raising=False)
    spans, tracer_provider, reader, meter_provider = recorded
    with OpenAIFake() as fake:
        m = LLMManager(config(fake.url, closed_port), tracer_provider=tracer_provider, meter_provider=meter_provider)
        with caplog.at_level(logging.WARNING, logger="amaos_llm"):
            async with m:
                result = await m.complete("hello there", temperature=0.0, max_tokens=20)
    finished = spans.get_finished_spans()
    call = next(s for s in finished if s.kind == SpanKind.INTERNAL)
    attempts = [s for s in finished if s.kind == SpanKind.CLIENT]
    assert call.name == "chat test-model" and call.status.status_code != StatusCode.ERROR
    assert [(s.attributes["amaos.model_name"], s.attributes["amaos.attempt_outcome"]) for s in attempts] == [
        ("first", "error"), ("second", "success")]
    assert all(s.parent is not None and s.parent.span_id == call.context.span_id for s in attempts)
    assert attempts[0].attributes["error.type"] == "ProviderConnectionError"
    ok = attempts[1].attributes
    assert (ok["gen_ai.usage.input_tokens"], ok["gen_ai.usage.output_tokens"]) == (
        result.usage.input_tokens, result.usage.output_tokens)
    assert Decimal(ok["amaos.cost_usd"]) == result.cost == Decimal(call.attributes["amaos.cost_usd"])
    assert (ok["gen_ai.request.temperature"], ok["gen_ai.request.max_tokens"]) == (0.0, 20)
    assert ok["server.address"] == "127.0.0.1"
    events = [(e.name, e.attributes.get("amaos.model_name")) for e in call.events]
    assert events == [("amaos.skip", "keyless"), ("amaos.fallback", "first")]
    assert "AMAOS_TEL_UNSET" in call.events[0].attributes["amaos.reason"]
    # no key anywhere, no content unless asked
    exported = repr([(s.attributes, [e.attributes for e in s.events], s.status.description) for s in finished])
    assert KEY not in exported and "hello there" not in exported
    metrics = reader.get_metrics_data().to_json()
    assert "amaos.llm.cost" in metrics and "gen_ai.client.token.usage" in metrics and KEY not in metrics
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "first failed; second answered" in warnings[0].getMessage()


async def test_content_is_captured_only_when_enabled(recorded: Any, closed_port: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_TEL_KEY", KEY)
    spans, tracer_provider, _, _ = recorded
    with OpenAIFake() as fake:
        cfg = config(fake.url, closed_port, telemetry={"capture_content": True})
        async with LLMManager(cfg, tracer_provider=tracer_provider) as m:
            await m.complete("hello there")
    answered = [s for s in spans.get_finished_spans() if s.attributes.get("amaos.attempt_outcome") == "success"]
    assert "hello there" in answered[0].attributes["gen_ai.input.messages"]


async def test_a_call_that_raises_has_an_error_span(recorded: Any, closed_port: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAOS_TEL_KEY", KEY)
    spans, tracer_provider, _, _ = recorded
    cfg = config(closed_port + "/v1", closed_port)
    async with LLMManager(cfg, tracer_provider=tracer_provider) as m:
        with pytest.raises(AllModelsFailed):
            await m.complete("hi")
    call = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.INTERNAL)
    assert call.status.status_code == StatusCode.ERROR and call.attributes["error.type"] == "AllModelsFailed"


async def test_debug_logs_a_line_per_attempt_and_never_a_key(closed_port: str, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AMAOS_TEL_KEY", KEY)
    with OpenAIFake() as fake, caplog.at_level(logging.DEBUG, logger="amaos_llm"):
        async with LLMManager(config(fake.url, closed_port)) as m:
            await m.complete("hi")
    lines = [r.getMessage() for r in caplog.records if r.name == "amaos_llm" and r.levelno == logging.DEBUG]
    assert [line.split(" ")[1] for line in lines if line.startswith("attempt ")] == ["keyless", "first", "second"]
    assert KEY not in caplog.text


async def test_a_graph_run_nests_llm_spans_under_node_spans_under_the_run_span(recorded: Any) -> None:
    from graphs import GraphOrchestrator
    from nodes import LLMManagerNode

    spans, tracer_provider, _, _ = recorded
    m = LLMManager(models=[], tracer_provider=tracer_provider)
    m.register_model("fn", lambda messages, **params: "answer")
    orchestrator = GraphOrchestrator()
    orchestrator.instrument(tracer_provider)
    await orchestrator.register_node(LLMManagerNode(id="llm", manager=m))
    async with orchestrator:
        await orchestrator.run({"llm": "hi"})
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    attempt = next(s for s in by_id.values() if s.kind == SpanKind.CLIENT)
    chain = [attempt.name]
    span = attempt
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        chain.append(span.name)
    assert len(chain) == 4 and chain[-1].startswith("run") and chain[-2] == "node llm" and chain[-3] == "chat fn"
