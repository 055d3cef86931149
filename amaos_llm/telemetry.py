"""OpenTelemetry GenAI spans, routing events and metrics for the attempt loop; nothing when unconfigured.

The manager decides once, when it is built, whether to record (`Telemetry.for_manager`): only when
`opentelemetry-api` is importable and a real tracer or meter provider is set (the API's default
proxy/no-op providers mean nobody listens). Otherwise it gets `NO_TELEMETRY`, which is falsy and whose
methods do nothing, so the loop pays one truth test per call:

    telemetry = Telemetry.for_manager(capture_content=..., secrets=[the resolved API keys])  # in __init__
    call = telemetry.start_call("chat", CallRequest(temperature, max_tokens, messages)) if telemetry else NO_CALL
    call.skipped(spec, reason)                     # selection passed a model over
    call.budget_reserved(spec, amount) / call.budget_settled(spec, amount)
    call.cache_hit(spec)
    with call.attempt(spec) as attempt:            # before send: a CLIENT span, current while sending
        reply = await provider.complete(request)   # SDK spans nest under it
        attempt.succeeded(usage, cost, response_model=..., finish_reasons=..., output=reply.content)
        # or, on an exception: attempt.failed(exc, outcome)  (leaving the `with` by an exception does it too)
    # a stream: attempt = call.attempt(spec); `with attempt.current(): chunk = await anext(chunks)` per
    # chunk; then attempt.succeeded(...) or attempt.failed(...) once
    call.retry(spec, exc, wait) / call.fallback(spec, reason) / call.stream_reset(spec, reason)
    call.end(answering_spec)  or  call.end_failed(exc)   # on settle: totals, named `chat {model}`

The names follow the OpenTelemetry GenAI semantic conventions; `amaos.*` attributes carry what they
have no word for (the configured model name, the attempt's outcome, the exact cost as a string).
Prompts and replies are recorded only when asked (`capture_content`, or the conventions' environment
variable). No API key is ever recorded: error messages are scrubbed of key-shaped strings and of the
key values the manager hands in.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import urlsplit

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
SCOPE = "amaos_llm"
log = logging.getLogger("amaos_llm")

# Our provider names → the conventions' `gen_ai.provider.name` values (ours for the in-process ones).
PROVIDER_NAMES = {
    "openai": "openai",
    "openai_compatible": "openai",  # the OpenAI wire; the server says who it is (server.address)
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "embedded": "amaos.embedded",
    "callable": "amaos.callable",
}

# Key-shaped strings, redacted from anything recorded (an SDK error may quote the key it was given).
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|AIza[0-9A-Za-z_\-]{20,}|Bearer\s+[A-Za-z0-9._\-]{8,})")
_REASON_CLASSES = (  # (class, words that mark it), first match wins; keeps the metric's cardinality small
    ("circuit_open", ("circuit",)),
    ("no_key", ("api key", "key missing")),
    ("local_only", ("local_only",)),
    ("disabled", ("disabled",)),
    ("budget", ("budget",)),
    ("rate_limit", ("rate limit", "rate-limit", "429")),
    ("unavailable", ("unavailable", "unreachable", "not running")),
)


class ModelLike(Protocol):
    """What telemetry reads of a model: `ModelSpec` fits."""

    name: str
    provider: str
    model: str
    base_url: str | None


class UsageLike(Protocol):
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the call asked for, as the conventions name it; `messages` are `(role, text)` pairs and
    are recorded only with content capture on."""

    temperature: float | None = None
    max_tokens: int | None = None
    messages: Sequence[tuple[str, str]] = ()
    stream: bool = False


def call_request(call: Any, telemetry: Telemetry, stream: Any) -> CallRequest:
    """What a manager call asked for; its messages only when content is captured."""
    options = call.options
    messages: tuple[tuple[str, str], ...] = ()
    if telemetry.capture_content:
        messages = tuple((m.role, m.content if isinstance(m.content, str) else str(m.content)) for m in call.messages)
    return CallRequest(options.temperature, options.max_tokens, messages, stream is not None)


def key_values(models: Iterable[Any]) -> list[str]:
    """Every key the models (`ModelSpec`s) would send, for telemetry to scrub from what it exports."""
    keys = []
    for spec in models:
        for env in spec.key_envs or ((None,) if spec.api_key is not None else ()):
            secret = spec.resolve_key(env)
            if secret is not None:
                keys.append(secret.get_secret_value())
    return keys


def provider_name(provider: str) -> str:
    return PROVIDER_NAMES.get(provider, provider)


def reason_class(reason: str) -> str:
    """A skip reason reduced to one of a few classes, for a metric attribute."""
    low = reason.lower()
    for name, marks in _REASON_CLASSES:
        if any(mark in low for mark in marks):
            return name
    return "other"


def capture_from_env() -> bool:
    return os.environ.get(CAPTURE_ENV, "").strip().lower() == "true"


class Telemetry:
    """One manager's recorder: a tracer, the instruments, and whether content is captured."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, *, capture_content: bool = False,
                 secrets: Iterable[str] = ()) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer_provider.get_tracer(SCOPE) if tracer_provider is not None else None
        self.capture_content = capture_content
        self._secrets = tuple(s for s in secrets if s)
        meter = meter_provider.get_meter(SCOPE) if meter_provider is not None else None
        self.meter = meter
        if meter is not None:
            self.duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s",
                                                   description="GenAI operation duration")
            self.tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}",
                                                 description="Measures number of input and output tokens used")
            self.cost = meter.create_counter("amaos.llm.cost", unit="USD", description="Cost of the calls sent")
            self.fallbacks = meter.create_counter("amaos.llm.fallbacks", unit="{fallback}",
                                                  description="Models given up on for the next one")
            self.skips = meter.create_counter("amaos.llm.skips", unit="{skip}",
                                              description="Models passed over, by reason class")

    @classmethod
    def for_manager(
        cls, *, capture_content: bool = False, secrets: Iterable[str] = (),
        tracer_provider: Any = None, meter_provider: Any = None,
    ) -> Telemetry | _NoTelemetry:
        """A recorder when the OpenTelemetry API is installed and a real provider is set (globally, or
        passed in), else `NO_TELEMETRY`. Called when a manager is built, so a provider configured after
        `import amaos_llm` counts for managers built afterwards."""
        if tracer_provider is None and meter_provider is None and not _api_in_use():
            return NO_TELEMETRY
        try:
            from opentelemetry import metrics, trace
        except ImportError:  # no API, nothing to record to
            return NO_TELEMETRY
        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
        if isinstance(tracer_provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            tracer_provider = None  # the API's defaults: nobody configured tracing
        if meter_provider is None:
            meter_provider = metrics.get_meter_provider()
        if type(meter_provider).__name__ in ("_ProxyMeterProvider", "NoOpMeterProvider"):
            meter_provider = None  # (the proxy class is private to the API: known by name)
        if tracer_provider is None and meter_provider is None:
            return NO_TELEMETRY
        return cls(tracer_provider, meter_provider, capture_content=capture_content or capture_from_env(),
                   secrets=secrets)

    def __bool__(self) -> bool:
        return True

    def start_call(self, operation: str, request: CallRequest, first_model: ModelLike | None = None) -> CallTrace:
        """Before selection: the INTERNAL call span (renamed `chat {model}` when the answering model is known)."""
        return CallTrace(self, operation, request, first_model)

    def scrub(self, text: str) -> str:
        """`text` with every known key and key-shaped string replaced; cut to 500 characters."""
        for secret in self._secrets:
            text = text.replace(secret, "[REDACTED]")
        text = _KEY_SHAPES.sub("[REDACTED]", text)
        return text if len(text) <= 500 else text[:499] + "…"


class CallTrace:
    """One manager call: its span, its routing events, its attempts."""

    def __init__(self, telemetry: Telemetry, operation: str, request: CallRequest, first: ModelLike | None) -> None:
        self._t = telemetry
        self.operation = operation
        self.request = request
        self._first: ModelLike | None = first
        self._span = None
        self.usage_in = self.usage_out = 0
        self.cost = Decimal(0)
        if telemetry.tracer is not None:
            kind = telemetry._trace.SpanKind.INTERNAL
            name = f"{operation} {first.model or first.name}" if first is not None else operation
            self._span = telemetry.tracer.start_span(name, kind=kind, attributes=self._common(first))

    def __bool__(self) -> bool:
        return True

    def _common(self, spec: ModelLike | None) -> dict[str, Any]:
        attrs: dict[str, Any] = {"gen_ai.operation.name": self.operation}
        if spec is not None:
            attrs["gen_ai.provider.name"] = provider_name(spec.provider)
            attrs["gen_ai.request.model"] = spec.model or spec.name
        if self.request.temperature is not None:
            attrs["gen_ai.request.temperature"] = self.request.temperature
        if self.request.max_tokens is not None:
            attrs["gen_ai.request.max_tokens"] = self.request.max_tokens
        return attrs

    def _event(self, name: str, spec: ModelLike | None, **attrs: Any) -> None:
        if self._span is not None:
            if spec is not None:
                attrs["amaos.model_name"] = spec.name
            self._span.add_event(name, {k: v for k, v in attrs.items() if v is not None})

    # -- routing decisions (events on the call span) -------------------------------------------

    def skipped(self, spec: ModelLike, reason: str) -> None:
        self._event("amaos.skip", spec, **{"amaos.reason": self._t.scrub(reason)})
        if self._t.meter is not None:
            self._t.skips.add(1, {"amaos.model_name": spec.name, "amaos.reason_class": reason_class(reason)})

    def retry(self, spec: ModelLike, error: BaseException | str, wait: float) -> None:
        self._event("amaos.retry", spec, **{"error.type": _error_type(error),
                                            "amaos.reason": self._t.scrub(str(error)), "amaos.wait_s": wait})

    def fallback(self, spec: ModelLike, reason: str) -> None:
        """`spec` failed for good in this call; the loop moves on to the next candidate."""
        self._event("amaos.fallback", spec, **{"amaos.reason": self._t.scrub(reason)})
        if self._t.meter is not None:
            self._t.fallbacks.add(1, {"amaos.model_name": spec.name, "gen_ai.provider.name": provider_name(
                spec.provider)})

    def budget_reserved(self, spec: ModelLike, amount: Decimal) -> None:
        self._event("amaos.budget.reserve", spec, **{"amaos.cost_usd": _usd(amount)})

    def budget_settled(self, spec: ModelLike, amount: Decimal) -> None:
        self._event("amaos.budget.settle", spec, **{"amaos.cost_usd": _usd(amount)})

    def cache_hit(self, spec: ModelLike | None) -> None:
        self._event("amaos.cache_hit", spec)

    def stream_reset(self, spec: ModelLike, reason: str) -> None:
        self._event("amaos.stream_reset", spec, **{"amaos.reason": self._t.scrub(reason)})

    # -- attempts ------------------------------------------------------------------------------

    def attempt(self, spec: ModelLike) -> AttemptTrace:
        """Before send: one CLIENT span for this model, a child of the call span."""
        if self._first is None:
            self._first = spec
        return AttemptTrace(self, spec)

    # -- the end -------------------------------------------------------------------------------

    def end(self, answered: ModelLike | None = None) -> None:
        """On settle, after the call returned: its totals; named for the model that answered."""
        span = self._span
        if span is None:
            return
        model = answered or self._first
        if model is not None:
            span.update_name(f"{self.operation} {model.model or model.name}")
            span.set_attribute("gen_ai.response.model", model.model or model.name)
            span.set_attribute("amaos.model_name", model.name)
            span.set_attribute("gen_ai.provider.name", provider_name(model.provider))
        self._totals(span)
        span.end()

    def end_failed(self, error: BaseException) -> None:
        """The call raised (every model failed, or it was cancelled): status ERROR."""
        span = self._span
        if span is None:
            return
        if self._first is not None:
            span.update_name(f"{self.operation} {self._first.model or self._first.name}")
        self._totals(span)
        span.set_attribute("error.type", _error_type(error))
        span.set_status(self._t._trace.Status(self._t._trace.StatusCode.ERROR, self._t.scrub(str(error))))
        span.end()

    def _totals(self, span: Any) -> None:
        span.set_attribute("gen_ai.usage.input_tokens", self.usage_in)
        span.set_attribute("gen_ai.usage.output_tokens", self.usage_out)
        span.set_attribute("amaos.cost_usd", _usd(self.cost))


class AttemptTrace:
    """One model sent the request: a CLIENT span (current while the `with` body runs) and its metrics."""

    def __init__(self, call: CallTrace, spec: ModelLike) -> None:
        self._call = call
        self.spec = spec
        self._started = time.perf_counter()
        self._done = False
        self._span = None
        self._scope: Any = None
        t = call._t
        if t.tracer is not None:
            attrs = call._common(spec)
            attrs["amaos.model_name"] = spec.name
            attrs.update(_server(spec.base_url))
            if t.capture_content and call.request.messages:
                attrs["gen_ai.input.messages"] = json.dumps([
                    {"role": role, "parts": [{"type": "text", "content": text}]} for role, text in call.request.messages
                ])
            self._span = t.tracer.start_span(
                f"{call.operation} {spec.model or spec.name}", kind=t._trace.SpanKind.CLIENT, attributes=attrs,
                context=t._trace.set_span_in_context(call._span) if call._span is not None else None,
            )

    def __enter__(self) -> AttemptTrace:
        if self._span is not None:
            self._scope = self._call._t._trace.use_span(self._span, end_on_exit=False)
            self._scope.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._scope is not None:
            self._scope.__exit__(None, None, None)  # our own ending below records the exception, once
            self._scope = None
        if not self._done:
            if exc is not None:
                self.failed(exc, "cancelled" if _is_cancellation(exc) else "error")
            else:
                self.failed("attempt left without an outcome", "error")

    @contextmanager
    def current(self) -> Iterator[None]:
        """The attempt span as the current one, without ending it: for a stream, around each `await`
        of the provider's iterator (a `with` held across a generator's `yield` would leave the span
        current in whatever code consumes the chunks)."""
        if self._span is None:
            yield
            return
        with self._call._t._trace.use_span(self._span, end_on_exit=False):
            yield

    def succeeded(
        self, usage: UsageLike | None, cost: Decimal | None, *, response_model: str | None = None,
        finish_reasons: Sequence[str] = (), output: str | None = None,
        cache_read_tokens: int | None = None, cache_creation_tokens: int | None = None,
    ) -> None:
        call, t = self._call, self._call._t
        attrs = self._metric_attrs()
        if response_model:
            attrs["gen_ai.response.model"] = response_model
        if usage is not None:
            call.usage_in += usage.input_tokens
            call.usage_out += usage.output_tokens
        if cost is not None:
            call.cost += cost
        span = self._span
        if span is not None:
            span.set_attribute("amaos.attempt_outcome", "success")
            if response_model:
                span.set_attribute("gen_ai.response.model", response_model)
            if finish_reasons:
                span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
            if usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            if cache_read_tokens is not None:
                span.set_attribute("gen_ai.usage.cache_read.input_tokens", cache_read_tokens)
            if cache_creation_tokens is not None:
                span.set_attribute("gen_ai.usage.cache_creation.input_tokens", cache_creation_tokens)
            if cost is not None:
                span.set_attribute("amaos.cost_usd", _usd(cost))
            if t.capture_content and output is not None:
                reason = finish_reasons[0] if finish_reasons else "stop"
                span.set_attribute("gen_ai.output.messages", json.dumps(
                    [{"role": "assistant", "parts": [{"type": "text", "content": output}], "finish_reason": reason}]))
        if t.meter is not None:
            t.duration.record(time.perf_counter() - self._started, attrs)
            if usage is not None:
                t.tokens.record(usage.input_tokens, {**attrs, "gen_ai.token.type": "input"})
                t.tokens.record(usage.output_tokens, {**attrs, "gen_ai.token.type": "output"})
            if cost is not None:
                t.cost.add(float(cost), attrs)
        self._end()

    def failed(self, error: BaseException | str, outcome: str = "error", cost: Decimal | None = None) -> None:
        """The model did not answer (`outcome`: error, timeout, rejected, cancelled); `cost` if billed anyway."""
        call, t = self._call, self._call._t
        kind = _error_type(error)
        if cost is not None:
            call.cost += cost
        span = self._span
        if span is not None:
            span.set_attribute("amaos.attempt_outcome", outcome)
            span.set_attribute("error.type", kind)
            if cost is not None:
                span.set_attribute("amaos.cost_usd", _usd(cost))
            span.set_status(t._trace.Status(t._trace.StatusCode.ERROR, t.scrub(str(error))))
        if t.meter is not None:
            t.duration.record(time.perf_counter() - self._started, {**self._metric_attrs(), "error.type": kind})
        self._end()

    def _metric_attrs(self) -> dict[str, Any]:
        spec = self.spec
        attrs = {"gen_ai.operation.name": self._call.operation, "gen_ai.provider.name": provider_name(spec.provider),
                 "gen_ai.request.model": spec.model or spec.name}
        attrs.update(_server(spec.base_url))
        return attrs

    def _end(self) -> None:
        self._done = True
        if self._span is not None:
            self._span.end()


class _NoTelemetry:
    """Telemetry off: falsy, and every method does nothing (the loop may call them unguarded)."""

    capture_content = False

    def __bool__(self) -> bool:
        return False

    def start_call(self, operation: str, request: CallRequest, first_model: ModelLike | None = None) -> _NoCall:
        return NO_CALL

    def scrub(self, text: str) -> str:
        return text


class _NoAttempt:
    def __enter__(self) -> _NoAttempt:
        return self

    @contextmanager
    def current(self) -> Iterator[None]:
        yield

    def __exit__(self, *exc: object) -> None:
        return None

    def succeeded(self, *args: Any, **kwargs: Any) -> None:
        return None

    def failed(self, *args: Any, **kwargs: Any) -> None:
        return None


class _NoCall:
    def __bool__(self) -> bool:
        return False

    def attempt(self, spec: ModelLike) -> _NoAttempt:
        return NO_ATTEMPT

    def _nothing(self, *args: Any, **kwargs: Any) -> None:
        return None

    skipped = retry = fallback = budget_reserved = budget_settled = cache_hit = stream_reset = _nothing
    end = end_failed = _nothing


NO_TELEMETRY = _NoTelemetry()
NO_CALL = _NoCall()
NO_ATTEMPT = _NoAttempt()


def _api_in_use() -> bool:
    # Setting a provider imports the API's modules: if they were never imported, nobody configured
    # one, and a manager need not pay for importing them to find that out.
    return "opentelemetry.trace" in sys.modules or "opentelemetry.metrics" in sys.modules


def _usd(amount: Decimal) -> str:
    return format(amount, "f")


def _error_type(error: BaseException | str) -> str:
    return type(error).__qualname__ if isinstance(error, BaseException) else "_OTHER"


def _is_cancellation(exc: BaseException) -> bool:
    # asyncio's CancelledError and trio's Cancelled are BaseExceptions, as are KeyboardInterrupt and
    # SystemExit: each stops the attempt from outside rather than the model failing.
    return not isinstance(exc, Exception)


def _server(base_url: str | None) -> dict[str, Any]:
    if not base_url:
        return {}
    parts = urlsplit(base_url)
    out: dict[str, Any] = {}
    if parts.hostname:
        out["server.address"] = parts.hostname
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    if port:
        out["server.port"] = port
    return out


# -- graph spans ------------------------------------------------------------------------------------

class GraphTelemetry:
    """`run {pipeline}` and `node {node_id}` spans. LLM call spans started inside a node's span (in the
    same task, or a task it starts: anyio copies the context) nest under it."""

    def __init__(self, tracer_provider: Any) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer_provider.get_tracer("graphs")

    @classmethod
    def create(cls, tracer_provider: Any = None) -> GraphTelemetry | None:
        """None unless the API is installed and a real tracer provider is set (or passed)."""
        if tracer_provider is None and not _api_in_use():
            return None
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
            return None
        return cls(provider)

    @contextmanager
    def run(self, pipeline: str, run_id: str) -> Iterator[Any]:
        """The run's span, current inside; the caller sets the totals with `run_totals` before leaving."""
        with self.tracer.start_as_current_span(f"run {pipeline}", kind=self._trace.SpanKind.INTERNAL,
                                               attributes={"amaos.pipeline": pipeline, "amaos.run_id": run_id},
                                               record_exception=True) as span:
            yield span

    def run_totals(self, span: Any, result: Any) -> None:
        """The run's totals from its `RunResult` (any object with its total fields)."""
        span.set_attribute("amaos.cost_usd", _usd(result.total_cost))
        span.set_attribute("gen_ai.usage.input_tokens", result.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", result.output_tokens)
        if not result.ok:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "a node failed"))

    @contextmanager
    def node(self, node_id: str, node_type: str) -> Iterator[Any]:
        with self.tracer.start_as_current_span(f"node {node_id}", kind=self._trace.SpanKind.INTERNAL,
                                               attributes={"amaos.node_id": node_id, "amaos.node_type": node_type},
                                               record_exception=True) as span:
            yield span

    def node_outcome(self, span: Any, error: str | None) -> None:
        span.set_attribute("amaos.node_outcome", "success" if error is None else "error")
        if error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error[:500]))

    def wrap(self, handle: Callable[[Any], Awaitable[Any]], node_id: str, node_type: str
             ) -> Callable[[Any], Awaitable[Any]]:
        """`handle` (a node's `handle(task)`) run inside the node's span; its result's `error` sets the outcome."""

        async def traced(task: Any) -> Any:
            with self.node(node_id, node_type) as span:
                result = await handle(task)
                self.node_outcome(span, getattr(result, "error", None))
                return result

        return traced


def settled(call: Any, result: Any, error: BaseException | None, models: Mapping[str, Any]) -> None:
    """A manager call's end, told to its trace and the log: one WARNING for a call that fell back
    (not one per attempt), naming models only, never a key."""
    if call.fell_back_from is not None:
        if result is not None:
            log.warning("%s failed; %s answered instead", call.fell_back_from, result.model_name)
        elif isinstance(error, Exception):
            log.warning("%s failed and no other model answered: %s", call.fell_back_from, type(error).__name__)
    trace = call.trace
    if trace is not None:
        if result is not None:
            trace.end(models.get(result.model_name))
        elif error is not None:
            trace.end_failed(error)
