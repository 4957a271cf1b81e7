-- Tax lots and realised gains (services/ledger/lots.py). Written in the transaction of the
-- fill entry they come from; not part of the journal (lots shrink as sales close them).
CREATE TABLE lots (
    lot_id         bigserial PRIMARY KEY,
    account_id     text NOT NULL REFERENCES accounts (account_id),
    symbol         text NOT NULL,
    window_id      text NOT NULL,
    intent_id      uuid NOT NULL,
    acquired_at    timestamptz NOT NULL,
    -- the trade date in America/New_York (holding periods and wash sales count in days)
    acquired_on    date NOT NULL,
    quantity       numeric(30, 5) NOT NULL CHECK (quantity > 0),
    cost           numeric(14, 2) NOT NULL CHECK (cost >= 0),
    -- what is still open: sales close lots in part or in full
    remaining      numeric(30, 5) NOT NULL CHECK (remaining >= 0 AND remaining <= quantity),
    remaining_cost numeric(14, 2) NOT NULL CHECK (remaining_cost >= 0)
);
CREATE INDEX lots_open ON lots (account_id, symbol) WHERE remaining > 0;
CREATE INDEX lots_acquired ON lots (account_id, symbol, acquired_on);

-- One row per (sale, lot closed): a sale closing three lots has three rows.
CREATE TABLE realised_gains (
    gain_id     bigserial PRIMARY KEY,
    account_id  text NOT NULL REFERENCES accounts (account_id),
    symbol      text NOT NULL,
    -- '<window>:<intent>' of the sell fill
    sale_id     text NOT NULL,
    lot_id      bigint REFERENCES lots (lot_id),  -- NULL: shares without a lot (cost unknown)
    acquired_on date,
    sold_at     timestamptz NOT NULL,
    sold_on     date NOT NULL,
    quantity    numeric(30, 5) NOT NULL CHECK (quantity > 0),
    proceeds    numeric(14, 2) NOT NULL,
    cost        numeric(14, 2) NOT NULL,
    gain        numeric(14, 2) NOT NULL,
    term        text NOT NULL CHECK (term IN ('short', 'long')),
    wash_sale   boolean NOT NULL DEFAULT false,
    basis_known boolean NOT NULL DEFAULT true
);
CREATE INDEX realised_gains_account ON realised_gains (account_id, sold_on);
CREATE INDEX realised_gains_losses ON realised_gains (account_id, symbol, sold_on) WHERE gain < 0;
CREATE INDEX realised_gains_sale ON realised_gains (sale_id);
