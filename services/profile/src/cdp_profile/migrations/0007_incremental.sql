-- Incremental computed traits (cdp_profile.incremental): each profile's foldable state, kept
-- beside the values it gives, so a new event is folded in without reading the history
-- again. NULL (rows computed before this migration): rebuilt from the events when next
-- touched.
ALTER TABLE profile_computed ADD COLUMN state bytea;

-- cdp.profile.changed's revision: increases with every change of the profile (the stream
-- sequence of the change's last message, shifted left 16 bits, or one more than before,
-- whichever is greater), so it also keeps increasing across a rebuild from the log.
ALTER TABLE profiles ADD COLUMN revision bigint NOT NULL DEFAULT 0;

-- Declared computed traits' foldable state (cdp_profile.declared_incremental) for the
-- definitions and versions it was built for; NULL or built for others: rebuilt from the
-- events when the profile is next touched.
ALTER TABLE profile_declared ADD COLUMN state bytea;
