-- Seen event ids are kept for a retention period (CDP_IDENTITY_DEDUP_RETENTION_DAYS,
-- default 30), then pruned by cdp_identity.retention. Rows that exist when this runs
-- start their retention now.
ALTER TABLE seen_events ADD COLUMN seen_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX seen_events_seen_at ON seen_events (seen_at);
