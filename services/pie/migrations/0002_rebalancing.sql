-- Dynamic rebalancing: the dividend setting, cancelled intents, and sells whose proceeds
-- are earmarked for one pie.

-- Dividend handling: 'cash' (default: dividends land in cash and are auto-invested like any
-- cash) or 'reinvest' (into the paying security). Stored here; dividends are booked later.
ALTER TABLE accounts ADD COLUMN dividends text NOT NULL DEFAULT 'cash' CHECK (dividends IN ('cash', 'reinvest'));

-- A sell whose proceeds are reinvested in this pie (a removed slice's liquidation).
ALTER TABLE intents ADD COLUMN reinvest_in text;
ALTER TABLE intents DROP CONSTRAINT intents_status_check;
ALTER TABLE intents ADD CONSTRAINT intents_status_check CHECK (status IN ('pending', 'filled', 'cancelled'));

-- Withdrawals the ledger holds until sells raise their shortfall. While `open`, the amount
-- is kept back from auto-invest; closed when the ledger's payout (a cash change caused by
-- this withdrawal) arrives, or refused when the account cannot cover it.
CREATE TABLE withdrawals (
    withdrawal_id uuid PRIMARY KEY,
    account_id    text NOT NULL REFERENCES accounts (account_id),
    amount        numeric(16, 2) NOT NULL,
    status        text NOT NULL CHECK (status IN ('open', 'paid', 'refused')),
    reason        text,
    created_at    timestamptz NOT NULL
);
