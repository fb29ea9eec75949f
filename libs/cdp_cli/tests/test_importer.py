"""Bulk import without real servers: JSON -> proto, JSON lines, chunks, checkpoints, and an
interrupted import that resumes, against an in-process fake ImportEvents."""

from __future__ import annotations

import io
import json
import shutil
import threading
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_cli import importer
from cdp_cli.main import cli

FIXTURES = Path(__file__).parent / "fixtures"


# --- JSON -> proto -------------------------------------------------------------------


def test_track_to_proto():
    c = importer.call_to_proto({
        "type": "track", "userId": "u-1", "anonymousId": 7, "messageId": "m-1", "event": "Order Completed",
        "properties": {"revenue": 9.5, "products": [{"sku": "a"}]}, "context": {"ip": "203.0.113.1"},
        "integrations": {"All": True}, "timestamp": "2024-03-01T10:00:00+02:00",
        "identifiers": [{"type": "email", "value": "a@example.com"}], "sentAt": "ignored", "receivedAt": "ignored"})
    assert c.WhichOneof("call") == "track"
    t = c.track
    assert t.event == "Order Completed"
    assert json.loads(t.properties_json) == {"revenue": 9.5, "products": [{"sku": "a"}]}
    assert t.common.user_id == "u-1" and t.common.anonymous_id == "7" and t.common.message_id == "m-1"
    assert json.loads(t.common.context_json) == {"ip": "203.0.113.1"}
    assert json.loads(t.common.integrations_json) == {"All": True}
    assert t.common.timestamp.ToJsonString() == "2024-03-01T08:00:00Z"
    assert not t.common.HasField("sent_at")  # historical data: no clock-skew correction
    assert [(i.type, i.value) for i in t.common.identifiers] == [("email", "a@example.com")]


@pytest.mark.parametrize("obj,kind,check", [
    ({"type": "identify", "userId": "u", "traits": {"email": "e"}}, "identify",
     lambda c: json.loads(c.identify.traits_json) == {"email": "e"}),
    ({"type": "page", "anonymousId": "a", "name": "Home", "category": "Docs", "properties": {"path": "/"}}, "page",
     lambda c: (c.page.name, c.page.category, json.loads(c.page.properties_json)) == ("Home", "Docs", {"path": "/"})),
    ({"type": "screen", "userId": "u", "name": "Cart"}, "screen", lambda c: c.screen.name == "Cart"),
    ({"type": "group", "userId": "u", "groupId": "g", "traits": {"name": "Acme"}}, "group",
     lambda c: c.group.group_id == "g" and json.loads(c.group.traits_json) == {"name": "Acme"}),
    ({"type": "alias", "userId": "u", "previousId": "p"}, "alias", lambda c: c.alias.previous_id == "p"),
    ({"type": "track", "userId": "u", "event": "E"}, "track", lambda c: c.track.properties_json == ""),
])
def test_every_kind_to_proto(obj, kind, check):
    c = importer.call_to_proto(obj)
    assert c.WhichOneof("call") == kind and check(c)


@pytest.mark.parametrize("obj,message", [
    ([], "JSON object"), ({"type": "order"}, "type"), ({"type": "track", "properties": [1]}, "properties"),
    ({"type": "track", "timestamp": "last tuesday"}, "timestamp"), ({"type": "track", "timestamp": 17}, "timestamp"),
    ({"type": "track", "userId": {"a": 1}}, "userId"), ({"type": "track", "identifiers": [3]}, r"identifiers\[0\]"),
])
def test_bad_json_calls(obj, message):
    with pytest.raises(ValueError, match=message):
        importer.call_to_proto(obj)


def test_jsonl_items_derive_message_ids_and_report_bad_lines():
    data = (FIXTURES / "events.jsonl").read_bytes()
    its = list(importer.jsonl_items(io.BytesIO(data), "web"))
    assert [i.first_row for i in its] == [1, 2, 3, 4, 5, 6, 7]
    assert its[2].call["messageId"] == "given-1"
    assert its[0].call["messageId"].startswith("imp-")
    again = list(importer.jsonl_items(io.BytesIO(data), "web"))
    assert [i.call and i.call["messageId"] for i in again] == [i.call and i.call["messageId"] for i in its]
    assert its[5].call is None and "not valid JSON" in its[5].error
    resumed = list(importer.jsonl_items(io.BytesIO(data), "web", offset=its[2].end, row=3))
    assert [i.first_row for i in resumed] == [4, 5, 6, 7]
    assert resumed[0].call == its[3].call


def test_chunks_split_by_count_and_size(monkeypatch):
    calls = [importer.call_to_proto({"type": "track", "userId": "u", "event": "E"}) for _ in range(1201)]
    reqs = list(importer.chunks(calls, "wk"))
    assert [len(r.calls) for r in reqs] == [500, 500, 201]
    assert [r.write_key for r in reqs] == ["wk", "", ""]
    monkeypatch.setattr(importer, "CHUNK_BYTES", 100)
    assert all(len(r.calls) <= 10 for r in importer.chunks(calls[:50], "wk"))


# --- checkpoints ---------------------------------------------------------------------


def test_checkpoint_round_trip_and_invalidation(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("id\n1\n2\n")
    cp, resumed = importer.Checkpoint.open(f, "fp", tmp_path / ".cdp")
    assert not resumed and cp.offset == 0
    cp.offset, cp.rows, cp.accepted = 5, 1, 1
    cp.save()
    again, resumed = importer.Checkpoint.open(f, "fp", tmp_path / ".cdp")
    assert resumed and (again.offset, again.rows, again.accepted) == (5, 1, 1)
    assert not importer.Checkpoint.open(f, "other mapping", tmp_path / ".cdp")[1]
    assert not importer.Checkpoint.open(f, "fp", tmp_path / ".cdp", restart=True)[1]
    f.write_text("id\n1\n2\n3\n")  # the file changed: its import starts over
    assert not importer.Checkpoint.open(f, "fp", tmp_path / ".cdp")[1]
    again.clear()
    assert not list((tmp_path / ".cdp" / "imports").glob("*.json"))


# --- an interrupted import resumes ---------------------------------------------------


class FakeIngest(ingest_pb2_grpc.IngestServiceServicer):
    """Accepts calls with an id; fails the stream number `fail_stream` after reading it."""

    def __init__(self):
        self.streams: list[list[ingest_pb2.Call]] = []
        self.metadata: list[dict] = []
        self.write_keys: list[str] = []
        self.fail_stream: int | None = None
        self.lock = threading.Lock()

    def ImportEvents(self, request_iterator, context):
        calls, keys = [], []
        for req in request_iterator:
            keys.append(req.write_key)
            calls.extend(req.calls)
        with self.lock:
            self.streams.append(calls)
            self.metadata.append(dict(context.invocation_metadata()))
            self.write_keys.append(keys[0] if keys else "")
            if self.fail_stream is not None and len(self.streams) == self.fail_stream:
                context.abort(grpc.StatusCode.INTERNAL, "boom")
        rejections = []
        for i, c in enumerate(calls):
            common = getattr(c, c.WhichOneof("call")).common
            if not common.user_id and not common.anonymous_id:
                rejections.append(ingest_pb2.CallResult(index=i, error="userId: either userId or anonymousId is required",
                                                        failed_event_id=100 + i))
        return ingest_pb2.ImportEventsResponse(accepted=len(calls) - len(rejections), rejected=len(rejections),
                                               rejections=rejections)


@pytest.fixture
def fake(clean_env, monkeypatch):
    servicer = FakeIngest()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("CDP_INGEST_ADDR", f"127.0.0.1:{port}")
    monkeypatch.setenv("CDP_TOKEN", "tok-imp")
    yield servicer
    server.stop(None)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def message_ids(calls) -> list[str]:
    return [getattr(c, c.WhichOneof("call")).common.message_id for c in calls]


def test_csv_import_reports_counts_rows_and_sends_token_and_key(fake, clean_env):
    shutil.copy(FIXTURES / "pos_transactions.csv", clean_env / "pos.csv")
    r = run("import", "csv", "--source", "pos", "--map", str(FIXTURES / "pos_transactions.yaml"), "pos.csv",
            "--write-key", "wk_pos", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert (s["rows"], s["accepted"], s["rejected"], s["skipped"]) == (4, 1, 1, 1)
    assert [(x["row"], x["failed_event_id"]) for x in s["rejections"]] == [(3, 101), (4, 0)]
    assert fake.metadata[0]["authorization"] == "Bearer tok-imp"
    assert fake.write_keys == ["wk_pos"]
    assert not list((clean_env / ".cdp" / "imports").glob("*.json"))  # done: no checkpoint left


def test_interrupted_import_resumes_after_the_last_acknowledged_segment(fake, clean_env, monkeypatch):
    monkeypatch.setattr(importer, "SEGMENT_CALLS", 2)
    lines = [json.dumps({"type": "track", "userId": f"u-{i}", "event": "E", "properties": {"n": i}})
             for i in range(7)]
    (clean_env / "ev.jsonl").write_text("\n".join(lines) + "\n")
    fake.fail_stream = 2
    r = run("import", "events", "ev.jsonl", "--source", "web")
    assert r.exit_code == 1 and "boom" in r.stderr
    cps = list((clean_env / ".cdp" / "imports").glob("*.json"))
    assert len(cps) == 1 and json.loads(cps[0].read_text())["rows"] == 2
    fake.fail_stream = None
    r = run("import", "events", "ev.jsonl", "--source", "web", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["resumed_from_row"] == 2 and s["rows"] == 7 and s["accepted"] == 7
    first, failed, *rest = fake.streams
    assert len(first) == 2 and len(failed) == 2
    resent = [m for calls in rest for m in message_ids(calls)]
    assert resent[:2] == message_ids(failed)  # the unacknowledged segment again, with the same ids
    assert len(resent) == 5
    # a full re-import sends the very same message ids: ingest appends nothing new
    fake.streams.clear()
    r = run("import", "events", "ev.jsonl", "--source", "web", "--json")
    assert sorted(m for calls in fake.streams for m in message_ids(calls)) == sorted(message_ids(first) + resent)


def test_bad_mapping_is_reported_before_sending(fake, clean_env):
    (clean_env / "m.yaml").write_text("kind: identify\ncolumns: {Nope: user_id}\n")
    r = run("import", "csv", "--source", "crm", "--map", "m.yaml", str(FIXTURES / "crm_contacts.csv"))
    assert r.exit_code == 1 and "not in the CSV header: Nope" in r.stderr
    assert fake.streams == []
