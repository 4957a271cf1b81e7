-- Inbox, outbox and dead letters: the same three tables in every service's schema.

-- One row per handled message id, written in the same transaction as the effect.
-- A message whose id is here is acknowledged and skipped (replay = no-op); a command's
-- reply is kept so that a repeated request gets the original answer.
CREATE TABLE inbox (
    message_id  text PRIMARY KEY,
    routing_key text NOT NULL,
    outcome     text NOT NULL CHECK (outcome IN ('ok', 'rejected')),
    reply       jsonb,
    body_sha256 text NOT NULL,
    handled_at  timestamptz NOT NULL DEFAULT now()
);

-- Messages to publish, written inside the handler's transaction; the relay publishes
-- them with publisher confirms and deletes a row only after its confirm.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    exchange       text NOT NULL,
    routing_key    text NOT NULL,
    message_id     text NOT NULL,
    correlation_id text NOT NULL,
    message_type   text NOT NULL,
    headers        jsonb NOT NULL DEFAULT '{}',
    body           bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- Every message this service refused, with the reason (a copy also goes to its DLQ).
CREATE TABLE dead_letters (
    id             bigserial PRIMARY KEY,
    message_id     text NOT NULL,
    routing_key    text NOT NULL,
    correlation_id text,
    account_id     text,
    reason         text NOT NULL,
    body           bytea NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_account ON dead_letters (account_id) WHERE account_id IS NOT NULL;
