-- Accepted review decisions (ReviewCandidate with accept): operator input, like rules and
-- separations, so a replay (`cdp replay identity`) keeps them and applies each again once it
-- has resolved the event at `seq` (the later of the two identifiers' first events). The merge
-- itself is in `links` and `merges`, which a replay rebuilds.
CREATE TABLE reviews (
    link_id     text             PRIMARY KEY,   -- the merge id of the accepted link
    seq         bigint           NOT NULL,
    event_id    text             NOT NULL,
    a_type      text             NOT NULL,
    a_value     text             NOT NULL,
    b_type      text             NOT NULL,
    b_value     text             NOT NULL,
    confidence  double precision NOT NULL,
    details     jsonb,
    reviewed_at timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX reviews_seq ON reviews (seq);
