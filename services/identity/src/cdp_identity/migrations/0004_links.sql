-- Merges that do not follow from the events' shared identifiers (probabilistic matches,
-- accepted review candidates): kept as links between two identifiers, so a rebuild applies
-- them again after the event at `seq` (unless a split has separated the two sides since).
CREATE TABLE links (
    link_id    text             PRIMARY KEY,                  -- the merge id
    seq        bigint           NOT NULL,
    event_id   text             NOT NULL,
    a_type     text             NOT NULL,
    a_value    text             NOT NULL,
    b_type     text             NOT NULL,
    b_value    text             NOT NULL,
    rule       text             NOT NULL,
    confidence double precision NOT NULL,
    reason     text             NOT NULL,
    details    jsonb
);
CREATE INDEX links_a ON links (a_type, a_value);
CREATE INDEX links_b ON links (b_type, b_value);

-- Review outcome of a candidate pair: open, accepted or rejected (a rejected pair is not listed again).
ALTER TABLE candidates ADD COLUMN status text NOT NULL DEFAULT 'open';

-- For the types in the rules' shared_max_profiles: which profiles a value was presented
-- with; a value seen on more than K profiles stops linking (rule shared-value).
CREATE TABLE sightings (
    type       text NOT NULL,
    value      text NOT NULL,
    profile_id text NOT NULL,
    PRIMARY KEY (type, value, profile_id)
);
