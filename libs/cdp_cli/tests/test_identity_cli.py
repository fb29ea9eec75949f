"""`cdp identity …`: TYPE:VALUE parsing, paging against a fake IdentityService, and every
command against the real ingest, identity and profile services (in-process, real NATS and
PostgreSQL), run in-process as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from concurrent import futures
from pathlib import Path

import click
import grpc
import pytest
from click.testing import CliRunner

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_cli.identity import parse_identifier
from cdp_cli.main import cli
from cdp_cli.testing import run_cdp
from cdp_core.testing import eventually
from cdp_core.testing.stack import Stack

# --- TYPE:VALUE ---------------------------------------------------------------------------


@pytest.mark.parametrize("text,type_,value", [
    ("email:ada@example.com", "email", "ada@example.com"),
    ("device_id:aa:bb:cc:dd", "device_id", "aa:bb:cc:dd"),  # split on the first colon only
    ("crm_id:urn:crm:42", "crm_id", "urn:crm:42"),
    (" User_ID :u-1", "user_id", "u-1"),
])
def test_type_value_splits_on_the_first_colon(text, type_, value):
    i = parse_identifier(text)
    assert (i.type, i.value) == (type_, value)


@pytest.mark.parametrize("text,why", [
    ("ada@example.com", "no colon"),
    (":ada@example.com", "type before the colon is empty"),
    ("email:", "value after the colon is empty"),
    ("email:   ", "value after the colon is empty"),
    ("e-mail:x", "not an identifier type name"),
])
def test_bad_type_value_is_a_clear_usage_error(text, why):
    with pytest.raises(click.BadParameter, match=why):
        parse_identifier(text)


# --- against a fake service: paging and output shapes ------------------------------------


class FakeIdentity(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, merges: int, candidates: int):
        self.merges = [identity_pb2.Merge(
            merge_id=f"m{n}", survivor_profile_id="p-1", merged_profile_id=f"p-x{n}", rule="shared-identifier",
            identifier=identifier_pb2.Identifier(type="email", value=f"e{n}@example.com"), event_id=f"ev{n}",
            confidence=1.0, survivor_reason="older profile", details_json='{"k": 1}') for n in range(merges)]
        self.candidates = [identity_pb2.Candidate(profile_id="p-1", other_profile_id=f"p-c{n}", probability=0.9,
                                                  weight=7.5, details_json='{"firstName": 0.98}', event_id=f"e{n}")
                           for n in range(candidates)]
        self.pages: list[tuple[int, str]] = []
        self.exported = 0
        self.forgotten: list[str] = []

    def _page(self, rows, request):
        self.pages.append((request.page_size, request.page_token))
        size, offset = request.page_size or 100, int(request.page_token or 0)
        got = rows[offset:offset + size]
        return got, str(offset + size) if len(got) == size else ""

    def ListMerges(self, request, context):
        if request.profile.profile_id != "p-1":
            context.abort(grpc.StatusCode.NOT_FOUND, "profile.profile_id: no such profile")
        got, nxt = self._page(self.merges, request)
        return identity_pb2.ListMergesResponse(merges=got, next_page_token=nxt)

    def GetIdentityGraph(self, request, context):
        return identity_pb2.IdentityGraph(profile_id="p-1", event_count=2, identifiers=[identity_pb2.GraphIdentifier(
            identifier=identifier_pb2.Identifier(type="user_id", value="u-1"), first_event_id="e1", first_seq=1)])

    def ForgetProfile(self, request, context):
        self.forgotten.append(request.profile.profile_id)
        return identity_pb2.ForgetProfileResponse(profile_ids=[request.profile.profile_id], identifiers_forgotten=1)

    def ExportGraph(self, request, context):
        for n in range(self.exported):
            yield identity_pb2.ProfileGraphEntry(profile_id=f"p-{n:06d}", identifiers=[
                identifier_pb2.Identifier(type="user_id", value=f"u-{n}"),
                identifier_pb2.Identifier(type="device_id", value=f"aa:bb:{n}")])

    def ListCandidates(self, request, context):
        got, nxt = self._page(self.candidates, request)
        return identity_pb2.ListCandidatesResponse(candidates=got, next_page_token=nxt)


@pytest.fixture
def fake(clean_env, monkeypatch):
    servicer = FakeIdentity(merges=2500, candidates=5)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("CDP_IDENTITY_ADDR", f"127.0.0.1:{port}")
    monkeypatch.setenv("CDP_TOKEN", "tok")
    yield servicer
    server.stop(None)


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, ["identity", *args], input=input, catch_exceptions=False)


def test_merges_pages_through_every_page_or_up_to_the_limit(fake):
    r = invoke("merges", "p-1", "--json")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert [m["merge_id"] for m in d["merges"]] == [f"m{n}" for n in range(2500)]
    assert fake.pages == [(1000, ""), (1000, "1000"), (1000, "2000")]
    m = d["merges"][0]
    assert m["identifier"] == {"type": "email", "value": "e0@example.com"}
    assert m["details"] == {"k": 1} and m["undone_by_split"] is None and m["survivor_reason"] == "older profile"

    fake.pages.clear()
    r = invoke("merges", "p-1", "--json", "--limit", "1200")
    assert len(json.loads(r.stdout)["merges"]) == 1200
    assert fake.pages == [(1000, ""), (200, "1000")]

    r = invoke("merges", "p-1", "--limit", "3")
    assert r.exit_code == 0 and "shared-identifier" in r.stdout and "older profile" in r.stdout


def test_merges_of_an_unknown_profile(fake):
    r = invoke("merges", "nobody")
    assert r.exit_code == 1 and "no profile with id nobody" in r.stderr
    r = invoke("merges", "email:ada@example.com")  # an identifier given as a profile id: a hint
    assert r.exit_code == 1 and "--identifier email:ada@example.com" in r.stderr


def test_candidates(fake):
    r = invoke("candidates", "--json", "--limit", "3")
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert [c["other_profile_id"] for c in d["candidates"]] == ["p-c0", "p-c1", "p-c2"] and d["more"]
    assert d["candidates"][0]["details"] == {"firstName": 0.98}
    r = invoke("candidates")
    assert r.exit_code == 0 and "p-c4" in r.stdout and "0.9000" in r.stdout


def test_a_profile_and_an_identifier_together_is_a_usage_error(fake):
    r = invoke("graph", "p-1", "--identifier", "email:a@example.com")
    assert r.exit_code == 2 and "exactly one" in r.stderr
    r = invoke("export")
    assert r.exit_code == 2 and "--jsonl" in r.stderr


def test_export_streams_json_lines_and_stops_quietly_when_the_reader_does(fake, tmp_path):
    fake.exported = 3
    r = invoke("export", "--jsonl")
    assert r.exit_code == 0, r.stderr
    assert [json.loads(line) for line in r.stdout.splitlines()][2] == {
        "profile_id": "p-000002", "identifiers": [{"type": "user_id", "value": "u-2"},
                                                 {"type": "device_id", "value": "aa:bb:2"}]}
    assert "exported 3 profiles" in r.stderr

    # `| head`: far more than a pipe holds, the reader leaves after two lines
    fake.exported = 200_000
    script = Path(sys.executable).parent / "cdp"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "cdp_cli.main"]
    p = subprocess.Popen([*cmd, "identity", "export", "--jsonl"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=tmp_path, env={**os.environ})
    first = [p.stdout.readline(), p.stdout.readline()]
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert [json.loads(x)["profile_id"] for x in first] == ["p-000000", "p-000001"]
    assert p.returncode == 0 and b"Traceback" not in err and b"Exception ignored" not in err, err.decode()


def test_forget_without_a_terminal_or_yes_forgets_nothing(fake):
    r = invoke("forget", "--identifier", "user_id:u-1")  # no input: the prompt meets a closed stdin
    assert r.exit_code == 1 and "not confirmed: nothing forgotten" in r.stderr and "user_id:u-1" in r.stderr
    assert fake.forgotten == []
    r = invoke("forget", "--identifier", "user_id:u-1", input="y\n")
    assert r.exit_code == 0 and fake.forgotten == ["p-1"]  # the profile shown, by its id


def test_unreachable_service(clean_env, monkeypatch):
    from cdp_core.embedded import free_port

    monkeypatch.setenv("CDP_IDENTITY_ADDR", f"127.0.0.1:{free_port()}")
    r = CliRunner().invoke(cli, ["identity", "rules", "show", "--token", "t"], catch_exceptions=False)
    assert r.exit_code == 1 and "is the stack running?" in r.stderr


# --- against the real services ------------------------------------------------------------


class World:
    """Events sent through ingest; waits on identity's graph."""

    def __init__(self, stack: Stack):
        self.ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
        self.identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))

    async def identify(self, traits: dict, **ids) -> None:
        await self.ingest.Identify(ingest_pb2.IdentifyRequest(
            common=ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), **ids), traits_json=json.dumps(traits)))

    async def track(self, **ids) -> None:
        await self.ingest.Track(ingest_pb2.TrackRequest(
            common=ingest_pb2.EventCommon(message_id=str(uuid.uuid4()), **ids), event="Page Viewed"))

    async def resolved(self, t: str, v: str, events: int) -> identity_pb2.IdentityGraph:
        async def get():
            g = await self.identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
                profile=identity_pb2.ProfileRef(identifier=identifier_pb2.Identifier(type=t, value=v))))
            return g if g.event_count == events else None
        return await eventually(get)


async def cdp(*args: str, input: str | None = None, code: int = 0):
    """`cdp identity ARGS` in this process (in a thread: the services run on this loop)."""
    return await run_cdp("identity", *args, input=input, code=code)


@pytest.mark.component
async def test_graph_merges_split_and_export(stack, tmp_path):
    w, uid = World(stack), uuid.uuid4().hex[:8]
    a, b, shared = f"a-{uid}", f"b-{uid}", f"family-{uid}@example.com"
    await w.identify({"email": f"ada-{uid}@example.com"}, anonymous_id=a)
    await w.track(anonymous_id=a)
    await w.identify({"email": shared}, anonymous_id=b)
    await w.track(anonymous_id=b)
    await w.identify({"email": shared}, anonymous_id=a)  # a wrong link: two people merge
    g = await w.resolved("anonymous_id", a, 5)

    r = await cdp("resolve", f"anonymous_id:{b}", "--json")
    resolved = json.loads(r.stdout)
    assert resolved["profile_id"] == g.profile_id
    assert {"type": "email", "value": shared} in resolved["identifiers"]

    # the graph: identifiers with their events, merged profiles, merges with provenance
    r = await cdp("graph", "--identifier", f"email:{shared.upper()}", "--json")  # the service normalizes
    d = json.loads(r.stdout)
    assert d["profile_id"] == g.profile_id and d["event_count"] == 5
    assert len(d["identifiers"]) == 4 and all(i["first_event_id"] and i["first_seq"] for i in d["identifiers"])
    assert len(d["merged_profile_ids"]) == 1
    (m,) = d["merges"]
    assert m["rule"] == "shared-identifier" and m["confidence"] == 1.0 and m["event_id"]
    assert m["identifier"]["type"] in ("email", "anonymous_id") and "older profile" in m["survivor_reason"]
    assert m["merged_profile_id"] == d["merged_profile_ids"][0] and m["merged_at"]

    r = await cdp("graph", g.profile_id)
    assert g.profile_id in r.stdout and "shared-identifier" in r.stdout and shared in r.stdout
    # a merged profile's id shows its survivor
    r = await cdp("graph", d["merged_profile_ids"][0], "--json")
    assert json.loads(r.stdout)["profile_id"] == g.profile_id

    r = await cdp("merges", "--identifier", f"anonymous_id:{b}", "--json")
    assert [x["merge_id"] for x in json.loads(r.stdout)["merges"]] == [m["merge_id"]]

    # the export: one line per profile, streamed to stdout or a file
    r = await cdp("export", "--jsonl")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert all(set(x) >= {"profile_id", "identifiers"} for x in rows)
    assert all(set(i) == {"type", "value"} for x in rows for i in x["identifiers"])
    assert len({x["profile_id"] for x in rows}) == len(rows) == 1
    assert {(i["type"], i["value"]) for i in rows[0]["identifiers"]} == \
        {("anonymous_id", a), ("anonymous_id", b), ("email", shared), ("email", f"ada-{uid}@example.com")}
    assert "exported 1 profiles" in r.stderr
    out = tmp_path / "graph.jsonl"
    await cdp("export", "--jsonl", "--out", str(out))
    assert [json.loads(line) for line in out.read_text().splitlines()] == rows
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    # bad input: a malformed TYPE:VALUE, an unknown type, a split of an identifier not on the profile
    r = await cdp("graph", "--identifier", f"anonymous_id{a}", code=2)
    assert "is not TYPE:VALUE: no colon" in r.stderr
    r = await cdp("split", g.profile_id, "--split", "nocolon", code=2)
    assert "--split" in r.stderr and "no colon" in r.stderr
    r = await cdp("resolve", "shoe_size:42", code=1)
    assert "unknown identifier type" in r.stderr and "shoe_size:42" in r.stderr
    r = await cdp("split", g.profile_id, "--split", f"anonymous_id:{b}", "--split", "email:someone-else@example.com",
                  code=1)
    assert "error: --split email:someone-else@example.com: is not an identifier of this profile" in r.stderr
    r = await cdp("split", g.profile_id, "--split", f"anonymous_id:{a}", "--split", f"anonymous_id:{b}",
                  "--split", f"email:{shared}", "--split", f"email:ada-{uid}@example.com", code=1)
    assert "keep at least one" in r.stderr
    r = await cdp("graph", "--identifier", f"email:nobody-{uid}@example.com", code=1)
    assert f"no profile has the identifier email:nobody-{uid}@example.com" in r.stderr
    assert json.loads((await cdp("graph", g.profile_id, "--json")).stdout) == d  # unchanged

    # the split undoes the merge; the merge stays listed, undone
    r = await cdp("split", "--identifier", f"anonymous_id:{a}", "--split", f"anonymous_id:{b}",
                  "--split", f"email:{shared}", "--reason", "household address", "--json")
    s = json.loads(r.stdout)
    assert s["split_id"] and s["events_rebuilt"] == 5 and len(s["profiles"]) == 2
    sides = {frozenset((i["type"], i["value"]) for i in p["identifiers"]) for p in s["profiles"]}
    assert frozenset({("anonymous_id", b), ("email", shared)}) in sides
    r = await cdp("merges", "--identifier", f"anonymous_id:{a}", "--json")
    assert [x["undone_by_split"] for x in json.loads(r.stdout)["merges"]] == [s["split_id"]]
    r = await cdp("merges", "--identifier", f"anonymous_id:{a}")
    assert s["split_id"] in r.stdout
    r = await cdp("export", "--jsonl")
    assert len(r.stdout.splitlines()) == 2


@pytest.mark.component
async def test_rules_forget_and_candidates(stack, tmp_path):
    w, uid = World(stack), uuid.uuid4().hex[:8]

    r = await cdp("rules", "show", "--json")
    before = json.loads(r.stdout)
    assert "user_id" in before["yaml"]
    r = await cdp("rules", "show")
    assert r.stdout.strip() == before["yaml"].strip()

    bad = tmp_path / "bad.yaml"
    bad.write_text("limits: {user_id: 0}\n")
    r = await cdp("rules", "apply", "-f", str(bad), code=1)
    assert "refused, nothing applied" in r.stderr and "limits.user_id" in r.stderr
    bad.write_text("limits: [\n")
    r = await cdp("rules", "apply", "-f", str(bad), code=1)
    assert "is not valid YAML" in r.stderr
    good = tmp_path / "rules.yaml"
    good.write_text("identifier_types: [crm_id]\nlimits: {user_id: 1}\nmerge_protection: [user_id]\n")
    r = await cdp("rules", "apply", "-f", str(good), "--dry-run")
    assert "valid (dry run, nothing applied)" in r.stdout
    assert json.loads((await cdp("rules", "show", "--json")).stdout)["version"] == before["version"]
    r = await cdp("rules", "apply", "-f", str(good))
    assert f"applied identity rules version {before['version'] + 1}" in r.stdout
    after = json.loads((await cdp("rules", "show", "--json")).stdout)
    assert after["version"] == before["version"] + 1 and "crm_id" in after["yaml"] and after["applied_at"]
    r = await cdp("resolve", "crm_id:urn:crm:1", code=1)  # a known type now: just nobody has it
    assert "no profile has the identifier crm_id:urn:crm:1" in r.stderr

    # forget: asks first; declined, nothing happens
    await w.identify({"email": f"gone-{uid}@example.com"}, user_id=f"g-{uid}")
    g = await w.resolved("user_id", f"g-{uid}", 1)
    r = await cdp("forget", "--identifier", f"user_id:g-{uid}", input="n\n", code=1)
    assert "nothing forgotten" in r.stderr and g.profile_id in r.stderr
    r = await cdp("resolve", f"user_id:g-{uid}", "--json")
    assert json.loads(r.stdout)["profile_id"] == g.profile_id
    r = await cdp("forget", "--identifier", f"email:gone-{uid}@example.com", "--reason", "ticket 7", input="y\n")
    assert g.profile_id in r.stdout and "2 identifiers" in r.stdout
    r = await cdp("resolve", f"user_id:g-{uid}", code=1)
    assert "no profile has the identifier" in r.stderr

    await w.identify({}, user_id=f"h-{uid}")
    h = await w.resolved("user_id", f"h-{uid}", 1)
    r = await cdp("forget", h.profile_id, "--yes", "--json")
    assert json.loads(r.stdout) == {"profile_ids": [h.profile_id], "identifiers_forgotten": 1}

    r = await cdp("candidates", "--json")
    assert json.loads(r.stdout) == {"candidates": [], "more": False}
    r = await cdp("candidates")
    assert "no match candidates" in r.stdout
