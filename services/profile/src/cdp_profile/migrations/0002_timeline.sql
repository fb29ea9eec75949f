-- The timeline: every event of a person, as collected, kept on the profile it resolved to
-- (merges move the rows to the survivor; splits and forgets delete them).
-- Rows written before this migration have only their id, profile and time: rebuild the
-- projection from the log to fill them in.

ALTER TABLE profile_events
    ADD COLUMN kind        text NOT NULL DEFAULT '',  -- track, identify, page, screen, group, alias
    ADD COLUMN event_name  text,                      -- track: the event; page/screen: the name
    ADD COLUMN source_id   text,
    ADD COLUMN source_kind text,
    ADD COLUMN channel     text,                      -- the touchpoint's channel when known
    ADD COLUMN properties  jsonb,                     -- EventCollected's JSON objects (NULL: absent)
    ADD COLUMN traits      jsonb,
    ADD COLUMN context     jsonb,
    ADD COLUMN received_at timestamptz;               -- when ingest received it

-- Newest first per profile, keyset (occurred_at, event_id); also serves the profile_id look-ups
-- of merges, forgets and counts that the old index served.
CREATE INDEX profile_events_timeline ON profile_events (profile_id, occurred_at DESC, event_id DESC);
DROP INDEX profile_events_profile;
