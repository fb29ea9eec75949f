-- Accounts (B2B): group calls create and update accounts and link the caller's profile to
-- them, many-to-many. Traits are last-writer-wins by (event time, event id), as a profile's.
-- An account is not personal data: forgetting a person removes their memberships only.
-- The account-level figures (users, revenue, last activity) are computed when read, from
-- the members' rows (cdp_profile.accounts), so merges, splits and forgets never leave them stale.

CREATE TABLE accounts (
    account_id text        PRIMARY KEY,           -- the group call's groupId, as sent
    first_seen timestamptz NOT NULL,              -- earliest and latest group call naming it
    last_seen  timestamptz NOT NULL
);

CREATE TABLE account_traits (
    account_id text        NOT NULL,
    name       text        NOT NULL,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL,              -- event time of the write that holds
    event_id   text        NOT NULL,
    PRIMARY KEY (account_id, name)
);

CREATE TABLE account_members (
    account_id      text        NOT NULL,
    profile_id      text        NOT NULL,
    first_linked_at timestamptz NOT NULL,         -- earliest and latest group call linking them
    last_linked_at  timestamptz NOT NULL,
    PRIMARY KEY (account_id, profile_id)
);
CREATE INDEX account_members_profile ON account_members (profile_id, account_id);
