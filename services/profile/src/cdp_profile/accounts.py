"""Accounts (B2B): what group calls build, and the SQL that keeps and reads it.

A group call (kind "group", `group_id`, `traits` = the account's traits) creates or updates
the account `group_id` and links the caller's profile to it:
- `accounts`: the account and the times of the first and latest group call naming it;
- `account_traits`: last-writer-wins per trait by (event time, event id), as a profile's;
- `account_members`: account <-> profile, many-to-many, with the first and latest time a
  group call linked them.

All of it converges whatever the order of arrival (LEAST / GREATEST / LWW upserts), and a
batch is a few statements whatever its size. Merges move the merged profile's memberships to
the survivor; splits and forgets drop the profile's memberships and keep the account (an
account is not personal data).

The account-level figures are computed when read, from the members' rows, so they are exact
after any merge, split or forget without a fan-out on every event:
- `users`: linked live profiles;
- `revenue_total` and `orders`: sums of the members' computed `orders.revenue_total` and
  `orders.count` (profile_computed: orders counted once per order id, as the profile does);
- `last_activity_at`: the latest event of any member (profiles.last_seen), any kind of event.
"""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg

from .queries import json_object, pg_json

UPSERT_ACCOUNTS = """
INSERT INTO accounts AS a (account_id, first_seen, last_seen)
SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[])
ON CONFLICT (account_id) DO UPDATE
   SET first_seen = LEAST(a.first_seen, excluded.first_seen), last_seen = GREATEST(a.last_seen, excluded.last_seen)
 WHERE excluded.first_seen < a.first_seen OR excluded.last_seen > a.last_seen
"""

UPSERT_TRAITS = """
INSERT INTO account_traits AS t (account_id, name, value, updated_at, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::text[])
ON CONFLICT (account_id, name) DO UPDATE
   SET value = excluded.value, updated_at = excluded.updated_at, event_id = excluded.event_id
 WHERE (excluded.updated_at, excluded.event_id) > (t.updated_at, t.event_id)
"""

UPSERT_MEMBERS = """
INSERT INTO account_members AS m (account_id, profile_id, first_linked_at, last_linked_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
ON CONFLICT (account_id, profile_id) DO UPDATE
   SET first_linked_at = LEAST(m.first_linked_at, excluded.first_linked_at),
       last_linked_at = GREATEST(m.last_linked_at, excluded.last_linked_at)
RETURNING account_id, profile_id, (xmax = 0) AS inserted
"""


async def apply_group_calls(conn: asyncpg.Connection,
                            calls: list[tuple[str, str, datetime, str, str]]) -> set[tuple[str, str]]:
    """Folds group calls `(account id, canonical profile id, event time, event id, traits JSON)`
    into accounts, their traits and memberships. Returns the (account id, profile id) links
    made for the first time."""
    if not calls:
        return set()
    spans: dict[str, list[datetime]] = {}
    links: dict[tuple[str, str], list[datetime]] = {}
    winners: dict[tuple[str, str], tuple[datetime, str, str | None]] = {}
    for account, pid, at, event_id, traits_json in calls:
        s = spans.setdefault(account, [at, at])
        s[0], s[1] = min(s[0], at), max(s[1], at)
        link = links.setdefault((account, pid), [at, at])
        link[0], link[1] = min(link[0], at), max(link[1], at)
        for name, value in json_object(traits_json).items():
            candidate = (at, event_id, pg_json(json.dumps(value)))
            if (account, name) not in winners or candidate[:2] > winners[(account, name)][:2]:
                winners[(account, name)] = candidate
    # sorted keys: concurrent batches take row locks in one order
    ids = sorted(spans)
    await conn.execute(UPSERT_ACCOUNTS, ids, [spans[a][0] for a in ids], [spans[a][1] for a in ids])
    if winners:
        keys = sorted(winners)
        await conn.execute(UPSERT_TRAITS, [k[0] for k in keys], [k[1] for k in keys], [winners[k][2] for k in keys],
                           [winners[k][0] for k in keys], [winners[k][1] for k in keys])
    keys = sorted(links)
    rows = await conn.fetch(UPSERT_MEMBERS, [k[0] for k in keys], [k[1] for k in keys],
                            [links[k][0] for k in keys], [links[k][1] for k in keys])
    return {(r["account_id"], r["profile_id"]) for r in rows if r["inserted"]}


async def move_memberships(conn: asyncpg.Connection, survivor: str, merged: str) -> None:
    """A merge: the merged profile's memberships become the survivor's (link times widened)."""
    await conn.execute(
        "INSERT INTO account_members AS m (account_id, profile_id, first_linked_at, last_linked_at) "
        "SELECT account_id, $1, first_linked_at, last_linked_at FROM account_members WHERE profile_id = $2 "
        "ORDER BY account_id ON CONFLICT (account_id, profile_id) DO UPDATE "
        "SET first_linked_at = LEAST(m.first_linked_at, excluded.first_linked_at), "
        "last_linked_at = GREATEST(m.last_linked_at, excluded.last_linked_at)", survivor, merged)
    await conn.execute("DELETE FROM account_members WHERE profile_id = $1", merged)


async def drop_memberships(conn: asyncpg.Connection, profile_ids: list[str]) -> None:
    """A split or a forget: the profiles leave every account; the accounts stay."""
    await conn.execute("DELETE FROM account_members WHERE profile_id = ANY($1::text[])", profile_ids)


# --- reads -------------------------------------------------------------------------------------

FIGURES = """
SELECT count(*) AS users,
       coalesce(sum(CASE WHEN jsonb_typeof(o.v -> 'revenue_total') = 'number'
                         THEN (o.v ->> 'revenue_total')::numeric END), 0) AS revenue_total,
       coalesce(sum(CASE WHEN jsonb_typeof(o.v -> 'count') = 'number'
                         THEN (o.v ->> 'count')::bigint END), 0)::bigint AS orders,
       max(p.last_seen) AS last_activity_at
  FROM account_members m
  JOIN profiles p ON p.profile_id = m.profile_id AND p.merged_into IS NULL
  LEFT JOIN profile_computed c ON c.profile_id = m.profile_id
  LEFT JOIN LATERAL (SELECT c.computed::jsonb -> 'orders' AS v OFFSET 0) o ON true  -- JSON text (0008): parsed once
 WHERE m.account_id = $1
"""


async def load_account(conn: asyncpg.Connection, account_id: str, page_size: int, after: str) -> dict | None:
    """The account, its traits, figures and one page of users (by profile id, after `after`);
    None when no group call ever named it. `more`: users beyond this page."""
    head = await conn.fetchrow("SELECT account_id, first_seen, last_seen FROM accounts WHERE account_id = $1",
                               account_id)
    if head is None:
        return None
    traits = await conn.fetch("SELECT name, value::text AS value, updated_at, event_id FROM account_traits "
                              "WHERE account_id = $1 ORDER BY name", account_id)
    figures = await conn.fetchrow(FIGURES, account_id)
    users = await conn.fetch(
        "SELECT m.profile_id, m.first_linked_at, m.last_linked_at FROM account_members m "
        "JOIN profiles p ON p.profile_id = m.profile_id AND p.merged_into IS NULL "
        "WHERE m.account_id = $1 AND m.profile_id > $2 ORDER BY m.profile_id LIMIT $3",
        account_id, after, page_size + 1)
    return {"head": head, "traits": traits, "figures": figures, "users": users[:page_size],
            "more": len(users) > page_size}


async def account_ids_of(conn: asyncpg.Connection, profile_ids: list[str]) -> dict[str, list[str]]:
    """profile id -> its accounts, sorted."""
    out: dict[str, list[str]] = {}
    for r in await conn.fetch("SELECT profile_id, account_id FROM account_members WHERE profile_id = ANY($1::text[]) "
                              "ORDER BY profile_id, account_id", profile_ids):
        out.setdefault(r[0], []).append(r[1])
    return out


async def memberships_of(conn: asyncpg.Connection, profile_id: str) -> list[asyncpg.Record]:
    """The profile's memberships with their link times, by account id."""
    return await conn.fetch("SELECT account_id, first_linked_at, last_linked_at FROM account_members "
                            "WHERE profile_id = $1 ORDER BY account_id", profile_id)
