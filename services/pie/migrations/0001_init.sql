-- The pie service: projections of the ledger and the market, each account's pie and
-- settings, the buy intents it submitted and what they bought per slice.

-- One row per account the ledger told us about. `cash` is the ledger's cash as of
-- `version` (the ledger's account version); an event carrying an older or equal version
-- does not change it. kind/plan/opened_at stay null until AccountOpened arrives.
CREATE TABLE accounts (
    account_id   text PRIMARY KEY,
    kind         text,
    plan         text,
    opened_at    timestamptz,
    cash         numeric(16, 2) NOT NULL DEFAULT 0,
    version      bigint NOT NULL DEFAULT 0,
    -- settings
    auto_invest  boolean NOT NULL DEFAULT true,
    minimum_cash numeric(16, 2) NOT NULL DEFAULT 0.00 CHECK (minimum_cash >= 0)
);

-- The ledger's positions per symbol; each row keeps the ledger version it reflects.
CREATE TABLE positions (
    account_id text NOT NULL REFERENCES accounts (account_id),
    symbol     text NOT NULL,
    quantity   numeric(20, 5) NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (account_id, symbol)
);

-- Last known price per symbol; the set of symbols a pie may hold.
CREATE TABLE prices (
    symbol text PRIMARY KEY,
    price  numeric(20, 6) NOT NULL CHECK (price > 0),
    as_of  timestamptz NOT NULL
);

-- The account's pie: the whole tree as the SetPie command gave it (a PieSpec).
CREATE TABLE pies (
    account_id text PRIMARY KEY REFERENCES accounts (account_id),
    name       text NOT NULL,
    tree       jsonb NOT NULL,
    set_at     timestamptz NOT NULL
);

-- Every intent this service submitted, with the slice it is for. A pending buy holds its
-- cash back from auto-invest until its fill is booked.
CREATE TABLE intents (
    intent_id  uuid PRIMARY KEY,
    batch_id   uuid NOT NULL,
    account_id text NOT NULL REFERENCES accounts (account_id),
    path       text NOT NULL,
    symbol     text NOT NULL,
    side       text NOT NULL CHECK (side IN ('buy', 'sell')),
    amount     numeric(16, 2) NOT NULL CHECK (amount > 0),
    source     text NOT NULL,
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'filled')),
    created_at timestamptz NOT NULL,
    filled_at  timestamptz,
    window_id  uuid
);
CREATE INDEX intents_pending ON intents (account_id) WHERE status = 'pending';

-- What each slice holds, attributed through the intents that bought it (the same symbol
-- may sit in two sub-pies). `cost` is the money paid for those shares.
CREATE TABLE slice_holdings (
    account_id text NOT NULL REFERENCES accounts (account_id),
    path       text NOT NULL,
    symbol     text NOT NULL,
    quantity   numeric(20, 5) NOT NULL,
    cost       numeric(16, 2) NOT NULL,
    PRIMARY KEY (account_id, path)
);
