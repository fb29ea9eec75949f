"""The pure parts of bus, outbox, consumer, errors and telemetry."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from cdp_core import envelope, telemetry
from cdp_core.bus import Outgoing, stream_name, stream_subjects
from cdp_core.consumer import ConsumerRunner, Projection, handles
from cdp_core.errors import CdpError, InvalidArgument, NotFound
from cdp_core.outbox import OutboxWriter


def test_stream_names_and_subjects():
    assert stream_name("ingest") == "CDP_INGEST"
    assert stream_name("channel-gateway") == "CDP_CHANNEL_GATEWAY"
    assert stream_subjects("identity") == ["cdp.identity.>"]


def test_outgoing_from_envelope_uses_the_event_id_as_msg_id():
    env = envelope.make("cdp.identity.resolved", StringValue(value="v"), producer="identity")
    out = Outgoing.from_envelope(env, {"x": "1"})
    assert (out.subject, out.msg_id, out.headers) == ("cdp.identity.resolved", env.event_id, {"x": "1"})
    assert envelope.decode(out.data) == env


def test_outbox_writer_marks_and_rolls_back():
    w = OutboxWriter()
    a = envelope.make("cdp.x.a", StringValue(value="a"), producer="x")
    b = envelope.make("cdp.x.b", StringValue(value="b"), producer="x")
    w.add(a)
    mark = w.mark()
    w.add(b)
    assert [p[1] for p in w.pending] == [a.event_id, b.event_id]
    w.rollback_to(mark)
    assert [(p[0], p[1]) for p in w.pending] == [("cdp.x.a", a.event_id)]
    assert w.pending[0][2] == a.SerializeToString()
    assert json.loads(w.pending[0][3]) == {}  # no span: no trace headers


def test_outbox_writer_records_the_trace_context():
    telemetry.configure("unit")
    w = OutboxWriter()
    with telemetry.tracer().start_as_current_span("s") as span:
        w.add(envelope.make("cdp.x.a", StringValue(value="a"), producer="x"))
    headers = json.loads(w.pending[0][3])
    assert format(span.get_span_context().trace_id, "032x") in headers["traceparent"]


def test_trace_headers_round_trip():
    telemetry.configure("unit")
    with telemetry.tracer().start_as_current_span("s") as span:
        headers = telemetry.inject_headers({"keep": "me"})
    assert headers["keep"] == "me"
    ctx = telemetry.extract_context(headers)
    from opentelemetry import trace

    assert trace.get_current_span(ctx).get_span_context().trace_id == span.get_span_context().trace_id
    assert telemetry.extract_context(None) is not None


class Counter(Projection):
    name = "counter"
    source = "ingest"

    @handles("cdp.ingest.event.track", "cdp.ingest.event.page")
    async def on_event(self, conn, d, outbox):
        pass

    @handles("cdp.ingest.event.identify")
    async def on_identify(self, conn, d, outbox):
        pass


def test_projection_collects_its_handlers():
    p = Counter()
    assert p.event_types == ["cdp.ingest.event.identify", "cdp.ingest.event.page", "cdp.ingest.event.track"]


def test_runner_needs_a_named_projection():
    class Nameless(Projection):
        source = "ingest"

    with pytest.raises(ValueError, match="name and a source"):
        ConsumerRunner(None, None, Nameless())  # type: ignore[arg-type]
    runner = ConsumerRunner(None, None, Counter())  # type: ignore[arg-type]
    assert runner.stream == "CDP_INGEST"


def test_domain_errors_name_the_field():
    e = InvalidArgument("must not be empty", field="identifier.value")
    assert str(e) == "identifier.value: must not be empty"
    assert e.field == "identifier.value"
    assert e.code == grpc.StatusCode.INVALID_ARGUMENT
    assert NotFound("no such profile").code == grpc.StatusCode.NOT_FOUND
    assert CdpError("x").code == grpc.StatusCode.INTERNAL
