-- The profile projection (walking skeleton: identifiers, traits, event count).

CREATE TABLE profiles (
    profile_id  text        PRIMARY KEY,
    merged_into text,                       -- set when folded into a survivor
    event_count bigint      NOT NULL DEFAULT 0,
    first_seen  timestamptz,
    last_seen   timestamptz
);
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;

CREATE TABLE profile_identifiers (
    type       text NOT NULL,
    value      text NOT NULL,
    profile_id text NOT NULL,
    PRIMARY KEY (type, value)
);
CREATE INDEX profile_identifiers_profile ON profile_identifiers (profile_id);

-- Last-writer-wins per trait: the write with the greatest (event time, event id) holds.
CREATE TABLE profile_traits (
    profile_id text        NOT NULL,
    name       text        NOT NULL,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,
    event_id   text        NOT NULL,
    PRIMARY KEY (profile_id, name)
);

-- The events attributed to a profile: counts come from idempotent inserts.
CREATE TABLE profile_events (
    event_id    text        PRIMARY KEY,
    profile_id  text        NOT NULL,
    occurred_at timestamptz NOT NULL
);
CREATE INDEX profile_events_profile ON profile_events (profile_id);
