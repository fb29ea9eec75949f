-- The segment service: definitions, the projection the conditions read, memberships.

-- Definitions: one row per segment, its versions kept beside it.
CREATE TABLE seg_segments (
    segment_id    text        PRIMARY KEY,
    name          text        NOT NULL,
    version       bigint      NOT NULL,
    definition    jsonb       NOT NULL,             -- the YAML/JSON form (definition.to_dict)
    predefined    boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    backfilled_version bigint NOT NULL DEFAULT 0    -- every profile evaluated against this version
);
CREATE UNIQUE INDEX seg_segments_name ON seg_segments (name) WHERE deleted_at IS NULL;

CREATE TABLE seg_segment_versions (
    segment_id text        NOT NULL,
    version    bigint      NOT NULL,
    definition jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, version)
);

-- Bumped by every definition change; evaluators reload their catalogue when it moves.
CREATE TABLE seg_catalog_rev (
    id  int    PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    rev bigint NOT NULL
);
INSERT INTO seg_catalog_rev VALUES (1, 1);

-- Stores, for `near: {store: ...}`.
CREATE TABLE seg_stores (
    store_id  text             PRIMARY KEY,
    name      text             NOT NULL DEFAULT '',
    latitude  double precision NOT NULL,
    longitude double precision NOT NULL
);

-- The projection: a profile's state from cdp.profile.changed (highest revision wins) and
-- identity's merges.
CREATE TABLE seg_profiles (
    profile_id  text        PRIMARY KEY,
    traits      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    computed    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    identifiers jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- {type: [values]}
    revision    bigint      NOT NULL DEFAULT 0,
    merged_into text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX seg_profiles_merged_into ON seg_profiles (merged_into) WHERE merged_into IS NOT NULL;

-- Track events (name, time, properties), kept for the retention
-- (CDP_SEGMENT_EVENT_RETENTION_DAYS, default 400) and pruned after it.
CREATE TABLE seg_events (
    event_id    text        PRIMARY KEY,
    profile_id  text        NOT NULL,
    name        text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX seg_events_profile ON seg_events (profile_id, name, occurred_at);
CREATE INDEX seg_events_time ON seg_events (occurred_at);

-- Accounts (B2B, from group calls): traits last-writer-wins per trait by (time, event id).
CREATE TABLE seg_account_traits (
    account_id text        NOT NULL,
    name       text        NOT NULL,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    event_id   text        NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE seg_accounts (
    account_id text  PRIMARY KEY,
    traits     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE seg_account_members (
    account_id text NOT NULL,
    profile_id text NOT NULL,
    PRIMARY KEY (profile_id, account_id)
);

-- Memberships: one row per (segment, profile) that was ever a member; `transitions` numbers
-- entered/exited events (deterministic event ids).
CREATE TABLE seg_memberships (
    segment_id  text        NOT NULL,
    profile_id  text        NOT NULL,
    member      boolean     NOT NULL,
    since       timestamptz NOT NULL,
    transitions bigint      NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
);
CREATE INDEX seg_memberships_profile ON seg_memberships (profile_id);
CREATE INDEX seg_memberships_members ON seg_memberships (segment_id, profile_id) WHERE member;

-- When a profile must be evaluated again because time passes (a window closes): one row per
-- profile with its earliest such time. The scheduler takes due rows by index, no scans.
CREATE TABLE seg_due (
    profile_id text        PRIMARY KEY,
    due_at     timestamptz NOT NULL
);
CREATE INDEX seg_due_at ON seg_due (due_at);

-- Backfills of new or changed definitions, processed in chunks of profiles.
CREATE TABLE seg_backfills (
    segment_id text   NOT NULL,
    version    bigint NOT NULL,
    after_id   text   NOT NULL DEFAULT '',  -- profiles up to this id are done
    done       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (segment_id, version)
);

-- An ISO 8601 date or time (exactly the forms definition.ISO_PATTERN accepts) as timestamptz,
-- UTC when it has no offset; NULL for anything else (an impossible day such as 02-30 too).
-- Fast and exception-free (no regular expression, no subtransaction; plain SQL, inlined): the
-- string's shape (digits as 9, T as a space) must be one of the accepted shapes; the ranges
-- PostgreSQL's own input would let through (years before 1900, hour 24, second 60, offsets
-- beyond 14:59) are refused by string comparison; pg_input_is_valid (PostgreSQL 16+) judges
-- the calendar before anything is cast.
CREATE FUNCTION seg_ts(v jsonb) RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT CASE WHEN jsonb_typeof(v) = 'string' AND translate((v #>> '{}'), '0123456789T', '9999999999 ') = ANY('{"9999-99-99","9999-99-99 99:99","9999-99-99 99:99Z","9999-99-99 99:99+99:99","9999-99-99 99:99-99:99","9999-99-99 99:99:99","9999-99-99 99:99:99Z","9999-99-99 99:99:99+99:99","9999-99-99 99:99:99-99:99","9999-99-99 99:99:99.9","9999-99-99 99:99:99.9Z","9999-99-99 99:99:99.9+99:99","9999-99-99 99:99:99.9-99:99","9999-99-99 99:99:99.99","9999-99-99 99:99:99.99Z","9999-99-99 99:99:99.99+99:99","9999-99-99 99:99:99.99-99:99","9999-99-99 99:99:99.999","9999-99-99 99:99:99.999Z","9999-99-99 99:99:99.999+99:99","9999-99-99 99:99:99.999-99:99","9999-99-99 99:99:99.9999","9999-99-99 99:99:99.9999Z","9999-99-99 99:99:99.9999+99:99","9999-99-99 99:99:99.9999-99:99","9999-99-99 99:99:99.99999","9999-99-99 99:99:99.99999Z","9999-99-99 99:99:99.99999+99:99","9999-99-99 99:99:99.99999-99:99","9999-99-99 99:99:99.999999","9999-99-99 99:99:99.999999Z","9999-99-99 99:99:99.999999+99:99","9999-99-99 99:99:99.999999-99:99"}'::text[])
             AND left((v #>> '{}'), 2) COLLATE "C" >= '19'
             AND (length((v #>> '{}')) = 10 OR (substr((v #>> '{}'), 12, 2) COLLATE "C" <= '23'
                                      AND (substr((v #>> '{}'), 17, 1) <> ':' OR substr((v #>> '{}'), 18, 2) COLLATE "C" <= '59')))
             AND (NOT (length((v #>> '{}')) > 16 AND substr((v #>> '{}'), length((v #>> '{}')) - 5, 1) IN ('+', '-'))
                  OR (substr(right((v #>> '{}'), 5), 1, 2) COLLATE "C" <= '14' AND substr(right((v #>> '{}'), 5), 4, 1) COLLATE "C" <= '5'))
             AND pg_input_is_valid((v #>> '{}'), 'timestamp')
       THEN CASE WHEN right((v #>> '{}'), 1) = 'Z' OR (length((v #>> '{}')) > 16 AND substr((v #>> '{}'), length((v #>> '{}')) - 5, 1) IN ('+', '-'))
                 THEN (v #>> '{}')::timestamptz
                 ELSE (v #>> '{}')::timestamp AT TIME ZONE 'UTC' END
  END
$$;
