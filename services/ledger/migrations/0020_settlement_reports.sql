-- Trades as booked, one row per fill: the settlement date of each sale's proceeds, the cost
-- of holdings on statements, and an independent record the audit reconciles positions and
-- cash with. Written in the same transaction as the fill entry.
CREATE TABLE trades (
    entry_id   bigint NOT NULL REFERENCES entries (entry_id),
    window_id  text NOT NULL,
    account_id text NOT NULL REFERENCES accounts (account_id),
    symbol     text NOT NULL,
    side       text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity   numeric(30, 5) NOT NULL CHECK (quantity > 0),
    amount     numeric(14, 2) NOT NULL CHECK (amount >= 0),
    booked_at  timestamptz NOT NULL,
    -- the trade date plus the settlement days in NYSE sessions (the proceeds of a sale are
    -- not withdrawable before)
    settles_on date NOT NULL
);
CREATE INDEX trades_account ON trades (account_id, booked_at);
CREATE INDEX trades_unsettled ON trades (account_id, settles_on) WHERE side = 'sell';

-- The market's prices as published (market.prices.changed), for the market value of
-- holdings on statements: the last price at or before the statement's end.
CREATE TABLE prices (
    symbol text NOT NULL,
    as_of  timestamptz NOT NULL,
    price  numeric(20, 6) NOT NULL,
    PRIMARY KEY (symbol, as_of)
);
