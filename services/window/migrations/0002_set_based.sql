-- Funding, cancellation and carry-over, for the set-based close.

-- What a window funded of each intent: the whole amount, a buy scaled down pro rata when the
-- account's cash fell short, or NULL for an intent the window rejected.
ALTER TABLE intents ADD COLUMN funded_amount numeric(16, 2) CHECK (funded_amount > 0);
-- 'cancelled': cancelled by command before its window started.
ALTER TABLE intents DROP CONSTRAINT intents_status_check;
ALTER TABLE intents ADD CONSTRAINT intents_status_check
    CHECK (status IN ('pending', 'frozen', 'filled', 'rejected', 'cancelled'));
ALTER TABLE intents DROP CONSTRAINT intents_check1;
ALTER TABLE intents ADD CONSTRAINT intents_window_check
    CHECK (status IN ('pending', 'rejected', 'cancelled') OR window_id IS NOT NULL);
CREATE INDEX intents_batch ON intents (batch_id);

-- Intents a window could not trade (a halted security) and sent back to pending, with why.
CREATE TABLE carried_over (
    window_id uuid NOT NULL REFERENCES windows (window_id),
    intent_id uuid NOT NULL REFERENCES intents (intent_id),
    reason    text NOT NULL,
    PRIMARY KEY (window_id, intent_id)
);

-- Each account's cash as the ledger last reported it (ledger.cash.changed), for funding.
CREATE TABLE cash (
    account_id text PRIMARY KEY,
    cash       numeric(16, 2) NOT NULL,
    version    bigint NOT NULL
);

ALTER TABLE windows ADD COLUMN batches int;

-- What the schedule needs to know of each account: its plan (ledger.account.opened), the
-- window its holder chose, and its positions (ledger.position.changed) for equity.
CREATE TABLE accounts (
    account_id text PRIMARY KEY,
    plan       text,
    session    text CHECK (session IN ('morning', 'afternoon'))
);
CREATE TABLE positions (
    account_id text NOT NULL,
    symbol     text NOT NULL,
    quantity   numeric(20, 5) NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (account_id, symbol)
);
-- Prices as the market last published them (market.prices.changed).
CREATE TABLE prices (
    symbol text PRIMARY KEY,
    price  numeric NOT NULL
);

-- Scheduled windows: since when the schedule runs (windows before it are not owed), and
-- every slot run, so that a missed slot runs once when the service comes back.
CREATE TABLE schedule (
    id         int PRIMARY KEY CHECK (id = 1),
    started_at timestamptz NOT NULL
);
CREATE TABLE slots (
    starts_at timestamptz PRIMARY KEY,
    session   text NOT NULL CHECK (session IN ('morning', 'afternoon')),
    window_id uuid,
    ran_at    timestamptz NOT NULL
);
ALTER TABLE windows ADD COLUMN session text;
-- Why the venue did not trade an ordered security (halted); its intents carried over.
ALTER TABLE orders ADD COLUMN halted text;
