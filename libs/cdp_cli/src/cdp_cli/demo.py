"""`cdp demo`: what the platform makes of customer data.

- `cdp demo` (the default; `run_world`): a simulated world (cdp_sim) loaded through the real
  paths (Segment calls to the HTTP edge, Shopify webhooks, CRM and POS CSV imports), then a
  summary of what identity and profile made of it, compared with the ground truth.
- `cdp demo --sample` (`run_sample`): a short customer journey sent through gRPC ingest. An
  anonymous visitor browses two products, signs up (Identify with the same anonymous_id and
  a new user_id), then checks out and completes an order. A fresh user id per run makes a
  new profile each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console

from cdp.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from cdp.profile.v1 import profile_pb2

from .client import RPC_TIMEOUT_S, CliError, rpc_error, stub
from .profiles import ProfileNotFound, get_profile, lookup_request

POLL_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.25
CONTEXT = {"library": {"name": "cdp-cli", "version": "0.1.0"}, "ip": "203.0.113.7", "locale": "en-GB"}


@dataclass
class SampleJourney:
    user_id: str
    anonymous_id: str
    email: str
    calls: list[tuple[str, ingest_pb2.TrackRequest | ingest_pb2.IdentifyRequest]] = field(default_factory=list)


def _ts(dt: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


def sample_journey(now: datetime | None = None) -> SampleJourney:
    """The requests of one sample journey, timed over the last few minutes."""
    run = uuid.uuid4().hex[:10]
    j = SampleJourney(user_id=f"demo-user-{run}", anonymous_id=f"demo-anon-{run}", email=f"ada.{run}@example.com")
    now = now or datetime.now(UTC)
    start = now - timedelta(minutes=5)

    def common(step: int, *, user: bool, anon: bool, page: str) -> ingest_pb2.EventCommon:
        context = dict(CONTEXT, page={"path": page, "url": f"https://shop.example.com{page}"})
        return ingest_pb2.EventCommon(
            message_id=f"demo-{run}-{step}",
            user_id=j.user_id if user else "",
            anonymous_id=j.anonymous_id if anon else "",
            context_json=json.dumps(context),
            timestamp=_ts(start + timedelta(minutes=step)),
            sent_at=_ts(now),
        )

    def track(step: int, event: str, props: dict, *, user: bool, anon: bool, page: str) -> None:
        req = ingest_pb2.TrackRequest(
            common=common(step, user=user, anon=anon, page=page), event=event, properties_json=json.dumps(props)
        )
        j.calls.append(("Track", req))

    track(0, "Product Viewed", {"product_id": "sku-42", "name": "Trail Runner", "price": 89.0, "currency": "EUR"},
          user=False, anon=True, page="/products/sku-42")
    track(1, "Product Viewed", {"product_id": "sku-7", "name": "Rain Jacket", "price": 129.0, "currency": "EUR"},
          user=False, anon=True, page="/products/sku-7")
    traits = {"email": j.email, "first_name": "Ada", "plan": "pro"}
    j.calls.append(("Identify", ingest_pb2.IdentifyRequest(
        common=common(2, user=True, anon=True, page="/signup"), traits_json=json.dumps(traits))))
    track(3, "Checkout Started", {"order_id": f"ord-{run}", "value": 218.0, "currency": "EUR"},
          user=True, anon=False, page="/checkout")
    track(4, "Order Completed", {"order_id": f"ord-{run}", "revenue": 218.0, "currency": "EUR",
                                 "products": [{"product_id": "sku-42"}, {"product_id": "sku-7"}]},
          user=True, anon=False, page="/checkout/done")
    return j


def _describe(kind: str, req) -> str:
    c = req.common
    who = ", ".join(f"{k}={v}" for k, v in (("user_id", c.user_id), ("anonymous_id", c.anonymous_id)) if v)
    return f"{kind} {req.event!r} ({who})" if kind == "Track" else f"{kind} ({who}) traits={req.traits_json}"


async def send(j: SampleJourney, token: str, log: Console) -> None:
    async with stub("ingest", ingest_pb2_grpc.IngestServiceStub, token) as s:
        for kind, req in j.calls:
            try:
                resp = await getattr(s, kind)(req, timeout=RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                raise rpc_error("ingest", e) from None
            log.print(f"[green]sent[/green] {_describe(kind, req)} → event {resp.event_id}")


async def wait_for_profile(j: SampleJourney, token: str, log: Console,
                           timeout: float = POLL_TIMEOUT_S) -> tuple[profile_pb2.Profile | None, bool]:
    """Poll GetProfile(user_id) until event_count reaches the events sent.
    Returns (last profile seen or None, whether it caught up)."""
    req = lookup_request("user_id", j.user_id)
    want = len(j.calls)
    deadline = time.monotonic() + timeout
    last: profile_pb2.Profile | None = None
    with log.status(f"waiting for profile user_id={j.user_id} to count {want} events…"):
        while True:
            try:
                last = await get_profile(req, token)
                if last.event_count >= want:
                    return last, True
            except ProfileNotFound:
                pass
            if time.monotonic() >= deadline:
                return last, False
            await asyncio.sleep(POLL_INTERVAL_S)


async def run_sample(token: str, log: Console, timeout: float = POLL_TIMEOUT_S) -> profile_pb2.Profile:
    j = sample_journey()
    log.print(f"Sample journey: anonymous_id={j.anonymous_id} → user_id={j.user_id} ({j.email})")
    await send(j, token, log)
    profile, complete = await wait_for_profile(j, token, log, timeout)
    if profile is None:
        raise CliError(f"no profile for user_id={j.user_id} after {timeout:.0f}s: are identity and profile running? "
                       "see `cdp dev status` and .cdp/logs/")
    if not complete:
        raise IncompleteProfile(profile, len(j.calls), timeout)
    return profile


class IncompleteProfile(CliError):
    def __init__(self, profile: profile_pb2.Profile, want: int, timeout: float):
        super().__init__(f"profile {profile.profile_id} counts {profile.event_count} of the {want} events sent "
                         f"after {timeout:.0f}s")
        self.profile = profile


# =====================================================================================
# `cdp demo` (the default): a simulated world loaded through the real paths
# =====================================================================================
#
# A world of the simulator (cdp_sim) is generated into a temporary folder and loaded the
# way its data would reach a CDP: the web/app Segment calls through the HTTP edge's
# POST /v1/batch, the Shopify webhooks as Shopify delivers them (recorded headers and
# bodies, HMAC-signed with the simulator's webhook secret), the CRM contacts and POS
# receipts as CSV imports. Then it waits for identity and profile to catch up and
# compares what the platform made of a sample of people with the ground truth.

WORLD_SOURCES = (  # (name, kind): the demo's sources, reused when they exist
    ("demo-web", "web"), ("demo-shopify", "shopify"), ("demo-crm", "crm"), ("demo-pos", "pos"),
)
HTTP_BATCH = 200  # Segment calls per POST /v1/batch
HTTP_CONCURRENCY = 4  # requests in flight on the Segment path
WEBHOOK_CONCURRENCY = 4
HTTP_MAX_RETRIES = 10
CATCH_UP_TIMEOUT_S = 180.0
SHOWN_PEOPLE = 5  # people shown in detail
QUALITY_SAMPLE = 200  # people whose identifiers are resolved against the truth
KEY_TRAITS = ("firstName", "lastName", "email", "phone", "birthday", "gender", "address", "loyalty_tier",
              "accepts_marketing", "shopify_customer_id", "orders_count", "total_spent", "company")

# The simulator's CSV columns (docs/simulator.md) -> the CSV import's targets (docs/connectors.md).
CRM_MAPPING = """\
kind: identify
columns:
  crm_id: identifier.crm_id
  email: email
  phone: phone
  loyalty_id: identifier.loyalty_id
  first_name: trait.firstName
  last_name: trait.lastName
  second_last_name: trait.secondLastName
  birth_date: {to: trait.birthday, type: date}
  gender: trait.gender
  street: trait.address.street
  postcode: trait.address.postalCode
  city: trait.address.city
  country: trait.address.country
  company: trait.company
  email_opt_in: {to: trait.email_opt_in, type: bool}
  sms_opt_in: {to: trait.sms_opt_in, type: bool}
  whatsapp_opt_in: {to: trait.whatsapp_opt_in, type: bool}
  source: trait.crm_source
  created_at: {to: trait.createdAt, type: datetime, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Madrid}
  updated_at: {to: timestamp, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Madrid}
"""
POS_MAPPING = """\
kind: track
event: Order Completed
group_by: receipt_id
anonymous_from: receipt_id
columns:
  receipt_id: property.order_id
  store_id: property.store_id
  store_city: property.store_city
  purchased_at: {to: timestamp, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Madrid}
  loyalty_id: identifier.loyalty_id
  customer_email: email
  customer_phone: phone
  customer_first_name: context.traits.firstName
  customer_last_name: context.traits.lastName
  customer_postcode: context.traits.address.postalCode
  payment_method: property.payment_method
  currency: property.currency
  receipt_total: {to: property.total, type: float}
  coupon: property.coupon
  sku: product.sku
  product_id: product.product_id
  product_name: product.name
  category: product.category
  quantity: {to: product.quantity, type: int}
  unit_price: {to: product.price, type: float}
  line_discount: {to: product.discount, type: float}
"""


@dataclass
class PathStats:
    """What one path sent and what ingest made of it."""

    name: str
    via: str
    unit: str  # what `sent` counts
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    not_sent: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, message: str, n: int = 1) -> None:
        key = message if len(self.errors) < 20 or message in self.errors else "(other)"
        self.errors[key] = self.errors.get(key, 0) + n

    def to_dict(self) -> dict:
        return {"via": self.via, "unit": self.unit, "sent": self.sent, "accepted": self.accepted,
                "rejected": self.rejected, "not_sent": self.not_sent, "requests": self.requests,
                "retries": self.retries, "seconds": round(self.seconds, 2),
                "errors": [{"error": k, "count": v} for k, v in sorted(self.errors.items(), key=lambda kv: -kv[1])]}


def nats_url() -> str | None:
    """Where the stack's NATS is (CDP_NATS_URL, else .cdp/stack.json); None when unknown."""
    import os

    from .client import read_stack

    if os.environ.get("CDP_NATS_URL"):
        return os.environ["CDP_NATS_URL"]
    try:
        return (read_stack() or {}).get("nats_url")
    except CliError:
        return None


# What the demo adds to identity's active rules: the world's custom identifier types, its
# country, and one CRM contact per profile (two CRM ids are two people).
DEMO_RULES = {"identifier_types": ["crm_id", "loyalty_id"], "default_region": "ES",
              "limits": {"user_id": 1}, "merge_protection": ["user_id", "crm_id"],
              "shared_max_profiles": {"anonymous_id": 1, "email": 1, "phone": 1},
              "priority": ["user_id", "crm_id", "email", "phone", "loyalty_id", "device_id", "anonymous_id"]}


async def _apply_identity_rules(token: str, log: Console) -> None:
    """Identity's active rules with DEMO_RULES set (kept as they are when already set)."""
    import yaml

    from cdp.identity.v1 import identity_pb2, identity_pb2_grpc

    async with stub("identity", identity_pb2_grpc.IdentityServiceStub, token) as s:
        try:
            current = await s.GetRules(identity_pb2.GetRulesRequest(), timeout=RPC_TIMEOUT_S)
            doc = yaml.safe_load(current.yaml) or {}
            if all(doc.get(k) == v for k, v in DEMO_RULES.items()):
                return
            doc.update(DEMO_RULES)
            applied = await s.ApplyRules(identity_pb2.ApplyRulesRequest(yaml=yaml.safe_dump(doc, sort_keys=False)),
                                         timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            raise rpc_error("identity", e) from None
    log.print(f"identity rules version {applied.version}: custom identifiers crm_id, loyalty_id; phones read in ES")


def _basic(write_key: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


async def _ensure_sources(token: str, webhook_secret: str, log: Console) -> dict[str, tuple[ingest_pb2.Source, str]]:
    """The demo's sources with a fresh write key each: created, or rotated when they exist."""
    out: dict[str, tuple[ingest_pb2.Source, str]] = {}
    async with stub("ingest", ingest_pb2_grpc.SourceServiceStub, token) as s:
        try:
            existing = {x.name: x for x in (await s.ListSources(ingest_pb2.ListSourcesRequest(),
                                                                timeout=RPC_TIMEOUT_S)).sources}
            for name, kind in WORLD_SOURCES:
                secret = webhook_secret if kind == "shopify" else ""
                if name in existing:
                    resp = await s.RotateSourceKey(ingest_pb2.RotateSourceKeyRequest(name=name), timeout=RPC_TIMEOUT_S)
                    if not resp.source.enabled:
                        await s.EnableSource(ingest_pb2.EnableSourceRequest(name=name), timeout=RPC_TIMEOUT_S)
                    verb = "reused"
                else:
                    resp = await s.CreateSource(ingest_pb2.CreateSourceRequest(name=name, kind=kind,
                                                                               webhook_secret=secret),
                                                timeout=RPC_TIMEOUT_S)
                    verb = "created"
                out[name] = (resp.source, resp.write_key)
                log.print(f"source [bold]{name}[/bold] ({kind}) {verb}, id {resp.source.source_id}")
        except grpc.aio.AioRpcError as e:
            raise rpc_error("ingest", e) from None
    return out


async def _post(session, url: str, body: bytes, headers: dict, stats: PathStats) -> tuple[int, dict]:
    """POST with retries on 429 (Retry-After), 503 and lost connections; (status, JSON answer)."""
    import aiohttp

    for attempt in range(HTTP_MAX_RETRIES + 1):
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                stats.requests += 1
                text = await resp.read()
                if resp.status in (429, 503) and attempt < HTTP_MAX_RETRIES:
                    stats.retries += 1
                    try:
                        wait = float(resp.headers.get("Retry-After", "1"))
                    except ValueError:
                        wait = 1.0
                    await asyncio.sleep(max(0.05, min(wait, 30.0)))
                    continue
                try:
                    answer = json.loads(text) if text else {}
                except ValueError:
                    answer = {"message": text[:200].decode(errors="replace")}
                return resp.status, answer if isinstance(answer, dict) else {}
        except (TimeoutError, aiohttp.ClientConnectionError) as e:
            if attempt == HTTP_MAX_RETRIES:
                raise CliError(f"cannot reach the HTTP edge at {url}: {type(e).__name__}: {e}; "
                               "is the stack running? try `cdp dev up`") from None
            stats.retries += 1
            await asyncio.sleep(min(2 ** attempt * 0.1, 5.0))
    raise AssertionError("unreachable")


async def _send_segment(session, base: str, write_key: str, path, stats: PathStats, advance) -> None:
    """events.jsonl in gzip batches to POST /v1/batch, HTTP_CONCURRENCY requests in flight.

    sentAt is left out: these are historical calls, so Segment's clock-skew correction
    (timestamp + receivedAt - sentAt) would move them to today."""
    import gzip

    import orjson

    url = f"{base}/v1/batch"
    headers = {"Authorization": _basic(write_key), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    sem = asyncio.Semaphore(HTTP_CONCURRENCY)
    tasks: set[asyncio.Task] = set()

    async def one(batch: list[dict]) -> None:
        try:
            body = gzip.compress(orjson.dumps({"batch": batch}), compresslevel=5)
            status, answer = await _post(session, url, body, headers, stats)
            if status == 200:
                rejected = answer.get("rejected") or []
                stats.accepted += len(batch) - len(rejected)
                stats.rejected += len(rejected)
                for r in rejected:
                    stats.error(str(r.get("error", "")))
            else:
                stats.rejected += len(batch)
                stats.error(f"HTTP {status}: {answer.get('message', '')}", len(batch))
            advance(len(batch))
        finally:
            sem.release()

    batch: list[dict] = []
    with open(path, "rb") as f:
        for line in f:
            msg = orjson.loads(line)
            msg.pop("sentAt", None)
            batch.append(msg)
            if len(batch) >= HTTP_BATCH:
                await sem.acquire()
                stats.sent += len(batch)
                t = asyncio.create_task(one(batch))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
                batch = []
    if batch:
        await sem.acquire()
        stats.sent += len(batch)
        tasks.add(asyncio.create_task(one(batch)))
    if tasks:
        await asyncio.gather(*tasks)


def _webhooks(folder) -> list[dict]:
    """Every recorded Shopify delivery, in the order Shopify triggered them."""
    import orjson

    out = []
    for f in sorted((folder / "shopify").glob("*.jsonl")):
        with open(f, "rb") as fh:
            out.extend(orjson.loads(line) for line in fh if line.strip())
    out.sort(key=lambda d: d["headers"].get("X-Shopify-Triggered-At", ""))
    return out


async def _send_webhooks(session, base: str, source_name: str, deliveries: list[dict], stats: PathStats,
                         advance) -> None:
    """Each delivery to POST /v1/webhooks/shopify/{source}: the recorded headers, and the body
    as the exact bytes that were signed (orjson's compact JSON)."""
    import orjson

    url = f"{base}/v1/webhooks/shopify/{source_name}"
    sem = asyncio.Semaphore(WEBHOOK_CONCURRENCY)

    async def one(d: dict) -> None:
        async with sem:
            status, answer = await _post(session, url, orjson.dumps(d["body"]), dict(d["headers"]), stats)
            stats.sent += 1
            rejected = answer.get("rejected") or []
            if status == 200 and not rejected:
                stats.accepted += 1
            else:
                stats.rejected += 1
                for r in rejected:
                    stats.error(str(r.get("error", "")))
                if status != 200:
                    stats.error(f"HTTP {status}: {answer.get('message', '')}")
            advance(1)

    await asyncio.gather(*(one(d) for d in deliveries))


def _identified_pos(src, dst) -> tuple[int, int]:
    """Copies the POS export keeping receipts that say something about the customer (a loyalty
    id, an e-mail, a phone, or a name that identity can match): a fully anonymous receipt has
    nobody to attach to. (receipts kept, receipts left out)."""
    import csv

    kept, dropped = set(), set()
    with open(src, newline="", encoding="utf-8") as fi, open(dst, "w", newline="", encoding="utf-8") as fo:
        r = csv.DictReader(fi)
        w = csv.DictWriter(fo, r.fieldnames or [], lineterminator="\n")
        w.writeheader()
        for row in r:
            if row["loyalty_id"] or row["customer_email"] or row["customer_phone"] or row["customer_last_name"]:
                kept.add(row["receipt_id"])
                w.writerow(row)
            else:
                dropped.add(row["receipt_id"])
    return len(kept), len(dropped - kept)


async def _import_csv(path, mapping_text: str, source: str, write_key: str, token: str, work, stats: PathStats,
                      advance) -> None:
    """One CSV file through cdp_cli.importer (ImportEvents), as `cdp import csv` sends it."""
    from . import csvmap, importer

    mapping = csvmap.parse_mapping(mapping_text, where=f"{source} mapping")
    st = path.stat()
    cp = importer.Checkpoint(str(path), st.st_size, st.st_mtime_ns, mapping.fingerprint,
                             path=str(work / f"checkpoint-{source}.json"))
    summary = importer.Summary(file=str(path), source=source)
    last = [0]

    def on_progress(offset: int) -> None:
        advance(offset - last[0])
        last[0] = offset

    with open(path, "rb") as f:
        items = csvmap.csv_items(f, mapping, source)
        counted = _counting(items, stats)
        await importer.run_import(counted, cp, summary, write_key=write_key, token=token, on_progress=on_progress)
    stats.accepted, stats.rejected, stats.not_sent = summary.accepted, summary.rejected, summary.skipped
    for r in summary.rejections:  # the first ones (importer.MAX_SHOWN)
        stats.error(r.error)


def _counting(items, stats: PathStats):
    for item in items:
        stats.sent += 1
        yield item


# --- waiting for identity and profile -------------------------------------------------


@contextlib.asynccontextmanager
async def _jetstream(nc_url: str | None):
    """A JetStream manager on the stack's NATS for reading consumer state, or None without one
    (what reads it is optional: the demo goes on without it)."""
    nc = None
    if nc_url:
        import nats

        try:
            nc = await nats.connect(nc_url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
        except Exception:  # noqa: BLE001 - optional
            nc = None
    try:
        yield nc.jsm() if nc is not None else None
    finally:
        if nc is not None:
            await nc.close()


async def _lag(nc_url: str | None) -> dict | None:
    """How far identity and profile are behind, from their durable consumers; None without NATS."""
    async with _jetstream(nc_url) as js:
        if js is None:
            return None
        out = {}
        for stream, durable in (("CDP_INGEST", "identity"), ("CDP_IDENTITY", "profile")):
            try:
                ci = await js.consumer_info(stream, durable, timeout=2)
                si = await js.stream_info(stream)
                out[durable] = {"pending": ci.num_pending + ci.num_ack_pending, "stream_last_seq": si.state.last_seq}
            except Exception:  # noqa: BLE001
                out[durable] = None
        try:
            si = await js.stream_info("CDP_IDENTITY", subjects_filter="cdp.identity.merged")
            out["merged_total"] = (si.state.subjects or {}).get("cdp.identity.merged", 0)
        except Exception:  # noqa: BLE001
            out["merged_total"] = None
        return out


async def _lookup(stub_, ident: tuple[str, str]) -> profile_pb2.Profile | None:
    from cdp.common.v1 import identifier_pb2

    try:
        resp = await stub_.GetProfile(profile_pb2.GetProfileRequest(
            identifier=identifier_pb2.Identifier(type=ident[0], value=ident[1])), timeout=RPC_TIMEOUT_S)
    except grpc.aio.AioRpcError as e:
        if e.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise rpc_error("profile", e) from None
    return resp.profile


async def _wait_caught_up(token: str, probes: list[tuple[str, str]], nc_url: str | None, log: Console,
                          timeout: float) -> tuple[bool, dict | None]:
    """Until the consumers of identity and profile have nothing pending and the probes'
    profiles stop changing (or, without NATS, only the latter), at most `timeout` s."""
    from cdp.profile.v1 import profile_pb2_grpc

    deadline = time.monotonic() + timeout
    last_sig, stable, lag = None, 0, None
    async with stub("profile", profile_pb2_grpc.ProfileServiceStub, token) as s:
        with log.status("waiting for identity and profile to catch up…") as status:
            while True:
                lag = await _lag(nc_url)
                found = await asyncio.gather(*(_lookup(s, p) for p in probes))
                sig = tuple((p.profile_id, p.event_count, len(p.merged_profile_ids)) if p else None for p in found)
                pending = None
                if lag and lag.get("identity") and lag.get("profile"):
                    pending = lag["identity"]["pending"] + lag["profile"]["pending"]
                    sig = (sig, lag["identity"]["stream_last_seq"], lag["profile"]["stream_last_seq"])
                settled = not pending if pending is not None else any(found)
                stable = stable + 1 if sig == last_sig and settled else 0
                last_sig = sig
                status.update("waiting for identity and profile to catch up… "
                              + (f"{pending:,} messages pending" if pending is not None else
                                 f"{sum(1 for p in found if p)}/{len(probes)} probe profiles found"))
                if stable >= (2 if pending is not None else 3):
                    return True, lag
                if time.monotonic() >= deadline:
                    return False, lag
                await asyncio.sleep(1.0)


# --- the ground truth -----------------------------------------------------------------


def platform_identifiers(person: dict) -> list[tuple[str, str]]:
    """A person's true identifiers as the platform keys them (types it resolves, with the
    demo's prefixes); shared and placeholder values are left out (they are nobody's alone).
    Phones are left out too: identity does not normalize them yet, so the CSVs' formats
    and E.164 differ."""
    out: dict[tuple[str, str], None] = {}
    for i in person["identifiers"]:
        if i.get("shared") or i.get("placeholder"):
            continue
        t, v = i["type"], str(i["value"])
        key = {"user_id": ("user_id", v), "anonymous_id": ("anonymous_id", v), "email": ("email", v.strip().lower()),
               "crm_id": ("crm_id", v), "loyalty_id": ("loyalty_id", v),
               "shopify_customer_id": ("anonymous_id", "shopify:" + v)}.get(t)
        if key:
            out[key] = None
    return list(out)


def _channels(person: dict) -> int:
    r = person["records"]
    ids = {i["type"] for i in person["identifiers"]}
    return sum((bool(ids & {"user_id", "anonymous_id"}), bool(r["shopify_order_ids"] or r["shopify_customer_ids"]),
                bool(r["crm_ids"]), bool(r["pos_receipt_ids"])))


def pick_people(truth: list[dict], seed: int, shown: int, sampled: int) -> tuple[list[dict], list[dict]]:
    """(people to show, people to measure): shown = those seen through the most channels
    (ties broken by the seed); measured = a seeded sample of everyone with an identifier."""
    import random

    rng = random.Random(seed)
    seen = [p for p in truth if platform_identifiers(p)]
    order = sorted(seen, key=lambda p: (-_channels(p), -p["observed"]["events"], rng.random()))
    show = order[:shown]
    rest = [p for p in seen if p not in show]
    measure = show + rng.sample(rest, min(len(rest), max(0, sampled - len(show))))
    return show, measure


def _lookup_key(person: dict) -> tuple[str, str]:
    ids = platform_identifiers(person)
    for t in ("user_id", "email", "anonymous_id"):
        for k in ids:
            if k[0] == t:
                return k
    return ids[0]


async def _measure(token: str, show: list[dict], measure: list[dict]) -> tuple[list[dict], dict]:
    """GetProfile of the shown people; every measured person's identifiers resolved to profiles."""
    from cdp.common.v1 import identifier_pb2
    from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
    from cdp.profile.v1 import profile_pb2_grpc

    from .render import profile_to_dict

    sem = asyncio.Semaphore(16)

    async def resolve(s, key: tuple[str, str]) -> str | None:
        async with sem:
            try:
                r = await s.ResolveIdentifier(identity_pb2.ResolveIdentifierRequest(
                    identifier=identifier_pb2.Identifier(type=key[0], value=key[1])), timeout=RPC_TIMEOUT_S)
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise rpc_error("identity", e) from None
            return r.profile_id

    async with stub("identity", identity_pb2_grpc.IdentityServiceStub, token) as ids_stub:
        per_person = []
        for p in measure:
            keys = platform_identifiers(p)
            per_person.append((p, keys, asyncio.gather(*(resolve(ids_stub, k) for k in keys))))
        resolved = {}
        for p, keys, fut in per_person:
            resolved[p["person_id"]] = (keys, await fut)

    def judge(pid: str) -> dict:
        keys, profiles = resolved[pid]
        counts: dict[str, int] = {}
        for x in profiles:
            if x:
                counts[x] = counts.get(x, 0) + 1
        main = max(counts.values(), default=0)
        return {"identifiers": len(keys), "on_main_profile": main, "profiles": len(counts),
                "unresolved": sum(1 for x in profiles if not x), "whole": main == len(keys) and len(keys) > 0}

    judged = {pid: judge(pid) for pid in resolved}
    quality = {
        "people": len(judged),
        "whole": sum(1 for j in judged.values() if j["whole"]),
        "split": sum(1 for j in judged.values() if j["profiles"] > 1),
        "unresolved": sum(1 for j in judged.values() if j["unresolved"]),
        "identifiers": sum(j["identifiers"] for j in judged.values()),
        "identifiers_on_main_profile": sum(j["on_main_profile"] for j in judged.values()),
    }
    quality["whole_share"] = round(quality["whole"] / quality["people"], 3) if quality["people"] else None

    people = []
    async with stub("profile", profile_pb2_grpc.ProfileServiceStub, token) as s:
        for p in show:
            key = _lookup_key(p)
            prof = await _lookup(s, key)
            d = profile_to_dict(prof) if prof else None
            traits = d["traits"] if d else {}
            key_traits = {k: traits[k] for k in KEY_TRAITS if k in traits}
            for k in sorted(traits):
                if len(key_traits) >= 8:
                    break
                key_traits.setdefault(k, traits[k])
            people.append({
                "person_id": p["person_id"],
                "name": f"{p['profile']['first_name']} {p['profile']['last_name']}",
                "lookup": {"type": key[0], "value": key[1]},
                "channels": _channels(p),
                "true_events": p["observed"]["events"],
                "profile_id": d["profile_id"] if d else None,
                "identifiers": d["identifiers"] if d else [],
                "merged_profile_ids": len(d["merged_profile_ids"]) if d else 0,
                "event_count": d["computed"]["event_count"] if d else 0,
                "traits": key_traits,
                "trait_count": len(traits),
                "truth": judged[p["person_id"]],
            })
    return people, quality


async def _failed_counts(token: str) -> dict:
    from cdp.common.v1 import failed_pb2, failed_pb2_grpc

    out = {}
    for svc in ("ingest", "identity", "profile"):
        async with stub(svc, failed_pb2_grpc.FailedEventServiceStub, token) as s:
            try:
                r = await s.ListFailedEvents(failed_pb2.ListFailedEventsRequest(page_size=1), timeout=RPC_TIMEOUT_S)
                out[svc] = r.pending_total
            except grpc.aio.AioRpcError:
                out[svc] = None
    return out


# --- the run ----------------------------------------------------------------------------


@dataclass
class WorldOptions:
    people: int = 2000
    days: int = 30
    seed: int = 1
    start: str | None = None  # the first simulated day (YYYY-MM-DD); None: the simulator's fixed default
    http_url: str | None = None  # default: client.http_url()
    nats_url: str | None = None  # default: CDP_NATS_URL / .cdp/stack.json
    catch_up_timeout: float = CATCH_UP_TIMEOUT_S


async def run_world(token: str, log: Console, opts: WorldOptions | None = None) -> dict:
    """Generate, load through the real paths, wait, measure. Returns the summary (the --json object)."""
    import tempfile
    from pathlib import Path

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from cdp_sim import World

    from . import client

    opts = opts or WorldOptions()
    base = (opts.http_url or client.http_url()).rstrip("/")
    nc_url = opts.nats_url if opts.nats_url is not None else nats_url()
    t_start = time.monotonic()
    timings: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="cdp-demo-") as tmp:
        work = Path(tmp)
        # 1. the world
        t0 = time.monotonic()
        world = World.generate(people=opts.people, days=opts.days, seed=opts.seed,
                               **({"start": opts.start} if opts.start else {}))
        with Progress(TextColumn("[bold]simulating[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("days"),
                      TimeElapsedColumn(), console=log, transient=True) as bar:
            task = bar.add_task("days", total=opts.days)
            manifest = world.write(work / "world", progress=lambda d, n, c: bar.update(task, completed=d))
        truth = world.truth()
        timings["generate"] = time.monotonic() - t0
        c = manifest["counts"]
        folder = work / "world"
        webhooks = _webhooks(folder)
        pos_kept, pos_dropped = _identified_pos(folder / "pos_transactions.csv", work / "pos_identified.csv")
        log.print(f"world: {opts.people:,} people over {opts.days} days (seed {opts.seed}): "
                  f"{c['segment']:,} Segment calls, {len(webhooks):,} Shopify webhooks, {c['crm_contacts']:,} CRM "
                  f"contacts, {c['pos_receipts']:,} POS receipts ({pos_dropped:,} anonymous, left out) "
                  f"in {timings['generate']:.1f} s")

        # 2. sources
        secret = manifest["shopify"]["webhook_secret"]
        await _apply_identity_rules(token, log)
        sources = await _ensure_sources(token, secret, log)
        lag_before = await _lag(nc_url)

        # 3. load, the four paths at once
        paths = {
            "web": PathStats("web", "HTTP POST /v1/batch", "calls"),
            "shopify": PathStats("shopify", "HTTP POST /v1/webhooks/shopify/demo-shopify", "webhooks"),
            "crm": PathStats("crm", "CSV import", "contacts"),
            "pos": PathStats("pos", "CSV import", "receipts"),
        }
        t0 = time.monotonic()
        import aiohttp

        with Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(), TaskProgressColumn(),
                      MofNCompleteColumn(), TextColumn("{task.fields[unit]}"), TimeElapsedColumn(),
                      console=log) as bar:
            crm_file, pos_file = folder / "crm_contacts.csv", work / "pos_identified.csv"
            tasks = {
                "web": bar.add_task("web", total=c["segment"], unit="calls"),
                "shopify": bar.add_task("shopify", total=len(webhooks), unit="webhooks"),
                "crm": bar.add_task("crm", total=crm_file.stat().st_size, unit="bytes"),
                "pos": bar.add_task("pos", total=pos_file.stat().st_size, unit="bytes"),
            }

            def adv(name: str):
                return lambda n: bar.advance(tasks[name], n)

            async def timed(name: str, coro):
                t = time.monotonic()
                try:
                    await coro
                finally:
                    paths[name].seconds = time.monotonic() - t

            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session:
                await asyncio.gather(
                    timed("web", _send_segment(session, base, sources["demo-web"][1], folder / "events.jsonl",
                                               paths["web"], adv("web"))),
                    timed("shopify", _send_webhooks(session, base, "demo-shopify", webhooks, paths["shopify"],
                                                    adv("shopify"))),
                    timed("crm", _import_csv(crm_file, CRM_MAPPING, "demo-crm", sources["demo-crm"][1], token, work,
                                             paths["crm"], adv("crm"))),
                    timed("pos", _import_csv(pos_file, POS_MAPPING, "demo-pos", sources["demo-pos"][1], token, work,
                                             paths["pos"], adv("pos"))),
                )
        timings["load"] = time.monotonic() - t0

        # 4. wait for identity and profile
        show, measure = pick_people(truth, opts.seed, SHOWN_PEOPLE, QUALITY_SAMPLE)
        t0 = time.monotonic()
        caught_up, lag_after = await _wait_caught_up(token, [_lookup_key(p) for p in show], nc_url, log,
                                                     opts.catch_up_timeout)
        timings["catch_up"] = time.monotonic() - t0

        # 5. what the platform made of it
        t0 = time.monotonic()
        people, quality = await _measure(token, show, measure)
        failed = await _failed_counts(token)
        audiences = await _audiences(token, nc_url, log, opts.catch_up_timeout)
        timings["measure"] = time.monotonic() - t0

    merges = None
    if lag_before and lag_after and lag_before.get("merged_total") is not None and \
            lag_after.get("merged_total") is not None:
        merges = lag_after["merged_total"] - lag_before["merged_total"]
    timings["total"] = time.monotonic() - t_start
    return {
        "world": {"people": opts.people, "days": opts.days, "seed": opts.seed, "start": manifest["start"],
                  "cutoff": manifest["cutoff"], "people_seen": c["people_seen"], "records": c["records"],
                  "segment_calls": c["segment"], "shopify_webhooks": len(webhooks), "crm_contacts": c["crm_contacts"],
                  "pos_receipts": c["pos_receipts"], "pos_receipts_anonymous": pos_dropped},
        "sources": {name: {"source_id": s.source_id, "kind": s.kind} for name, (s, _) in sources.items()},
        "paths": {name: p.to_dict() for name, p in paths.items()},
        "caught_up": caught_up,
        "merges": merges,
        "failed_events_pending": failed,
        "profiles": people,
        "identity_quality": quality,
        "audiences": audiences,
        "elapsed_s": {k: round(v, 2) for k, v in timings.items()},
    }


SEGMENT_DURABLES = (("CDP_IDENTITY", "segment-identity"), ("CDP_PROFILE", "segment-profile"))


async def _audiences(token: str, nc_url: str | None, log: Console, timeout: float) -> dict[str, int] | None:
    """Each segment's member count once the segment service has caught up with identity and
    profile (its durable consumers have nothing pending); None without a segment service."""
    from cdp.segment.v1 import segment_pb2, segment_pb2_grpc

    deadline = time.monotonic() + timeout
    async with _jetstream(nc_url) as js:
        with log.status("waiting for the segment service to catch up…"):
            while js is not None and time.monotonic() < deadline:  # without NATS the counts are read anyway
                pending = 0
                for stream, durable in SEGMENT_DURABLES:
                    try:
                        ci = await js.consumer_info(stream, durable, timeout=2)
                    except Exception:  # noqa: BLE001 - no segment service on this stack
                        return None
                    pending += ci.num_pending + ci.num_ack_pending
                if not pending:
                    break
                await asyncio.sleep(0.5)
    try:
        async with stub("segment", segment_pb2_grpc.SegmentServiceStub, token) as s:
            r = await s.ListSegments(segment_pb2.ListSegmentsRequest(), timeout=RPC_TIMEOUT_S)
    except grpc.aio.AioRpcError:
        return None
    return {x.definition.name: x.member_count for x in r.segments}


def _short(v) -> str:
    if isinstance(v, dict) and "city" in v:
        v = {"city": v["city"]}
    text = json.dumps(v, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


def print_world_summary(s: dict, out: Console) -> None:
    from rich.markup import escape

    w = s["world"]
    out.print(f"\n[bold]cdp demo[/bold]: {w['people']:,} simulated people over {w['days']} days (seed {w['seed']}, "
              f"{w['start']} → {w['cutoff']}), {w['people_seen']:,} of them seen")
    out.print("loaded through the real paths:")
    for name, p in s["paths"].items():
        rejected = f"[red]{p['rejected']:,} rejected[/red]" if p["rejected"] else "0 rejected"
        if p["not_sent"]:
            rejected += f", {p['not_sent']:,} unreadable"
        out.print(f"  [bold]{name:<8}[/bold]{p['via']}: {p['sent']:,} {p['unit']}, [green]{p['accepted']:,} accepted"
                  f"[/green], {rejected} ({p['seconds']:.1f} s)")
    for name, p in s["paths"].items():
        for e in p["errors"][:3]:
            out.print(f"  {name}: {e['count']}× {escape(e['error'][:160])}")
    e = s["elapsed_s"]
    out.print(f"identity and profile {'[green]caught up[/green]' if s['caught_up'] else '[red]had not caught up[/red]'} "
              f"{e['catch_up']:.1f} s after the load; merges: "
              f"{s['merges'] if s['merges'] is not None else 'unknown (no NATS)'}; failed events pending: "
              + ", ".join(f"{k} {v if v is not None else '?'}" for k, v in s["failed_events_pending"].items()))

    out.print(f"\n[bold]{len(s['profiles'])} people[/bold] seen through the most channels, as the ground truth knows "
              "them and as the platform does:")
    for p in s["profiles"]:
        tr = p["truth"]
        out.print(f"[bold]{p['person_id']}[/bold] {escape(p['name'])}: {p['channels']} channels, "
                  f"{p['true_events']:,} events in the truth; looked up by {p['lookup']['type']}={escape(p['lookup']['value'])}")
        if not p["profile_id"]:
            out.print("  [red]no profile found[/red]")
            continue
        ids: dict[str, int] = {}
        for i in p["identifiers"]:
            ids[i["type"]] = ids.get(i["type"], 0) + 1
        out.print(f"  profile {p['profile_id']}: {p['event_count']:,} events, {p['merged_profile_ids']} merged "
                  f"into it; identifiers: " + ", ".join(f"{k} {v}" for k, v in sorted(ids.items())))
        traits = ", ".join(f"{k} {escape(_short(v))}" for k, v in p["traits"].items())
        out.print(f"  traits ({p['trait_count']}): {traits}")
        verdict = "[green]all[/green]" if tr["whole"] else f"[yellow]{tr['on_main_profile']}[/yellow]"
        spread = f", the others on {tr['profiles'] - 1} other profile(s)" if tr["profiles"] > 1 else ""
        out.print(f"  truth: {verdict} of their {tr['identifiers']} identifiers on one profile{spread}")
    q = s["identity_quality"]
    if q["people"]:
        out.print(f"identity against the ground truth ({q['people']} people sampled): [bold]{q['whole']}[/bold] "
                  f"({q['whole_share']:.0%}) have every identifier on one profile, {q['split']} are split across "
                  f"profiles, {q['unresolved']} have identifiers no profile holds; "
                  f"{q['identifiers_on_main_profile']:,} of {q['identifiers']:,} identifiers on the person's main "
                  "profile. (Shared and placeholder identifiers, and phones, are not counted.)")
    if s.get("audiences"):
        out.print("audiences (segment service, members now): " + ", ".join(
            f"{escape(name)} [bold]{n:,}[/bold]" for name, n in sorted(s["audiences"].items())))
    out.print(f"elapsed: {e['total']:.1f} s (simulate {e['generate']:.1f} s, load {e['load']:.1f} s, "
              f"catch up {e['catch_up']:.1f} s, measure {e['measure']:.1f} s)")
