"""Sources: named write keys with a kind. Keys are stored hashed (sha256) and shown
once, on create and rotate. Lookups by key are cached for a few seconds per replica,
so a rotated or disabled key stops working everywhere within CACHE_TTL_S."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

import asyncpg

from cdp_core.cache import TtlCache
from cdp_core.errors import AlreadyExists, InvalidArgument, NotFound

from .domain.calls import Source

CACHE_TTL_S = 5.0
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
KNOWN_KINDS = ("web", "app", "server", "shopify", "crm", "pos", "email", "sms", "whatsapp", "push", "survey")


@dataclass(frozen=True)
class SourceRecord:
    source_id: str
    name: str
    kind: str
    enabled: bool
    write_key_hint: str
    webhook_secret: str | None
    rate_limit_per_s: float
    accepted: int
    rejected: int
    created_at: object

    @property
    def source(self) -> Source:
        return Source(self.source_id, self.name, self.kind)


def hash_key(write_key: str) -> str:
    return hashlib.sha256(write_key.encode()).hexdigest()


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


def _record(row) -> SourceRecord:
    return SourceRecord(row["source_id"], row["name"], row["kind"], row["enabled"], row["write_key_hint"],
                        row["webhook_secret"], row["rate_limit_per_s"], row["accepted"], row["rejected"],
                        row["created_at"])


class SourceRegistry:
    def __init__(self, pool: asyncpg.Pool, clock=time.monotonic):
        self.pool = pool
        self._by_hash: TtlCache[str, SourceRecord | None] = TtlCache(CACHE_TTL_S, clock=clock)

    def invalidate(self) -> None:
        self._by_hash.clear()

    async def by_write_key(self, write_key: str) -> SourceRecord | None:
        """The source of a write key (enabled or not), or None when unknown."""
        return await self._by_hash.get(hash_key(write_key), self._load)

    async def _load(self, key_hash: str) -> SourceRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM sources WHERE write_key_hash = $1", key_hash)
        return _record(row) if row else None

    async def by_name(self, name: str) -> SourceRecord:
        row = await self.pool.fetchrow("SELECT * FROM sources WHERE name = $1", name)
        if row is None:
            raise NotFound("no source with this name", field="name")
        return _record(row)

    async def by_id(self, source_id: str) -> SourceRecord | None:
        row = await self.pool.fetchrow("SELECT * FROM sources WHERE source_id = $1", source_id)
        return _record(row) if row else None

    async def list(self) -> list[SourceRecord]:
        return [_record(r) for r in await self.pool.fetch("SELECT * FROM sources ORDER BY name")]

    async def create(self, name: str, kind: str, webhook_secret: str = "", rate: float = 0) -> tuple[SourceRecord, str]:
        if not NAME_RE.match(name):
            raise InvalidArgument("must be 1-63 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit",
                                  field="name")
        if not KIND_RE.match(kind):
            raise InvalidArgument(f"must be a lower-case word such as {', '.join(KNOWN_KINDS)}", field="kind")
        if rate < 0:
            raise InvalidArgument("must not be negative", field="rate_limit_per_s")
        key = new_write_key()
        try:
            row = await self.pool.fetchrow(
                "INSERT INTO sources (source_id, name, kind, write_key_hash, write_key_hint, webhook_secret,"
                " rate_limit_per_s) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                "src_" + secrets.token_hex(8), name, kind, hash_key(key), key[-4:], webhook_secret or None, rate)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists("a source with this name exists", field="name") from None
        return _record(row), key

    async def rotate(self, name: str) -> tuple[SourceRecord, str]:
        key = new_write_key()
        row = await self.pool.fetchrow(
            "UPDATE sources SET write_key_hash = $2, write_key_hint = $3, updated_at = now() WHERE name = $1 RETURNING *",
            name, hash_key(key), key[-4:])
        if row is None:
            raise NotFound("no source with this name", field="name")
        self.invalidate()
        return _record(row), key

    async def set_enabled(self, name: str, enabled: bool) -> SourceRecord:
        row = await self.pool.fetchrow(
            "UPDATE sources SET enabled = $2, updated_at = now() WHERE name = $1 RETURNING *", name, enabled)
        if row is None:
            raise NotFound("no source with this name", field="name")
        self.invalidate()
        return _record(row)
