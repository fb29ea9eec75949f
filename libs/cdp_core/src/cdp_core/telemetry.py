"""OpenTelemetry tracing: a tracer provider per process, and W3C trace-context
propagation through gRPC metadata and NATS headers.

Spans are exported to an OTLP collector when OTEL_EXPORTER_OTLP_ENDPOINT is set and the
exporter package is installed, to stdout when CDP_TRACES_CONSOLE=1, otherwise kept
in-process only (trace ids still reach the logs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

ATTR_PREFIX = "cdp."
_provider: TracerProvider | None = None


def configure(service: str) -> TracerProvider:
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # type: ignore

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        except ImportError:  # exporter not installed: keep tracing in-process
            pass
    if os.environ.get("CDP_TRACES_CONSOLE") == "1":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()


def tracer(name: str = "cdp"):
    return trace.get_tracer(name)


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Current trace context as W3C headers (traceparent, tracestate) for NATS or gRPC."""
    carrier: dict[str, str] = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_context(headers: Mapping[str, str] | None) -> otel_context.Context:
    return propagate.extract(dict(headers or {}))
