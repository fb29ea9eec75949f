"""The HTTP edge (CDP_HTTP_PORT, 8088): Segment's HTTP Tracking API, the browser SDK's
endpoints, its settings, and webhooks. Everything received becomes `Call`s handed to the
Pipeline; a request is either processed by it or refused whole (and kept in failed events).

Routes
- `POST /v1/batch`, `/v1/import` (a batch), `/v1/track`, `/v1/identify`, `/v1/page`,
  `/v1/screen`, `/v1/group`, `/v1/alias` (one call): Segment's HTTP Tracking API.
- `POST /v1/b` (a batch), `/v1/t`, `/v1/i`, `/v1/p`, `/v1/s`, `/v1/g`, `/v1/a`: what
  analytics.js / @segment/analytics-next send (`text/plain`, writeKey in the body).
- `OPTIONS /v1/...`: CORS preflight; every `/v1/` answer carries CORS headers for any origin.
- `GET /v1/projects/{writeKey}/settings`: the settings analytics-next starts with, pointing
  it at this host.
- `POST /v1/webhooks/shopify/{source_name}`: Shopify webhooks (HMAC-verified).
- `GET /health`: 200 while serving, 503 once stopping.

Auth: Basic with the write key as user name and an empty password, or `writeKey` in the
JSON body. Bodies may be gzip (or deflate) encoded; limits apply to the decompressed body.

Answers: `200 {"success": true}`; a batch with invalid items still answers 200 and adds
`"rejected": [{"index", "error", "failed_event_id"}]` (the valid items are in the log, the
invalid ones in failed events). Errors: `{"success": false, "code", "message"[, "field"]
[, "failed_event_id"]}` with 400 (body, JSON, limits, invalid single call), 401 (write key),
403 (disabled source), 404, 429 (`Retry-After`, `x-ratelimit-reset`), 503 (retry).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import zlib
from dataclasses import dataclass

import asyncpg
import nats.errors
from aiohttp import web

from cdp_core import envelope
from cdp_core.errors import InvalidArgument, NotFound
from cdp_core.failed import JSON, Rejection, record_rejections
from cdp_core.logs import get_logger

from .domain.calls import MAX_BATCH_BYTES, MAX_BATCH_CALLS, MAX_EVENT_BYTES, Call, call_from_json, may_hold_big_int
from .pipeline import Outcome, Pipeline, RateLimited
from .sources import SourceRecord, SourceRegistry

try:  # a faster parser for valid JSON; json.loads still decides every error (and NaN, huge ints)
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is optional
    _fast_loads = None

log = get_logger(__name__)

ENTRY = "ingest.http"
SHOPIFY_ENTRY = "ingest.shopify"
GZIP = "application/gzip"
DEFLATE = "application/zlib"
OCTETS = "application/octet-stream"
# Bodies are read up to this many bytes (what is kept of a larger one); the limits that
# answer 400 are MAX_EVENT_BYTES / MAX_BATCH_BYTES of the decompressed body.
MAX_READ_BYTES = 4 * 1024 * 1024
MAX_WEBHOOK_BYTES = 4 * 1024 * 1024
SETTINGS_MAX_AGE_S = 60
# what the canonical log line says of a request (set by handlers)
SOURCE_NAME = web.RequestKey("source", str)
SOURCE_ID = web.RequestKey("source_id", str)
CORS_MAX_AGE_S = 86400
CORS_ALLOW_HEADERS = "Content-Type, Authorization, Content-Encoding, X-Retry-Count"
CORS_EXPOSE_HEADERS = "Retry-After, x-ratelimit-reset"

# path segment -> call kind (None: a batch)
SEGMENT_PATHS: dict[str, str | None] = {
    "batch": None, "import": None, "track": "track", "identify": "identify", "page": "page",
    "screen": "screen", "group": "group", "alias": "alias",
}
BROWSER_PATHS: dict[str, str | None] = {
    "b": None, "t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias",
}
# errors worth a retry: the client gets 503 and sends again (same messageIds: applied once)
TRANSIENT = (OSError, asyncio.TimeoutError, nats.errors.Error, asyncpg.PostgresConnectionError,
             asyncpg.InterfaceError, asyncpg.exceptions.TooManyConnectionsError)


class Refused(Exception):
    """A request refused whole: answered with `status`, and kept in failed events when
    `keep` (with the reason, the body and the source when known)."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None, keep: bool = True,
                 headers: dict[str, str] | None = None):
        super().__init__(message if field is None else f"{field}: {message}")
        self.status, self.code, self.field, self.keep, self.headers = status, code, field, keep, headers or {}


def error_response(status: int, code: str, message: str, *, field: str | None = None,
                   failed_event_id: int = 0, headers: dict[str, str] | None = None) -> web.Response:
    body: dict = {"success": False, "code": code, "message": message}
    if field:
        body["field"] = field
    if failed_event_id:
        body["failed_event_id"] = failed_event_id
    return web.json_response(body, status=status, headers=headers)


SUCCESS = json.dumps({"success": True})


def ok_response(extra: dict | None = None) -> web.Response:
    if not extra:
        return web.Response(text=SUCCESS, content_type="application/json")
    return web.json_response({"success": True, **extra})


@dataclass
class Body:
    """A request body as received, and (once decoded) as JSON text."""

    raw: bytes
    complete: bool  # False: larger than MAX_READ_BYTES, `raw` is its beginning
    encoding: str  # "" (identity), "gzip", "deflate"
    text: bytes | None = None  # decompressed

    def kept(self) -> tuple[bytes, str]:
        """What failed events keep: the decoded body when there is one, else the bytes received."""
        if self.text is not None:
            return self.text, JSON
        return self.raw, {"gzip": GZIP, "deflate": DEFLATE}.get(self.encoding, JSON if self.complete else OCTETS)


async def read_body(request: web.Request, cap: int) -> Body:
    chunks, n = [], 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        chunks.append(chunk)
        n += len(chunk)
        if n > cap:
            return Body(b"".join(chunks)[:cap], False, "")
    return Body(b"".join(chunks), True, "")


def content_encoding(request: web.Request) -> str:
    enc = request.headers.get("Content-Encoding", "").strip().lower()
    if enc in ("", "identity"):
        return ""
    if enc in ("gzip", "x-gzip"):
        return "gzip"
    if enc == "deflate":
        return "deflate"
    raise Refused(400, "invalid_request", "only gzip, deflate or identity are supported", field="Content-Encoding")


def decompress(data: bytes, encoding: str, limit: int, limit_name: str) -> bytes:
    """The decompressed body, reading at most `limit` + 1 bytes of output (no bombs)."""
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    out = bytearray()
    try:
        while True:
            d = zlib.decompressobj(wbits)
            out += d.decompress(data, limit + 1 - len(out))
            if len(out) > limit:
                raise Refused(400, "request_too_large",
                              f"the decompressed body is over {limit} bytes; the limit is {limit} ({limit_name})",
                              field="body")
            if not d.eof:
                raise Refused(400, "invalid_request", f"is not valid {encoding} data (truncated)",
                              field="Content-Encoding")
            data = d.unused_data
            if not data.strip(b"\x00"):  # gzip allows several members, and trailing zeros
                return bytes(out)
            if encoding != "gzip":
                raise Refused(400, "invalid_request", "is not valid deflate data (trailing bytes)",
                              field="Content-Encoding")
    except zlib.error:
        raise Refused(400, "invalid_request", f"is not valid {encoding} data", field="Content-Encoding") from None


def basic_write_key(request: web.Request) -> str | None:
    """The write key of a Basic Authorization header (user name, empty password); None without one."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, cred = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Refused(401, "unauthorized", "must be Basic, with the write key as user name", field="Authorization")
    try:
        user = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        raise Refused(401, "unauthorized", "is not valid Basic credentials", field="Authorization") from None
    return user


def parse_json(text: bytes) -> dict:
    try:
        try:
            if _fast_loads is None or may_hold_big_int(text):
                raise ValueError
            obj = _fast_loads(text)
        except (ValueError, TypeError, RecursionError):  # anything orjson refuses: json.loads decides
            obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        where = f" ({e.msg} at position {e.pos})" if isinstance(e, json.JSONDecodeError) else " (not UTF-8)"
        raise Refused(400, "invalid_json", f"is not valid JSON{where}", field="body") from None
    except RecursionError:
        raise Refused(400, "invalid_json", "is nested too deeply to parse", field="body") from None
    if not isinstance(obj, dict):
        raise Refused(400, "invalid_request", f"must be a JSON object, not {type(obj).__name__}", field="body")
    return obj


class HttpEdge:
    def __init__(self, pipeline: Pipeline, sources: SourceRegistry, *, host: str, port: int,
                 shutdown_grace_s: float = 10.0):
        self.pipeline, self.sources = pipeline, sources
        self.host, self.port = host, port
        self.shutdown_grace_s = shutdown_grace_s
        self.serving = False
        self.app = self._build()
        self._runner: web.AppRunner | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_READ_BYTES)
        r = app.router
        for name, kind in {**SEGMENT_PATHS, **BROWSER_PATHS}.items():
            r.add_post(f"/v1/{name}", self._segment_handler(kind))
        r.add_get("/v1/projects/{write_key}/settings", self.settings)
        r.add_post("/v1/webhooks/shopify/{source_name}", self.shopify)
        r.add_get("/health", self.health)
        return app

    # ---- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        # auto_decompress off: we inflate bodies ourselves, bounded by the limits. The
        # runner's own shutdown wait is short: `stop` has waited the grace period already.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=min(1.0, self.shutdown_grace_s),
                                     handle_signals=False, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = self._runner.addresses[0][1]
        self.serving = True
        log.info("http edge started", http_port=self.port)

    async def stop(self) -> None:
        """Stops accepting connections, lets in-flight requests finish (those still
        uploading their body included) for up to the grace period, then closes."""
        self.serving = False
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        for site in list(runner.sites):
            await site.stop()  # no new connections
        try:
            await asyncio.wait_for(self._idle.wait(), self.shutdown_grace_s)
        except TimeoutError:
            log.warning("http requests still in flight after the grace period", in_flight=self._in_flight)
        await runner.cleanup()  # closes idle keep-alive connections
        log.info("http edge stopped")

    # ---- middleware: errors as JSON, CORS, one canonical log line ----------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler) -> web.StreamResponse:
        t0 = time.perf_counter()
        self._in_flight += 1
        self._idle.clear()
        try:
            resp = await self._handle(request, handler)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()
        if not self.serving:
            resp.force_close()  # stopping: no keep-alive
        resource = getattr(request.match_info.route, "resource", None)
        log.info("http", method=request.method,  # the route, never the raw path (it may hold a write key)
                 path=resource.canonical if resource is not None else "(no route)",
                 status=resp.status, duration_ms=round((time.perf_counter() - t0) * 1000, 2),
                 source=request.get(SOURCE_NAME, ""))
        return resp

    async def _handle(self, request: web.Request, handler) -> web.StreamResponse:
        is_v1 = request.path.startswith("/v1/") and not request.path.startswith("/v1/webhooks/")
        try:
            if is_v1 and request.method == "OPTIONS":
                resp = self.preflight()
            else:
                resp = await handler(request)
        except web.HTTPException as e:  # router: no route, method not allowed, ...
            code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "invalid_request")
            resp = error_response(e.status, code, e.reason, headers={"Allow": e.headers["Allow"]}
                                  if "Allow" in e.headers else None)
        except Exception as e:  # noqa: BLE001 - answered, logged; the client retries
            if isinstance(e, TRANSIENT):
                log.warning("http request failed; retryable", error=type(e).__name__)
                resp = error_response(503, "unavailable", "temporarily unavailable; retry", headers={"Retry-After": "1"})
            else:
                log.exception("http request failed", error=type(e).__name__)
                resp = error_response(500, "internal", "internal error")
        if is_v1:
            origin = request.headers.get("Origin")
            resp.headers["Access-Control-Allow-Origin"] = origin or "*"
            resp.headers["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
            if origin:
                resp.headers["Vary"] = "Origin"
        return resp

    @staticmethod
    def preflight() -> web.Response:
        """CORS preflight of any /v1/ path (answered by the middleware, before routing)."""
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
            "Access-Control-Max-Age": str(CORS_MAX_AGE_S),
        })

    async def health(self, request: web.Request) -> web.Response:
        if not self.serving:
            return web.json_response({"status": "NOT_SERVING"}, status=503)
        return web.json_response({"status": "SERVING"})

    # ---- sources ----------------------------------------------------------------------

    async def _source(self, request: web.Request, write_key: object) -> SourceRecord:
        if not isinstance(write_key, str) or not write_key:
            raise Refused(401, "unauthorized", "a write key is required: Basic auth user name or writeKey",
                          field="writeKey")
        rec = await self.sources.by_write_key(write_key)
        if rec is None:
            raise Refused(401, "unauthorized", "unknown write key", field="writeKey")
        request[SOURCE_NAME] = rec.name
        request[SOURCE_ID] = rec.source_id
        if not rec.enabled:
            raise Refused(403, "forbidden", f"source {rec.name!r} is disabled", field="writeKey")
        return rec

    async def _refuse(self, request: web.Request, entry: str, r: Refused, data: bytes, content_type: str):
        fid = 0
        if r.keep:
            fid = await self.pipeline.reject_request(entry, str(r), data, source_id=request.get(SOURCE_ID),
                                                     content_type=content_type)
        return error_response(r.status, r.code, str(r), field=r.field, failed_event_id=fid, headers=r.headers)

    def _admit(self, rec: SourceRecord, n: int) -> None:
        if n <= 0:
            return
        try:
            self.pipeline.admit(rec.source_id, n, rec.rate_limit_per_s)
        except RateLimited as e:
            s = str(e.retry_after_s)
            raise Refused(429, "rate_limited", f"source {rec.name!r} is over its rate limit; retry after {s} s",
                          keep=False, headers={"Retry-After": s, "x-ratelimit-reset": s}) from None

    # ---- Segment's API and the browser SDK's ------------------------------------------

    def _segment_handler(self, kind: str | None):
        async def handler(request: web.Request) -> web.Response:
            return await self._segment(request, kind)
        return handler

    async def _segment(self, request: web.Request, kind: str | None) -> web.Response:
        received = envelope.now()
        body = await read_body(request, MAX_READ_BYTES)
        try:
            return await self._segment_body(request, kind, body, received)
        except Refused as r:
            data, content_type = body.kept()
            # a single-call route names its kind in the entry, so a replay knows it
            return await self._refuse(request, f"{ENTRY}:{kind}" if kind else ENTRY, r, data, content_type)

    async def _segment_body(self, request: web.Request, kind: str | None, body: Body, received) -> web.Response:
        limit, limit_name = (MAX_BATCH_BYTES, "MAX_BATCH_BYTES, per batch") if kind is None else (
            MAX_EVENT_BYTES, "MAX_EVENT_BYTES, per call")
        body.encoding = content_encoding(request)
        header_key = basic_write_key(request)
        rec = await self._source(request, header_key) if header_key is not None else None
        too_large = Refused(400, "request_too_large",
                            f"the body is over {MAX_READ_BYTES} bytes; the limit is {limit} ({limit_name})", field="body")
        if not body.complete:
            raise too_large
        if body.encoding:
            body.text = decompress(body.raw, body.encoding, limit, limit_name)
        else:
            if len(body.raw) > limit:
                raise Refused(400, "request_too_large",
                              f"the body is {len(body.raw)} bytes; the limit is {limit} ({limit_name})", field="body")
            body.text = body.raw
        obj = parse_json(body.text)
        if rec is None:
            rec = await self._source(request, obj.get("writeKey"))

        if kind is not None:
            call = call_from_json(obj, kind=kind)
            self._admit(rec, 1)
            [o] = await self.pipeline.submit([call], rec.source, entry=ENTRY, received_at=received)
            if not o.ok:
                return error_response(400, "invalid_request", o.error, field=error_field(o.error),
                                      failed_event_id=o.failed_event_id)
            return ok_response()

        items = obj.get("batch")
        if not isinstance(items, list):
            raise Refused(400, "invalid_request",
                          "is required and must be a list of calls" if items is None else
                          f"must be a list of calls, not {type(items).__name__}", field="batch")
        if len(items) > MAX_BATCH_CALLS:
            raise Refused(400, "request_too_large",
                          f"has {len(items)} calls; the limit is {MAX_BATCH_CALLS} (MAX_BATCH_CALLS)", field="batch")
        calls: list[Call] = []
        positions: list[int] = []
        unshaped: list[tuple[int, str, bytes]] = []  # items that are not calls at all
        for i, item in enumerate(items):
            try:
                calls.append(call_from_json(item, path=f"batch[{i}]", defaults=obj))
                positions.append(i)
            except InvalidArgument as e:
                unshaped.append((i, str(e), json.dumps(item, ensure_ascii=False).encode()))
        self._admit(rec, len(calls))
        outcomes = await self.pipeline.submit(calls, rec.source, entry=ENTRY, received_at=received) if calls else []
        rejected = [{"index": positions[o.index], "error": o.error, "failed_event_id": o.failed_event_id}
                    for o in outcomes if not o.ok]
        if unshaped:
            ids = await record_rejections(self.pipeline.pool, ENTRY, rec.source_id,
                                          [Rejection(reason, data, JSON) for _, reason, data in unshaped])
            self.pipeline.stats.count(rec.source_id, 0, len(unshaped))
            rejected += [{"index": i, "error": reason, "failed_event_id": fid}
                         for (i, reason, _), fid in zip(unshaped, ids, strict=True)]
            rejected.sort(key=lambda r: r["index"])
        return ok_response({"rejected": rejected} if rejected else None)

    # ---- the browser SDK's settings -----------------------------------------------------

    async def settings(self, request: web.Request) -> web.Response:
        write_key = request.match_info["write_key"]
        rec = await self.sources.by_write_key(write_key)
        if rec is None:
            return error_response(404, "not_found", "unknown write key", field="writeKey")
        request[SOURCE_NAME] = rec.name
        if not rec.enabled:
            return error_response(403, "forbidden", f"source {rec.name!r} is disabled", field="writeKey")
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or request.host
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() or request.scheme
        return web.json_response(browser_settings(write_key, host, "https" if proto == "https" else "http"),
                                 headers={"Cache-Control": f"public, max-age={SETTINGS_MAX_AGE_S}"})

    # ---- webhooks -------------------------------------------------------------------------

    async def shopify(self, request: web.Request) -> web.Response:
        received = envelope.now()
        body = await read_body(request, MAX_WEBHOOK_BYTES)
        try:
            return await self._shopify(request, body, received)
        except Refused as r:
            return await self._refuse(request, SHOPIFY_ENTRY, r, body.raw, JSON if body.complete else OCTETS)

    async def _shopify(self, request: web.Request, body: Body, received) -> web.Response:
        try:
            from .connectors import shopify  # written separately; this module works before it exists
        except ImportError:
            raise Refused(501, "not_implemented", "the Shopify connector is not installed", field="path") from None
        try:
            rec = await self.sources.by_name(request.match_info["source_name"])
        except NotFound:
            raise Refused(404, "not_found", "no source with this name", field="source_name") from None
        request[SOURCE_NAME], request[SOURCE_ID] = rec.name, rec.source_id
        if not rec.enabled:
            raise Refused(403, "forbidden", f"source {rec.name!r} is disabled", field="source_name")
        if not rec.webhook_secret:
            raise Refused(403, "forbidden", f"source {rec.name!r} has no webhook secret", field="source_name")
        if not body.complete:
            raise Refused(400, "request_too_large", f"the body exceeds the limit of {MAX_WEBHOOK_BYTES} bytes",
                          field="body")
        if not shopify.verify_hmac(rec.webhook_secret, body.raw, request.headers.get("X-Shopify-Hmac-Sha256", "")):
            raise Refused(401, "unauthorized", "does not match the body signed with the source's webhook secret",
                          field="X-Shopify-Hmac-Sha256")
        topic = request.headers.get("X-Shopify-Topic", "")
        if not topic:
            raise Refused(400, "invalid_request", "is required", field="X-Shopify-Topic")
        payload = parse_json(body.raw)
        try:
            calls = shopify.calls_from_webhook(topic, payload, shop_domain=request.headers.get("X-Shopify-Shop-Domain", ""),
                                               webhook_id=request.headers.get("X-Shopify-Webhook-Id", ""))
        except InvalidArgument as e:
            raise Refused(400, "invalid_request", str(e)) from None
        self._admit(rec, len(calls))
        outcomes = await self.pipeline.submit(calls, rec.source, entry=SHOPIFY_ENTRY, received_at=received)
        rejected = [rejection(o) for o in outcomes if not o.ok]
        return ok_response({"rejected": rejected} if rejected else None)


def error_field(error: str) -> str | None:
    """The field an error message names ("batch[2].userId: is required" -> "batch[2].userId")."""
    head, sep, _ = error.partition(": ")
    return head if sep and " " not in head else None


def rejection(o: Outcome) -> dict:
    return {"index": o.index, "error": o.error, "failed_event_id": o.failed_event_id}


def browser_settings(write_key: str, host: str, protocol: str) -> dict:
    """The settings object analytics-next loads (cdnURL/v1/projects/{writeKey}/settings)."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": f"{host}/v1",
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            },
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }

