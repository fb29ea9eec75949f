"""The HTTP edge against a real NATS server and PostgreSQL: the real Segment Python SDK,
the browser SDK's shapes (text/plain, CORS, settings), every bad input (right status, a
message naming the field or limit, the request or item kept in failed events, nothing
appended for a refused request), rate limits, Shopify webhooks, logging, graceful stop."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import nats
import pytest
import structlog
from multidict import CIMultiDict
from segment.analytics import Client
from segment.analytics.request import APIError

from cdp.ingest.v1 import events_pb2
from cdp_core import envelope
from cdp_core.testing.stack import Stack
from cdp_ingest.domain.calls import MAX_BATCH_BYTES, MAX_EVENT_BYTES
from cdp_ingest.service import SPEC as INGEST

pytestmark = pytest.mark.component

SHOPIFY_FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures" / "shopify"



class Edge:
    def __init__(self, stack: Stack, http: aiohttp.ClientSession, nc):
        self.stack, self.http, self.nc = stack, http, nc
        self.svc = stack.services["ingest"]
        self.rt = self.svc.runtime
        self.edge = self.rt.extras["http_edge"]
        self.url = f"http://127.0.0.1:{self.edge.port}"

    async def source(self, name: str | None = None, *, kind: str = "web", rate: float = 0, secret: str = ""):
        rec, key = await self.rt.extras["sources"].create(name or "s-" + uuid.uuid4().hex[:8], kind, secret, rate)
        return rec, key

    async def post(self, path: str, body=None, *, key: str | None = None, data: bytes | None = None,
                   headers: dict | None = None) -> tuple[int, dict, CIMultiDict]:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        if data is None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        async with self.http.post(self.url + path, data=data, headers=h) as r:
            return r.status, await r.json(content_type=None), r.headers.copy()

    async def events(self) -> list[events_pb2.EventCollected]:
        js = self.nc.jetstream()
        info = await js.stream_info("CDP_INGEST")
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1) if info.state.messages else ():
            env = envelope.decode((await js.get_msg("CDP_INGEST", seq)).data)
            ev = events_pb2.EventCollected()
            env.payload.Unpack(ev)
            out.append(ev)
        return out

    async def count(self) -> int:
        return (await self.nc.jetstream().stream_info("CDP_INGEST")).state.messages

    async def failed(self, fid: int):
        return await self.rt.pool.fetchrow("SELECT * FROM cdp_failed_events WHERE id = $1", fid)

    async def failed_count(self) -> int:
        return await self.rt.pool.fetchval("SELECT count(*) FROM cdp_failed_events")


@pytest.fixture
async def edge(fresh_nats_url, database_server_url, auth_secret):
    st = Stack(fresh_nats_url, database_server_url, auth_secret, "http_" + os.urandom(4).hex())
    await st.start(INGEST)
    nc = await nats.connect(fresh_nats_url)
    try:
        async with aiohttp.ClientSession() as http:
            yield Edge(st, http, nc)
    finally:
        await nc.close()
        await st.stop()


def track(**kw) -> dict:
    body = {"type": "track", "event": "Viewed", "userId": "u1", "messageId": str(uuid.uuid4())}
    body.update(kw)
    return {k: v for k, v in body.items() if v is not None}


async def assert_refused(edge: Edge, res, status: int, names: str, *, before: int, source_id=None, kept=True):
    code, body, _ = res
    assert code == status, body
    assert body["success"] is False and names in body["message"], body
    assert await edge.count() == before, "a refused request appended nothing"
    if kept:
        row = await edge.failed(body["failed_event_id"])
        assert row["kind"] == "rejected" and names in row["reason"]
        assert row["source_id"] == source_id
        return row
    return None


# ---- the real Segment Python SDK -----------------------------------------------------------------


async def test_segment_python_sdk_calls_reach_the_log(edge):
    rec, key = await edge.source("server-app", kind="server")
    errors = []
    client = Client(key, host=edge.url, sync_mode=True, max_retries=0, on_error=lambda e, b: errors.append(e))

    def send():
        client.track("u1", "Order Completed", {"revenue": 12.5}, message_id="m-track")
        client.identify("u1", {"email": "a@example.com", "plan": "pro"}, message_id="m-identify")
        client.page("u1", "Docs", "Install", {"url": "https://example.com/install"}, message_id="m-page")
        client.screen("u1", "App", "Home", {"tab": 1}, message_id="m-screen")
        client.group("u1", "g1", {"name": "ACME"}, message_id="m-group")
        client.alias("anon-1", "u1", message_id="m-alias")

    await asyncio.to_thread(send)
    assert not errors
    # a batch, gzip-encoded, as the SDK's background consumer sends it
    batched = Client(key, host=edge.url, gzip=True, max_retries=0, upload_size=10,
                     on_error=lambda e, b: errors.append(e))

    def send_batched():
        for i in range(5):
            batched.track(anonymous_id=f"anon-{i}", event="Clicked", properties={"i": i}, message_id=f"m-b{i}")
        batched.flush()
        batched.join()

    await asyncio.to_thread(send_batched)
    assert not errors
    events = {e.message_id: e for e in await edge.events()}
    assert {"m-track", "m-identify", "m-page", "m-screen", "m-group", "m-alias"} <= set(events)
    assert {f"m-b{i}" for i in range(5)} <= set(events)
    t = events["m-track"]
    assert (t.kind, t.event, t.user_id, t.source_id) == ("track", "Order Completed", "u1", rec.source_id)
    assert json.loads(t.properties_json) == {"revenue": 12.5}
    assert json.loads(t.context_json)["library"]["name"] == "analytics-python"
    assert t.HasField("sent_at") and t.HasField("received_at") and t.HasField("original_timestamp")
    assert json.loads(events["m-identify"].traits_json)["plan"] == "pro"
    assert (events["m-page"].name, events["m-page"].category) == ("Install", "Docs")
    assert events["m-screen"].kind == "screen" and events["m-group"].group_id == "g1"
    assert events["m-alias"].previous_id == "anon-1"
    assert events["m-b3"].anonymous_id == "anon-3"


async def test_python_sdk_sees_errors_in_segment_shape(edge):
    client = Client("wk_unknown", host=edge.url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as e:
        await asyncio.to_thread(client.track, "u1", "Viewed")
    assert e.value.status == 401 and e.value.code == "unauthorized" and "write key" in e.value.message


# ---- batch semantics: timestamps, inheritance, partial rejection ---------------------------------------


async def test_batch_inherits_context_and_sent_at_and_corrects_clock_skew(edge):
    _, key = await edge.source()
    skew = timedelta(hours=1)  # the client's clock is one hour fast
    now = datetime.now(UTC)
    body = {
        "sentAt": (now + skew).isoformat(),
        "context": {"library": {"name": "custom", "version": "1"}},
        "batch": [
            track(timestamp=(now + skew - timedelta(minutes=5)).isoformat(), messageId="a"),
            track(context={"ip": "1.2.3.4"}, messageId="b"),
        ],
    }
    status, res, _ = await edge.post("/v1/batch", body, key=key)
    assert (status, res) == (200, {"success": True})
    events = {e.message_id: e for e in await edge.events()}
    a, b = events["a"], events["b"]
    assert json.loads(a.context_json)["library"]["name"] == "custom"
    assert json.loads(b.context_json) == {"ip": "1.2.3.4"}  # its own context wins
    assert envelope.from_ts(a.sent_at) == now + skew
    received = envelope.from_ts(a.received_at)
    assert abs((received - now).total_seconds()) < 30
    # corrected: about five minutes before arrival, whatever the client's clock said
    assert abs((envelope.from_ts(a.timestamp) - (received - timedelta(minutes=5))).total_seconds()) < 1
    assert envelope.from_ts(a.original_timestamp) == now + skew - timedelta(minutes=5)


async def test_import_is_a_batch(edge):
    _, key = await edge.source()
    status, res, _ = await edge.post("/v1/import", {"batch": [track(messageId="imp")]}, key=key)
    assert (status, res) == (200, {"success": True})
    assert [e.message_id for e in await edge.events()] == ["imp"]


async def test_batch_with_invalid_items_accepts_the_valid_and_lists_the_rejected(edge):
    rec, key = await edge.source()
    body = {"writeKey": key, "batch": [
        track(messageId="ok1"),
        track(userId=None, messageId="no-id"),
        "not an object",
        {"type": "purchase", "userId": "u1"},
        track(properties={"blob": "x" * (MAX_EVENT_BYTES + 10)}, messageId="big"),
        track(messageId="ok2"),
    ]}
    status, res, _ = await edge.post("/v1/batch", body)
    assert status == 200 and res["success"] is True
    assert [r["index"] for r in res["rejected"]] == [1, 2, 3, 4]
    errors = {r["index"]: r["error"] for r in res["rejected"]}
    assert "batch[1].userId" in errors[1] and "anonymousId" in errors[1]
    assert "batch[2]" in errors[2] and "JSON object" in errors[2]
    assert "batch[3].type" in errors[3]
    assert str(MAX_EVENT_BYTES) in errors[4]
    assert sorted(e.message_id for e in await edge.events()) == ["ok1", "ok2"]
    for r in res["rejected"]:
        row = await edge.failed(r["failed_event_id"])
        assert row["source_id"] == rec.source_id and row["reason"] == r["error"]
    assert json.loads(bytes((await edge.failed(res["rejected"][1]["failed_event_id"]))["data"])) == "not an object"


# ---- the browser SDK (analytics.js / analytics-next) ---------------------------------------------------


async def test_browser_single_calls_and_batches_as_text_plain_with_cors(edge):
    rec, key = await edge.source("website")
    origin = "https://shop.example.com"
    headers = {"Content-Type": "text/plain", "Origin": origin}
    for path, kind in (("t", "track"), ("i", "identify"), ("p", "page"), ("s", "screen"), ("g", "group"),
                       ("a", "alias")):
        body = {"writeKey": key, "type": kind, "anonymousId": "anon-web", "messageId": f"web-{path}",
                "event": "Clicked", "groupId": "g", "previousId": "p", "sentAt": datetime.now(UTC).isoformat(),
                "context": {"page": {"path": "/"}}, "_metadata": {"bundled": ["Segment.io"]}}
        status, res, h = await edge.post(f"/v1/{path}", data=json.dumps(body).encode(), headers=headers)
        assert (status, res) == (200, {"success": True}), (path, res)
        assert h["Access-Control-Allow-Origin"] == origin
    batch = {"writeKey": key, "sentAt": datetime.now(UTC).isoformat(),
             "batch": [track(userId=None, anonymousId="anon-web", messageId=f"web-b{i}") for i in range(3)]}
    status, res, h = await edge.post("/v1/b", data=json.dumps(batch).encode(), headers=headers)
    assert (status, res) == (200, {"success": True}) and h["Access-Control-Allow-Origin"] == origin
    events = {e.message_id: e for e in await edge.events()}
    assert {f"web-{p}" for p in "tipsga"} | {f"web-b{i}" for i in range(3)} == set(events)
    assert events["web-i"].kind == "identify" and events["web-a"].previous_id == "p"
    assert all(e.source_id == rec.source_id for e in events.values())


async def test_cors_preflight(edge):
    async with edge.http.options(edge.url + "/v1/t", headers={
            "Origin": "https://a.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"}) as r:
        assert r.status == 204
        h = r.headers
        assert h["Access-Control-Allow-Origin"] == "https://a.example"
        assert "POST" in h["Access-Control-Allow-Methods"]
        for name in ("Content-Type", "Authorization", "Content-Encoding"):
            assert name in h["Access-Control-Allow-Headers"]
        assert int(h["Access-Control-Max-Age"]) > 0


async def test_settings_endpoint_points_analytics_next_at_this_host(edge):
    _, key = await edge.source()
    async with edge.http.get(f"{edge.url}/v1/projects/{key}/settings", headers={"Origin": "https://a.example"}) as r:
        assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://a.example"
        s = await r.json()
    seg = s["integrations"]["Segment.io"]
    assert seg["apiKey"] == key and seg["apiHost"] == f"127.0.0.1:{edge.edge.port}/v1" and seg["protocol"] == "http"
    assert s["plan"]["track"]["__default"]["enabled"] is True and s["plan"]["identify"]["__default"]["enabled"]
    assert s["analyticsNextEnabled"] is True and s["metrics"] == {"sampleRate": 0}
    for k, v in {"edgeFunction": {}, "middlewareSettings": {}, "enabledMiddleware": {},
                 "legacyVideoPluginsEnabled": False, "remotePlugins": []}.items():
        assert s[k] == v
    async with edge.http.get(f"{edge.url}/v1/projects/{key}/settings", headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "cdp.example.com"}) as r:
        seg = (await r.json())["integrations"]["Segment.io"]
        assert (seg["apiHost"], seg["protocol"]) == ("cdp.example.com/v1", "https")
    async with edge.http.get(f"{edge.url}/v1/projects/wk_nope/settings") as r:
        assert r.status == 404 and (await r.json())["success"] is False


# ---- bad input: right status, message naming the field/limit, kept, nothing appended ----------------------


async def test_malformed_json(edge):
    rec, key = await edge.source()
    res = await edge.post("/v1/track", key=key, data=b'{"userId": "u1", "event": ')
    row = await assert_refused(edge, res, 400, "body", before=0, source_id=rec.source_id)
    assert "JSON" in res[1]["message"] and res[1]["code"] == "invalid_json"
    assert bytes(row["data"]) == b'{"userId": "u1", "event": '
    res = await edge.post("/v1/batch", key=key, data=b"[1, 2]")
    await assert_refused(edge, res, 400, "JSON object", before=0, source_id=rec.source_id)


async def test_wrong_types(edge):
    rec, key = await edge.source()
    res = await edge.post("/v1/track", track(userId=["u1"]), key=key)
    await assert_refused(edge, res, 400, "userId", before=0, source_id=rec.source_id)
    assert res[1]["field"] == "userId"
    res = await edge.post("/v1/identify", {"userId": "u1", "traits": "plan=pro"}, key=key)
    await assert_refused(edge, res, 400, "traits", before=0, source_id=rec.source_id)
    res = await edge.post("/v1/batch", {"batch": {"type": "track"}}, key=key)
    await assert_refused(edge, res, 400, "batch", before=0, source_id=rec.source_id)


async def test_neither_user_id_nor_anonymous_id(edge):
    rec, key = await edge.source()
    res = await edge.post("/v1/track", {"event": "Viewed"}, key=key)
    row = await assert_refused(edge, res, 400, "userId", before=0, source_id=rec.source_id)
    assert "anonymousId" in row["reason"]


async def test_oversized_event(edge):
    rec, key = await edge.source()
    res = await edge.post("/v1/track", track(properties={"blob": "x" * MAX_EVENT_BYTES}), key=key)
    row = await assert_refused(edge, res, 400, str(MAX_EVENT_BYTES), before=0, source_id=rec.source_id)
    assert res[1]["code"] == "request_too_large" and len(bytes(row["data"])) > MAX_EVENT_BYTES


async def test_oversized_batch(edge):
    rec, key = await edge.source()
    items = [track(properties={"blob": "x" * 10_000}) for _ in range(MAX_BATCH_BYTES // 10_000 + 1)]
    res = await edge.post("/v1/batch", {"batch": items}, key=key)
    await assert_refused(edge, res, 400, str(MAX_BATCH_BYTES), before=0, source_id=rec.source_id)
    # the limit is on the decompressed body: a small gzip that inflates past it is refused too
    bomb = gzip.compress(json.dumps({"batch": items}).encode())
    res = await edge.post("/v1/batch", key=key, data=bomb, headers={"Content-Encoding": "gzip"})
    row = await assert_refused(edge, res, 400, str(MAX_BATCH_BYTES), before=0, source_id=rec.source_id)
    assert bytes(row["data"]) == bomb and row["content_type"] == "application/gzip"


async def test_gzip_body_and_bad_gzip(edge):
    rec, key = await edge.source()
    status, res, _ = await edge.post("/v1/batch", key=key, headers={"Content-Encoding": "gzip"},
                                     data=gzip.compress(json.dumps({"batch": [track(messageId="gz")]}).encode()))
    assert (status, res) == (200, {"success": True})
    assert await edge.count() == 1
    res = await edge.post("/v1/batch", key=key, data=b"this is not gzip", headers={"Content-Encoding": "gzip"})
    row = await assert_refused(edge, res, 400, "Content-Encoding", before=1, source_id=rec.source_id)
    assert "gzip" in row["reason"] and bytes(row["data"]) == b"this is not gzip"
    truncated = gzip.compress(json.dumps({"batch": [track()]}).encode())[:-10]
    res = await edge.post("/v1/batch", key=key, data=truncated, headers={"Content-Encoding": "gzip"})
    await assert_refused(edge, res, 400, "Content-Encoding", before=1, source_id=rec.source_id)


async def test_unknown_or_missing_write_key(edge):
    body = {"batch": [track()]}
    res = await edge.post("/v1/batch", body, key="wk_unknown")
    row = await assert_refused(edge, res, 401, "write key", before=0, source_id=None)
    assert json.loads(bytes(row["data"])) == body
    res = await edge.post("/v1/t", {**track(), "writeKey": "wk_unknown"})
    await assert_refused(edge, res, 401, "writeKey", before=0, source_id=None)
    res = await edge.post("/v1/track", track())
    await assert_refused(edge, res, 401, "writeKey", before=0, source_id=None)
    res = await edge.post("/v1/track", track(), headers={"Authorization": "Bearer abc"})
    await assert_refused(edge, res, 401, "Authorization", before=0, source_id=None)


async def test_disabled_source(edge):
    rec, key = await edge.source("old-site")
    await edge.rt.extras["sources"].set_enabled("old-site", False)
    res = await edge.post("/v1/batch", {"batch": [track()]}, key=key)
    row = await assert_refused(edge, res, 403, "disabled", before=0, source_id=rec.source_id)
    assert "old-site" in row["reason"]


async def test_invalid_timestamp(edge):
    rec, key = await edge.source()
    res = await edge.post("/v1/track", track(timestamp="yesterday at noon"), key=key)
    await assert_refused(edge, res, 400, "timestamp", before=0, source_id=rec.source_id)
    res = await edge.post("/v1/track", track(sentAt=12345), key=key)
    await assert_refused(edge, res, 400, "sentAt", before=0, source_id=rec.source_id)


async def test_deeply_nested_properties(edge):
    rec, key = await edge.source()
    nested: dict = {"leaf": 1}
    for _ in range(12):
        nested = {"n": nested}
    res = await edge.post("/v1/track", track(properties=nested), key=key)
    await assert_refused(edge, res, 400, "properties", before=0, source_id=rec.source_id)
    assert "nested" in res[1]["message"]
    # deeper than the JSON parser itself goes: the body is refused whole
    res = await edge.post("/v1/track", key=key, data=b'{"properties":' + b"[" * 5000 + b"]" * 5000 + b"}")
    await assert_refused(edge, res, 400, "body", before=0, source_id=rec.source_id)


async def test_unknown_route_and_method(edge):
    async with edge.http.get(edge.url + "/v1/track") as r:
        assert r.status == 405 and (await r.json())["success"] is False
    async with edge.http.post(edge.url + "/v1/nothing") as r:
        assert r.status == 404 and (await r.json())["code"] == "not_found"


# ---- rate limits -------------------------------------------------------------------------------


async def test_rate_limited_source_gets_429_with_retry_headers(edge):
    rec, key = await edge.source(rate=1)  # 1/s, a burst of 2
    failed_before = await edge.failed_count()
    statuses = []
    for _ in range(4):
        status, res, h = await edge.post("/v1/track", track(), key=key, headers={"Origin": "https://a.example"})
        statuses.append(status)
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
    assert res["code"] == "rate_limited" and int(h["Retry-After"]) >= 1
    assert h["x-ratelimit-reset"] == h["Retry-After"]
    assert "x-ratelimit-reset" in h["Access-Control-Expose-Headers"]  # readable by the browser SDK
    assert await edge.count() == statuses.count(200)
    assert await edge.failed_count() == failed_before  # a 429 is for retrying, not a rejection


# ---- Shopify webhooks -------------------------------------------------------------------------------


def shopify_headers(secret: str, body: bytes, topic: str = "orders/create") -> dict:
    sig = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return {"X-Shopify-Hmac-Sha256": sig, "X-Shopify-Topic": topic, "X-Shopify-Shop-Domain": "demo.myshopify.com",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()), "Content-Type": "application/json"}


async def test_shopify_webhook(edge):
    pytest.importorskip("cdp_ingest.connectors.shopify")
    fixture = SHOPIFY_FIXTURES / "orders_create.json"
    if not fixture.exists():
        pytest.skip("no Shopify order fixture")
    body = fixture.read_bytes()
    rec, _ = await edge.source("shop", kind="shopify", secret="shpss_test")
    status, res, _ = await edge.post("/v1/webhooks/shopify/shop", data=body, headers=shopify_headers("shpss_test", body))
    assert status == 200 and res["success"] is True, res
    events = await edge.events()
    assert events and all(e.source_id == rec.source_id for e in events)
    assert "Order Completed" in {e.event for e in events}
    n = len(events)
    # wrong signature: 401, kept, nothing appended
    res = await edge.post("/v1/webhooks/shopify/shop", data=body, headers=shopify_headers("wrong", body))
    row = await assert_refused(edge, res, 401, "X-Shopify-Hmac-Sha256", before=n, source_id=rec.source_id)
    assert bytes(row["data"]) == body
    # unsupported topic: 400 naming it, kept
    res = await edge.post("/v1/webhooks/shopify/shop", data=body,
                          headers=shopify_headers("shpss_test", body, topic="products/create"))
    await assert_refused(edge, res, 400, "topic", before=n, source_id=rec.source_id)
    # unknown source, and a source without a webhook secret
    res = await edge.post("/v1/webhooks/shopify/nope", data=body, headers=shopify_headers("shpss_test", body))
    await assert_refused(edge, res, 404, "source_name", before=n, source_id=None)
    plain, _ = await edge.source("plain")
    res = await edge.post("/v1/webhooks/shopify/plain", data=body, headers=shopify_headers("", body))
    await assert_refused(edge, res, 403, "webhook secret", before=n, source_id=plain.source_id)


# ---- health, logging, graceful stop ----------------------------------------------------------------------


async def test_health(edge):
    async with edge.http.get(edge.url + "/health") as r:
        assert r.status == 200 and (await r.json())["status"] == "SERVING"


async def test_one_canonical_log_line_per_request_without_bodies(edge):
    rec, key = await edge.source("logged")
    with structlog.testing.capture_logs() as logs:
        await edge.post("/v1/track", track(userId="secret-user", properties={"email": "x@y.z"}), key=key)
        async with edge.http.get(f"{edge.url}/v1/projects/{key}/settings"):
            pass
    lines = [entry for entry in logs if entry["event"] == "http"]
    assert len(lines) == 2
    first = lines[0]
    assert {k: first[k] for k in ("method", "path", "status", "source")} == {
        "method": "POST", "path": "/v1/track", "status": 200, "source": "logged"}
    assert isinstance(first["duration_ms"], float)
    assert lines[1]["path"] == "/v1/projects/{write_key}/settings"  # the route, never the key
    text = json.dumps(logs)
    assert "secret-user" not in text and "x@y.z" not in text and key not in text


async def test_stop_finishes_in_flight_requests_and_refuses_new_ones(edge):
    _, key = await edge.source()
    body = json.dumps({"batch": [track(messageId="inflight")]}).encode()
    auth = base64.b64encode(f"{key}:".encode()).decode()
    reader, writer = await asyncio.open_connection("127.0.0.1", edge.edge.port)
    writer.write((f"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body[:10])
    await writer.drain()
    await asyncio.sleep(0.2)  # the request is in flight, its body half sent
    stopping = asyncio.create_task(edge.edge.stop())
    await asyncio.sleep(0.2)
    assert not edge.edge.serving
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", edge.edge.port)  # no longer accepting
    writer.write(body[10:])
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    assert b" 200 " in status_line
    writer.close()
    await stopping
    assert [e.message_id for e in await edge.events()] == ["inflight"]
