"""Definitions: create, update (versioned), delete, apply a YAML document, stores; each one
transaction, serialized by one advisory lock, validated against the catalogue as it stands
inside that transaction. A definition that does not validate changes nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import asyncpg
import yaml

from cdp.segment.v1 import definition_pb2 as pb
from cdp_core.errors import AlreadyExists, FailedPrecondition, NotFound

from . import definition as d
from . import engine, jobs

DEFINITIONS_LOCK = 0x7365675F646566  # "seg_def"
MAX_STORES = 10_000


@dataclass
class Applied:
    outcome: str  # created, updated, unchanged
    segment_id: str
    name: str


async def _begin(conn: asyncpg.Connection, retention_days: int) -> engine.Catalog:
    await conn.execute("SELECT pg_advisory_xact_lock($1)", DEFINITIONS_LOCK)
    return await engine.load_catalog(conn, retention_days)


def _dependents(cat: engine.Catalog, name: str) -> list[engine.Segment]:
    """Segments that refer to `name`, directly or through others."""
    out, todo, seen = [], [name], {name}
    while todo:
        n = todo.pop()
        for s in cat.segments.values():
            if n in s.compiled.references and s.name not in seen:
                seen.add(s.name)
                out.append(s)
                todo.append(s.name)
    return out


async def create(conn: asyncpg.Connection, definition: pb.Definition, retention_days: int, *,
                 predefined: bool = False) -> Applied:
    cat = await _begin(conn, retention_days)
    if definition.name in cat.segments or await conn.fetchval(
            "SELECT 1 FROM seg_segments WHERE name = $1 AND deleted_at IS NULL", definition.name):
        raise AlreadyExists("a segment has this name (update it instead)", field="name")
    d.validate(definition, cat.resolver())
    sid = uuid.uuid4().hex
    body = d.canonical_json(definition)
    await conn.execute("INSERT INTO seg_segments (segment_id, name, version, definition, predefined) "
                       "VALUES ($1, $2, 1, $3::jsonb, $4)", sid, definition.name, body, predefined)
    await conn.execute("INSERT INTO seg_segment_versions (segment_id, version, definition) VALUES ($1, 1, $2::jsonb)",
                       sid, body)
    await engine.bump_rev(conn)
    await jobs.enqueue_backfill(conn, sid, 1)
    return Applied("created", sid, definition.name)


async def update(conn: asyncpg.Connection, definition: pb.Definition, retention_days: int,
                 expected_version: int = 0) -> Applied:
    cat = await _begin(conn, retention_days)
    row = await conn.fetchrow("SELECT segment_id, version, definition::text, predefined FROM seg_segments "
                              "WHERE name = $1 AND deleted_at IS NULL", definition.name)
    if row is None:
        raise NotFound("no segment has this name", field="name")
    if expected_version and expected_version != row["version"]:
        raise FailedPrecondition(f"the segment is at version {row['version']}, not {expected_version}",
                                 field="expected_version")
    d.validate(definition, cat.resolver(exclude=definition.name))
    body = d.canonical_json(definition)
    if json.loads(body) == json.loads(row["definition"]):
        return Applied("unchanged", row["segment_id"], definition.name)
    version = row["version"] + 1
    await conn.execute("UPDATE seg_segments SET version = $2, definition = $3::jsonb, updated_at = now() "
                       "WHERE segment_id = $1", row["segment_id"], version, body)
    await conn.execute("INSERT INTO seg_segment_versions (segment_id, version, definition) VALUES ($1, $2, $3::jsonb)",
                       row["segment_id"], version, body)
    await engine.bump_rev(conn)
    await jobs.enqueue_backfill(conn, row["segment_id"], version)
    for dep in _dependents(cat, definition.name):  # they inline this one: evaluate them again too
        await jobs.enqueue_backfill(conn, dep.segment_id, dep.version)
    return Applied("updated", row["segment_id"], definition.name)


async def delete(conn: asyncpg.Connection, name: str, retention_days: int) -> int:
    """Marks the segment deleted; its members exit in the background. Returns the members."""
    cat = await _begin(conn, retention_days)
    row = await conn.fetchrow("SELECT segment_id, version, predefined FROM seg_segments WHERE name = $1 "
                              "AND deleted_at IS NULL", name)
    if row is None:
        raise NotFound("no segment has this name", field="name")
    if row["predefined"]:
        raise FailedPrecondition("a predefined audience cannot be deleted (update it instead)", field="name")
    users = sorted(s.name for s in cat.segments.values() if name in s.compiled.references)
    if users:
        raise FailedPrecondition(f"segments {', '.join(users)} refer to it", field="name")
    await conn.execute("UPDATE seg_segments SET deleted_at = now() WHERE segment_id = $1", row["segment_id"])
    await engine.bump_rev(conn)
    await jobs.enqueue_backfill(conn, row["segment_id"], row["version"])
    return await conn.fetchval("SELECT count(*) FROM seg_memberships WHERE segment_id = $1 AND member",
                               row["segment_id"])


def parse_document(text: str) -> tuple[list[dict], list[pb.Definition]]:
    """A document of segments, optionally with `stores: [{id, name, latitude, longitude}]`."""
    try:
        data = yaml.safe_load(text) if len(text.encode()) <= d.MAX_DOCUMENT else None
    except yaml.YAMLError as e:
        raise d.DefinitionError("yaml", f"not valid YAML: {str(e)[:300]}") from None
    stores: list[dict] = []
    if isinstance(data, dict) and "stores" in data:
        raw = data.pop("stores")
        if not isinstance(raw, list) or len(raw) > MAX_STORES:
            raise d.DefinitionError("stores", f"must be a list of at most {MAX_STORES} stores")
        for i, s in enumerate(raw):
            p = f"stores[{i}]"
            if not isinstance(s, dict) or set(s) - {"id", "name", "latitude", "longitude"}:
                raise d.DefinitionError(p, "a store is {id, name, latitude, longitude}")
            if not isinstance(s.get("id"), str) or not 0 < len(s["id"]) <= 128:
                raise d.DefinitionError(f"{p}.id", "an id of 1-128 characters is needed")
            for k, lim in (("latitude", 90), ("longitude", 180)):
                v = s.get(k)
                if isinstance(v, bool) or not isinstance(v, int | float) or not -lim <= v <= lim:
                    raise d.DefinitionError(f"{p}.{k}", f"a number within [-{lim}, {lim}] is needed")
            stores.append(s)
        if not data:
            return stores, []
        text = yaml.safe_dump(data)
    return stores, d.load_documents(text)


async def apply(conn: asyncpg.Connection, text: str, retention_days: int) -> list[Applied]:
    """Creates or updates each definition of the document, in order, all or nothing (the
    caller's transaction)."""
    stores, defs = parse_document(text)
    for s in stores:
        await conn.execute("INSERT INTO seg_stores (store_id, name, latitude, longitude) VALUES ($1, $2, $3, $4) "
                           "ON CONFLICT (store_id) DO UPDATE SET name = excluded.name, latitude = excluded.latitude, "
                           "longitude = excluded.longitude", s["id"], str(s.get("name") or ""),
                           float(s["latitude"]), float(s["longitude"]))
    if stores:
        await engine.bump_rev(conn)
    out = []
    for i, definition in enumerate(defs):
        prefix = f"segments[{i}]." if len(defs) > 1 else ""
        try:
            exists = await conn.fetchval("SELECT 1 FROM seg_segments WHERE name = $1 AND deleted_at IS NULL",
                                         definition.name)
            if exists:
                out.append(await update(conn, definition, retention_days))
            else:
                out.append(await create(conn, definition, retention_days))
        except d.DefinitionError as e:
            if not prefix:
                raise
            raise d.DefinitionError(prefix + e.path, str(e).split(": ", 1)[1]) from None
    return out
