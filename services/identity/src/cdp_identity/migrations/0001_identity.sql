-- The identity graph (walking skeleton: deterministic, one profile per linked set).

CREATE TABLE profiles (
    profile_id  text        PRIMARY KEY,
    created_seq bigint      NOT NULL,           -- log sequence of the event that created it
    merged_into text        REFERENCES profiles (profile_id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Each normalized identifier belongs to exactly one (canonical) profile.
CREATE TABLE identifiers (
    type           text   NOT NULL,
    value          text   NOT NULL,
    profile_id     text   NOT NULL REFERENCES profiles (profile_id),
    first_event_id text   NOT NULL,
    PRIMARY KEY (type, value)
);
CREATE INDEX identifiers_profile ON identifiers (profile_id);

-- Event ids already resolved: a client retry beyond JetStream's duplicate window is applied once.
CREATE TABLE seen_events (
    event_id text PRIMARY KEY
);

-- Merges with their provenance.
CREATE TABLE merges (
    merge_id          text        PRIMARY KEY,
    survivor_id       text        NOT NULL REFERENCES profiles (profile_id),
    merged_id         text        NOT NULL REFERENCES profiles (profile_id),
    rule              text        NOT NULL,
    identifier_type   text        NOT NULL,
    identifier_value  text        NOT NULL,
    event_id          text        NOT NULL,
    confidence        double precision NOT NULL,
    survivor_reason   text        NOT NULL,
    merged_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merges_survivor ON merges (survivor_id);
