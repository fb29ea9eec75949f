-- Profiles forgotten (cdp.identity.forgotten): a profile change of theirs still in flight is
-- not projected again. Rebuilt from the log like the rest of the projection.
CREATE TABLE seg_forgotten (
    profile_id   text        PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);
