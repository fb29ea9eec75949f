"""`cdp profile get|timeline` and `cdp export profiles`: output shapes and errors against a
fake ProfileService, then every command against the real ingest, identity and profile
services (in-process, real NATS and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent import futures
from datetime import UTC, datetime, timedelta

import click
import grpc
import pytest
from click.testing import CliRunner

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_cli.main import cli
from cdp_cli.profiles import parse_time
from cdp_cli.testing import run_cdp
from cdp_core import envelope
from cdp_core.testing import eventually

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def ts(dt: datetime):
    return envelope.ts(dt)


# --- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
    ("2026-03-01T12:30:00Z", datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
    ("2026-03-01T14:30:00+02:00", datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
    ("7d", T0 - timedelta(days=7)),
    ("90m", T0 - timedelta(minutes=90)),
])
def test_times(text, expected):
    assert parse_time(text, param_hint="--since", now=T0) == expected


def test_a_bad_time_is_a_usage_error():
    with pytest.raises(click.BadParameter, match="is not a time"):
        parse_time("yesterday", param_hint="--since")


# --- against a fake service ----------------------------------------------------------------


def event(i: int) -> profile_pb2.TimelineEvent:
    e = profile_pb2.TimelineEvent(event_id=f"e{i:04d}", kind="track", event="Product Viewed", source_id="s1",
                                  source_kind="web", channel="web", properties_json=json.dumps({"i": i}))
    e.occurred_at.CopyFrom(ts(T0 - timedelta(minutes=i)))
    return e


class Fake(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self):
        self.requests: list = []
        self.events = 2500

    def GetProfile(self, request, context):
        self.requests.append(request)
        if request.WhichOneof("lookup") == "identifier" and request.identifier.value == "u-1":
            return profile_pb2.GetProfileResponse(profile=profile_pb2.Profile(
                profile_id="p-1", event_count=3, computed_json='{"orders": 2}',
                identifiers=[identifier_pb2.Identifier(type="user_id", value="u-1")],
                traits=[profile_pb2.Trait(name="plan", value_json='"pro"')]))
        context.abort(grpc.StatusCode.NOT_FOUND, "no such profile")

    def GetTimeline(self, request, context):
        self.requests.append(request)
        if request.profile_id in ("nobody", "email:x@y.z"):
            context.abort(grpc.StatusCode.NOT_FOUND, "profile_id: no such profile")
        if request.event_names == ["bad"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "event_names[0]: must be 1 to 256 characters")
        start = int(request.page_token or 0)
        end = min(self.events, start + request.page_size)
        return profile_pb2.GetTimelineResponse(
            profile_id="p-1", merged_profile_id="p-old" if request.profile_id == "p-old" else "",
            events=[event(i) for i in range(start, end)], next_page_token=str(end) if end < self.events else "")

    def ExportProfiles(self, request, context):
        for i in range(3):
            yield profile_pb2.Profile(profile_id=f"p-{i}", event_count=i + 1,
                                      identifiers=[identifier_pb2.Identifier(type="user_id", value=f"u-{i}")],
                                      traits=[profile_pb2.Trait(name="n", value_json=str(i))])


@pytest.fixture
def fake(clean_env, monkeypatch):
    servicer = Fake()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("CDP_PROFILE_ADDR", f"127.0.0.1:{port}")
    monkeypatch.setenv("CDP_TOKEN", "tok")
    yield servicer
    server.stop(None)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_get_json_has_the_shape_and_the_computed_traits(fake):
    r = run("profile", "get", "--identifier", "user_id:u-1", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= {"profile_id", "identifiers", "traits", "computed"}
    assert d["identifiers"] == [{"type": "user_id", "value": "u-1"}] and d["traits"] == {"plan": "pro"}
    assert d["computed"] == {"event_count": 3, "first_seen": None, "last_seen": None, "orders": 2}
    assert run("profile", "get", "--user-id", "u-1", "--identifier", "user_id:u-1").exit_code == 2


def test_timeline_pages_to_the_limit_newest_first(fake):
    r = run("profile", "timeline", "p-1", "--limit", "1500", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["profile_id"] == "p-1" and d["merged_profile_id"] is None and d["more"] is True
    assert len(d["events"]) == 1500 and d["events"][0] == {
        "event_id": "e0000", "kind": "track", "event": "Product Viewed", "occurred_at": "2026-03-01T12:00:00Z",
        "received_at": None, "channel": "web", "source_id": "s1", "source_kind": "web", "properties": {"i": 0},
        "traits": None, "context": None}
    assert [q.page_size for q in fake.requests] == [1000, 500]  # never more than asked

    r = run("profile", "timeline", "--email", "ada@example.com", "--kind", "track", "--kind", "page",
            "--event", "Order Completed", "--since", "2026-02-01", "--until", "2026-03-01T00:00:00Z", "--jsonl")
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 100 and lines[99]["event_id"] == "e0099"  # default --limit
    q = fake.requests[-1]
    assert (q.identifier.type, q.identifier.value) == ("email", "ada@example.com")
    assert list(q.kinds) == ["track", "page"] and list(q.event_names) == ["Order Completed"]
    assert q.since.ToDatetime(tzinfo=UTC) == datetime(2026, 2, 1, tzinfo=UTC)
    assert q.until.ToDatetime(tzinfo=UTC) == datetime(2026, 3, 1, tzinfo=UTC)

    fake.events = 3
    r = run("profile", "timeline", "p-old")
    assert r.exit_code == 0 and "p-old" in r.stdout and "Product Viewed" in r.stdout and "3 events" in r.stdout
    r = run("profile", "timeline", "p-old", "--json")
    assert json.loads(r.stdout)["merged_profile_id"] == "p-old" and json.loads(r.stdout)["more"] is False


def test_timeline_usage_and_errors(fake):
    assert "exactly one" in run("profile", "timeline").stderr
    assert run("profile", "timeline", "p-1", "--email", "x@y.z").exit_code == 2
    assert run("profile", "timeline", "p-1", "--kind", "click").exit_code == 2
    r = run("profile", "timeline", "p-1", "--since", "2026-03-02", "--until", "2026-03-01")
    assert r.exit_code == 2 and "--until" in r.stderr
    assert run("profile", "timeline", "p-1", "--json", "--jsonl").exit_code == 2
    r = run("profile", "timeline", "--identifier", "email")
    assert r.exit_code == 2 and "no colon" in r.stderr
    r = run("profile", "timeline", "nobody")
    assert r.exit_code == 1 and "no profile with id nobody" in r.stderr
    r = run("profile", "timeline", "email:x@y.z")
    assert r.exit_code == 1 and "--identifier email:x@y.z" in r.stderr
    r = run("profile", "timeline", "p-1", "--event", "bad")
    assert r.exit_code == 1 and "error: --event: must be 1 to 256 characters" in r.stderr


def test_export_profiles_writes_lines_to_stdout_or_a_file(fake, tmp_path):
    r = run("export", "profiles", "--jsonl")
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["profile_id"] for x in lines] == ["p-0", "p-1", "p-2"]
    assert lines[1] == {"profile_id": "p-1", "identifiers": [{"type": "user_id", "value": "u-1"}],
                        "traits": {"n": 1}, "computed": {"event_count": 2, "first_seen": None, "last_seen": None},
                        "merged_profile_ids": []}
    assert "exported 3 profiles" in r.stderr
    out = tmp_path / "profiles.jsonl"
    r = run("export", "profiles", "--jsonl", "--out", str(out))
    assert r.exit_code == 0 and len(out.read_text().splitlines()) == 3
    assert not list(tmp_path.glob(".*.part"))
    assert run("export", "profiles").exit_code == 2


# --- against the real services ------------------------------------------------------------


async def cdp(*args: str, code: int = 0):
    return await run_cdp(*args, code=code)


@pytest.mark.component
async def test_the_commands_against_the_real_services(stack):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    user = "u-" + uuid.uuid4().hex[:8]

    def common(minutes: int, **ids) -> ingest_pb2.EventCommon:
        c = ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), **ids)
        c.timestamp.CopyFrom(ts(T0 + timedelta(minutes=minutes)))
        return c

    await ingest.Identify(ingest_pb2.IdentifyRequest(
        common=common(0, user_id=user), traits_json=json.dumps({"email": f"{user}@example.com", "plan": "pro"})))
    for i in range(1, 6):
        await ingest.Track(ingest_pb2.TrackRequest(common=common(i, user_id=user), event="Product Viewed",
                                                   properties_json=json.dumps({"i": i})))
    await ingest.Track(ingest_pb2.TrackRequest(common=common(9, user_id=user), event="Email Opened"))

    async def seven():
        r = await asyncio.to_thread(CliRunner().invoke, cli, ["profile", "get", "--user-id", user, "--json"])
        if r.exit_code != 0:
            return None
        p = json.loads(r.stdout)
        # seven events, and the computed traits computed from them (they trail the events)
        return p if p["computed"]["event_count"] == 7 and "products_viewed" in p["computed"] else None
    got = await eventually(seven)
    assert got["traits"] == {"email": f"{user}@example.com", "plan": "pro"}
    assert {"type": "email", "value": f"{user}@example.com"} in got["identifiers"]
    assert isinstance(got["computed"], dict)

    r = await cdp("profile", "timeline", "--identifier", f"email:{user}@EXAMPLE.com", "--limit", "3", "--json")
    d = json.loads(r.stdout)
    assert d["profile_id"] == got["profile_id"] and d["more"] is True
    assert [(e["event"], e["channel"]) for e in d["events"]] == [("Email Opened", "email"),
                                                                  ("Product Viewed", None), ("Product Viewed", None)]
    assert [e["properties"] for e in d["events"][1:]] == [{"i": 5}, {"i": 4}]
    r = await cdp("profile", "timeline", got["profile_id"], "--kind", "identify", "--jsonl")
    (line,) = r.stdout.splitlines()
    assert json.loads(line)["traits"]["plan"] == "pro"
    r = await cdp("profile", "timeline", "--user-id", user, "--event", "Product Viewed",
                  "--since", "2026-03-01T12:02:00Z", "--until", "2026-03-01T12:04:00Z", "--jsonl")
    assert [json.loads(x)["properties"]["i"] for x in r.stdout.splitlines()] == [3, 2]
    r = await cdp("profile", "timeline", "--user-id", user)
    assert "Email Opened" in r.stdout and "7 events" in r.stdout

    r = await cdp("export", "profiles", "--jsonl")
    (line,) = r.stdout.splitlines()
    assert json.loads(line) == got
    r = await cdp("profile", "timeline", "--user-id", "nobody-" + user, code=1)
    assert "no profile has the identifier user_id:nobody-" in r.stderr
