-- Customer orders and the projections that validate them. Every projection is fed by events
-- (the ledger's cash and positions with its version, the market's prices with their time,
-- the pie's tree); none is the truth, and an older event never overwrites a newer one.

-- Cash per account, from ledger.cash.changed and ledger.fills.booked.
CREATE TABLE cash (
    account_id text PRIMARY KEY,
    cash       numeric(20, 2) NOT NULL,
    version    bigint NOT NULL
);

-- Shares per account and security, from ledger.position.changed and ledger.fills.booked.
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
    price  numeric(20, 6) NOT NULL CHECK (price > 0),
    as_of  timestamptz NOT NULL
);

-- The securities of each account's pie (its leaves), from pie.pie.changed.
CREATE TABLE pies (
    account_id text PRIMARY KEY,
    name       text NOT NULL,
    symbols    text[] NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Deposits the ledger booked or refused (an order may be placed with a deposit that was
-- booked before the order arrived).
CREATE TABLE deposits (
    deposit_id uuid PRIMARY KEY,
    account_id text NOT NULL,
    status     text NOT NULL CHECK (status IN ('booked', 'rejected')),
    reason     text,
    at         timestamptz NOT NULL
);

-- The orders. The order's id is also its intent's id at the window.
CREATE TABLE orders (
    order_id         uuid PRIMARY KEY,
    account_id       text NOT NULL,
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    amount           numeric(16, 2) CHECK (amount > 0),
    quantity         numeric(20, 5) CHECK (quantity > 0),
    status           text NOT NULL CHECK (status IN ('pending', 'carried_over', 'cancelled', 'executed',
                                                     'partially_executed', 'rejected')),
    deposit_id       uuid,
    deposit_amount   numeric(16, 2),
    -- its intent went to the window (false while it waits for its deposit)
    submitted        boolean NOT NULL DEFAULT false,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- cancels sent again because the window did not know the intent yet
    cancel_attempts  integer NOT NULL DEFAULT 0,
    filled_quantity  numeric(20, 5),
    filled_amount    numeric(16, 2),
    price            numeric(20, 6),
    window_id        uuid,
    reason           text,
    placed_at        timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- one more on every change, so a reader can tell two states of an order apart
    version          integer NOT NULL DEFAULT 1,
    CHECK ((amount IS NULL) <> (quantity IS NULL))
);
CREATE INDEX orders_account ON orders (account_id, placed_at);
CREATE INDEX orders_deposit ON orders (deposit_id) WHERE deposit_id IS NOT NULL;
