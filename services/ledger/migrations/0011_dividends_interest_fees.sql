-- Dividends announced by the market, paid by the daily job on their pay date.
CREATE TABLE dividends (
    symbol           text NOT NULL,
    ex_date          date NOT NULL,
    pay_date         date NOT NULL,
    amount_per_share numeric(20, 6) NOT NULL CHECK (amount_per_share > 0),
    announced_at     timestamptz NOT NULL,
    entry_id         bigint REFERENCES entries (entry_id),  -- set once paid
    paid_at          timestamptz,
    PRIMARY KEY (symbol, ex_date)
);
CREATE INDEX dividends_due ON dividends (pay_date) WHERE paid_at IS NULL;

-- The daily job: the days it ran, and when its schedule first started (earlier days are
-- not owed by the schedule; the ledger.day.run command runs any day).
CREATE TABLE days_run (
    day    date PRIMARY KEY,
    ran_at timestamptz NOT NULL
);
CREATE TABLE day_schedule (
    id         int PRIMARY KEY CHECK (id = 1),
    started_on date NOT NULL
);

-- Each account's value (cash + positions at the last known prices) when the day's job ran:
-- the platform fee is waived for a month in which one of them reached the threshold.
CREATE TABLE day_values (
    account_id text NOT NULL REFERENCES accounts (account_id),
    day        date NOT NULL,
    cash       numeric(30, 5) NOT NULL,
    value      numeric(30, 5) NOT NULL,
    PRIMARY KEY (account_id, day)
);

-- Interest on plus accounts' uninvested cash, accrued per day (exact to 1e-10), paid monthly.
CREATE TABLE interest_accruals (
    account_id text NOT NULL REFERENCES accounts (account_id),
    day        date NOT NULL,
    cash       numeric(30, 5) NOT NULL,
    rate       numeric(10, 6) NOT NULL,
    amount     numeric(30, 10) NOT NULL,
    PRIMARY KEY (account_id, day)
);
