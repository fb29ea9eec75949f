-- The rule-driven graph: resolutions kept for rebuilds (splits, log order), splits and
-- their separations, forget tombstones, configuration versions, probabilistic matching.

-- Profiles are deleted and re-created by rebuilds: no foreign keys into them.
ALTER TABLE profiles DROP CONSTRAINT IF EXISTS profiles_merged_into_fkey;
ALTER TABLE identifiers DROP CONSTRAINT IF EXISTS identifiers_profile_id_fkey;
ALTER TABLE merges DROP CONSTRAINT IF EXISTS merges_survivor_id_fkey;
ALTER TABLE merges DROP CONSTRAINT IF EXISTS merges_merged_id_fkey;

ALTER TABLE profiles ADD COLUMN last_seq bigint NOT NULL DEFAULT 0;       -- highest log sequence applied
ALTER TABLE profiles ADD COLUMN conflicted boolean NOT NULL DEFAULT false; -- an order-dependent rule acted on it
UPDATE profiles SET last_seq = created_seq;
CREATE INDEX profiles_merged_into ON profiles (merged_into) WHERE merged_into IS NOT NULL;

ALTER TABLE identifiers ADD COLUMN first_seq bigint NOT NULL DEFAULT 0;

ALTER TABLE merges ADD COLUMN details jsonb;
ALTER TABLE merges ADD COLUMN undone_by text;                             -- the split that undid it
CREATE INDEX merges_merged ON merges (merged_id);

-- Every resolved event: its log sequence (CDP_INGEST), its canonical profile and its
-- normalized identifiers ("type" || chr(31) || "value"), as read before the rules.
CREATE TABLE resolutions (
    seq        bigint PRIMARY KEY,
    event_id   text   NOT NULL,
    profile_id text,                                                    -- NULL: every identifier dropped
    keys       text[] NOT NULL
);
CREATE INDEX resolutions_profile ON resolutions (profile_id);

-- Identifiers an order-dependent rule kept off an event's profile: they still tie the
-- event to the profile that holds them, for rebuilds.
CREATE TABLE dropped_links (
    type  text   NOT NULL,
    value text   NOT NULL,
    seq   bigint NOT NULL,
    PRIMARY KEY (type, value, seq)
);

CREATE TABLE splits (
    split_id   text        PRIMARY KEY,
    profile_id text        NOT NULL,
    rule       text        NOT NULL,
    reason     text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Identifiers on different sides of one split never join one profile.
CREATE TABLE separations (
    type     text     NOT NULL,
    value    text     NOT NULL,
    split_id text     NOT NULL,
    side     smallint NOT NULL,
    PRIMARY KEY (type, value, split_id)
);

-- Forgotten identifiers, hashed: a replayed event carrying one does not bring the person back.
CREATE TABLE tombstones (
    hash         text        PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rules (
    version    bigserial   PRIMARY KEY,
    yaml       text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- Probabilistic matching: each profile's offline records and their blocking keys.
CREATE TABLE match_records (
    profile_id text  NOT NULL,
    record_id  text  NOT NULL,                                          -- a hash of the record
    record     jsonb NOT NULL,
    PRIMARY KEY (profile_id, record_id)
);
CREATE TABLE match_blocks (
    block_key  text NOT NULL,
    profile_id text NOT NULL,
    PRIMARY KEY (block_key, profile_id)
);
CREATE INDEX match_blocks_profile ON match_blocks (profile_id);

-- Pairs below the merge threshold, for review.
CREATE TABLE candidates (
    profile_id       text             NOT NULL,
    other_profile_id text             NOT NULL,
    probability      double precision NOT NULL,
    weight           double precision NOT NULL,
    details          jsonb            NOT NULL,
    event_id         text             NOT NULL,
    found_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, other_profile_id)
);
