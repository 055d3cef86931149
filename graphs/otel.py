"""`--otel`: the OpenTelemetry SDK, set up from the standard `OTEL_*` environment variables.

Spans and metrics go over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (default
http://localhost:4318; the per-signal `..._TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`, `..._HEADERS`
and `OTEL_SERVICE_NAME` are read by the SDK itself). The SDK and exporter come with the `otel` extra;
without them `configure_from_env` raises `OtelUnavailable` naming the install command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

INSTALL = "pip install 'amaos-llm[otel]'"


class OtelUnavailable(RuntimeError):
    """The SDK or the OTLP/HTTP exporter is not installed."""


@dataclass
class OtelSetup:
    tracer_provider: Any
    meter_provider: Any

    def shutdown(self) -> None:
        """Export what is still buffered, then stop (the CLI calls this before it exits)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def configure_from_env(*, set_global: bool = True) -> OtelSetup:
    """Tracer and meter providers exporting over OTLP/HTTP; with `set_global`, made the process's
    providers, so that managers and orchestrators built afterwards record through them."""
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise OtelUnavailable(f"--otel needs the OpenTelemetry SDK and OTLP exporter ({exc.name} is missing): "
                              f"{INSTALL}") from None
    named = "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named else {"service.name": "amaos-llm"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    if set_global:
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
    return OtelSetup(tracer_provider, meter_provider)
