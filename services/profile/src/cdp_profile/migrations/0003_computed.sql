-- Computed traits (cdp_profile.computed), recomputed from the profile's own events whenever
-- they change (new events, a merge); `as_of` is the time they were computed for: the
-- profile's latest event, so a rebuild from the log gives the same values.
CREATE TABLE profile_computed (
    profile_id text        PRIMARY KEY,
    computed   jsonb       NOT NULL,
    as_of      timestamptz NOT NULL
);
