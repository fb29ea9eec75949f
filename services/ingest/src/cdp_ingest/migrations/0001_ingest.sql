-- Sources (named write keys with a kind), tracking plans and their violations.

CREATE TABLE sources (
    source_id        text        PRIMARY KEY,
    name             text        NOT NULL UNIQUE,
    kind             text        NOT NULL,
    write_key_hash   text        NOT NULL UNIQUE,   -- sha256 of the key; the key itself is shown once
    write_key_hint   text        NOT NULL,          -- its last 4 characters
    webhook_secret   text,                          -- shared secret of signed webhooks (Shopify)
    enabled          boolean     NOT NULL DEFAULT true,
    rate_limit_per_s double precision NOT NULL DEFAULT 0,  -- 0: the service default
    accepted         bigint      NOT NULL DEFAULT 0,
    rejected         bigint      NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tracking_plans (
    source_id              text        PRIMARY KEY REFERENCES sources (source_id),
    mode                   text        NOT NULL CHECK (mode IN ('allow', 'flag', 'block')),
    unplanned_events       text        NOT NULL CHECK (unplanned_events IN ('allow', 'flag', 'block')),
    events                 jsonb       NOT NULL,
    identify_traits_schema jsonb,
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE violations (
    source_id text        NOT NULL,
    event     text        NOT NULL,
    message   text        NOT NULL,
    action    text        NOT NULL,
    count     bigint      NOT NULL DEFAULT 0,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (source_id, event, message, action)
);
