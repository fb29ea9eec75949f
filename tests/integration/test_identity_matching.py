"""Probabilistic matching in the stream: an offline record that shares no identifier with
anyone merges into the person it matches, with its confidence; a weaker match waits for
review; a split undoes a probabilistic merge and a rebuild does not redo it."""

from __future__ import annotations

import json
import uuid

import grpc
import pytest

from cdp.common.v1 import identifier_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp_core.testing import eventually

pytestmark = pytest.mark.integration


def ident(t: str, v: str) -> identifier_pb2.Identifier:
    return identifier_pb2.Identifier(type=t, value=v)


def common(**kw) -> ingest_pb2.EventCommon:
    kw.setdefault("message_id", str(uuid.uuid4()))
    return ingest_pb2.EventCommon(**kw)


def jorge_crm(run: str) -> ingest_pb2.IdentifyRequest:
    """A CRM contact with a full record."""
    return ingest_pb2.IdentifyRequest(common=common(user_id=f"crm-{run}"), traits_json=json.dumps(
        {"firstName": "Jorge", "lastName": "Sanz", "address": {"postalCode": "41004", "city": "Sevilla"},
         "birthday": "1990-01-02"}))


def jorge_receipt(run: str) -> ingest_pb2.TrackRequest:
    """A till receipt with his name and a postcode one digit off (a typo, or a namesake nearby):
    plausible, not enough to merge on its own; a review candidate."""
    return ingest_pb2.TrackRequest(
        common=common(anonymous_id=f"receipt:{run}", context_json=json.dumps({"traits": {
            "firstName": "Jorge", "lastName": "Sanz", "address": {"postalCode": "41014"}}})),
        event="Order Completed")


async def test_an_offline_record_merges_into_the_person_it_matches(stack):
    run = uuid.uuid4().hex[:8]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    crm = {"firstName": "Lucía", "lastName": "Fernández Ortega", "birthday": "1984-03-12",
           "email": f"lucia.{run}@example.com", "phone": "+34 612 345 678",
           "address": {"street": "Calle Mayor 12", "postalCode": "28013", "city": "Madrid"}}
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(user_id=f"crm-{run}"), traits_json=json.dumps(crm)))
    # someone else in the same street with the same surname: must not be merged with her
    sister = {"firstName": "Marta", "lastName": "Fernández Ortega", "birthday": "1988-07-01",
              "address": {"street": "Calle Mayor 12", "postalCode": "28013", "city": "Madrid"}}
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(user_id=f"crm2-{run}"),
                                                     traits_json=json.dumps(sister)))
    # a till receipt (with the loyalty sign-up form's birth date): accents lost, no
    # identifier but the receipt's own id
    pos = {"firstName": "Lucia", "lastName": "Fernandez Ortega", "address": {"postalCode": "28013"},
           "birthday": "12/03/1984"}
    await ingest.Track(ingest_pb2.TrackRequest(
        common=common(anonymous_id=f"receipt:{run}", context_json=json.dumps({"traits": pos})),
        event="Order Completed", properties_json=json.dumps({"total": 30.5})))

    async def merged():
        try:
            r = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
                identifier=ident("anonymous_id", f"receipt:{run}")))
        except grpc.aio.AioRpcError:
            return None
        return r if ("user_id", f"crm-{run}") in {(i.type, i.value) for i in r.identifiers} else None

    r = await eventually(merged)
    assert ("user_id", f"crm2-{run}") not in {(i.type, i.value) for i in r.identifiers}
    g = await identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
        profile=identity_pb2.ProfileRef(profile_id=r.profile_id)))
    (m,) = [m for m in g.merges if m.rule == "probabilistic"]
    assert 0.9 < m.confidence <= 1.0
    details = json.loads(m.details_json)
    assert {c["field"] for c in details["comparisons"]} >= {"first_name", "last_name", "postal_code"}

    # a split takes the receipt back out; the separation keeps a rebuild from matching it again
    res = await identity.SplitProfile(identity_pb2.SplitProfileRequest(
        profile=identity_pb2.ProfileRef(profile_id=r.profile_id), identifiers=[ident("anonymous_id", f"receipt:{run}")],
        reason="reviewed: not her"))
    assert len(res.profiles) == 2
    again = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
        identifier=ident("anonymous_id", f"receipt:{run}")))
    assert {(i.type, i.value) for i in again.identifiers} == {("anonymous_id", f"receipt:{run}")}


async def test_a_weaker_match_waits_for_review_and_an_accepted_one_merges(stack):
    run = uuid.uuid4().hex[:8]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    await ingest.Identify(jorge_crm(run))
    await ingest.Track(jorge_receipt(run))

    async def listed():
        res = await identity.ListCandidates(identity_pb2.ListCandidatesRequest())
        mine = [c for c in res.candidates if c.event_id]
        for c in mine:
            ids = set()
            for p in (c.profile_id, c.other_profile_id):
                g = await identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
                    profile=identity_pb2.ProfileRef(profile_id=p)))
                ids |= {(i.identifier.type, i.identifier.value) for i in g.identifiers}
            if {("user_id", f"crm-{run}"), ("anonymous_id", f"receipt:{run}")} <= ids:
                return c
        return None

    c = await eventually(listed)
    assert 0.5 <= c.probability < 0.99
    res = await identity.ReviewCandidate(identity_pb2.ReviewCandidateRequest(
        profile_id=c.profile_id, other_profile_id=c.other_profile_id, accept=True, reason="same loyalty card"))
    assert res.status == "accepted"
    r = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
        identifier=ident("anonymous_id", f"receipt:{run}")))
    assert ("user_id", f"crm-{run}") in {(i.type, i.value) for i in r.identifiers}
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await identity.ReviewCandidate(identity_pb2.ReviewCandidateRequest(
            profile_id=c.profile_id, other_profile_id=c.other_profile_id, accept=False))
    assert e.value.code() == grpc.StatusCode.NOT_FOUND

    # the decision is operator input, not in the log: a rebuild from the log applies it again
    status = await stack.replay("identity")
    assert status.state == "done", status.error
    again = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
        identifier=ident("anonymous_id", f"receipt:{run}")))
    assert again.profile_id == r.profile_id
    assert ("user_id", f"crm-{run}") in {(i.type, i.value) for i in again.identifiers}
    g = await identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
        profile=identity_pb2.ProfileRef(profile_id=r.profile_id)))
    (m,) = [m for m in g.merges if m.rule == "review"]
    assert json.loads(m.details_json)["reason"] == "same loyalty card"


async def test_the_model_is_estimated_by_em_from_stored_records_and_applied(stack):
    import random

    import yaml

    run = uuid.uuid4().hex[:8]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    rng = random.Random(3)
    firsts, lasts = ["Ana", "Luis", "Marta", "Jorge", "Elena", "Pablo"], ["García", "Ruiz", "Sanz", "Moreno", "Vidal"]
    calls = []
    for i in range(80):
        traits = {"firstName": rng.choice(firsts), "lastName": rng.choice(lasts), "birthday": f"19{60 + i % 40}-0{1 + i % 9}-1{i % 10}",
                  "address": {"postalCode": f"280{i % 30:02d}", "city": "Madrid"}}
        calls.append(ingest_pb2.Call(identify=ingest_pb2.IdentifyRequest(
            common=common(user_id=f"em-{run}-{i}"), traits_json=json.dumps(traits))))
    await ingest.Batch(ingest_pb2.BatchRequest(calls=calls))

    async def stored():
        try:
            return await identity.EstimateMatchModel(identity_pb2.EstimateMatchModelRequest(apply=True))
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.FAILED_PRECONDITION:  # not enough records yet
                return None
            raise

    res = await eventually(stored)
    assert res.records >= 50 and res.version >= 1
    model = yaml.safe_load(res.model_yaml)
    assert 0 < model["prior"] < 1 and "last_name" in model["fields"]
    rules = yaml.safe_load((await identity.GetRules(identity_pb2.GetRulesRequest())).yaml)
    assert rules["matching"]["model"] == model
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await identity.EstimateMatchModel(identity_pb2.EstimateMatchModelRequest(max_records=-1))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_candidate_follows_its_profiles_through_later_merges(stack):
    run = uuid.uuid4().hex[:8]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    await ingest.Identify(jorge_crm(run))
    # an older web profile, known only by a cookie and an email
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(anonymous_id=f"cookie-{run}"),
                                                     traits_json=json.dumps({"email": f"js-{run}@example.com"})))
    await ingest.Track(jorge_receipt(run))

    async def graph_ids(p):
        g = await identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
            profile=identity_pb2.ProfileRef(profile_id=p)))
        return {(i.identifier.type, i.identifier.value) for i in g.identifiers}

    async def listed(*want):
        res = await identity.ListCandidates(identity_pb2.ListCandidatesRequest(page_size=1000))
        for c in res.candidates:
            ids = await graph_ids(c.profile_id) | await graph_ids(c.other_profile_id)
            if set(want) <= ids:
                return c
        return None

    await eventually(lambda: listed(("user_id", f"crm-{run}"), ("anonymous_id", f"receipt:{run}")))
    # the receipt's profile then merges into the older web profile (the email links them)
    await ingest.Track(ingest_pb2.TrackRequest(
        common=common(anonymous_id=f"receipt:{run}", context_json=json.dumps({"traits": {
            "email": f"js-{run}@example.com"}})), event="Signed Up"))
    web = await eventually(lambda: _profile_with(identity, ("anonymous_id", f"receipt:{run}"),
                                                 ("anonymous_id", f"cookie-{run}")))
    c = await eventually(lambda: listed(("user_id", f"crm-{run}"), ("anonymous_id", f"cookie-{run}")))
    assert web in (c.profile_id, c.other_profile_id)  # listed under the survivor, not the merged id
    res = await identity.ReviewCandidate(identity_pb2.ReviewCandidateRequest(
        profile_id=c.profile_id, other_profile_id=c.other_profile_id, accept=True, reason="same person at the till"))
    assert res.status == "accepted"
    r = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
        identifier=ident("user_id", f"crm-{run}")))
    assert {("anonymous_id", f"receipt:{run}"), ("anonymous_id", f"cookie-{run}")} <= {
        (i.type, i.value) for i in r.identifiers}
    assert await listed(("user_id", f"crm-{run}"), ("anonymous_id", f"cookie-{run}")) is None


async def _profile_with(identity, a, b):
    r = await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(identifier=ident(*a)))
    return r.profile_id if b in {(i.type, i.value) for i in r.identifiers} else None


async def test_term_frequencies_count_the_stored_records_through_merges_and_forget(stack):
    run = uuid.uuid4().hex[:8]
    # a surname no other test uses (letters only: names are compared without digits)
    surname = "Zubi" + "".join(chr(ord("a") + int(c, 16)) for c in run)
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    pool = stack.services["identity"].runtime.pool

    async def counts():
        rows = await pool.fetch("SELECT field, value, n FROM match_term_counts WHERE value = $1", surname.lower())
        return {(r["field"], r["value"]): r["n"] for r in rows}

    people = [("Ane", "1970-01-01", "20001"), ("Iker", "1981-05-05", "48001"), ("Miren", "1992-09-09", "31001")]
    for i, (first, born, pc) in enumerate(people):
        await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(user_id=f"tf-{run}-{i}"), traits_json=json.dumps(
            {"firstName": first, "lastName": surname, "birthday": born, "address": {"postalCode": pc}})))
    await eventually(lambda: _equals(counts(), {("last_name", surname.lower()): 3}))
    totals = {r["field"]: r["n"] for r in await pool.fetch("SELECT field, n FROM match_term_totals")}
    assert totals["last_name"] >= 3 and totals["first_name"] >= 3

    # with term frequencies on, a till receipt of Iker (no identifier in common) is matched
    # with the stored counts and merges into his profile
    import yaml

    before_rules = (await identity.GetRules(identity_pb2.GetRulesRequest())).yaml
    rules = yaml.safe_load(before_rules) or {}
    rules.setdefault("matching", {})["term_frequencies"] = True
    await identity.ApplyRules(identity_pb2.ApplyRulesRequest(yaml=yaml.safe_dump(rules)))
    try:
        await ingest.Track(ingest_pb2.TrackRequest(
            common=common(anonymous_id=f"receipt:{run}", context_json=json.dumps({"traits": {
                "firstName": "Iker", "lastName": surname, "birthday": "05/05/1981",
                "address": {"postalCode": "48001", "city": "Bilbao"}}})), event="Order Completed"))
        r = await eventually(lambda: _profile_with(identity, ("anonymous_id", f"receipt:{run}"),
                                                   ("user_id", f"tf-{run}-1")))
        g = await identity.GetIdentityGraph(identity_pb2.GetIdentityGraphRequest(
            profile=identity_pb2.ProfileRef(profile_id=r)))
        assert [m.rule for m in g.merges] == ["probabilistic"]
    finally:
        await identity.ApplyRules(identity_pb2.ApplyRulesRequest(yaml=before_rules))
    await eventually(lambda: _equals(counts(), {("last_name", surname.lower()): 4}))
    # the same person's second record (her e-mail links it) is stored on her profile: counted
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(user_id=f"tf-{run}-0"), traits_json=json.dumps(
        {"firstName": "Ane", "lastName": surname, "birthday": "1970-01-01", "address": {"postalCode": "20002"}})))
    await eventually(lambda: _equals(counts(), {("last_name", surname.lower()): 5}))
    before = {r["field"]: r["n"] for r in await pool.fetch("SELECT field, n FROM match_term_totals")}
    await identity.ForgetProfile(identity_pb2.ForgetProfileRequest(
        profile=identity_pb2.ProfileRef(identifier=ident("user_id", f"tf-{run}-0")), reason="test"))
    assert await counts() == {("last_name", surname.lower()): 3}  # her two records are gone
    after = {r["field"]: r["n"] for r in await pool.fetch("SELECT field, n FROM match_term_totals")}
    assert before["last_name"] - after["last_name"] == 2


async def _equals(aw, want) -> bool:
    return (await aw) == want


async def test_a_record_joining_a_profile_without_records_is_matched_too(stack):
    """A CRM duplicate came first and has a profile of its own; then the person's other CRM
    contact arrives carrying the e-mail of a web sign-up (which left no offline record), so it
    joins that profile instead of creating one. It is that profile's first record: it is
    matched all the same, and the duplicate merges."""
    run = uuid.uuid4().hex[:8]
    ingest = ingest_pb2_grpc.IngestServiceStub(stack.channel("ingest"))
    identity = identity_pb2_grpc.IdentityServiceStub(stack.channel("identity"))
    email = f"alba.{run}@example.com"

    async def resolved(t: str, v: str):
        try:
            return await identity.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(identifier=ident(t, v)))
        except grpc.aio.AioRpcError:
            return None

    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(user_id=f"web-{run}"),
                                                     traits_json=json.dumps({"email": email})))
    await eventually(lambda: resolved("user_id", f"web-{run}"))
    alba = {"firstName": "Alba", "lastName": "Márquez Ortiz", "birthday": "1991-05-17",
            "address": {"street": "Calle Feria 40", "postalCode": "41003", "city": "Sevilla"}}
    duplicate = {**alba, "lastName": "Marquuez Ortiz", "email": f"alba.{run}@example.co"}
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(anonymous_id=f"crm-b-{run}"),
                                                     traits_json=json.dumps(duplicate)))
    first = await eventually(lambda: resolved("anonymous_id", f"crm-b-{run}"))
    await ingest.Identify(ingest_pb2.IdentifyRequest(common=common(anonymous_id=f"crm-a-{run}"),
                                                     traits_json=json.dumps({**alba, "email": email})))

    async def merged():
        r = await resolved("anonymous_id", f"crm-b-{run}")
        return r if r is not None and ("user_id", f"web-{run}") in {(i.type, i.value) for i in r.identifiers} else None

    r = await eventually(merged)
    assert r.profile_id in (first.profile_id, (await resolved("user_id", f"web-{run}")).profile_id)
    assert ("anonymous_id", f"crm-a-{run}") in {(i.type, i.value) for i in r.identifiers}
