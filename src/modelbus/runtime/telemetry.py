"""OpenTelemetry traces, exported over OTLP when the standard variables ask for them.

**Off by default, at no cost.** :func:`setup` turns tracing on only when
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (and neither
``OTEL_SDK_DISABLED=true`` nor ``OTEL_TRACES_EXPORTER=none`` says otherwise). Off, every hook
below is one test of :data:`enabled` on the message path: no span, no allocation.

**On**, it installs a ``TracerProvider`` with a batch span processor and the OTLP/HTTP
(protobuf) exporter. Everything else is the standard variables' (endpoint, headers, timeout,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``). The packages are the
``otel`` extra; a variable set without them is a clear error at start, never a silent no-op.

What is traced:

* every HTTP request, by the OpenTelemetry FastAPI instrumentation (:func:`instrument_app`),
  which continues an incoming ``traceparent`` header;
* every delivery of every listener (:class:`DeliveryTrace`): a ``process LISTENER`` span
  (kind CONSUMER) whose parent is the message's own ``traceparent`` (attribute, or the
  CloudEvent extension), with a child per stage: ``receive``, ``decode``, ``invoke`` (and
  under it ``runner call``, the model's own time for this input), ``publish`` and
  ``settle`` (the run record and the broker ack). The results and dead letters the delivery
  makes carry the ``process`` span as their ``traceparent``, so the next hop continues the
  same trace.

A listener's stages work on whole batches; the stage spans of a delivery are its batch's
stage times, recorded as they pass and emitted when the delivery is settled.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = [
    "DeliveryTrace",
    "enabled",
    "forget",
    "instrument_app",
    "remember",
    "setup",
    "shutdown",
    "start_delivery",
    "trace_of",
]

log = logging.getLogger(__name__)

# True once setup() turned tracing on; the hot path tests only this.
enabled = False
_tracer: Any = None
_provider: Any = None

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
MISSING = "pip install 'modelbus[otel]'"


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return any(env.get(name, "").strip() for name in _ENDPOINTS)


def setup(service_name: str = "modelbus") -> bool:
    """Turn tracing on if the environment asks for it (once per process); whether it is on.
    Raises RuntimeError naming the extra when the variables are set but the packages are
    not installed."""
    global enabled, _tracer, _provider
    if enabled or not wanted():
        return enabled
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        names = " or ".join(_ENDPOINTS)
        raise RuntimeError(
            f"{names} is set but OpenTelemetry is not installed ({exc.name}): {MISSING}, "
            "or unset the variable"
        ) from None
    from modelbus import __version__

    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    ours = {"service.version": __version__} | ({} if named else {"service.name": service_name})
    _provider = TracerProvider(resource=Resource.create(ours))  # and OTEL_RESOURCE_ATTRIBUTES
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(_provider)
    _tracer = _provider.get_tracer("modelbus", __version__)
    enabled = True
    log.info("OpenTelemetry traces on: exported over OTLP/HTTP")
    return True


def shutdown() -> None:
    """Export what is still buffered and stop (at the end of the process)."""
    global enabled
    if _provider is not None:
        try:
            _provider.shutdown()
        except Exception as exc:  # a collector gone at exit must not fail the shutdown
            log.warning("exporting the last spans failed: %s", exc)
    enabled = False


def instrument_app(app: FastAPI) -> None:
    """Trace every HTTP request of ``app`` (when tracing is on)."""
    if not enabled:
        return
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError as exc:
        raise RuntimeError(
            f"OpenTelemetry's FastAPI instrumentation is missing: {MISSING}"
        ) from exc
    # One SERVER span per request, not ASGI's internal send/receive spans besides; health
    # probes (every few seconds from every orchestrator) are not traced.
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_provider,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/health"),
        exclude_spans=["receive", "send"],
    )


class DeliveryTrace:
    """The spans of one delivery: the ``process`` span, open from its receipt until it is
    settled, and the stage times recorded meanwhile (ns since the epoch)."""

    __slots__ = ("marks", "runner_ms", "span", "version")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.marks: dict[str, tuple[int, int]] = {}
        self.runner_ms: float | None = None
        self.version: str | None = None

    def mark(self, stage: str, start_ns: int, end_ns: int | None = None) -> None:
        """``stage`` ran from ``start_ns`` to ``end_ns`` (now if not given)."""
        self.marks[stage] = (start_ns, end_ns or time.time_ns())

    def traceparent(self) -> str:
        """The W3C ``traceparent`` of the ``process`` span (for the results it makes)."""
        context = self.span.get_span_context()
        flags = int(context.trace_flags)
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{flags:02x}"

    def finish(self, outcome: str, error: BaseException | None = None) -> None:
        """Emit the stage spans and end the ``process`` span, saying how it ended."""
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        parent = trace.set_span_in_context(self.span)
        for stage in ("receive", "decode", "invoke", "publish", "settle"):
            if stage not in self.marks:
                continue
            start, end = self.marks[stage]
            span = _tracer.start_span(stage, context=parent, start_time=start)
            if stage == "invoke" and self.runner_ms is not None:
                if self.version:
                    span.set_attribute("modelbus.model.version", self.version)
                runner_start = max(start, end - int(self.runner_ms * 1e6))
                call = _tracer.start_span(
                    "runner call", context=trace.set_span_in_context(span), start_time=runner_start
                )
                call.set_attribute("modelbus.runner.duration_ms", self.runner_ms)
                call.end(end_time=end)
            span.end(end_time=end)
        self.span.set_attribute("modelbus.outcome", outcome)
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        self.span.end()


# The open traces of deliveries in flight, by delivery object, for the stages that see the
# delivery but not its flight (the model call's correlation, the dead letter).
_in_flight: dict[int, DeliveryTrace] = {}


def remember(delivery: object, trace: DeliveryTrace) -> None:
    _in_flight[id(delivery)] = trace


def trace_of(delivery: object) -> DeliveryTrace | None:
    """The open trace of ``delivery`` (None when tracing is off or it has none)."""
    return _in_flight.get(id(delivery)) if enabled else None


def forget(delivery: object) -> None:
    _in_flight.pop(id(delivery), None)


def start_delivery(
    *,
    listener: str,
    system: str,
    message_id: str,
    attempt: int,
    attributes: Mapping[str, str],
    received_ns: int,
) -> DeliveryTrace:
    """Open the ``process`` span of a delivery (call only when :data:`enabled`), child of
    the message's own ``traceparent`` when it carries a valid one."""
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = attributes.get("traceparent") or attributes.get("ce-traceparent")
    carrier = {"traceparent": parent} if parent else {}
    state = attributes.get("tracestate") or attributes.get("ce-tracestate")
    if parent and state:
        carrier["tracestate"] = state
    context = TraceContextTextMapPropagator().extract(carrier)
    span = _tracer.start_span(
        f"process {listener}",
        context=context,
        kind=SpanKind.CONSUMER,
        start_time=received_ns,
        attributes={
            "messaging.system": system,
            "messaging.operation.type": "process",
            "messaging.message.id": message_id,
            "messaging.consumer.group.name": listener,
            "modelbus.listener": listener,
            "modelbus.attempt": attempt,
        },
    )
    return DeliveryTrace(span)
