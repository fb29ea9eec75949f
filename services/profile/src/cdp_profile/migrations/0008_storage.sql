-- Writes made with every event, made cheaper (they cost PostgreSQL more CPU than anything else
-- the projection writes):
-- * the computed traits' values are kept as the JSON text the service wrote, not parsed into
--   jsonb on every write: readers cast them (declared_store.COMPUTED_SQL, accounts.FIGURES),
--   so what they serve is unchanged;
-- * the computed-trait state, written with every event, is stored without PostgreSQL's own
--   (pglz) compression: the service already deflates it (incremental.State.dumps). EXTERNAL
--   keeps large values out of line, uncompressed; rows written before keep theirs. (The
--   outbox's payloads are stored alike in every service: cdp_core's 0002.)
ALTER TABLE profile_computed ALTER COLUMN computed TYPE text USING computed::text;
ALTER TABLE profile_computed ALTER COLUMN state SET STORAGE EXTERNAL;
