-- Profiles whose computed traits must be computed again (new events, a merge): the
-- projection marks them in its transaction, the recomputer (computing.py) takes them in
-- batches, so a profile that gets many events in a moment is computed once.
CREATE TABLE profile_dirty (
    profile_id text        PRIMARY KEY,
    marked_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX profile_dirty_marked_at ON profile_dirty (marked_at);
