"""SourceService: named write keys with a kind: create, list, rotate, disable, enable;
validation; counters of accepted and rejected calls."""

from __future__ import annotations

import grpc
import pytest

from cdp.ingest.v1 import ingest_pb2
from cdp_core.testing import eventually

pytestmark = pytest.mark.component


def batch(n_ok: int, n_bad: int = 0, write_key: str = "") -> ingest_pb2.BatchRequest:
    ok = [ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(user_id="u"), event="E"))
          for _ in range(n_ok)]
    bad = [ingest_pb2.Call(track=ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(), event="E"))
           for _ in range(n_bad)]
    return ingest_pb2.BatchRequest(calls=ok + bad, write_key=write_key)


async def code_of(aw) -> grpc.StatusCode:
    try:
        await aw
    except grpc.aio.AioRpcError as e:
        return e.code()
    return grpc.StatusCode.OK


async def test_create_shows_the_key_once_and_list_shows_its_hint(sources):
    made = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="website", kind="web"))
    assert made.write_key.startswith("wk_") and len(made.write_key) > 20
    s = made.source
    assert (s.name, s.kind, s.enabled) == ("website", "web", True)
    assert s.source_id.startswith("src_") and s.write_key_hint == made.write_key[-4:]
    assert s.created_at.seconds > 0 and (s.accepted, s.rejected) == (0, 0)
    await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="crm.salesforce", kind="crm"))
    listed = (await sources.ListSources(ingest_pb2.ListSourcesRequest())).sources
    assert [x.name for x in listed] == ["crm.salesforce", "website"]  # by name
    assert listed[1].source_id == s.source_id and listed[1].write_key_hint == s.write_key_hint
    # a custom kind is fine if it is a lower-case word
    assert (await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="kiosk", kind="in_store"))).source.kind == \
        "in_store"


@pytest.mark.parametrize("name", ["", "Website", "-web", "web site", "x" * 64, "wéb", "web/1"])
async def test_bad_names_are_refused(sources, name):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.CreateSource(ingest_pb2.CreateSourceRequest(name=name, kind="web"))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("name:")


@pytest.mark.parametrize("kind", ["", "Web", "1web", "web kind", "x" * 33])
async def test_bad_kinds_are_refused(sources, kind):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="ok", kind=kind))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith("kind:")


async def test_a_negative_rate_is_refused(sources):
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="ok", kind="web", rate_limit_per_s=-1))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "rate_limit_per_s" in e.value.details()


async def test_a_duplicate_name_already_exists(sources):
    await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="website", kind="web"))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="website", kind="app"))
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "name" in e.value.details()
    assert len((await sources.ListSources(ingest_pb2.ListSourcesRequest())).sources) == 1


async def test_unknown_names_are_not_found(sources):
    for call, req in [(sources.RotateSourceKey, ingest_pb2.RotateSourceKeyRequest(name="nope")),
                      (sources.DisableSource, ingest_pb2.DisableSourceRequest(name="nope")),
                      (sources.EnableSource, ingest_pb2.EnableSourceRequest(name="nope"))]:
        assert await code_of(call(req)) == grpc.StatusCode.NOT_FOUND


async def test_rotate_replaces_the_key(ingest, sources):
    made = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="app", kind="app"))
    assert (await ingest.Batch(batch(1, write_key=made.write_key))).accepted == 1
    rotated = await sources.RotateSourceKey(ingest_pb2.RotateSourceKeyRequest(name="app"))
    assert rotated.write_key != made.write_key
    assert rotated.source.source_id == made.source.source_id  # same source, new key
    assert rotated.source.write_key_hint == rotated.write_key[-4:]
    assert await code_of(ingest.Batch(batch(1, write_key=made.write_key))) == grpc.StatusCode.UNAUTHENTICATED
    assert (await ingest.Batch(batch(1, write_key=rotated.write_key))).accepted == 1


async def test_disable_and_enable(ingest, sources):
    made = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="app", kind="app"))
    off = await sources.DisableSource(ingest_pb2.DisableSourceRequest(name="app"))
    assert off.source.enabled is False
    assert await code_of(ingest.Batch(batch(1, write_key=made.write_key))) == grpc.StatusCode.PERMISSION_DENIED
    listed = (await sources.ListSources(ingest_pb2.ListSourcesRequest())).sources
    assert listed[0].enabled is False
    on = await sources.EnableSource(ingest_pb2.EnableSourceRequest(name="app"))
    assert on.source.enabled is True
    assert (await ingest.Batch(batch(1, write_key=made.write_key))).accepted == 1
    # idempotent
    assert (await sources.EnableSource(ingest_pb2.EnableSourceRequest(name="app"))).source.enabled is True


async def test_accepted_and_rejected_counters_move(ingest, sources):
    made = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="server", kind="server"))
    other = await sources.CreateSource(ingest_pb2.CreateSourceRequest(name="other", kind="server"))
    await ingest.Batch(batch(3, 2, write_key=made.write_key))
    await ingest.Track(ingest_pb2.TrackRequest(common=ingest_pb2.EventCommon(user_id="u"), event="E"),
                       metadata=[("x-cdp-write-key", made.write_key)])
    # a batch refused whole counts as one rejection
    too_many = batch(2501, write_key=made.write_key)
    assert await code_of(ingest.Batch(too_many)) == grpc.StatusCode.INVALID_ARGUMENT

    async def counted():
        got = {s.name: (s.accepted, s.rejected) for s in
               (await sources.ListSources(ingest_pb2.ListSourcesRequest())).sources}
        return got if got["server"] == (4, 3) else None

    got = await eventually(counted, timeout=10)
    assert got["other"] == (0, 0)
    assert other.source.accepted == 0
