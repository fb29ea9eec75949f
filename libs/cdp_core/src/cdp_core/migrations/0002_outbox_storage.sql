-- Outgoing events are stored without PostgreSQL's own (pglz) compression: a row is written once,
-- read once by the relay and deleted, and its protobuf payload compresses poorly, so
-- compressing it costs CPU on every event for little space (a cdp.profile.changed carries the
-- profile's state, 3-5 KB). EXTERNAL keeps large values out of line, uncompressed.
ALTER TABLE cdp_outbox ALTER COLUMN data SET STORAGE EXTERNAL;
