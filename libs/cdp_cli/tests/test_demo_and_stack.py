"""The sample journey and the stack record, without servers."""

from __future__ import annotations

import json

from cdp_cli import stack
from cdp_cli.demo import sample_journey
from cdp_core import embedded


def test_sample_journey_shape():
    j = sample_journey()
    kinds = [(k, getattr(r, "event", "")) for k, r in j.calls]
    assert kinds == [("Track", "Product Viewed"), ("Track", "Product Viewed"), ("Identify", ""),
                     ("Track", "Checkout Started"), ("Track", "Order Completed")]
    anon = [r for _, r in j.calls[:2]]
    assert all(r.common.anonymous_id == j.anonymous_id and not r.common.user_id for r in anon)
    identify = j.calls[2][1]
    assert identify.common.user_id == j.user_id and identify.common.anonymous_id == j.anonymous_id
    assert json.loads(identify.traits_json) == {"email": j.email, "first_name": "Ada", "plan": "pro"}
    order = j.calls[4][1]
    assert order.common.user_id == j.user_id
    assert json.loads(order.properties_json)["revenue"] == 218.0
    ids = [r.common.message_id for _, r in j.calls]
    assert len(set(ids)) == len(ids)
    times = [r.common.timestamp.ToDatetime() for _, r in j.calls]
    assert times == sorted(times)


def test_each_run_is_a_new_user():
    assert sample_journey().user_id != sample_journey().user_id


def test_stack_record_round_trip(clean_env):
    s = stack.Stack(
        nats_url="nats://127.0.0.1:1",
        database_url="postgresql://postgres@127.0.0.1:2/postgres",
        nats=embedded.Managed("nats", 11, "nats://127.0.0.1:1", "/d/nats", "/d/nats/nats.log"),
        postgres=None,
        services=[stack.ServiceProc("ingest", "cdp_ingest", 12, 1.5, 50051, "127.0.0.1:50051", "/l/ingest.log")],
        http_port=8088,
        secret_source="env CDP_AUTH_SECRET",
        started_at="2025-01-01T00:00:00+00:00",
    )
    (clean_env / ".cdp").mkdir()
    s.save()
    loaded = stack.load_stack()
    assert loaded == s
    assert json.loads((clean_env / ".cdp" / "stack.json").read_text())["services"][0]["port"] == 50051


def test_dead_pid_is_not_running():
    s = stack.ServiceProc("ingest", "cdp_ingest", 2**22 + 7, 0.0, 1, "127.0.0.1:1", "/x")
    assert not s.running()


def test_available_services_are_known_names():
    assert set(stack.available_services()) <= set(stack.SERVICES)
