"""The segment projection of the identity stream takes every profile lock a batch needs before
its handlers run (cdp_core.locks): a batch of resolutions and merges locking in rounds could
deadlock with the projection of profile changes (PostgreSQL aborts one after
deadlock_timeout, and the batch comes back)."""

from __future__ import annotations

import pytest

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_core.consumer import Delivery
from cdp_core.outbox import OutboxWriter
from cdp_segment.engine import CatalogCache
from cdp_segment.projection import IdentityProjection

pytestmark = pytest.mark.component
HELD = "SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"


def resolved(i: int, profile: str) -> envelope.Envelope:
    ev = ingest_events.EventCollected(kind="track", user_id=f"u-{profile}", event="Viewed", source_kind="web")
    ev.timestamp.CopyFrom(envelope.ts(envelope.now()))
    msg = identity_events.IdentityResolved(event=ev, profile_id=profile, event_id=f"e{i}")
    return envelope.make("cdp.identity.resolved", msg, producer="identity", event_id=f"r-e{i}")


def merged(survivor: str, gone: str) -> envelope.Envelope:
    msg = identity_events.ProfilesMerged(survivor_profile_id=survivor, merged_profile_id=gone, rule="shared-identifier",
                                         event_id="e-link")
    return envelope.make("cdp.identity.merged", msg, producer="identity", event_id=f"m-{gone}")


class Watched(IdentityProjection):
    async def before_batch(self, conn, ds):
        await super().before_batch(conn, ds)
        self.first = {tuple(r) for r in await conn.fetch(HELD)}


async def test_a_batch_takes_every_profile_lock_before_its_handlers(seg_pool):
    async def apply(envs: list[envelope.Envelope], seq: int) -> tuple[set, set]:
        p = Watched(CatalogCache(30), 30)
        async with seg_pool.acquire() as conn, conn.transaction():
            await p.handle_batch(conn, [Delivery(e, e.type, seq + k, {}) for k, e in enumerate(envs)], OutboxWriter())
            return p.first, {tuple(r) for r in await conn.fetch(HELD)}

    first, all_ = await apply([resolved(1, "P2"), merged("P1", "P2"), resolved(2, "P3")], 1)
    assert len(first) == 3 and all_ == first  # P1, P2, P3: nothing locked later
    # P2 is merged into P1 now: an event still resolved to P2 locks its survivor up front too
    first, all_ = await apply([resolved(3, "P2")], 4)
    assert len(first) == 2 and all_ == first
