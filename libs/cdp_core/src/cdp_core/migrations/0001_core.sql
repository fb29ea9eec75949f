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

-- Messages that could not be processed, kept with the reason and the original bytes.
CREATE TABLE cdp_failed_events (
    id          bigserial   PRIMARY KEY,
    consumer    text        NOT NULL,
    stream      text        NOT NULL,
    stream_seq  bigint      NOT NULL,
    subject     text        NOT NULL,
    event_id    text,
    reason      text        NOT NULL,
    data        bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    failed_at   timestamptz NOT NULL DEFAULT now(),
    redriven_at timestamptz,
    UNIQUE (consumer, stream_seq)
);
CREATE INDEX cdp_failed_events_pending ON cdp_failed_events (failed_at) WHERE redriven_at IS NULL;
