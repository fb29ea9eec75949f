-- The tables of the consumer pattern, shared by every service (DESIGN.md, "Processing").

-- One row per processed message: (consumer, stream sequence). Inserted in the same
-- transaction as the projection, so a redelivered message finds its row and is skipped.
CREATE TABLE cdp_tracking (
    consumer   text   NOT NULL,
    stream_seq bigint NOT NULL,
    PRIMARY KEY (consumer, stream_seq)
);

-- Outgoing events, written in the projection's transaction and published by the relay.
CREATE TABLE cdp_outbox (
    id         bigserial   PRIMARY KEY,
    subject    text        NOT NULL,
    msg_id     text        NOT NULL,
    data       bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Everything that could not be processed, kept with the reason and the original bytes:
--   kind 'consumer': a log message a projection could not apply (stream, stream_seq set);
--   kind 'rejected': a call ingest refused (bad input, tracking-plan block, unknown source).
-- An operator lists them and replays them after a fix (replayed_at, replay_result).
CREATE TABLE cdp_failed_events (
    id            bigserial   PRIMARY KEY,
    kind          text        NOT NULL DEFAULT 'consumer' CHECK (kind IN ('consumer', 'rejected')),
    consumer      text        NOT NULL,
    stream        text,
    stream_seq    bigint,
    subject       text,
    event_id      text,
    source_id     text,
    reason        text        NOT NULL,
    data          bytea       NOT NULL,
    content_type  text        NOT NULL DEFAULT 'application/vnd.cdp.envelope+protobuf',
    headers       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    attempts      int         NOT NULL DEFAULT 1,
    replayed_at   timestamptz,
    replay_result text,
    UNIQUE (consumer, stream_seq)
);
CREATE INDEX cdp_failed_events_pending ON cdp_failed_events (failed_at) WHERE replayed_at IS NULL;
