-- Delivery channels per account and one delivery row per (notification, channel): an outbox
-- for webhook and email deliveries, written in the same transaction as the feed entry.

CREATE TABLE channels (
    account_id     text PRIMARY KEY,
    webhook_url    text,
    webhook_secret text,
    email          text,
    updated_at     timestamptz NOT NULL,
    CHECK ((webhook_url IS NULL) = (webhook_secret IS NULL))
);

CREATE TABLE deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- the receiver's idempotency key
    feed_id         bigint NOT NULL REFERENCES feed (id),
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email')),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    -- attempts started; a claim counts one before sending, so a crash mid-send still counts
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    -- when a pending delivery is due (a claimed one: when its claim lapses); NULL once final
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL,
    UNIQUE (feed_id, channel)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
