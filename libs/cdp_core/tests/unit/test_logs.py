"""structlog JSON lines with trace ids and without personal data."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from cdp_core import logs, telemetry


@pytest.fixture
def log_lines(monkeypatch):
    """Configure logging into a buffer (configure writes to sys.stdout); restore afterwards."""
    buf = io.StringIO()
    monkeypatch.setattr("sys.stdout", buf)
    logs.configure("unit-svc", "info")

    def lines():
        return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]

    yield lines
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_json_lines_with_level_time_and_service(log_lines):
    log = logs.get_logger("unit")
    log.info("hello", count=3)
    log.debug("not shown at info")
    log.warning("careful")
    lines = log_lines()
    assert [(x["event"], x["level"]) for x in lines] == [("hello", "info"), ("careful", "warning")]
    assert lines[0]["count"] == 3
    assert lines[0]["service"] == "unit-svc"
    assert lines[0]["timestamp"].endswith("Z")
    assert "trace_id" not in lines[0]  # no span, no trace id


def test_trace_and_span_ids_inside_a_span(log_lines):
    telemetry.configure("unit-svc")
    log = logs.get_logger()
    with telemetry.tracer().start_as_current_span("work") as span:
        log.info("inside")
        ctx = span.get_span_context()
    log.info("outside")
    inside, outside = log_lines()
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert len(inside["trace_id"]) == 32 and int(inside["trace_id"], 16) != 0
    assert "trace_id" not in outside and "span_id" not in outside


def test_pii_keys_are_redacted(log_lines):
    logs.get_logger().info(
        "event seen",
        email="jane@example.com",
        phone="+15555550100",
        user_id="u-1",
        anonymous_id="a-1",
        traits={"name": "Jane"},
        ip="10.0.0.1",
        event_type="cdp.x.y",
    )
    (line,) = log_lines()
    for key in ("email", "phone", "user_id", "anonymous_id", "traits", "ip"):
        assert line[key] == "[redacted]", key
    assert line["event_type"] == "cdp.x.y"
    raw = json.dumps(line)
    assert "jane@example.com" not in raw and "+15555550100" not in raw and "Jane" not in raw


def test_exceptions_are_rendered_into_the_line(log_lines):
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logs.get_logger().exception("failed")
    (line,) = log_lines()
    assert line["level"] == "error"
    assert "RuntimeError: boom" in line["exception"]
