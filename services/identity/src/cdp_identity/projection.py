"""The identity projection: resolves every ingest event to a canonical profile.

A batch of events (cdp.ingest.event.*) is applied in one transaction:

1. event ids already seen are skipped (a client retry days later is applied once);
2. identifiers are read and normalized (domain.extract); forgotten ones (tombstones) and
   malformed ones are left out and reported on the resolved event;
3. the identifiers and the profiles owning them are locked (graphstore.load_for) and
   loaded into a `Graph`, which resolves the events in log order under the active rules
   (config.ConfigStore): new profiles, new identifiers, merges with provenance, links the
   rules drop (each with its reason);
4. offline records that created a profile are matched probabilistically against the
   records of existing profiles (matching.py): above the threshold they merge, with the
   match probability as confidence; in the review band they become candidates;
5. the graph's changes and each event's resolution are written back, and the outbox gets
   `cdp.identity.resolved` for every event and `cdp.identity.merged` for every merge;
6. a profile an order-dependent rule acted on out of log order (two resolvers sharing the
   stream) is rebuilt in log order (graphstore.rebuild_profiles), so the graph is the one
   a single resolver would build.

An event whose identifiers the rules all drop is kept in failed events with the reason.
"""

from __future__ import annotations

import hashlib
import json

import asyncpg
import structlog

from cdp.identity.v1 import events_pb2 as identity_events
from cdp.ingest.v1 import events_pb2 as ingest_events
from cdp_core import envelope
from cdp_core.consumer import Delivery, Projection, handles
from cdp_core.outbox import OutboxWriter

from . import graphstore as gs
from .config import ConfigStore, IdentityConfig
from .domain import extract
from .graph import Graph, Link, Outcome
from .rules import Unresolvable

INGEST_KINDS = ("track", "identify", "page", "screen", "group", "alias")
MAX_CANDIDATES_PER_KEY = 200  # profiles read per blocking key when matching one record
log = structlog.get_logger("cdp.identity")


class IdentityProjection(Projection):
    name = "identity"
    source = "ingest"
    subjects = ["cdp.ingest.event.>"]
    batch_size = 1000

    def __init__(self, config: ConfigStore, js=None):
        super().__init__()
        self.config = config
        self.js = js  # JetStream context: rebuilds read events back from the log of record
        self.forgotten_skipped = 0

    @handles(*(f"cdp.ingest.event.{k}" for k in INGEST_KINDS), batch=True)
    async def on_events(self, conn: asyncpg.Connection, ds: list[Delivery], outbox: OutboxWriter) -> None:
        version, any_separations, any_tombstones, last_review = await conn.fetchrow(
            "SELECT (SELECT coalesce(max(version), 0) FROM rules), EXISTS (SELECT 1 FROM separations), "
            "EXISTS (SELECT 1 FROM tombstones), (SELECT max(seq) FROM reviews)")
        cfg = await self.config.current(conn, version)
        fresh = {r[0] for r in await conn.fetch(
            "INSERT INTO seen_events (event_id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
            [d.envelope.event_id for d in ds])}
        work = []
        for d in ds:
            if d.envelope.event_id in fresh:  # else: the same event again (a client retry): applied once
                fresh.discard(d.envelope.event_id)
                ev = d.payload(ingest_events.EventCollected)
                work.append((d, extract(ev, default_region=cfg.default_region, types=cfg.types)))
        if not work:
            return
        all_keys = {k for _, x in work for k in x.keys}
        gone = await gs.forgotten(conn, all_keys) if any_tombstones else set()
        keys = sorted(all_keys - gone)
        nodes = await gs.load_for(conn, keys)
        seps = await gs.separations(conn, {*keys, *(k for n in nodes for k in n.keys())}) if any_separations else None
        g = Graph(cfg.rules, nodes, separations=seps, sightings=await gs.sightings(conn, cfg.rules, keys))
        g.taken.update(await gs.taken_ids(conn, g, keys))
        resolutions: list[gs.Resolution] = []
        records: list[tuple[gs.Resolution, dict]] = []
        rebuild: set[str] = set()
        for d, x in work:
            mine = [k for k in x.keys if k not in gone]
            extra = [identity_events.DroppedIdentifier(identifier=gs.ident(k), rule="forgotten",
                                                       reason="belongs to a forgotten person") for k in x.keys if k in gone]
            extra += [identity_events.DroppedIdentifier(identifier=gs.ident((t, "")), rule="invalid", reason=why)
                      for t, why in x.invalid]
            if not mine:
                if x.keys:
                    self.forgotten_skipped += 1  # a forgotten person's event: not brought back
                    log.info("event of a forgotten person skipped", event_id=d.envelope.event_id)
                else:
                    d.reject("event carries no usable identifier"
                             + "".join(f"; {t} {why}" for t, why in x.invalid))
                continue
            try:
                out = g.resolve(d.stream_seq, d.envelope.event_id, mine)
            except Unresolvable as e:
                d.reject(f"identity rules dropped every identifier: {e}")
                resolutions.append(gs.Resolution(d.stream_seq, d.envelope.event_id, mine, None))
                continue
            r = gs.Resolution(d.stream_seq, d.envelope.event_id, mine, out)
            resolutions.append(r)
            if not outbox.discarding:  # a rebuild publishes nothing: the events are not even built
                for m in out.merges:
                    outbox.add(gs.merged_event(m, d.envelope.event_id, d.envelope))
                outbox.add(gs.resolved_event(d.envelope, out, out.profile_id, extra))
            if out.needs_rebuild:
                rebuild.add(out.profile_id)
            if cfg.matching.enabled and x.traits:
                records.append((r, x.traits))
        matched = await self._match(conn, g, cfg, records, outbox) if records else []
        await gs.write(conn, g, resolutions)
        if matched:
            await self._store_records(conn, g, matched)
        if rebuild and self.js is not None:
            live = {g.canonical(p) for p in rebuild}
            first = min(r.seq for r in resolutions if r.outcome and r.outcome.needs_rebuild)
            split_id = envelope.derived_id("split", "log-order", str(first), *sorted(live))
            done = await gs.rebuild_profiles(conn, self.js, cfg.rules, live, split_id=split_id, rule="log-order",
                                             reason=f"events applied out of log order (from sequence {first})",
                                             profile_id=min(live), outbox=outbox, always=False)
            if done.changed:
                log.info("profiles rebuilt in log order", profiles=len(done.removed), events=done.events)
        # a replay passing the events that accepted reviews linked (live batches come after them)
        if last_review is not None and work[0][0].stream_seq <= last_review:
            for lk in await gs.reviews_at(conn, [d.stream_seq for d, _ in work]):
                await self._apply_review(conn, cfg, lk, outbox)

    async def _apply_review(self, conn: asyncpg.Connection, cfg: IdentityConfig, lk: Link,
                            outbox: OutboxWriter) -> None:
        """An accepted review candidate (kept across a replay) applied again at its place in the
        log, as ReviewCandidate applied it; skipped, with a warning, if a rule now forbids it."""
        nodes = await gs.load_for(conn, sorted({lk.a, lk.b}))
        g = Graph(cfg.rules, nodes, separations=await gs.separations(conn, {k for n in nodes for k in n.keys()}))
        m = g.link(lk)
        if m is None:
            if g.owner.get(lk.a) is None or g.owner.get(lk.a) != g.owner.get(lk.b):
                log.warning("a reviewed merge was not applied again", event_id=lk.event_id, seq=lk.seq)
            return
        await gs.write(conn, g, [])
        outbox.add(gs.merged_event(m, lk.event_id, None))

    # --- probabilistic matching ----------------------------------------------------------

    async def _match(self, conn: asyncpg.Connection, g: Graph, cfg: IdentityConfig,
                     records: list[tuple[gs.Resolution, dict]], outbox: OutboxWriter) -> list[tuple]:
        """Matches each record that created a profile or is the first its profile holds (a CRM
        contact joining, by its e-mail, a web sign-up that left no record: whichever of a
        person's records came first, the later ones meet it); returns (profile id, record,
        blocking keys) for every record, to store."""
        from .matching import MatchModel, Thresholds, best_matches, blocking_keys, record_from_traits

        model = MatchModel.from_dict(cfg.matching.model) if cfg.matching.model else MatchModel.default()
        thresholds = Thresholds(match=cfg.matching.match, review=cfg.matching.review)
        tf = _BatchTermFrequencies(conn, model.tf_u()) if cfg.matching.term_frequencies else None
        batch: list[tuple[str, object, list[str]]] = []  # (profile id, record, blocking keys) seen in this batch
        joined = sorted({g.canonical(r.outcome.profile_id) for r, _ in records if not r.outcome.created})
        holding = {row[0] for row in await conn.fetch(
            "SELECT DISTINCT profile_id FROM match_records WHERE profile_id = ANY($1::text[])", joined)} if joined else set()
        for r, traits in records:
            rec = record_from_traits(traits, default_region=cfg.default_region)
            if rec is None:
                continue
            keys = blocking_keys(rec)
            out: Outcome = r.outcome  # type: ignore[assignment]
            pid = g.canonical(out.profile_id)
            first = out.created or (pid not in holding and all(g.canonical(p) != pid for p, _, _ in batch))
            if first and not out.merges:
                cands = await self._candidates(conn, keys, exclude=pid)
                cands += [(p, c) for p, c, ks in batch if set(ks) & set(keys) and g.canonical(p) != pid]
                cands = [(g.canonical(p), c) for p, c in cands if g.canonical(p) != pid]
                if tf is not None:
                    await tf.load([rec, *(c for _, c in cands)])
                matches, review = best_matches(model, rec, cands, thresholds, size_prior=cfg.matching.size_prior,
                                               tf=tf.table if tf is not None else None)
                targets = {p for p, _ in matches}
                if len(targets) == 1 and await self._merge(conn, g, pid, matches[0][0], matches[0][1], r, outbox):
                    pid = g.canonical(pid)
                elif targets:  # ambiguous (more than one person matches) or forbidden: a miss beats a wrong merge
                    review = matches + review
                for other, score in review:
                    await conn.execute(
                        "INSERT INTO candidates (profile_id, other_profile_id, probability, weight, details, event_id) "
                        "VALUES ($1, $2, $3, $4, $5::jsonb, $6) ON CONFLICT (profile_id, other_profile_id) DO UPDATE "
                        "SET probability = excluded.probability, weight = excluded.weight, details = excluded.details "
                        "WHERE candidates.status = 'open'",
                        pid, g.canonical(other), score.probability, score.weight, json.dumps(_details(score)),
                        r.event_id)
            if tf is not None:
                await tf.load([rec])
                tf.table.add(rec)  # the batch's later records see it (the database counts it on insert)
            batch.append((pid, rec, keys))
        return batch

    async def _candidates(self, conn: asyncpg.Connection, keys: list[str], exclude: str) -> list[tuple[str, object]]:
        from .matching import MatchRecord

        rows = await conn.fetch(
            "SELECT r.profile_id, r.record FROM (SELECT DISTINCT b.profile_id FROM unnest($1::text[]) k "
            "CROSS JOIN LATERAL (SELECT profile_id FROM match_blocks WHERE block_key = k LIMIT $3) b) c "
            "JOIN match_records r USING (profile_id) WHERE r.profile_id <> $2", keys, exclude, MAX_CANDIDATES_PER_KEY)
        return [(p, MatchRecord.from_dict(json.loads(rec) if isinstance(rec, str) else rec)) for p, rec in rows]

    async def _merge(self, conn: asyncpg.Connection, g: Graph, pid: str, other: str, score, r: gs.Resolution,
                     outbox: OutboxWriter) -> bool:
        """Merges the record's new profile with the matched one, unless a rule forbids it
        (False: the pair is kept as a review candidate instead)."""
        if other not in g.nodes:
            g.add(await gs.load_nodes(conn, {other}))
            if other not in g.nodes:  # merged or forgotten meanwhile
                return False
        out: Outcome = r.outcome  # type: ignore[assignment]
        b = min(g.nodes[other].keys(), key=g.rules.sort_key)
        confidence = score.posterior if score.posterior is not None else score.probability
        m = g.link(Link(r.seq, r.event_id, out.accepted[0], b, "probabilistic", round(confidence, 6),
                        {"matched_profile_id": other, **_details(score)}))
        if m is None:
            return False
        outbox.add(gs.merged_event(m, r.event_id, None))
        return True

    @staticmethod
    async def _store_records(conn: asyncpg.Connection, g: Graph, matched: list[tuple]) -> None:
        from .matching import TermFrequencies

        counted = TermFrequencies()
        rows, blocks = {}, set()
        for pid, rec, keys in matched:
            pid = g.canonical(pid)
            data = rec.to_dict()
            rid = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()
            rows[(pid, rid)] = (json.dumps(data), json.dumps([f"{f}:{v}" for f, v in counted.keys(rec)]))
            blocks.update((k, pid) for k in keys)
        if rows:  # match_records' triggers count the records' term frequencies (migration 0006)
            await conn.execute(
                "INSERT INTO match_records (profile_id, record_id, record, tf_keys) "
                "SELECT p, r, rec, ARRAY(SELECT jsonb_array_elements_text(k)) "
                "FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[]) AS x(p, r, rec, k) ON CONFLICT DO NOTHING",
                [k[0] for k in rows], [k[1] for k in rows], [v[0] for v in rows.values()],
                [v[1] for v in rows.values()])
        if blocks:
            await conn.execute(
                "INSERT INTO match_blocks (block_key, profile_id) SELECT * FROM unnest($1::text[], $2::text[]) "
                "ON CONFLICT DO NOTHING", [b[0] for b in blocks], [b[1] for b in blocks])


class _BatchTermFrequencies:
    """The stored term frequencies a batch's matching needs (matching.TermFrequencies over
    match_term_counts / match_term_totals), read as the batch meets new values."""

    def __init__(self, conn: asyncpg.Connection, u):
        from .matching import TermFrequencies

        self.conn, self.table, self._loaded = conn, TermFrequencies(u=u), None

    async def load(self, recs) -> None:
        if self._loaded is None:
            self._loaded = set()
            for f, n in await self.conn.fetch("SELECT field, n FROM match_term_totals"):
                if f in self.table.totals:
                    self.table.totals[f] = n
        keys = {k for rec in recs for k in self.table.keys(rec)} - self._loaded
        if not keys:
            return
        for f, v, n in await self.conn.fetch(
                "SELECT field, value, n FROM match_term_counts WHERE (field, value) IN "
                "(SELECT * FROM unnest($1::text[], $2::text[]))", [k[0] for k in keys], [k[1] for k in keys]):
            self.table.counts[f][v] = n
        self._loaded |= keys


def _details(score) -> dict:
    return {"weight": round(score.weight, 4), "probability": round(score.probability, 6),
            "comparisons": [{"field": c.field, "level": c.level, "weight": round(c.weight, 4)}
                            for c in score.comparisons]}
