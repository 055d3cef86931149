"""Graph spans: `run {pipeline}` around `node {id}` spans, and the LLM call spans a node makes
nest under its node's span, in fan-outs too (tasks inherit the context)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from amaos_llm import Usage
from amaos_llm.telemetry import CallRequest, Telemetry
from graphs import GraphOrchestrator
from nodes import Node, ResultMessage, TaskMessage
from tests.graphs.graph_builders import tag


class Spec:
    def __init__(self, name: str) -> None:
        self.name, self.provider, self.model, self.base_url = name, "callable", name, None


class TracedLLMNode(Node):
    """Stands in for an llm_manager node: one call, one attempt, recorded as the manager will."""

    type_name = "traced_llm"
    telemetry: Telemetry

    async def handle(self, task: TaskMessage) -> ResultMessage:
        if "fail" in task.content:
            return task.fail("no model answered")
        call = self.telemetry.start_call("chat", CallRequest())
        with call.attempt(Spec("m")) as attempt:
            attempt.succeeded(Usage(input_tokens=2, output_tokens=1), Decimal("0.001"))
        call.end()
        return task.reply(task.content, model_name="m", provider="callable", usage=Usage(input_tokens=2,
                          output_tokens=1), cost=Decimal("0.001"))


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def orchestrator(spans: InMemorySpanExporter) -> GraphOrchestrator:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry = Telemetry.for_manager(tracer_provider=provider)
    assert isinstance(telemetry, Telemetry)
    o = GraphOrchestrator(name="fan")
    for node_id in ("left", "right"):
        node = TracedLLMNode(node_id)
        node.telemetry = telemetry
        o.add_node(node)
    o.add_node(tag("start"))
    o.connect("start", "left")
    o.connect("start", "right")
    assert o.instrument(provider)
    return o


@pytest.mark.anyio
async def test_llm_spans_nest_under_node_spans_under_the_run_span(spans):
    o = orchestrator(spans)
    run = await o.run("go")
    finished = spans.get_finished_spans()
    attempts = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert sorted(parents_of(spans, a) for a in attempts) == [
        ["chat m", "node left", "run fan"], ["chat m", "node right", "run fan"]]
    assert parents_of(spans, next(s for s in finished if s.name == "node start")) == ["run fan"]
    root = next(s for s in finished if s.name == "run fan")
    assert (root.attributes["amaos.run_id"], root.attributes["amaos.pipeline"]) == (run.run_id, "fan")
    assert root.attributes["amaos.cost_usd"] == format(run.total_cost, "f") == "0.002"
    node = next(s for s in finished if s.name == "node left")
    assert (node.attributes["amaos.node_type"], node.attributes["amaos.node_outcome"]) == ("traced_llm", "success")


def parents_of(spans: InMemorySpanExporter, span: Any) -> list[str]:
    by_id = {s.context.span_id: s for s in spans.get_finished_spans()}
    chain, p = [], span.parent
    while p is not None:
        chain.append(by_id[p.span_id].name)
        p = by_id[p.span_id].parent
    return chain


@pytest.mark.anyio
async def test_a_failed_node_and_its_run_are_marked_error(spans):
    o = orchestrator(spans)
    run = await o.run("fail here")
    assert not run.ok
    by_name = {s.name: s for s in spans.get_finished_spans()}
    assert by_name["node left"].attributes["amaos.node_outcome"] == "error"
    assert by_name["node left"].status.status_code == StatusCode.ERROR
    assert by_name["run fan"].status.status_code == StatusCode.ERROR


def test_without_a_tracer_provider_an_orchestrator_records_nothing():
    assert GraphOrchestrator()._telemetry is None
