-- The prediction service's store: the compact per-profile history the features need, the
-- model registry, the latest score of each profile, and the profiles waiting for online scoring.

-- One row per observation (features.observe): an event gives one, an order one plus one per
-- product. Bounded: the scheduler prunes rows older than CDP_PREDICTION_RETENTION_DAYS and keeps
-- at most CDP_PREDICTION_MAX_OBSERVATIONS (the newest) per profile.
CREATE TABLE prediction_observations (
    profile_id text NOT NULL,
    event_id text NOT NULL,
    seq smallint NOT NULL,
    t double precision NOT NULL,          -- days since 1970-01-01 (UTC)
    code smallint NOT NULL,
    value real NOT NULL DEFAULT 0,
    discount boolean NOT NULL DEFAULT false,
    channel smallint NOT NULL,
    category text,
    brand text,
    colour text,
    size text,
    price_band text,
    PRIMARY KEY (profile_id, event_id, seq)
);
CREATE INDEX prediction_observations_t ON prediction_observations (t);

-- Profiles merged into another: their later events are redirected to the survivor.
CREATE TABLE prediction_merged (
    profile_id text PRIMARY KEY,
    merged_into text NOT NULL
);

CREATE TABLE prediction_models (
    version bigserial PRIMARY KEY,
    cutoff timestamptz NOT NULL,
    horizon_days int NOT NULL,
    churn_days int NOT NULL,
    features jsonb NOT NULL,
    metrics jsonb NOT NULL,
    importance jsonb NOT NULL,
    info jsonb NOT NULL,
    trained_at timestamptz NOT NULL DEFAULT now(),
    active boolean NOT NULL DEFAULT false,
    bundle bytea NOT NULL
);
CREATE UNIQUE INDEX prediction_models_one_active ON prediction_models (active) WHERE active;

CREATE TABLE prediction_scores (
    profile_id text PRIMARY KEY,
    model_version bigint NOT NULL,
    as_of timestamptz NOT NULL,
    scored_at timestamptz NOT NULL,
    purchase_probability double precision NOT NULL,
    churn_probability double precision,
    expected_purchases double precision NOT NULL,
    predicted_ltv double precision NOT NULL,
    ltv_percentile double precision NOT NULL,
    discount_affinity double precision NOT NULL,
    affinities jsonb NOT NULL
);

-- Profiles whose features changed since their last score (online scoring, debounced).
CREATE TABLE prediction_dirty (
    profile_id text PRIMARY KEY,
    changed_at timestamptz NOT NULL
);
