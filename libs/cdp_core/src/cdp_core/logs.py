"""structlog JSON lines to stdout, carrying trace and span ids, without personal data.

Call `configure(service, level)` once at start-up; then `get_logger()` anywhere.
Canonical lines: one per RPC (grpc_server) and one per consumed batch (consumer).
"""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace

# Keys whose values are personal data; redacted wherever they appear in a log event.
PII_KEYS = frozenset(
    {"email", "phone", "traits", "properties", "context", "user_id", "anonymous_id", "identifier_value", "ip", "full_name", "address"}
)


def _add_trace_ids(_logger, _method, event_dict):
    span = trace.get_current_span()
    ctx = span.get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def _redact_pii(_logger, _method, event_dict):
    for key in PII_KEYS & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


_configured = False


def configure(service: str, level: str = "info") -> None:
    global _configured
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(format="%(message)s", stream=sys.stdout, level=lvl)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _add_trace_ids,
            _redact_pii,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    _configured = True


def get_logger(name: str | None = None):
    return structlog.get_logger(name) if name else structlog.get_logger()
