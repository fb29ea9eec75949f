-- Declared computed traits (cdp_profile.declared): the definitions operators apply, and
-- each profile's values, recomputed from its own events like profile_computed.

-- Every applied change of a definition gets a new version from this sequence (never reused,
-- even after a delete), so a value computed by an older definition is never served as a
-- newer one's.
CREATE SEQUENCE trait_definition_version;

CREATE TABLE trait_definitions (
    name              text        PRIMARY KEY,
    spec              jsonb       NOT NULL,              -- the canonical definition (TraitDefinition.to_dict)
    version           bigint      NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    -- the backfill of this version over existing profiles, batch by batch in profile_id order
    backfill_cursor   text        NOT NULL DEFAULT '',   -- the last profile id done
    backfill_done     bigint      NOT NULL DEFAULT 0,
    backfill_total    bigint      NOT NULL DEFAULT 0,    -- live profiles when it began
    backfilled_at     timestamptz                        -- NULL while it runs
);
CREATE INDEX trait_definitions_backfilling ON trait_definitions (backfill_cursor) WHERE backfilled_at IS NULL;

-- {name: value} and {name: version that computed it}; served only where the version is the
-- definition's current one. `as_of`: the profile's latest event (the time values are for).
-- Rows go with their profile (a forget or split deletes the profile row).
CREATE TABLE profile_declared (
    profile_id text        PRIMARY KEY REFERENCES profiles (profile_id) ON DELETE CASCADE,
    declared   jsonb       NOT NULL,
    versions   jsonb       NOT NULL,
    as_of      timestamptz NOT NULL
);
