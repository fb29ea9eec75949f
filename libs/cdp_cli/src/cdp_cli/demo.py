"""`cdp demo --sample`: a short customer journey sent through gRPC ingest.

An anonymous visitor browses two products, signs up (Identify with the same anonymous_id
and a new user_id), then checks out and completes an order. A fresh user id per run makes
a new profile each time.
"""

from __future__ import annotations

import asyncio
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
