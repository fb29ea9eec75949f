"""`cdp account get`, `cdp profile access` and `cdp profile changes`: output shapes and errors
against a fake ProfileService, then against the real ingest, identity and profile services."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent import futures
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from click.testing import CliRunner

from cdp.common.v1 import identifier_pb2
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import events_pb2, profile_pb2, profile_pb2_grpc
from cdp_cli.main import cli
from cdp_cli.testing import run_cdp
from cdp_core import envelope
from cdp_core.testing import eventually

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def ts(dt: datetime):
    return envelope.ts(dt)


def event(i: int) -> profile_pb2.TimelineEvent:
    return profile_pb2.TimelineEvent(event_id=f"e{i}", kind="track", event="Viewed", occurred_at=ts(T0),
                                     properties_json=json.dumps({"i": i}))


class Fake(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self):
        self.requests: list = []

    def GetAccount(self, request, context):
        self.requests.append(request)
        if request.account_id != "acme":
            context.abort(grpc.StatusCode.NOT_FOUND, "account_id: no such account")
        start = int(request.page_token or 0)
        end = min(5, start + request.page_size)
        return profile_pb2.GetAccountResponse(
            account=profile_pb2.Account(account_id="acme", traits=[profile_pb2.Trait(name="plan", value_json='"pro"')],
                                        user_count=5, revenue_total=150.5, order_count=2,
                                        last_activity_at=ts(T0), first_seen=ts(T0), last_seen=ts(T0)),
            users=[profile_pb2.AccountUser(profile_id=f"p{i}", first_linked_at=ts(T0), last_linked_at=ts(T0))
                   for i in range(start, end)],
            next_page_token=str(end) if end < 5 else "")

    def GetPersonData(self, request, context):
        self.requests.append(request)
        if request.profile_id == "nobody":
            context.abort(grpc.StatusCode.NOT_FOUND, "profile_id: no such profile")
        yield profile_pb2.PersonDataPart(person=profile_pb2.Person(
            profile_id="p1", identifiers=[identifier_pb2.Identifier(type="email", value="ada@example.com")],
            traits=[profile_pb2.Trait(name="name", value_json='"Ada"', updated_at=ts(T0), event_id="e0",
                                      source_id="s1", source_kind="web")],
            computed_json='{"orders": {"count": 1}}', event_count=3, first_seen=ts(T0), last_seen=ts(T0),
            accounts=[profile_pb2.AccountMembership(account_id="acme", first_linked_at=ts(T0),
                                                    last_linked_at=ts(T0))],
            generated_at=ts(T0)))
        yield profile_pb2.PersonDataPart(events=[event(0), event(1)])
        yield profile_pb2.PersonDataPart(events=[event(2)])

    def StreamProfileChanges(self, request, context):
        self.requests.append(request)
        if list(request.profile_ids) == ["bad"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "profile_ids[0]: must not be empty")
        for i in range(3):
            yield profile_pb2.ProfileChange(
                sequence=10 + i, event_id=f"c{i}", recorded_at=ts(T0),
                change=events_pb2.ProfileChanged(profile_id="p1", event_count=2 * i + 1, event_id=f"e{2 * i}",
                                                 event_ids=[f"e{j}" for j in range(2 * i - 1 if i else 0, 2 * i + 1)],
                                                 changed_traits=["plan"] if i == 1 else [],
                                                 linked_account_ids=["acme"] if i == 2 else []))


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


def test_account_get_json_pages_users_to_the_limit(fake):
    r = run("account", "get", "acme", "--limit", "3", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d == {"account_id": "acme", "traits": {"plan": "pro"},
                 "computed": {"users": 5, "revenue_total": 150.5, "orders": 2, "last_activity_at": "2026-03-01T12:00:00Z"},
                 "first_seen": "2026-03-01T12:00:00Z", "last_seen": "2026-03-01T12:00:00Z",
                 "users": [{"profile_id": f"p{i}", "first_linked_at": "2026-03-01T12:00:00Z",
                            "last_linked_at": "2026-03-01T12:00:00Z"} for i in range(3)],
                 "more_users": True}
    assert [q.page_size for q in fake.requests] == [3]
    r = run("account", "get", "acme")
    assert r.exit_code == 0 and "150.50" in r.stdout and "p4" in r.stdout
    r = run("account", "get", "nope")
    assert r.exit_code == 1 and "no account with id nope" in r.stderr
    assert run("account", "get", " ").exit_code == 2


def test_profile_access_writes_one_json_document(fake, tmp_path):
    out = tmp_path / "ada.json"
    r = run("profile", "access", "--email", "ada@example.com", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    assert "3 events" in r.stderr and not list(tmp_path.glob(".*.part"))
    d = json.loads(out.read_text())
    assert list(d) == ["profile_id", "merged_profile_ids", "generated_at", "identifiers", "traits", "computed",
                       "event_count", "first_seen", "last_seen", "accounts", "events"]
    assert d["traits"] == [{"name": "name", "value": "Ada", "updated_at": "2026-03-01T12:00:00Z", "event_id": "e0",
                            "source_id": "s1", "source_kind": "web"}]
    assert d["computed"] == {"orders": {"count": 1}} and d["accounts"][0]["account_id"] == "acme"
    assert [e["event_id"] for e in d["events"]] == ["e0", "e1", "e2"] and d["events"][0]["properties"] == {"i": 0}
    q = fake.requests[-1]
    assert (q.identifier.type, q.identifier.value) == ("email", "ada@example.com")

    r = run("profile", "access", "p1")
    assert r.exit_code == 0 and json.loads(r.stdout)["profile_id"] == "p1"
    r = run("profile", "access", "nobody")
    assert r.exit_code == 1 and "no profile with id nobody" in r.stderr
    assert run("profile", "access").exit_code == 2
    assert run("profile", "access", "p1", "--identifier", "email:x@y.z").exit_code == 2


def test_profile_changes_prints_lines_until_the_limit(fake):
    r = run("profile", "changes", "--profile", "p1", "--jsonl", "--limit", "2")
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines == [
        {"sequence": 10, "event_id": "c0", "recorded_at": "2026-03-01T12:00:00Z", "profile_id": "p1",
         "event_count": 1, "changed_traits": [], "linked_account_ids": [], "cause_event_id": "e0",
         "event_ids": ["e0"]},
        {"sequence": 11, "event_id": "c1", "recorded_at": "2026-03-01T12:00:00Z", "profile_id": "p1",
         "event_count": 3, "changed_traits": ["plan"], "linked_account_ids": [], "cause_event_id": "e2",
         "event_ids": ["e1", "e2"]}]
    q = fake.requests[-1]
    assert list(q.profile_ids) == ["p1"] and q.from_now
    r = run("profile", "changes", "--from-sequence", "5", "--limit", "3")
    assert r.exit_code == 0 and fake.requests[-1].from_sequence == 5
    assert r.stdout.splitlines()[2].endswith("accounts+=acme") and "traits=plan" in r.stdout
    assert "applied=2" in r.stdout.splitlines()[1] and "applied" not in r.stdout.splitlines()[0]
    r = run("profile", "changes", "--profile", "bad")
    assert r.exit_code == 1 and "error: --profile: must not be empty" in r.stderr
    assert run("profile", "changes", "--from-sequence", "0").exit_code == 2


# --- against the real services ------------------------------------------------------------


async def cdp(*args: str, code: int = 0):
    return await run_cdp(*args, code=code)


@pytest.mark.component
async def test_the_commands_against_the_real_services(stack, tmp_path):
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    tag = uuid.uuid4().hex[:8]
    user, account = f"u-{tag}", f"acme-{tag}"

    def common(minutes: int) -> ingest_pb2.EventCommon:
        c = ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), user_id=user)
        c.timestamp.CopyFrom(ts(T0 + timedelta(minutes=minutes)))
        return c

    profiles = profile_pb2_grpc.ProfileServiceStub(stack.channel("profile"))

    async def applied(n: int) -> None:  # each event in a batch of its own: a change of its own
        async def count():
            try:
                r = await profiles.GetProfile(profile_pb2.GetProfileRequest(
                    identifier=identifier_pb2.Identifier(type="user_id", value=user)))
            except grpc.aio.AioRpcError:
                return False
            return r.profile.event_count >= n
        await eventually(count)

    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(0), traits_json=json.dumps(
        {"email": f"{user}@example.com"})))
    await applied(1)
    await ingest.Group(ingest_pb2.GroupRequest(common=common(1), group_id=account,
                                               traits_json=json.dumps({"name": "Acme"})))
    await applied(2)
    await ingest.Track(ingest_pb2.TrackRequest(common=common(2), event="Order Completed",
                                               properties_json=json.dumps({"order_id": "o1", "revenue": 30})))

    async def account_ready():
        r = await asyncio.to_thread(CliRunner().invoke, cli, ["account", "get", account, "--json"])
        return r.exit_code == 0 and json.loads(r.stdout)["computed"]["revenue_total"] == 30 and json.loads(r.stdout)
    d = await eventually(account_ready)
    assert d["traits"] == {"name": "Acme"} and d["computed"]["users"] == 1 and len(d["users"]) == 1
    assert d["computed"]["last_activity_at"] == "2026-03-01T12:02:00Z"

    out = tmp_path / "person.json"
    await cdp("profile", "access", "--email", f"{user}@EXAMPLE.com", "--out", str(out))
    person = json.loads(out.read_text())
    assert person["profile_id"] == d["users"][0]["profile_id"] and len(person["events"]) == 3
    assert person["accounts"][0]["account_id"] == account and person["computed"]["orders"]["count"] == 1
    assert {t["name"] for t in person["traits"]} == {"email"}

    r = await cdp("profile", "changes", "--from-sequence", "1", "--profile", person["profile_id"], "--limit", "3",
                  "--jsonl")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["cause_event_id"] for x in lines] == [e["event_id"] for e in person["events"]]
    assert [x["event_ids"] for x in lines] == [[e["event_id"]] for e in person["events"]]
    assert lines[1]["linked_account_ids"] == [account]
    await cdp("account", "get", "nobody-" + tag, code=1)
