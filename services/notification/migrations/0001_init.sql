-- The notification feed: one row per thing an account holder was told, kept to be read back.

CREATE TABLE feed (
    id         bigserial PRIMARY KEY,
    account_id text NOT NULL,
    kind       text NOT NULL,
    message    text NOT NULL,
    data       jsonb NOT NULL DEFAULT '{}',
    -- the message id of the event that caused it: one notification per cause, however
    -- often the event is delivered
    cause_id   text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL
);
CREATE INDEX feed_account ON feed (account_id, id);
