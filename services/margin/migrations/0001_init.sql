-- The margin service's projections: what the equity watch reads (equity = market value +
-- cash - loan; market value = sum of quantity x price). All three are fed by events; none is
-- the truth (the ledger is), so each row keeps the version or time it was last set from and
-- an older event never overwrites a newer one.

-- Accounts and their cash, from ledger.account.opened and ledger.cash.changed.
CREATE TABLE accounts (
    account_id text PRIMARY KEY,
    -- NULL until ledger.account.opened arrives: a redelivered event can overtake it, and the
    -- cash it carries is kept rather than refused.
    kind       text,
    plan       text,
    cash       numeric(20, 2) NOT NULL DEFAULT 0,
    -- the ledger version of the last cash change applied (0: none yet)
    version    bigint NOT NULL DEFAULT 0
);

-- Holdings per security, from ledger.position.changed. One fill bumps the ledger version once
-- and reports cash and every position at that version, so each position keeps its own.
CREATE TABLE positions (
    account_id text NOT NULL,
    symbol     text NOT NULL,
    quantity   numeric(20, 5) NOT NULL,
    version    bigint NOT NULL,
    PRIMARY KEY (account_id, symbol)
);

-- Last price per security, from market.prices.changed.
CREATE TABLE prices (
    symbol text PRIMARY KEY,
    price  numeric(18, 6) NOT NULL CHECK (price > 0),
    as_of  timestamptz NOT NULL
);
